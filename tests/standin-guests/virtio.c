/* Polling virtio-mmio drivers for the stand-in guest: just enough of
 * virtio-blk, virtio-vsock and virtio-net to exercise hull-vmm's devices
 * through real KVM exits, ioeventfds and the event loop. */
#include "guest.h"

#define QSZ 16
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct vdesc { u64 addr; u32 len; u16 flags; u16 next; };
struct vavail { u16 flags; u16 idx; u16 ring[QSZ]; u16 used_event; };
struct vused_elem { u32 id; u32 len; };
struct vused { u16 flags; u16 idx; struct vused_elem ring[QSZ]; u16 avail_event; };

struct vq {
    struct vdesc *desc;
    struct vavail *avail;
    struct vused *used;
    u16 last_used;
    u16 next_desc;
    u32 index;
    u64 base;
};

/* Ring memory: 8 queues of one page each. */
static u8 ring_mem[8][4096] __attribute__((aligned(4096)));
static int rings_used;

static void vq_init(struct vq *q, u64 base, u32 index) {
    u8 *m = ring_mem[rings_used++];
    memset(m, 0, 4096);
    q->desc = (struct vdesc *)m;
    q->avail = (struct vavail *)(m + 16 * QSZ);
    q->used = (struct vused *)(m + 2048);
    q->last_used = 0;
    q->next_desc = 0;
    q->index = index;
    q->base = base;
    mmio_write32(base + 0x30, index);
    if (mmio_read32(base + 0x34) < QSZ) fail("queue too small");
    mmio_write32(base + 0x38, QSZ);
    mmio_write32(base + 0x80, (u32)(u64)q->desc);
    mmio_write32(base + 0x84, 0);
    mmio_write32(base + 0x90, (u32)(u64)q->avail);
    mmio_write32(base + 0x94, 0);
    mmio_write32(base + 0xa0, (u32)(u64)q->used);
    mmio_write32(base + 0xa4, 0);
    mmio_write32(base + 0x44, 1);
}

/* Starts negotiation; returns 0 if `base` is not a device of type `type`. */
static int dev_begin(u64 base, u32 type, u32 features_lo) {
    if (mmio_read32(base) != 0x74726976 || mmio_read32(base + 4) != 2) return 0;
    if (mmio_read32(base + 8) != type) return 0;
    mmio_write32(base + 0x70, 0);
    mmio_write32(base + 0x70, 1);
    mmio_write32(base + 0x70, 3);
    mmio_write32(base + 0x14, 1);
    if (!(mmio_read32(base + 0x10) & 1)) fail("no VERSION_1");
    mmio_write32(base + 0x24, 0);
    mmio_write32(base + 0x20, features_lo);
    mmio_write32(base + 0x24, 1);
    mmio_write32(base + 0x20, 1);
    mmio_write32(base + 0x70, 3 | 8);
    if (!(mmio_read32(base + 0x70) & 8)) fail("FEATURES_OK refused");
    return 1;
}

static void dev_ready(u64 base) {
    mmio_write32(base + 0x70, 3 | 8 | 4);
    if (mmio_read32(base + 0x70) & 0x40) fail("device needs reset");
}

/* Queues a chain of `n` buffers; returns the head index. */
static u16 vq_add(struct vq *q, u64 *addrs, u32 *lens, u16 *flags, int n) {
    u16 head = q->next_desc;
    for (int i = 0; i < n; i++) {
        u16 d = (u16)((head + i) % QSZ);
        q->desc[d].addr = addrs[i];
        q->desc[d].len = lens[i];
        q->desc[d].flags = flags[i] | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
        q->desc[d].next = (u16)((d + 1) % QSZ);
    }
    q->next_desc = (u16)((head + n) % QSZ);
    q->avail->ring[q->avail->idx % QSZ] = head;
    barrier();
    q->avail->idx++;
    barrier();
    return head;
}

static void vq_kick(struct vq *q) { mmio_write32(q->base + 0x50, q->index); }

/* Waits for the next used element; returns its length. */
static u32 vq_wait(struct vq *q, u32 *id) {
    for (u64 spins = 0; ; spins++) {
        barrier();
        if (*(volatile u16 *)&q->used->idx != q->last_used) break;
        if (spins > 2000000000ull) fail("timeout waiting for the device");
        __asm__ volatile("pause");
    }
    struct vused_elem e = q->used->ring[q->last_used % QSZ];
    q->last_used++;
    /* Acknowledge the interrupt so the line is clean. */
    mmio_write32(q->base + 0x64, mmio_read32(q->base + 0x60));
    if (id) *id = e.id;
    return e.len;
}

