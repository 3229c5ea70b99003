/* hull stand-in guest: a freestanding program that boots through hull-vmm's
 * loader (64-bit Linux boot protocol, bzImage or PVH), prints what it was
 * handed, runs the device tests named on its command line, and resets.
 * Build: gcc -ffreestanding -nostdlib -mgeneral-regs-only -mno-red-zone. */
#include "guest.h"

static const char *cmdline;

/* ---- serial, ports, printing ---- */
void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void putc(char c) {
    if (c == '\n') putc('\r');
    while (!(inb(0x3f8 + 5) & 0x20)) {}
    outb(0x3f8, (u8)c);
}
void puts(const char *s) { while (*s) putc(*s++); }
void puthex(u64 v) {
    puts("0x");
    int started = 0;
    for (int i = 60; i >= 0; i -= 4) {
        int d = (v >> i) & 0xf;
        if (d || started || i == 0) { putc("0123456789abcdef"[d]); started = 1; }
    }
}
void putdec(u64 v) {
    char b[24]; int n = 0;
    do { b[n++] = '0' + v % 10; v /= 10; } while (v);
    while (n) putc(b[--n]);
}

void *memset(void *d, int c, u64 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u64 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }
int memcmp(const void *a, const void *b, u64 n) {
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++) if (*p != *q) return *p - *q;
    return 0;
}
u64 strlen(const char *s) { u64 n = 0; while (s[n]) n++; return n; }

u32 fnv1a(const void *data, u64 len) {
    const u8 *p = data; u32 h = 2166136261u;
    while (len--) { h ^= *p++; h *= 16777619u; }
    return h;
}

/* Finds "key=" in the command line; returns the value (up to a space). */
const char *cmdline_find(const char *key) {
    u64 kl = strlen(key);
    const char *p = cmdline;
    while (p && *p) {
        while (*p == ' ') p++;
        if (!memcmp(p, key, kl) && p[kl] == '=') return p + kl + 1;
        while (*p && *p != ' ') p++;
    }
    return 0;
}

/* Whether word `w` is in the comma list starting at `list` (ends at space). */
int list_has(const char *list, const char *w) {
    u64 wl = strlen(w);
    while (list && *list && *list != ' ') {
        if (!memcmp(list, w, wl) && (list[wl] == ',' || list[wl] == ' ' || !list[wl])) return 1;
        while (*list && *list != ',' && *list != ' ') list++;
        if (*list == ',') list++;
    }
    return 0;
}

u64 parse_hex(const char **pp) {
    const char *p = *pp; u64 v = 0;
    if (p[0] == '0' && p[1] == 'x') p += 2;
    for (;; p++) {
        char c = *p;
        if (c >= '0' && c <= '9') v = v * 16 + (u64)(c - '0');
        else if (c >= 'a' && c <= 'f') v = v * 16 + (u64)(c - 'a' + 10);
        else break;
    }
    *pp = p;
    return v;
}

u64 parse_dec(const char **pp) {
    const char *p = *pp; u64 v = 0;
    while (*p >= '0' && *p <= '9') v = v * 10 + (u64)(*p++ - '0');
    *pp = p;
    return v;
}

/* virtio_mmio.device=<size>@<addr>:<irq> entries, in order. */
int find_virtio(u64 *addrs, int max) {
    int n = 0;
    const char *p = cmdline;
    static const char key[] = "virtio_mmio.device=";
    while (p && *p && n < max) {
        while (*p == ' ') p++;
        if (!memcmp(p, key, sizeof(key) - 1)) {
            p += sizeof(key) - 1;
            while (*p && *p != '@') p++;
            if (*p == '@') { p++; addrs[n++] = parse_hex(&p); }
        }
        while (*p && *p != ' ') p++;
    }
    return n;
}

void reset(void) {
    puts("hull-standin: reset\n");
    outb(0x64, 0xfe);
    for (;;) __asm__ volatile("hlt");
}

void fail(const char *what) {
    puts("hull-standin: FAIL ");
    puts(what);
    puts("\n");
    reset();
}

