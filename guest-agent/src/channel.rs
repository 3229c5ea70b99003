//! Finds the connection to the host: a virtio-serial port named
//! `hull.agent` (QEMU) or a vsock connection to the host (hull-vmm).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_protocol::{AGENT_JOIN_PORT_PREFIX, AGENT_SERIAL_PORT_NAME, AGENT_VSOCK_PORT};

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

/// How many times one VM's agent connects again after its vsock
/// connection was reset. A clone's restore resets it once; a clone of a
/// clone (a template made from a restored VM) once more.
pub const MAX_RECONNECTS: u32 = 3;
/// Connection attempts per reconnect, the first after this pause and
/// each next after twice the last (10 + 20 + 40 + 80 ms in all).
const RECONNECT_TRIES: u32 = 4;
const RECONNECT_FIRST_PAUSE: Duration = Duration::from_millis(10);

/// Whether the agent connects again after its session ended with
/// `served`: only on vsock, only when the connection was reset (what
/// hull-vmm's restore of a template does: the guest gets a transport
/// reset) and only before any container ran in the VM. Any other end
/// powers the VM off, as it always has.
pub fn should_reconnect(
    kind: ChannelKind,
    served: &io::Result<()>,
    ran_a_container: bool,
    reconnects: u32,
) -> bool {
    let reset = matches!(
        served,
        Err(e) if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::NotConnected
                | io::ErrorKind::ConnectionAborted
        )
    );
    kind == ChannelKind::Vsock && reset && !ran_a_container && reconnects < MAX_RECONNECTS
}

/// Connects to the host again, a few tries with growing pauses (the host
/// listens before it restores a clone, so the first usually succeeds).
pub fn reconnect(kind: ChannelKind) -> io::Result<File> {
    let mut pause = RECONNECT_FIRST_PAUSE;
    let mut last = None;
    for _ in 0..RECONNECT_TRIES {
        std::thread::sleep(pause);
        pause *= 2;
        let attempt = match kind {
            ChannelKind::Serial => open_serial_port(),
            ChannelKind::Vsock => sys::vsock_connect(HOST_CID, AGENT_VSOCK_PORT).map(File::from),
        };
        match attempt {
            Ok(file) => return Ok(file),
            Err(err) => last = Some(err),
        }
    }
    let err = last.expect("at least one try");
    Err(io::Error::new(
        err.kind(),
        format!("agent channel ({kind:?}) after a reset: {err}"),
    ))
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

/// Calls `serve` with each virtio-serial port named
/// `hull.agent.<suffix>` that the host hot-adds, once per port, on a thread
/// of its own. Ports announce themselves by kernel uevents ("add", then
/// "change" once the host has sent the port's name), so nothing polls.
pub fn watch_join_ports(serve: impl Fn(File) + Send + Sync + 'static) -> io::Result<()> {
    let events = sys::uevent_socket()?;
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match sys::recv(&events, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("hull-agent: uevents: {e}");
                    return;
                }
            };
            let Some((action, port)) = virtio_port_event(&buf[..n]) else {
                continue;
            };
            if action == PortAction::Removed {
                // Its device name may come back with the next port.
                seen.remove(&port);
                continue;
            }
            let name = fs::read_to_string(format!("/sys/class/virtio-ports/{port}/name"))
                .unwrap_or_default();
            if !name.trim_end().starts_with(AGENT_JOIN_PORT_PREFIX) || !seen.insert(port.clone()) {
                continue;
            }
            debug!("join port {port} ({})", name.trim_end());
            match OpenOptions::new()
                .read(true)
                .write(true)
                .open(Path::new("/dev").join(&port))
            {
                Ok(file) => {
                    let serve = serve.clone();
                    std::thread::spawn(move || serve(file));
                }
                Err(e) => eprintln!("hull-agent: open /dev/{port}: {e}"),
            }
        }
    });
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortAction {
    /// Added, or named by the host.
    Ready,
    Removed,
}

/// What a uevent says about a virtio-serial port: `ACTION=add|change|
/// remove`, `SUBSYSTEM=virtio-ports`, `DEVNAME=vport…`.
fn virtio_port_event(message: &[u8]) -> Option<(PortAction, String)> {
    let mut fields = message.split(|&b| b == 0).map(String::from_utf8_lossy);
    // The first field is the "action@devpath" header.
    fields.next()?;
    let (mut action, mut subsystem, mut devname) = (None, None, None);
    for field in fields {
        if let Some((key, value)) = field.split_once('=') {
            match key {
                "ACTION" => action = Some(value.to_string()),
                "SUBSYSTEM" => subsystem = Some(value.to_string()),
                "DEVNAME" => devname = Some(value.to_string()),
                _ => {}
            }
        }
    }
    let devname = devname?;
    let plain = !devname.is_empty()
        && devname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if subsystem.as_deref() != Some("virtio-ports") || !plain {
        return None;
    }
    match action.as_deref() {
        Some("add" | "change") => Some((PortAction::Ready, devname)),
        Some("remove") => Some((PortAction::Removed, devname)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_events_name_the_device() {
        let event = b"change@/devices/pci0000:00/virtio3/virtio-ports/vport3p1\0ACTION=change\0DEVPATH=/x\0SUBSYSTEM=virtio-ports\0DEVNAME=vport3p1\0";
        assert_eq!(
            virtio_port_event(event),
            Some((PortAction::Ready, "vport3p1".into()))
        );
        let block = b"add@/block/sda\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sda\0";
        assert_eq!(virtio_port_event(block), None);
        let removed = b"remove@/x\0ACTION=remove\0SUBSYSTEM=virtio-ports\0DEVNAME=vport3p1\0";
        assert_eq!(
            virtio_port_event(removed),
            Some((PortAction::Removed, "vport3p1".into()))
        );
        let bound = b"bind@/x\0ACTION=bind\0SUBSYSTEM=virtio-ports\0DEVNAME=vport3p1\0";
        assert_eq!(virtio_port_event(bound), None);
        let hostile = b"add@/x\0ACTION=add\0SUBSYSTEM=virtio-ports\0DEVNAME=../sda\0";
        assert_eq!(virtio_port_event(hostile), None);
    }

    #[test]
    fn only_a_reset_vsock_before_any_container_reconnects() {
        let reset = || Err(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(should_reconnect(ChannelKind::Vsock, &reset(), false, 0));
        assert!(should_reconnect(
            ChannelKind::Vsock,
            &Err(io::Error::from(io::ErrorKind::NotConnected)),
            false,
            MAX_RECONNECTS - 1
        ));
        // Serial (QEMU) never does; nor a VM that ran a container; nor
        // past the bound; nor a host that closed or broke the protocol.
        assert!(!should_reconnect(ChannelKind::Serial, &reset(), false, 0));
        assert!(!should_reconnect(ChannelKind::Vsock, &reset(), true, 0));
        assert!(!should_reconnect(
            ChannelKind::Vsock,
            &reset(),
            false,
            MAX_RECONNECTS
        ));
        assert!(!should_reconnect(ChannelKind::Vsock, &Ok(()), false, 0));
        let broken = Err(io::Error::new(io::ErrorKind::InvalidData, "bad frame"));
        assert!(!should_reconnect(ChannelKind::Vsock, &broken, false, 0));
    }

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
