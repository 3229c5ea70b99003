//! The virtio-blk device: configuration, queue processing, and execution
//! of parsed requests against a `DiskBackend` (a host file). The queue,
//! feature and activation plumbing is the shared `DeviceState`.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use super::request::{Op, Request, RequestError};
use super::{ID_BYTES, QUEUE_SIZE, SECTOR_SIZE, SEG_MAX, SIZE_MAX};
use crate::devices::virtio::{
    device_type, read_config_bytes, Chain, DeviceError, DeviceState, Served, VirtioDevice,
    VIRTIO_F_VERSION_1,
};
use crate::event_loop::{EventOps, Subscriber};
use crate::logger::guest_event;
use crate::rate_limiter::RateLimiter;

const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

const VIRTIO_BLK_S_OK: u8 = 0;
const VIRTIO_BLK_S_IOERR: u8 = 1;
const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Where request data is read from and written to.
pub trait DiskBackend: Send {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable.
    fn flush(&mut self) -> io::Result<()>;
}

impl DiskBackend for File {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Counters a host can read instead of logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockMetrics {
    /// Requests completed with OK.
    pub ok: u64,
    /// Requests refused or failed (status IOERR/UNSUPP).
    pub failed: u64,
    /// Chains so malformed that no status could be written.
    pub malformed: u64,
    /// Bytes read from the disk.
    pub read_bytes: u64,
    /// Bytes written to the disk.
    pub write_bytes: u64,
}

/// The disk side of the device: the backend and what the guest is told
/// about it.
pub(super) struct Disk<B> {
    pub(super) backend: B,
    pub(super) read_only: bool,
    pub(super) id: [u8; ID_BYTES],
    pub(super) capacity: u64,
}

impl<B: DiskBackend> Disk<B> {
    fn execute(
        &mut self,
        mem: &GuestMemoryMmap,
        op: &Op,
        metrics: &mut BlockMetrics,
    ) -> Result<u32, io::Error> {
        let to_io = |e: vm_memory::GuestMemoryError| io::Error::new(io::ErrorKind::InvalidInput, e);
        match op {
            Op::Read { sector, bufs } => {
                let mut off = sector * SECTOR_SIZE;
                let mut done = 0u32;
                for (addr, len) in bufs {
                    let mut buf = vec![0u8; *len as usize];
                    self.backend.read_at(&mut buf, off)?;
                    mem.write_slice(&buf, *addr).map_err(to_io)?;
                    off += u64::from(*len);
                    done += len;
                }
                metrics.read_bytes += u64::from(done);
                Ok(done)
            }
            Op::Write { sector, bufs } => {
                let mut off = sector * SECTOR_SIZE;
                for (addr, len) in bufs {
                    let mut buf = vec![0u8; *len as usize];
                    mem.read_slice(&mut buf, *addr).map_err(to_io)?;
                    self.backend.write_at(&buf, off)?;
                    off += u64::from(*len);
                    metrics.write_bytes += u64::from(*len);
                }
                Ok(0)
            }
            Op::Flush => {
                self.backend.flush()?;
                Ok(0)
            }
            Op::GetId(addr, len) => {
                let n = (*len as usize).min(ID_BYTES);
                mem.write_slice(&self.id[..n], *addr).map_err(to_io)?;
                Ok(n as u32)
            }
        }
    }

