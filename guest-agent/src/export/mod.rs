//! `ExportChanges`: a container's writable layer (its overlay's upper
//! directory on the scratch disk) written as an uncompressed OCI layer
//! tar on a data stream, within the host's flow-control window, as a
//! process's stdout is. The host never mounts the scratch disk: this is
//! how the changes leave the VM (`docker commit`, a build's `RUN` step).
//! The host checks what arrives as it checks any hostile layer.

mod tar;
pub mod walk;

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use hull_protocol::{frame::MAX_DATA_CHUNK, Credit, Frame, StreamId};

use crate::wire::Wire;
use walk::{Options, Overlay, Written};

/// Files the agent writes into every container's root (rootfs.rs); they
/// are the runtime's, not the container's, and Docker leaves them out of
/// a commit too.
pub const AGENT_FILES: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// The overlay markers as the agent's overlay mount writes them: it
/// mounts as root without `userxattr`, so `trusted.overlay.*`; the
/// `user.overlay.*` variant is read too.
pub struct RealOverlay;

impl Overlay for RealOverlay {
    fn is_opaque(&self, path: &Path) -> bool {
        ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|name| get_xattr(path, name).as_deref() == Some(b"y"))
    }

    fn is_whiteout(&self, _path: &Path, meta: &std::fs::Metadata) -> bool {
        walk::is_whiteout_device(meta)
    }

    fn xattr(&self, path: &Path, name: &str) -> Option<Vec<u8>> {
        get_xattr(path, name)
    }
}

/// The xattr `name` of `path` (not following a symlink), if set.
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    let cname = CString::new(name).ok()?;
    // XATTR_SIZE_MAX: no value is longer.
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: both strings are NUL-terminated and live across the call;
    // `buf` is valid for `buf.len()` bytes, which the kernel never passes.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Writes the layer of the overlay at `state` (the container's directory:
/// `rw/upper` over `image`) on `stream`, then its Eof.
pub fn export(
    state: &Path,
    source_date_epoch: Option<i64>,
    stream: StreamId,
    credit: Arc<Credit>,
    wire: Arc<Wire>,
) -> io::Result<Written> {
    let upper = state.join("rw/upper");
    let lower = state.join("image");
    let opts = Options {
        upper: &upper,
        lower: Some(&lower),
        skip: AGENT_FILES,
        source_date_epoch,
    };
    let mut out = StreamWriter::new(stream, credit, wire.clone());
    let written = walk::write_layer(&RealOverlay, &opts, &mut out)?;
    out.flush()?;
    wire.send(&Frame::eof(stream))?;
    Ok(written)
}

/// Bytes written to a data stream in chunks, each waiting for the host's
/// credit.
struct StreamWriter {
    stream: StreamId,
    credit: Arc<Credit>,
    wire: Arc<Wire>,
    buf: Vec<u8>,
}

impl StreamWriter {
    fn new(stream: StreamId, credit: Arc<Credit>, wire: Arc<Wire>) -> Self {
        Self {
            stream,
            credit,
            wire,
            buf: Vec::with_capacity(MAX_DATA_CHUNK),
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        let mut sent = 0;
        while sent < self.buf.len() {
            let Some(allowed) = self.credit.take(self.buf.len() - sent) else {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the host closed the export stream",
                ));
            };
            let chunk = self.buf[sent..sent + allowed].to_vec();
            self.wire.send(&Frame::data(self.stream, chunk))?;
            sent += allowed;
        }
        self.buf.clear();
        Ok(())
    }
}

impl Write for StreamWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = MAX_DATA_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_DATA_CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

#[cfg(test)]
mod tests;