__attribute__((unused)) static int vq_poll(struct vq *q) {
    barrier();
    return *(volatile u16 *)&q->used->idx != q->last_used;
}

/* ---------------- virtio-blk ---------------- */
struct blk_hdr { u32 type; u32 reserved; u64 sector; };
static struct blk_hdr bhdr;
static u8 bstatus;
static u8 bbuf[8192] __attribute__((aligned(4096)));

static u8 blk_rw(struct vq *q, u32 type, u64 sector, void *buf, u32 len, int split) {
    u64 a[4]; u32 l[4]; u16 f[4]; int n = 0;
    bhdr.type = type; bhdr.reserved = 0; bhdr.sector = sector;
    bstatus = 0xee;
    a[n] = (u64)&bhdr; l[n] = 16; f[n++] = 0;
    u16 dir = (type == 0 || type == 8) ? VIRTQ_DESC_F_WRITE : 0;
    if (len) {
        if (split) {
            a[n] = (u64)buf; l[n] = len / 2; f[n++] = dir;
            a[n] = (u64)buf + len / 2; l[n] = len - len / 2; f[n++] = dir;
        } else {
            a[n] = (u64)buf; l[n] = len; f[n++] = dir;
        }
    }
    a[n] = (u64)&bstatus; l[n] = 1; f[n++] = VIRTQ_DESC_F_WRITE;
    vq_add(q, a, l, f, n);
    vq_kick(q);
    vq_wait(q, 0);
    return bstatus;
}

static void blk_one(int idx, u64 base) {
    struct vq q;
    if (!dev_begin(base, 2, 1u << 9 /* FLUSH */)) return;
    vq_init(&q, base, 0);
    dev_ready(base);
    u64 cap = (u64)mmio_read32(base + 0x100) | ((u64)mmio_read32(base + 0x104) << 32);
    u32 feats;
    mmio_write32(base + 0x14, 0);
    feats = mmio_read32(base + 0x10);
    puts("blk"); putdec(idx); puts(": capacity "); putdec(cap);
    puts(feats & (1u << 5) ? " ro" : " rw");
    memset(bbuf, 0, 32);
    u8 st = blk_rw(&q, 8, 0, bbuf, 20, 0);
    puts(" id "); puts(st == 0 ? (char *)bbuf : "?"); puts("\n");

    st = blk_rw(&q, 0, 0, bbuf, 4096, 1);
    puts("blk"); putdec(idx); puts(": read 0-7 status "); putdec(st);
    puts(" fnv1a "); puthex(fnv1a(bbuf, 4096)); puts("\n");

    for (u32 i = 0; i < 1024; i++) bbuf[i] = (u8)(i * 13 + 5);
    st = blk_rw(&q, 1, 8, bbuf, 1024, 0);
    puts("blk"); putdec(idx); puts(": write 8-9 status "); putdec(st); puts("\n");
    st = blk_rw(&q, 4, 0, 0, 0, 0);
    puts("blk"); putdec(idx); puts(": flush status "); putdec(st); puts("\n");
    memset(bbuf, 0, 1024);
    st = blk_rw(&q, 0, 8, bbuf, 1024, 0);
    puts("blk"); putdec(idx); puts(": read 8-9 status "); putdec(st);
    puts(" fnv1a "); puthex(fnv1a(bbuf, 1024)); puts("\n");

    /* Hostile requests: each must fail cleanly and leave the device working. */
    st = blk_rw(&q, 0, cap, bbuf, 512, 0);
    puts("blk"); putdec(idx); puts(": past-end status "); putdec(st); puts("\n");
    {
        u64 a[2] = {(u64)&bhdr, (u64)&bstatus}; u32 l[2] = {16, 1};
        u16 f[2] = {VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_WRITE}; /* writable header */
        bhdr.type = 0; bstatus = 0xee;
        vq_add(&q, a, l, f, 2); vq_kick(&q);
        u32 len = vq_wait(&q, 0);
        puts("blk"); putdec(idx); puts(": malformed used len "); putdec(len);
        puts(" status "); puthex(bstatus); puts("\n");
    }
    {
        u64 a[3] = {(u64)&bhdr, 0x7ffff000000ull, (u64)&bstatus}; u32 l[3] = {16, 512, 1};
        u16 f[3] = {0, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_WRITE}; /* buffer outside RAM */
        bhdr.type = 0; bhdr.sector = 0; bstatus = 0xee;
        vq_add(&q, a, l, f, 3); vq_kick(&q);
        vq_wait(&q, 0);
        puts("blk"); putdec(idx); puts(": wild buffer status "); putdec(bstatus); puts("\n");
    }
    st = blk_rw(&q, 0, 0, bbuf, 512, 0);
    puts("blk"); putdec(idx); puts(": still works status "); putdec(st); puts("\n");
}

