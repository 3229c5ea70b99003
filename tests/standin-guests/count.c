/* Counting stand-in (standin=count): prints "count N" lines, N from 0 up,
 * forever or until count_to=N. Its state lives in general registers (the
 * loop counter, and a running hash in r15, which nothing else uses) and
 * in memory (a copy of the counter and a history ring), and every step
 * checks that they agree: a VM restored from a snapshot must carry on from
 * the number it stopped at, registers and memory intact. (No SSE: this
 * host's kvm_pvm emulates ring-0 guest code and its emulator fails on
 * SSE instructions, so XSAVE state is checked by the unit tests only.)
 * count_delay=N sets the busy wait between lines (default 100000). */
#include "guest.h"

static volatile u64 mem_count;
static volatile u64 history[64];
void delay(u64 n) {
    for (volatile u64 d = 0; d < n; d++) {}
}

void run_count(void) {
    const char *p = cmdline_find("count_to");
    u64 limit = p ? parse_dec(&p) : 0;
    p = cmdline_find("count_delay");
    u64 wait = p ? parse_dec(&p) : 100000;
    register u64 hash __asm__("r15") = 0;
    mem_count = 0;
    for (u64 i = 0; !limit || i < limit; i++) {
        if (mem_count != i) fail("count: memory copy lost");
        if (hash != i * 3) fail("count: r15 lost");
        if (i && history[(i - 1) % 64] != (i - 1) * 2654435761ull) fail("count: history lost");
        puts("count "); putdec(i); puts("\n");
        history[i % 64] = i * 2654435761ull;
        mem_count = i + 1;
        __asm__ volatile("add $3, %0" : "+r"(hash));
        delay(wait);
    }
    puts("count: done\n");
}
