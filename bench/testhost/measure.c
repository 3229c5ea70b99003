/* One VMM launch, measured: runs CMD with its stdout (the guest's serial
 * console) on a pipe and prints
 *
 *   userspace_ms=<launch -> MARKER seen> exit_ms=<launch -> exit> rss_kb=<peak RSS> status=<exit status>
 *
 *   measure MARKER TIMEOUT_S CMD [ARG...]
 *
 * Built static by bench/testhost/run.sh and run inside the test host, where
 * there is no python. userspace_ms is -1 when MARKER never appeared; after
 * TIMEOUT_S the command is killed (status=timeout). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child;
static void on_alarm(int sig) { (void)sig; if (child > 0) kill(child, SIGKILL); }

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: measure MARKER TIMEOUT_S CMD [ARG...]\n");
    return 2;
  }
  const char *marker = argv[1];
  size_t mlen = strlen(marker);
  int timeout = atoi(argv[2]);
  int fds[2];
  if (pipe(fds) != 0) { perror("pipe"); return 2; }
  double t0 = now_ms();
  child = fork();
  if (child < 0) { perror("fork"); return 2; }
  if (child == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execvp(argv[3], argv + 3);
    perror(argv[3]);
    _exit(127);
  }
  close(fds[1]);
  signal(SIGALRM, on_alarm);
  alarm(timeout);
  char buf[4096 + 256];
  size_t keep = 0;
  double t_user = -1;
  for (;;) {
    ssize_t n = read(fds[0], buf + keep, 4096);
    if (n <= 0) break;
    size_t len = keep + (size_t)n;
    if (t_user < 0 && memmem(buf, len, marker, mlen)) t_user = now_ms() - t0;
    keep = mlen < len ? mlen : len;
    memmove(buf, buf + len - keep, keep);
  }
  int st = 0;
  struct rusage ru;
  if (wait4(child, &st, 0, &ru) < 0) { perror("wait4"); return 2; }
  double t_exit = now_ms() - t0;
  char status[32];
  if (WIFEXITED(st)) snprintf(status, sizeof status, "%d", WEXITSTATUS(st));
  else if (WTERMSIG(st) == SIGKILL) snprintf(status, sizeof status, "timeout");
  else snprintf(status, sizeof status, "signal%d", WTERMSIG(st));
  printf("userspace_ms=%.1f exit_ms=%.1f rss_kb=%ld status=%s\n", t_user, t_exit, ru.ru_maxrss, status);
  return 0;
}
