//! Guest memory in a snapshot: one file, `memory`, laid out to be mapped
//! as it is. A 4 KiB header page (magic, the snapshot id the state file
//! also carries, the guest size) is followed by every RAM region, page
//! aligned, at the file offset the state records. Pages that are all zero
//! are not written: the file is sparse and its holes read as zero.
//!
//! A restored VM maps the file `MAP_PRIVATE` (Firecracker's file-backed
//! restore, QEMU's `x-ignore-shared` recipe with `share=off`): pages load
//! lazily from the page cache, clones of one snapshot share every page
//! they have not written, and a write copies the page for that clone only.
//! The file itself is opened read-only and never changes under a clone.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vm_memory::{
    Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap,
    GuestMemoryRegion, GuestRegionMmap, MmapRegion,
};

use crate::arch::x86_64::arch_memory_regions;

const HEADER_BYTES: u64 = 4096;
const MAGIC: &[u8; 8] = b"HULLMEM\0";
const PAGE: usize = 4096;
/// Guest bytes copied out per step while writing the file.
const CHUNK: usize = 1 << 20;

/// Errors of the memory file.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The file could not be created, read or written.
    #[error("memory file {0}")]
    Io(PathBuf, #[source] std::io::Error),
    /// Guest memory could not be read.
    #[error("cannot read guest memory")]
    Guest(#[source] vm_memory::GuestMemoryError),
    /// The header page is not ours.
    #[error("memory file {0} is not a hull-vmm snapshot memory file")]
    Magic(PathBuf),
    /// The file belongs to another snapshot.
    #[error("memory file {0} belongs to another snapshot than the state file")]
    OtherSnapshot(PathBuf),
    /// The file is shorter than the memory the state describes.
    #[error("memory file {path} is {found} bytes, the snapshot needs {want}")]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        found: u64,
        /// The size the state describes.
        want: u64,
    },
    /// The regions are not those of a guest of that size.
    #[error("snapshot memory layout does not match {0} MiB of guest memory")]
    Layout(u64),
    /// The file could not be mapped.
    #[error("cannot map the memory file")]
    Map(#[source] vm_memory::mmap::MmapRegionError),
    /// The mapped regions do not form a guest memory.
    #[error("cannot build guest memory from the memory file")]
    Regions(#[source] vm_memory::GuestRegionCollectionError),
}

/// One RAM region in the memory file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionState {
    /// Guest physical start.
    pub guest_addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Where the region starts in the file.
    pub file_offset: u64,
}

/// What the state file says of guest memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryState {
    /// Guest memory in MiB.
    pub mib: u64,
    /// The RAM regions, in address order.
    pub regions: Vec<RegionState>,
    /// The id in the memory file's header.
    pub snapshot_id: [u8; 16],
}

impl MemoryState {
    /// Bytes of the memory file the state expects.
    pub fn file_bytes(&self) -> u64 {
        HEADER_BYTES + self.regions.iter().map(|r| r.size).sum::<u64>()
    }

    /// Checks that the regions are those hull-vmm gives a guest of `mib`
    /// MiB, each following the last in the file.
    pub fn check_layout(&self) -> Result<(), MemoryError> {
        let bad = || MemoryError::Layout(self.mib);
        if self.mib == 0 || self.mib > crate::config::MAX_MEMORY_MIB {
            return Err(bad());
        }
        let want = arch_memory_regions(self.mib << 20);
        if want.len() != self.regions.len() {
            return Err(bad());
        }
        let mut offset = HEADER_BYTES;
        for ((addr, size), r) in want.iter().zip(&self.regions) {
            if r.guest_addr != addr.raw_value() || r.size != *size as u64 || r.file_offset != offset
            {
                return Err(bad());
            }
            offset += r.size;
        }
        Ok(())
    }
}

fn header(id: &[u8; 16], guest_bytes: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..24].copy_from_slice(id);
    h[24..32].copy_from_slice(&guest_bytes.to_le_bytes());
    h
}