void test_blk(void) {
    u64 devs[8];
    int n = find_virtio(devs, 8), idx = 0;
    for (int i = 0; i < n; i++) {
        if (mmio_read32(devs[i] + 8) == 2) blk_one(idx++, devs[i]);
    }
    puts("blk: "); putdec(idx); puts(" devices tested\n");
}


/* ---------------- virtio-vsock ---------------- */
struct __attribute__((packed)) vhdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
};
enum { VS_REQUEST = 1, VS_RESPONSE, VS_RST, VS_SHUTDOWN, VS_RW, VS_CREDIT_UPDATE, VS_CREDIT_REQUEST };
#define VS_RXBUF 2048
static u8 vs_rx[QSZ][VS_RXBUF] __attribute__((aligned(16)));
static struct vq vs_rxq, vs_txq, vs_evq;
static u64 vs_cid;
static struct vhdr vs_th;
static u8 vs_tdata[1024];
static u32 vs_fwd;

static void vs_post(u16 id) {
    vs_rxq.desc[id].addr = (u64)vs_rx[id];
    vs_rxq.desc[id].len = VS_RXBUF;
    vs_rxq.desc[id].flags = VIRTQ_DESC_F_WRITE;
    vs_rxq.avail->ring[vs_rxq.avail->idx % QSZ] = id;
    barrier();
    vs_rxq.avail->idx++;
    barrier();
}

static void vs_send(u32 sport, u32 dport, u16 op, u32 flags, const void *data, u32 len, u64 dcid) {
    vs_th.src_cid = vs_cid; vs_th.dst_cid = dcid;
    vs_th.src_port = sport; vs_th.dst_port = dport;
    vs_th.len = len; vs_th.type = 1; vs_th.op = op; vs_th.flags = flags;
    vs_th.buf_alloc = 65536; vs_th.fwd_cnt = vs_fwd;
    u64 a[2] = {(u64)&vs_th, (u64)vs_tdata}; u32 l[2] = {44, len}; u16 f[2] = {0, 0};
    if (len) memcpy(vs_tdata, data, len);
    vq_add(&vs_txq, a, l, f, len ? 2 : 1);
    vq_kick(&vs_txq);
    vq_wait(&vs_txq, 0);
}

/* Receives the next packet (skipping credit updates); returns payload length. */
static u32 vs_recv(struct vhdr *h, u8 *data, u32 max) {
    for (;;) {
        u32 id;
        vq_wait(&vs_rxq, &id);
        if (id >= QSZ) fail("vsock: bad used id");
        memcpy(h, vs_rx[id], 44);
        u32 n = h->len < max ? h->len : max;
        memcpy(data, vs_rx[id] + 44, n);
        vs_post((u16)id);
        vq_kick(&vs_rxq);
        if (h->op == VS_CREDIT_UPDATE) continue;
        vs_fwd += h->len;
        return n;
    }
}

static void print_pkt(const char *what, struct vhdr *h, u8 *d, u32 n) {
    puts("vsock: "); puts(what); puts(" op "); putdec(h->op);
    puts(" from "); putdec(h->src_cid); puts(":"); putdec(h->src_port);
    puts(" to "); putdec(h->dst_port);
    if (n) { puts(" data "); for (u32 i = 0; i < n; i++) if (d[i] != '\n') putc((char)d[i]); }
    puts("\n");
}