/* ---- boot information ---- */
static void print_e820(u64 addr, u64 size, u32 type) {
    puts("e820: "); puthex(addr); puts(" "); puthex(size); puts(" "); putdec(type); puts("\n");
}

static void print_initrd(u64 addr, u64 size) {
    puts("initrd: "); putdec(size); puts(" bytes fnv1a "); puthex(fnv1a((void *)addr, size)); puts("\n");
}

static void print_mptable(void) {
    for (u64 a = 0x9fc00; a < 0xa0000; a += 16) {
        if (!memcmp((void *)a, "_MP_", 4)) {
            u8 *mpc = (u8 *)(u64)*(u32 *)(a + 4);
            u16 count = *(u16 *)(mpc + 34);
            u8 *e = mpc + 44;
            int cpus = 0;
            for (u16 i = 0; i < count; i++) {
                if (e[0] == 0) { cpus++; e += 20; } else e += 8;
            }
            puts("mptable: cpus "); putdec(cpus); puts("\n");
            return;
        }
    }
    puts("mptable: none\n");
}

static void serial_echo(void) {
    char line[64];
    int n = 0;
    puts("serial: type a line\n");
    for (;;) {
        while (!(inb(0x3f8 + 5) & 1)) __asm__ volatile("pause");
        char c = (char)inb(0x3f8);
        if (c == '\n' || c == '\r') break;
        if (n < 63) line[n++] = c;
    }
    line[n] = 0;
    puts("serial: got "); puts(line); puts("\n");
}

static void triple_fault(void) {
    struct __attribute__((packed)) { u16 limit; u64 base; } idt = {0, 0};
    puts("hull-standin: triple fault\n");
    __asm__ volatile("lidt %0; ud2" : : "m"(idt));
}

void guest_main(u64 mode, u64 info) {
    puts("hull-standin: hello\n");
    if (mode == 0) {
        u8 *bp = (u8 *)info;
        cmdline = (const char *)(u64)*(u32 *)(bp + 0x228);
        puts("boot: linux64\n");
        puts("cmdline: "); puts(cmdline); puts("\n");
        u8 n = bp[0x1e8];
        for (u8 i = 0; i < n; i++) {
            u8 *e = bp + 0x2d0 + 20 * i;
            print_e820(*(u64 *)e, *(u64 *)(e + 8), *(u32 *)(e + 16));
        }
        u32 rd = *(u32 *)(bp + 0x218), rs = *(u32 *)(bp + 0x21c);
        if (rs) print_initrd(rd, rs);
    } else {
        u8 *si = (u8 *)info;
        puts("boot: pvh magic "); puthex(*(u32 *)si); puts("\n");
        cmdline = (const char *)*(u64 *)(si + 24);
        puts("cmdline: "); puts(cmdline); puts("\n");
        u64 map = *(u64 *)(si + 40);
        u32 n = *(u32 *)(si + 48);
        for (u32 i = 0; i < n; i++) {
            u8 *e = (u8 *)(map + 24 * i);
            print_e820(*(u64 *)e, *(u64 *)(e + 8), *(u32 *)(e + 16));
        }
        if (*(u32 *)(si + 12)) {
            u8 *m = (u8 *)*(u64 *)(si + 16);
            print_initrd(*(u64 *)m, *(u64 *)(m + 8));
        }
    }
    print_mptable();
    const char *act = cmdline_find("standin");
    if (list_has(act, "blk")) test_blk();
    if (list_has(act, "vsock")) test_vsock();
    if (list_has(act, "net")) test_net();
    if (list_has(act, "count")) run_count();
    if (list_has(act, "blkloop")) test_blkloop();
    if (list_has(act, "hotdisk")) test_hotdisk();
    if (list_has(act, "vsockloop")) test_vsockloop();
    if (list_has(act, "echo")) serial_echo();
    if (list_has(act, "triple")) triple_fault();
    if (list_has(act, "hang")) {
        puts("hull-standin: idle\n");
        for (;;) __asm__ volatile("cli; hlt");
    }
    puts("hull-standin: done\n");
    reset();
}
