//! The virtio-blk device: configuration, queue processing, and execution
//! of parsed requests against a `DiskBackend` (a host file).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::request::{Op, Request, RequestError};
use super::{ID_BYTES, QUEUE_SIZE, SECTOR_SIZE, SEG_MAX, SIZE_MAX};
use crate::devices::virtio::{
    device_type, read_config_bytes, DeviceError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::event_loop::{EventOps, Subscriber};
use crate::logger::guest_event;

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

/// The block device.
pub struct Block<B: DiskBackend = File> {
    mem: Arc<GuestMemoryMmap>,
    disk: B,
    read_only: bool,
    id: [u8; ID_BYTES],
    capacity: u64,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    acked: u64,
    activated: bool,
    /// Request counters.
    pub metrics: BlockMetrics,
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
        Ok(Self {
            mem,
            disk,
            read_only,
            id: idb,
            capacity: size / SECTOR_SIZE,
            queues: vec![Queue::new(QUEUE_SIZE).map_err(DeviceError::Queue)?],
            queue_evts: vec![EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)?],
            interrupt: Interrupt::new()?,
            acked: 0,
            activated: false,
            metrics: BlockMetrics::default(),
        })
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn config_bytes(&self) -> [u8; 16] {
        // capacity (le64), size_max (le32), seg_max (le32)
        let mut c = [0u8; 16];
        c[..8].copy_from_slice(&self.capacity.to_le_bytes());
        c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c
    }

    fn execute(&mut self, op: &Op) -> Result<u32, io::Error> {
        let mem = self.mem.clone();
        let to_io = |e: vm_memory::GuestMemoryError| io::Error::new(io::ErrorKind::InvalidInput, e);
        match op {
            Op::Read { sector, bufs } => {
                let mut off = sector * SECTOR_SIZE;
                let mut done = 0u32;
                for (addr, len) in bufs {
                    let mut buf = vec![0u8; *len as usize];
                    self.disk.read_at(&mut buf, off)?;
                    mem.write_slice(&buf, *addr).map_err(to_io)?;
                    off += u64::from(*len);
                    done += len;
                }
                self.metrics.read_bytes += u64::from(done);
                Ok(done)
            }
            Op::Write { sector, bufs } => {
                let mut off = sector * SECTOR_SIZE;
                for (addr, len) in bufs {
                    let mut buf = vec![0u8; *len as usize];
                    mem.read_slice(&mut buf, *addr).map_err(to_io)?;
                    self.disk.write_at(&buf, off)?;
                    off += u64::from(*len);
                    self.metrics.write_bytes += u64::from(*len);
                }
                Ok(0)
            }
            Op::Flush => {
                self.disk.flush()?;
                Ok(0)
            }
            Op::GetId(addr, len) => {
                let n = (*len as usize).min(ID_BYTES);
                mem.write_slice(&self.id[..n], *addr).map_err(to_io)?;
                Ok(n as u32)
            }
        }
    }

    /// Serves every available request on the queue; returns how many chains
    /// were consumed.
    pub fn process_queue(&mut self) -> usize {
        let mem = self.mem.clone();
        let mut count = 0;
        while let Some(chain) = self.queues[0].pop_descriptor_chain(&*mem) {
            if count == usize::from(QUEUE_SIZE) {
                // Budget spent: let other devices (and SIGTERM) run, and
                // come back through our own eventfd.
                self.queues[0].go_to_previous_position();
                let _ = self.queue_evts[0].write(1);
                break;
            }
            count += 1;
            let head = chain.head_index();
            let used_len = match Request::parse(chain, self.capacity, self.read_only) {
                Err(e) => {
                    self.metrics.malformed += 1;
                    guest_event(format_args!("virtio-blk: malformed request: {e}"));
                    0
                }
                Ok(req) => {
                    let (status, len) = match &req.op {
                        Ok(op) => match self.execute(op) {
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
                        self.metrics.ok += 1;
                    } else {
                        self.metrics.failed += 1;
                    }
                    // The range was checked by parse; this cannot fail unless
                    // memory shrank, which it does not.
                    let _ = mem.write_obj(status, req.status);
                    len + 1
                }
            };
            if let Err(e) = self.queues[0].add_used(&*mem, head, used_len) {
                guest_event(format_args!("virtio-blk: cannot return a used buffer: {e}"));
                break;
            }
        }
        if count > 0 {
            match self.queues[0].needs_notification(&*mem) {
                Ok(false) => {}
                _ => self.interrupt.signal_used_queue(),
            }
        }
        count
    }
}

impl<B: DiskBackend> VirtioDevice for Block<B> {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }
    fn avail_features(&self) -> u64 {
        let ro = if self.read_only { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX | ro
    }
    fn set_acked_features(&mut self, features: u64) {
        self.acked = features;
    }
    fn queues_mut(&mut self) -> &mut [Queue] {
        &mut self.queues
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }
    fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }
    fn activate(&mut self) -> Result<(), DeviceError> {
        if !self.queues[0].ready() {
            return Err(DeviceError::BadQueue(0));
        }
        self.activated = true;
        Ok(())
    }
    fn is_activated(&self) -> bool {
        self.activated
    }
    fn reset(&mut self) {
        self.activated = false;
        self.acked = 0;
        for q in &mut self.queues {
            q.reset();
        }
    }
}

impl<B: DiskBackend> Subscriber for Block<B> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        if let Err(e) = ops.add(self.queue_evts[0].as_raw_fd(), EventSet::IN) {
            crate::logger::warn(format_args!("virtio-blk: cannot watch the queue: {e}"));
        }
    }
    fn process(&mut self, _fd: RawFd, _events: EventSet, _ops: &mut EventOps<'_>) {
        let _ = self.queue_evts[0].read();
        if self.activated {
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
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
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

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    fn run(
        descs: &[RawDescriptor],
        hdr: RequestHeader,
        ro: bool,
    ) -> (Block<MemDisk>, Arc<GuestMemoryMmap>, u32) {
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
        mem.write_obj(hdr, GuestAddress(0x10_0000)).unwrap();
        let disk: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let mut blk =
            Block::with_backend(mem.clone(), MemDisk(disk, false), 8192, ro, b"disk-7").unwrap();
        let vq = MockSplitQueue::new(&*mem, 16);
        vq.build_desc_chain(descs).unwrap();
        blk.queues[0] = vq.create_queue().unwrap();
        blk.activated = true;
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
        assert_ne!(blk.interrupt.status() & 1, 0);

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
        assert_eq!(&blk.disk.0[1024..1028], &[0, 0, 0, 0]); // guest buffer was zeroes

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
        assert_ne!(blk.avail_features() & VIRTIO_BLK_F_RO, 0);
        assert!(Block::with_backend(mem, MemDisk(vec![], false), 0, false, &[b'a'; 21]).is_err());
    }
}