void test_vsock(void) {
    u64 devs[8], base = 0;
    int n = find_virtio(devs, 8);
    for (int i = 0; i < n; i++) if (mmio_read32(devs[i] + 8) == 19) base = devs[i];
    if (!base || !dev_begin(base, 19, 0)) fail("no vsock device");
    vq_init(&vs_rxq, base, 0);
    vq_init(&vs_txq, base, 1);
    vq_init(&vs_evq, base, 2);
    for (u16 i = 0; i < QSZ; i++) vs_post(i);
    dev_ready(base);
    vq_kick(&vs_rxq);
    vs_cid = (u64)mmio_read32(base + 0x100) | ((u64)mmio_read32(base + 0x104) << 32);
    puts("vsock: cid "); putdec(vs_cid); puts("\n");

    struct vhdr h; u8 d[1024]; u32 len;
    /* 1. guest -> host port 1024 (fwd_cnt counts per connection) */
    vs_fwd = 0;
    vs_send(5000, 1024, VS_REQUEST, 0, 0, 0, 2);
    len = vs_recv(&h, d, sizeof d);
    print_pkt("connect reply", &h, d, len);
    if (h.op != VS_RESPONSE) fail("vsock connect");
    vs_send(5000, 1024, VS_RW, 0, "ping from guest\n", 16, 2);
    len = vs_recv(&h, d, sizeof d);
    print_pkt("got", &h, d, len);
    vs_send(5000, 1024, VS_SHUTDOWN, 3, 0, 0, 2);
    len = vs_recv(&h, d, sizeof d);
    print_pkt("close reply", &h, d, len);

    /* 2. host -> guest port 5001 */
    puts("vsock: listening 5001\n");
    len = vs_recv(&h, d, sizeof d);
    print_pkt("incoming", &h, d, len);
    if (h.op != VS_REQUEST || h.dst_port != 5001) fail("vsock: expected a request for 5001");
    u32 hport = h.src_port;
    vs_fwd = 0;
    vs_send(5001, hport, VS_RESPONSE, 0, 0, 0, 2);
    len = vs_recv(&h, d, sizeof d);
    print_pkt("host data", &h, d, len);
    {
        u8 e[64]; memcpy(e, "echo: ", 6); memcpy(e + 6, d, len);
        vs_send(5001, hport, VS_RW, 0, e, len + 6, 2);
    }
    len = vs_recv(&h, d, sizeof d);
    print_pkt("host end", &h, d, len);
    if (h.op == VS_SHUTDOWN) vs_send(5001, hport, VS_RST, 0, 0, 0, 2);

    /* 3. hostile and refused */
    vs_send(5002, 9999, VS_REQUEST, 0, 0, 0, 2);
    len = vs_recv(&h, d, sizeof d);
    print_pkt("no listener", &h, d, len);
    vs_send(5003, 1024, VS_RW, 0, "x", 1, 2);       /* no such connection */
    len = vs_recv(&h, d, sizeof d);
    print_pkt("stray data", &h, d, len);
    {   /* header claims more payload than the chain holds */
        vs_th.src_cid = vs_cid; vs_th.dst_cid = 2; vs_th.src_port = 1; vs_th.dst_port = 1024;
        vs_th.len = 60000; vs_th.type = 1; vs_th.op = VS_RW;
        u64 a[1] = {(u64)&vs_th}; u32 l[1] = {44}; u16 f[1] = {0};
        vq_add(&vs_txq, a, l, f, 1); vq_kick(&vs_txq); vq_wait(&vs_txq, 0);
    }
    vs_send(5004, 1024, VS_REQUEST, 0, 0, 0, 7);      /* not the host CID */
    len = vs_recv(&h, d, sizeof d);
    print_pkt("wrong cid", &h, d, len);
    puts("vsock: ok\n");
}

/* ---------------- virtio-net ---------------- */
#define NET_RXBUF 1600
static u8 net_rx[QSZ][NET_RXBUF] __attribute__((aligned(16)));
static u8 net_tx[12 + 64];
static struct vq net_rxq, net_txq;

static void net_post(u16 id) {
    net_rxq.desc[id].addr = (u64)net_rx[id];
    net_rxq.desc[id].len = NET_RXBUF;
    net_rxq.desc[id].flags = VIRTQ_DESC_F_WRITE;
    net_rxq.avail->ring[net_rxq.avail->idx % QSZ] = id;
    barrier();
    net_rxq.avail->idx++;
    barrier();
}

static void putmac(const u8 *m) {
    for (int i = 0; i < 6; i++) {
        if (i) putc(':');
        putc("0123456789abcdef"[m[i] >> 4]);
        putc("0123456789abcdef"[m[i] & 15]);
    }
}