    /// Parses and executes one chain; returns its used length, or
    /// `Again` when `limiter` has no room for it yet.
    fn serve(
        &mut self,
        chain: Chain,
        mem: &GuestMemoryMmap,
        metrics: &mut BlockMetrics,
        limiter: &mut RateLimiter,
    ) -> Served {
        let req = match Request::parse(chain, self.capacity, self.read_only) {
            Ok(req) => req,
            Err(e) => {
                metrics.malformed += 1;
                guest_event(format_args!("virtio-blk: malformed request: {e}"));
                return Served::Next(0);
            }
        };
        if let Ok(op) = &req.op {
            if !limiter.consume(op.data_bytes()) {
                return Served::Again;
            }
        }
        let (status, len) = match &req.op {
            Ok(op) => match self.execute(mem, op, metrics) {
                Ok(n) => (VIRTIO_BLK_S_OK, n),
                Err(e) => {
                    guest_event(format_args!("virtio-blk: I/O error: {e}"));
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            },
            Err(RequestError::Unsupported(_)) => (VIRTIO_BLK_S_UNSUPP, 0),
            Err(e) => {
                guest_event(format_args!("virtio-blk: refused request: {e}"));
                (VIRTIO_BLK_S_IOERR, 0)
            }
        };
        if status == VIRTIO_BLK_S_OK {
            metrics.ok += 1;
        } else {
            metrics.failed += 1;
        }
        // The range was checked by parse; this cannot fail unless memory
        // shrank, which it does not.
        let _ = mem.write_obj(status, req.status);
        Served::Next(len + 1)
    }
}

/// The block device.
pub struct Block<B: DiskBackend = File> {
    pub(super) state: DeviceState,
    pub(super) disk: Disk<B>,
    /// Request counters.
    pub metrics: BlockMetrics,
    /// Bytes and requests a second (unlimited unless set).
    pub(super) limiter: RateLimiter,
}

impl Block<File> {
    /// A device on `file` (its size, rounded down to sectors, is the
    /// capacity); `id` is what GET_ID returns (at most 20 bytes).
    pub fn new(
        mem: Arc<GuestMemoryMmap>,
        file: File,
        read_only: bool,
        id: &[u8],
    ) -> Result<Self, DeviceError> {
        let size = file.metadata().map_err(DeviceError::Backing)?.len();
        Self::with_backend(mem, file, size, read_only, id)
    }
}

impl<B: DiskBackend> Block<B> {
    /// A device on any backend of `size` bytes.
    pub fn with_backend(
        mem: Arc<GuestMemoryMmap>,
        disk: B,
        size: u64,
        read_only: bool,
        id: &[u8],
    ) -> Result<Self, DeviceError> {
        if id.len() > ID_BYTES {
            return Err(DeviceError::IdTooLong);
        }
        let mut idb = [0u8; ID_BYTES];
        idb[..id.len()].copy_from_slice(id);
        let ro = if read_only { VIRTIO_BLK_F_RO } else { 0 };
        let features = VIRTIO_F_VERSION_1
            | VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_SIZE_MAX
            | VIRTIO_BLK_F_SEG_MAX
            | ro;
        Ok(Self {
            state: DeviceState::new("virtio-blk", mem, features, &[QUEUE_SIZE], 1)?,
            disk: Disk {
                backend: disk,
                read_only,
                id: idb,
                capacity: size / SECTOR_SIZE,
            },
            metrics: BlockMetrics::default(),
            limiter: RateLimiter::unlimited(),
        })
    }

    /// Limits the guest's bytes and requests a second (before the device
    /// joins the event loop).
    pub fn set_rate_limiter(&mut self, limiter: RateLimiter) {
        self.limiter = limiter;
    }

    /// How many requests had to wait for the rate limiter.
    pub fn throttled(&self) -> u64 {
        self.limiter.throttled
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.disk.capacity
    }

    fn config_bytes(&self) -> [u8; 16] {
        // capacity (le64), size_max (le32), seg_max (le32)
        let mut c = [0u8; 16];
        c[..8].copy_from_slice(&self.disk.capacity.to_le_bytes());
        c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c
    }

    /// Serves every available request on the queue (a queue's worth per
    /// call; the rest on the next turn of the event loop); returns how
    /// many chains were consumed.
    pub fn process_queue(&mut self) -> usize {
        let Self {
            state,
            disk,
            metrics,
            limiter,
        } = self;
        if limiter.is_blocked() {
            return 0;
        }
        state.serve_queue(0, usize::from(QUEUE_SIZE), |chain, mem| {
            disk.serve(chain, mem, metrics, limiter)
        })
    }
}

impl<B: DiskBackend> VirtioDevice for Block<B> {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }
    fn state(&self) -> &DeviceState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut DeviceState {
        &mut self.state
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }
}

impl<B: DiskBackend> Subscriber for Block<B> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        self.state.register_queue_events(ops);
        if let Some(fd) = self.limiter.timer_fd() {
            if let Err(e) = ops.add(fd, EventSet::IN) {
                crate::logger::warn(format_args!("virtio-blk: cannot watch the rate timer: {e}"));
            }
        }
    }
    fn process(&mut self, fd: RawFd, _events: EventSet, _ops: &mut EventOps<'_>) {
        let timer = self.limiter.timer_fd() == Some(fd);
        if timer {
            self.limiter.on_timer();
        }
        if (timer || self.state.take_queue_event(fd).is_some()) && self.state.is_activated() {
            self.process_queue();
        }
    }
}

