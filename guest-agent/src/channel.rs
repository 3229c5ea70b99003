//! Finds the connection to the host: a virtio-serial port named
//! `hull.agent` (QEMU) or a vsock connection to the host (hull-vmm).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hull_protocol::{AGENT_SERIAL_PORT_NAME, AGENT_VSOCK_PORT};

use crate::sys;

/// The host's vsock context id.
const HOST_CID: u32 = 2;

/// How long devices may take to show up after boot.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Serial,
    Vsock,
}

impl ChannelKind {
    /// From `hull.channel=` on the kernel command line; serial is the
    /// default because it needs no host-side setup.
    pub fn from_cmdline(value: Option<&str>) -> io::Result<Self> {
        match value {
            None | Some("serial") => Ok(Self::Serial),
            Some("vsock") => Ok(Self::Vsock),
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown hull.channel={other} (want serial or vsock)"),
            )),
        }
    }
}

/// Opens the channel, waiting for its device to appear.
pub fn open(kind: ChannelKind) -> io::Result<File> {
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        let attempt = match kind {
            ChannelKind::Serial => open_serial_port(),
            ChannelKind::Vsock => sys::vsock_connect(HOST_CID, AGENT_VSOCK_PORT).map(File::from),
        };
        match attempt {
            Ok(file) => return Ok(file),
            Err(err) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    err.kind(),
                    format!("agent channel ({kind:?}): {err}"),
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn open_serial_port() -> io::Result<File> {
    let path = find_serial_port()?;
    OpenOptions::new().read(true).write(true).open(path)
}

fn find_serial_port() -> io::Result<PathBuf> {
    for entry in fs::read_dir("/sys/class/virtio-ports")? {
        let entry = entry?;
        let name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim_end() == AGENT_SERIAL_PORT_NAME {
            return Ok(PathBuf::from("/dev").join(entry.file_name()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no virtio port named {AGENT_SERIAL_PORT_NAME}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_kind_parses() {
        assert_eq!(
            ChannelKind::from_cmdline(None).unwrap(),
            ChannelKind::Serial
        );
        assert_eq!(
            ChannelKind::from_cmdline(Some("vsock")).unwrap(),
            ChannelKind::Vsock
        );
        assert!(ChannelKind::from_cmdline(Some("carrier-pigeon")).is_err());
    }
}