void test_net(void) {
    u64 devs[8], base = 0;
    int n = find_virtio(devs, 8);
    for (int i = 0; i < n; i++) if (mmio_read32(devs[i] + 8) == 1) base = devs[i];
    if (!base || !dev_begin(base, 1, 1u << 5 /* MAC */)) fail("no net device");
    vq_init(&net_rxq, base, 0);
    vq_init(&net_txq, base, 1);
    for (u16 i = 0; i < QSZ; i++) net_post(i);
    dev_ready(base);
    vq_kick(&net_rxq);
    u8 mac[6];
    for (int i = 0; i < 6; i++) mac[i] = *(volatile u8 *)(base + 0x100 + i);
    puts("net: mac "); putmac(mac); puts("\n");

    /* ARP who-has 10.99.0.1 tell 10.99.0.2 */
    static const u8 bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    u8 *f = net_tx + 12;
    memset(net_tx, 0, sizeof net_tx);
    memcpy(f, bcast, 6); memcpy(f + 6, mac, 6); f[12] = 0x08; f[13] = 0x06;
    u8 *a = f + 14;
    a[0] = 0; a[1] = 1; a[2] = 0x08; a[3] = 0; a[4] = 6; a[5] = 4; a[6] = 0; a[7] = 1;
    memcpy(a + 8, mac, 6); a[14] = 10; a[15] = 99; a[16] = 0; a[17] = 2;
    memset(a + 18, 0, 6); a[24] = 10; a[25] = 99; a[26] = 0; a[27] = 1;
    for (int tries = 0; tries < 3; tries++) {
        u64 ad[1] = {(u64)net_tx}; u32 l[1] = {12 + 60}; u16 fl[1] = {0};
        vq_add(&net_txq, ad, l, fl, 1); vq_kick(&net_txq); vq_wait(&net_txq, 0);
        puts("net: sent arp request\n");
        for (int k = 0; k < 20; k++) {
            u32 id;
            u32 len = vq_wait(&net_rxq, &id);
            if (id >= QSZ) fail("net: bad used id");
            u8 *r = net_rx[id] + 12;
            int is_reply = len >= 12 + 42 && r[12] == 0x08 && r[13] == 0x06 && r[21] == 2 &&
                           !memcmp(r + 38, (u8[]){10, 99, 0, 2}, 4);
            if (is_reply) {
                puts("net: arp reply from "); putmac(r + 22);
                puts(" for "); putdec(r[28]); putc('.'); putdec(r[29]); putc('.'); putdec(r[30]); putc('.'); putdec(r[31]);
                puts("\n");
                net_post((u16)id); vq_kick(&net_rxq);
                puts("net: ok\n");
                return;
            }
            net_post((u16)id); vq_kick(&net_rxq);
        }
    }
    fail("net: no arp reply");
}

/* ---------------- devices across a snapshot ---------------- */
static u64 first_dev(u32 type) {
    u64 devs[8];
    int n = find_virtio(devs, 8);
    for (int i = 0; i < n; i++) if (mmio_read32(devs[i] + 8) == type) return devs[i];
    fail("no such virtio device");
    return 0;
}

static u64 blk_capacity(u64 base) {
    return (u64)mmio_read32(base + 0x100) | ((u64)mmio_read32(base + 0x104) << 32);
}

/* standin=blkloop: writes sector i % 16 of the first disk with a pattern
 * of i, reads it back and checks it, prints "blkloop i ok", forever. */
void test_blkloop(void) {
    struct vq q;
    u64 base = first_dev(2);
    if (!dev_begin(base, 2, 0)) fail("blkloop: no disk");
    vq_init(&q, base, 0);
    dev_ready(base);
    const char *p = cmdline_find("count_delay");
    u64 wait = p ? parse_dec(&p) : 100000;
    puts("blkloop: capacity "); putdec(blk_capacity(base)); puts("\n");
    for (u64 i = 0;; i++) {
        /* The device must have used exactly what was made available. */
        barrier();
        if (*(volatile u16 *)&q.used->idx != q.last_used) fail("blkloop: device replayed requests");
        for (u32 j = 0; j < 512; j++) bbuf[j] = (u8)(i * 7 + j);
        if (blk_rw(&q, 1, i % 16, bbuf, 512, 0)) fail("blkloop: write");
        memset(bbuf, 0, 512);
        if (blk_rw(&q, 0, i % 16, bbuf, 512, 0)) fail("blkloop: read");
        for (u32 j = 0; j < 512; j++) if (bbuf[j] != (u8)(i * 7 + j)) fail("blkloop: data");
        puts("blkloop "); putdec(i); puts(" ok\n");
        delay(wait);
    }
}

