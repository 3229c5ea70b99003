#ifndef HULL_STANDIN_GUEST_H
#define HULL_STANDIN_GUEST_H
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

void outb(u16 port, u8 v);
u8 inb(u16 port);
void putc(char c);
void puts(const char *s);
void puthex(u64 v);
void putdec(u64 v);
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
int memcmp(const void *a, const void *b, u64 n);
u64 strlen(const char *s);
u32 fnv1a(const void *data, u64 len);
const char *cmdline_find(const char *key);
int list_has(const char *list, const char *w);
u64 parse_hex(const char **pp);
u64 parse_dec(const char **pp);
int find_virtio(u64 *addrs, int max);
void reset(void);
void fail(const char *what);

void delay(u64 n);
void run_count(void);
void test_blk(void);
void test_blkloop(void);
void test_hotdisk(void);
void test_vsockloop(void);
void test_vsock(void);
void test_net(void);

static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }
#endif