/// Writes the pages of `buf` (guest bytes at file offset `off`) that are
/// not all zero.
fn write_nonzero_pages(f: &File, buf: &[u8], off: u64) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    for (i, page) in buf.chunks(PAGE).enumerate() {
        let zero = page.iter().all(|b| *b == 0);
        match (zero, run) {
            (false, None) => run = Some(i),
            (true, Some(start)) => {
                f.write_all_at(&buf[start * PAGE..i * PAGE], off + (start * PAGE) as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        f.write_all_at(&buf[start * PAGE..], off + (start * PAGE) as u64)?;
    }
    Ok(())
}

/// Writes guest memory `mem` of `mib` MiB to a new file at `path`, with
/// the header naming `id`, and returns what the state file records.
pub fn write_memory_file(
    mem: &GuestMemoryMmap,
    mib: u64,
    path: &Path,
    id: [u8; 16],
) -> Result<MemoryState, MemoryError> {
    let io = |e| MemoryError::Io(path.into(), e);
    let f = crate::hostfs::create_file(path).map_err(io)?;
    let mut regions = Vec::new();
    let mut offset = HEADER_BYTES;
    for r in mem.iter() {
        regions.push(RegionState {
            guest_addr: r.start_addr().raw_value(),
            size: r.len(),
            file_offset: offset,
        });
        offset += r.len();
    }
    let state = MemoryState {
        mib,
        regions,
        snapshot_id: id,
    };
    f.set_len(state.file_bytes()).map_err(io)?;
    f.write_all_at(&header(&id, state.file_bytes() - HEADER_BYTES), 0)
        .map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    for r in &state.regions {
        let mut done = 0u64;
        while done < r.size {
            let n = (r.size - done).min(CHUNK as u64) as usize;
            mem.read_slice(&mut buf[..n], GuestAddress(r.guest_addr + done))
                .map_err(MemoryError::Guest)?;
            write_nonzero_pages(&f, &buf[..n], r.file_offset + done).map_err(io)?;
            done += n as u64;
        }
    }
    f.sync_data().map_err(io)?;
    Ok(state)
}

/// Maps the memory file at `path` privately as the guest memory `state`
/// describes, after checking its header and size.
pub fn map_memory_file(path: &Path, state: &MemoryState) -> Result<GuestMemoryMmap, MemoryError> {
    state.check_layout()?;
    let io = |e| MemoryError::Io(path.into(), e);
    let f = File::open(path).map_err(io)?;
    let found = f.metadata().map_err(io)?.len();
    let mut h = vec![0u8; HEADER_BYTES as usize];
    if found >= HEADER_BYTES {
        f.read_exact_at(&mut h, 0).map_err(io)?;
        if &h[..8] != MAGIC {
            return Err(MemoryError::Magic(path.into()));
        }
        if h[8..24] != state.snapshot_id {
            return Err(MemoryError::OtherSnapshot(path.into()));
        }
    }
    // A mapping past the end of the file would fault the guest's (and our)
    // accesses with SIGBUS: the file must hold every byte.
    if found != state.file_bytes() {
        return Err(MemoryError::Size {
            path: path.into(),
            found,
            want: state.file_bytes(),
        });
    }
    let f = Arc::new(f);
    let mut regions = Vec::with_capacity(state.regions.len());
    for r in &state.regions {
        let mapping = MmapRegion::build(
            Some(FileOffset::from_arc(f.clone(), r.file_offset)),
            r.size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(MemoryError::Map)?;
        regions.push(
            GuestRegionMmap::new(mapping, GuestAddress(r.guest_addr))
                .ok_or(MemoryError::Layout(state.mib))?,
        );
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Regions)
}

/// A fresh random snapshot id.
pub fn new_snapshot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `id.len()` bytes into `id`.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        // No entropy (cannot happen on Linux ≥ 3.17 after boot): fall back
        // to the clock and pid, which still tell two snapshots apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        id[..8].copy_from_slice(&(t as u64).to_le_bytes());
        id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn guest(mib: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&arch_memory_regions(mib << 20)).unwrap()
    }

    #[test]
    fn memory_round_trips_privately_and_the_file_is_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory");
        let mem = guest(8);
        mem.write_slice(b"first page", GuestAddress(0)).unwrap();
        mem.write_slice(b"somewhere", GuestAddress(0x5f_3000))
            .unwrap();
        mem.write_obj(0xdead_beefu32, GuestAddress((8 << 20) - 4))
            .unwrap();
        let state = write_memory_file(&mem, 8, &p, [7; 16]).unwrap();
        assert_eq!(state.file_bytes(), 4096 + (8 << 20));
        let blocks = std::fs::metadata(&p).map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks()
        });
        assert!(blocks.unwrap() * 512 < 1 << 20, "zero pages were written");

        let back = map_memory_file(&p, &state).unwrap();
        let mut b = [0u8; 10];
        back.read_slice(&mut b, GuestAddress(0)).unwrap();
        assert_eq!(&b, b"first page");
        back.read_slice(&mut b[..9], GuestAddress(0x5f_3000))
            .unwrap();
        assert_eq!(&b[..9], b"somewhere");
        assert_eq!(
            back.read_obj::<u32>(GuestAddress((8 << 20) - 4)).unwrap(),
            0xdead_beef
        );
        // A write lands in this mapping only, never in the file.
        back.write_slice(b"clone", GuestAddress(0)).unwrap();
        let other = map_memory_file(&p, &state).unwrap();
        other.read_slice(&mut b, GuestAddress(0)).unwrap();
        assert_eq!(&b, b"first page");
    }

    #[test]
    fn mismatched_files_and_layouts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory");
        let state = write_memory_file(&guest(4), 4, &p, [1; 16]).unwrap();
        let mut other = state.clone();
        other.snapshot_id = [2; 16];
        let e = map_memory_file(&p, &other).unwrap_err();
        assert!(matches!(e, MemoryError::OtherSnapshot(_)), "{e}");
        let mut layout = state.clone();
        layout.regions[0].size -= 4096;
        assert!(matches!(
            map_memory_file(&p, &layout),
            Err(MemoryError::Layout(4))
        ));
        layout = state.clone();
        layout.mib = u64::MAX;
        assert!(matches!(
            map_memory_file(&p, &layout),
            Err(MemoryError::Layout(_))
        ));
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(state.file_bytes() - 4096).unwrap();
        let e = map_memory_file(&p, &state).unwrap_err().to_string();
        assert!(e.contains("the snapshot needs"), "{e}");
        f.set_len(10).unwrap();
        assert!(map_memory_file(&p, &state).is_err());
        f.write_all_at(b"junk", 0).unwrap();
        f.set_len(state.file_bytes()).unwrap();
        let e = map_memory_file(&p, &state).unwrap_err();
        assert!(matches!(e, MemoryError::Magic(_)), "{e}");
        assert!(map_memory_file(&dir.path().join("none"), &state).is_err());
    }

    #[test]
    fn snapshot_ids_differ() {
        assert_ne!(new_snapshot_id(), new_snapshot_id());
    }
}