/* standin=hotdisk: the first disk is a placeholder (capacity 0); waits for
 * its configuration-change interrupt, then reads sector 0. */
void test_hotdisk(void) {
    struct vq q;
    u64 base = first_dev(2);
    if (!dev_begin(base, 2, 0)) fail("hotdisk: no disk");
    vq_init(&q, base, 0);
    dev_ready(base);
    u64 cap = blk_capacity(base);
    puts("hotdisk: capacity "); putdec(cap); puts(", waiting\n");
    while (cap == 0) {
        delay(100000);
        u32 isr = mmio_read32(base + 0x60);
        if (!(isr & 2)) continue;
        mmio_write32(base + 0x64, isr);
        cap = blk_capacity(base);
        puts("hotdisk: config change, generation "); putdec(mmio_read32(base + 0xfc));
        puts(", capacity "); putdec(cap); puts("\n");
    }
    if (blk_rw(&q, 0, 0, bbuf, 512, 0)) fail("hotdisk: read");
    puts("hotdisk: sector 0 fnv1a "); puthex(fnv1a(bbuf, 512)); puts("\n");
}

/* standin=vsockloop: serves host connections to port 5001 (echoing data
 * as "echo: ...") and reports event-queue events (a restored VM's
 * transport reset) with the CID read again, forever. */
static u32 vs_evbuf[QSZ];

static void ev_post(u16 id) {
    vs_evq.desc[id].addr = (u64)&vs_evbuf[id];
    vs_evq.desc[id].len = 4;
    vs_evq.desc[id].flags = VIRTQ_DESC_F_WRITE;
    vs_evq.avail->ring[vs_evq.avail->idx % QSZ] = id;
    barrier();
    vs_evq.avail->idx++;
    barrier();
}

static u64 vs_read_cid(u64 base) {
    return (u64)mmio_read32(base + 0x100) | ((u64)mmio_read32(base + 0x104) << 32);
}

void test_vsockloop(void) {
    u64 base = first_dev(19);
    if (!dev_begin(base, 19, 0)) fail("vsockloop: no vsock");
    vq_init(&vs_rxq, base, 0);
    vq_init(&vs_txq, base, 1);
    vq_init(&vs_evq, base, 2);
    for (u16 i = 0; i < QSZ; i++) { vs_post(i); ev_post(i); }
    dev_ready(base);
    vq_kick(&vs_rxq);
    vq_kick(&vs_evq);
    vs_cid = vs_read_cid(base);
    puts("vsockloop: cid "); putdec(vs_cid); puts(" ready\n");
    for (;;) {
        if (vq_poll(&vs_evq)) {
            u32 id;
            vq_wait(&vs_evq, &id);
            if (id >= QSZ) fail("vsockloop: bad event id");
            vs_cid = vs_read_cid(base);
            puts("vsockloop: event "); putdec(vs_evbuf[id]); puts(" cid "); putdec(vs_cid); puts("\n");
            ev_post((u16)id);
            vq_kick(&vs_evq);
            continue;
        }
        if (!vq_poll(&vs_rxq)) { __asm__ volatile("pause"); continue; }
        struct vhdr h; u8 d[512];
        u32 len = vs_recv(&h, d, sizeof d - 8);
        if (h.op == VS_REQUEST && h.dst_port == 5001) {
            vs_fwd = 0;
            vs_send(5001, h.src_port, VS_RESPONSE, 0, 0, 0, 2);
            puts("vsockloop: connected\n");
        } else if (h.op == VS_RW) {
            u8 e[520]; memcpy(e, "echo: ", 6); memcpy(e + 6, d, len);
            vs_send(5001, h.src_port, VS_RW, 0, e, len + 6, 2);
            print_pkt("data", &h, d, len);
        } else if (h.op == VS_SHUTDOWN) {
            vs_send(5001, h.src_port, VS_RST, 0, 0, 0, 2);
            puts("vsockloop: closed\n");
        }
    }
}