/// Reads a guest address as a block id (used by tests and the fuzzer).
pub fn read_id(mem: &GuestMemoryMmap, addr: GuestAddress) -> [u8; ID_BYTES] {
    let mut id = [0u8; ID_BYTES];
    let _ = mem.read_slice(&mut id, addr);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::request::{
        RequestHeader, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    };
    use crate::devices::virtio::test_utils::{add_chains, desc as d, guest_memory};
    use crate::devices::virtio::ActivateError;
    use crate::event_loop::with_test_ops;
    use std::os::fd::AsRawFd;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;

    /// An in-memory disk.
    struct MemDisk(Vec<u8>, bool);
    impl DiskBackend for MemDisk {
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let o = offset as usize;
            buf.copy_from_slice(
                self.0
                    .get(o..o + buf.len())
                    .ok_or(io::ErrorKind::UnexpectedEof)?,
            );
            Ok(())
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            let o = offset as usize;
            self.0
                .get_mut(o..o + buf.len())
                .ok_or(io::ErrorKind::UnexpectedEof)?
                .copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.1 = true;
            Ok(())
        }
    }

    const F_WRITE: u16 = 2;

    fn run(
        descs: &[RawDescriptor],
        hdr: RequestHeader,
        ro: bool,
    ) -> (Block<MemDisk>, Arc<GuestMemoryMmap>, u32) {
        let mem = guest_memory();
        mem.write_obj(hdr, GuestAddress(0x10_0000)).unwrap();
        let disk: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let mut blk =
            Block::with_backend(mem.clone(), MemDisk(disk, false), 8192, ro, b"disk-7").unwrap();
        let vq = MockSplitQueue::new(&*mem, 16);
        vq.build_desc_chain(descs).unwrap();
        blk.state.queues_mut()[0] = vq.create_queue().unwrap();
        blk.activate().unwrap();
        assert_eq!(blk.process_queue(), 1);
        let used_len = vq.used().ring().ref_at(0).unwrap().load().len();
        (blk, mem, used_len)
    }

    fn status(mem: &GuestMemoryMmap) -> u8 {
        mem.read_obj(GuestAddress(0x30_0000)).unwrap()
    }

    #[test]
    fn read_write_and_id_round_trip() {
        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_IN,
            reserved: 0,
            sector: 1,
        };
        let (blk, mem, used) = run(
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 512, F_WRITE),
                d(0x30_0000, 1, F_WRITE),
            ],
            hdr,
            false,
        );
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        assert_eq!(used, 513);
        let b: u8 = mem.read_obj(GuestAddress(0x20_0000)).unwrap();
        assert_eq!(b, (512 % 251) as u8);
        assert_eq!(blk.metrics.ok, 1);
        assert_ne!(blk.state.interrupt().status() & 1, 0);

        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_OUT,
            reserved: 0,
            sector: 2,
        };
        let (blk, mem, _) = run(
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 512, 0),
                d(0x30_0000, 1, F_WRITE),
            ],
            hdr,
            false,
        );
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        assert_eq!(&blk.disk.backend.0[1024..1028], &[0, 0, 0, 0]); // guest buffer was zeroes

        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_GET_ID,
            reserved: 0,
            sector: 0,
        };
        let (_, mem, used) = run(
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 20, F_WRITE),
                d(0x30_0000, 1, F_WRITE),
            ],
            hdr,
            false,
        );
        assert_eq!(&read_id(&mem, GuestAddress(0x20_0000))[..6], b"disk-7");
        assert_eq!(used, 21);
    }

    #[test]
    fn refusals_and_malformed_chains() {
        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_OUT,
            reserved: 0,
            sector: 0,
        };
        let (blk, mem, used) = run(
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 512, 0),
                d(0x30_0000, 1, F_WRITE),
            ],
            hdr,
            true,
        );
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
        assert_eq!(used, 1);
        assert_eq!(blk.metrics.failed, 1);
        let hdr = RequestHeader {
            kind: 99,
            reserved: 0,
            sector: 0,
        };
        let (_, mem, _) = run(&[d(0x10_0000, 16, 0), d(0x30_0000, 1, F_WRITE)], hdr, false);
        assert_eq!(status(&mem), VIRTIO_BLK_S_UNSUPP);
        // Header writable: no status, used length 0, the queue moves on.
        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_IN,
            reserved: 0,
            sector: 0,
        };
        let (blk, _, used) = run(
            &[d(0x10_0000, 16, F_WRITE), d(0x30_0000, 1, F_WRITE)],
            hdr,
            false,
        );
        assert_eq!((used, blk.metrics.malformed), (0, 1));
    }

    #[test]
    fn config_space_and_features() {
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap());
        let blk =
            Block::with_backend(mem.clone(), MemDisk(vec![], false), 4096, true, b"x").unwrap();
        let mut cap = [0u8; 8];
        blk.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        assert_ne!(blk.state.avail_features() & VIRTIO_BLK_F_RO, 0);
        assert!(Block::with_backend(mem, MemDisk(vec![], false), 0, false, &[b'a'; 21]).is_err());
    }

    #[test]
    fn activation_needs_the_queue_and_reset_stops_serving() {
        let mem = guest_memory();
        let mut blk =
            Block::with_backend(mem.clone(), MemDisk(vec![0; 4096], false), 4096, false, b"")
                .unwrap();
        assert!(matches!(blk.activate(), Err(ActivateError::NotReady(0))));
        let vq = MockSplitQueue::new(&*mem, 16);
        blk.state.queues_mut()[0] = vq.create_queue().unwrap();
        blk.activate().unwrap();
        blk.reset();
        assert!(!blk.state.is_activated());
        // A kick after reset is consumed without touching the queue.
        let fd = blk.state.queue_events()[0].as_raw_fd();
        blk.state.kick(0);
        with_test_ops(|ops| blk.process(fd, EventSet::IN, ops));
        assert_eq!(blk.state.queue_events()[0].read().ok(), None);
        assert_eq!(blk.metrics, BlockMetrics::default());
    }

    #[test]
    fn hostile_chains_get_a_status_or_nothing_but_never_panic() {
        let mem = guest_memory();
        let mut blk =
            Block::with_backend(mem.clone(), MemDisk(vec![0; 8192], false), 8192, false, b"")
                .unwrap();
        let vq = MockSplitQueue::new(&*mem, 16);
        // Header past the end of memory, a read past the end of the disk,
        // a lone descriptor, and a data length the u32 sum cannot hold.
        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_IN,
            reserved: 0,
            sector: u64::MAX,
        };
        mem.write_obj(hdr, GuestAddress(0x10_0000)).unwrap();
        let chains: [&[RawDescriptor]; 4] = [
            &[d(0xff_fff8, 16, 0), d(0x30_0000, 1, F_WRITE)],
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 512, F_WRITE),
                d(0x30_0000, 1, F_WRITE),
            ],
            &[d(0x10_0000, 16, 0)],
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, u32::MAX, F_WRITE),
                d(0x30_0000, 1, F_WRITE),
            ],
        ];
        add_chains(&vq, &chains);
        blk.state.queues_mut()[0] = vq.create_queue().unwrap();
        blk.activate().unwrap();
        assert_eq!(blk.process_queue(), 4);
        assert_eq!(vq.used().idx().load(), 4);
        // virtio-queue ends a chain whose length overflows u32 early, so
        // the last one is too short rather than out of range.
        assert_eq!((blk.metrics.malformed, blk.metrics.failed), (3, 1));
        assert_eq!(vq.used().ring().ref_at(1).unwrap().load().len(), 1);
    }

    #[test]
    fn a_bandwidth_limit_leaves_requests_queued_until_its_timer() {
        use crate::rate_limiter::{RateLimit, RateLimiter};
        let mem = guest_memory();
        let mut blk = Block::with_backend(
            mem.clone(),
            MemDisk(vec![7; 65536], false),
            65536,
            false,
            b"",
        )
        .unwrap();
        // 8 KiB a second: two 4 KiB reads now, the third after ~0.5 s.
        blk.set_rate_limiter(
            RateLimiter::new(RateLimit {
                bytes: Some(8192),
                ops: None,
            })
            .unwrap(),
        );
        let vq = MockSplitQueue::new(&*mem, 16);
        let hdr = RequestHeader {
            kind: VIRTIO_BLK_T_IN,
            reserved: 0,
            sector: 0,
        };
        mem.write_obj(hdr, GuestAddress(0x10_0000)).unwrap();
        let read: &[RawDescriptor] = &[
            d(0x10_0000, 16, 0),
            d(0x20_0000, 4096, F_WRITE),
            d(0x30_0000, 1, F_WRITE),
        ];
        add_chains(&vq, &[read, read, read, read]);
        blk.state.queues_mut()[0] = vq.create_queue().unwrap();
        blk.activate().unwrap();
        let start = std::time::Instant::now();
        assert_eq!(blk.process_queue(), 2);
        assert_eq!(vq.used().idx().load(), 2);
        assert_eq!(blk.throttled(), 1);
        // A queue kick while blocked serves nothing.
        assert_eq!(blk.process_queue(), 0);
        let timer = blk.limiter.timer_fd().unwrap();
        let mut p = libc::pollfd {
            fd: timer,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid pollfd for at most 2 s.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 2000) }, 1);
        with_test_ops(|ops| blk.process(timer, EventSet::IN, ops));
        let waited = start.elapsed();
        assert_eq!(vq.used().idx().load(), 3, "one more request after the wait");
        assert!(
            waited >= std::time::Duration::from_millis(450),
            "served after {waited:?}"
        );
        assert_eq!(blk.metrics.read_bytes, 3 * 4096);
    }
}
