//! The VM description hull-vmm boots: from a JSON file (`--config`), from
//! flags, or both (flags override the file's scalars and add devices);
//! or, with `--restore DIR`, the backings a VM restored from a snapshot
//! gets for the device slots the snapshot has. Only the builder and the
//! restore path read these types; device code takes plain values.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::arch::x86_64::layout::{IRQ_MAX, VIRTIO_IRQ_BASE};
use crate::arch::x86_64::mptable::MAX_CPUS;
use crate::rate_limiter::{parse_rate, RateLimit};

/// The kernel command line used when none is given.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

/// Largest guest memory accepted, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// Errors in a VM description.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config file {0}")]
    ReadFile(PathBuf, #[source] std::io::Error),
    /// The config file is not valid (syntax, unknown field, wrong type).
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    /// A flag is unknown, lacks its value, or its value is malformed.
    #[error("{0}")]
    Flag(String),
    /// No kernel was given.
    #[error("no kernel given (use --kernel FILE or \"kernel\" in the config)")]
    MissingKernel,
    /// No memory size was given.
    #[error("no memory size given (use --memory MIB or \"memory_mib\" in the config)")]
    MissingMemory,
    /// Memory size out of range.
    #[error("memory size {0} MiB is out of range (1..={MAX_MEMORY_MIB})")]
    BadMemory(u64),
    /// vCPU count out of range.
    #[error("vCPU count {0} is out of range (1..={MAX_CPUS})")]
    BadVcpus(u64),
    /// A file the VM needs is missing or unreadable.
    #[error("{what} {path} is not a readable file")]
    BadFile {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// A tap device does not exist.
    #[error("tap device {0} does not exist")]
    NoTap(String),
    /// A MAC address is malformed.
    #[error("bad MAC address {0:?} (expected xx:xx:xx:xx:xx:xx)")]
    BadMac(String),
    /// Vsock settings are invalid.
    #[error("vsock guest CID {0} is invalid (must be >= 3 and < 2^32 - 1)")]
    BadCid(u64),
    /// The vsock socket directory does not exist.
    #[error("vsock socket path {0} has no existing parent directory")]
    BadUds(PathBuf),
    /// Too many devices for the interrupt lines.
    #[error("{0} virtio devices do not fit in the {max} interrupt lines", max = IRQ_MAX - VIRTIO_IRQ_BASE + 1)]
    TooManyDevices(usize),
    /// Two devices clash.
    #[error("{0}")]
    Duplicate(String),
    /// A flag that a restored VM takes from its snapshot.
    #[error("{0} comes from the snapshot and cannot be given with --restore")]
    NotWithRestore(&'static str),
    /// The snapshot directory does not exist.
    #[error("snapshot directory {0} does not exist")]
    NoSnapshotDir(PathBuf),
    /// The API socket path cannot be used.
    #[error("API socket path {0} has no existing parent directory")]
    BadApiSocket(PathBuf),
}

type Result<T> = std::result::Result<T, Error>;

/// The word that makes a device slot a placeholder.
pub const PLACEHOLDER: &str = "placeholder";

/// One block device.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Backing file (or block device); none for a placeholder.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A slot with no backing yet (capacity 0): a template's disk that a
    /// restored clone gives a file.
    #[serde(default)]
    pub placeholder: bool,
    /// Read-only for the guest.
    #[serde(default)]
    pub read_only: bool,
    /// Device id returned to the guest (VIRTIO_BLK_T_GET_ID), at most 20 bytes.
    #[serde(default)]
    pub id: Option<String>,
    /// Data bytes a second the guest may read and write (unlimited if none).
    #[serde(default)]
    pub bytes_per_sec: Option<u64>,
    /// Requests a second (unlimited if none).
    #[serde(default)]
    pub ops_per_sec: Option<u64>,
}

/// One network device.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Name of an existing tap device; none for a placeholder.
    #[serde(default)]
    pub tap: Option<String>,
    /// A slot with no tap yet: a template's NIC that a restored clone
    /// gives a tap.
    #[serde(default)]
    pub placeholder: bool,
    /// Guest MAC address, `xx:xx:xx:xx:xx:xx`.
    #[serde(default)]
    pub mac: Option<String>,
    /// Bytes a second to the guest (unlimited if none).
    #[serde(default)]
    pub rx_bytes_per_sec: Option<u64>,
    /// Frames a second to the guest (unlimited if none).
    #[serde(default)]
    pub rx_frames_per_sec: Option<u64>,
    /// Bytes a second from the guest (unlimited if none).
    #[serde(default)]
    pub tx_bytes_per_sec: Option<u64>,
    /// Frames a second from the guest (unlimited if none).
    #[serde(default)]
    pub tx_frames_per_sec: Option<u64>,
}

/// The vsock device.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// The guest's context id (>= 3); with --restore, the snapshot's if
    /// not given.
    #[serde(default)]
    pub guest_cid: Option<u64>,
    /// Host unix socket path: the host connects here, guest connections to
    /// port P go to `<uds_path>_P`.
    pub uds_path: PathBuf,
}

/// Where the guest's serial console output goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Console {
    /// Our stdout (the default).
    #[default]
    Stdout,
    /// Discarded.
    None,
    /// Appended to a file.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Console {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Console::parse(&s))
    }
}

impl Console {
    fn parse(s: &str) -> Self {
        match s {
            "stdout" | "" => Console::Stdout,
            "none" | "null" => Console::None,
            path => Console::File(PathBuf::from(path)),
        }
    }
}

/// A complete VM description.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Guest kernel: ELF vmlinux (PVH entry if present) or bzImage.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// Kernel command line; virtio-mmio announcements are appended.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Initramfs.
    #[serde(default)]
    pub initramfs: Option<PathBuf>,
    /// vCPU count (default 1).
    #[serde(default)]
    pub vcpus: Option<u64>,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Block devices, in guest order.
    #[serde(default)]
    pub block: Vec<BlockConfig>,
    /// Network devices, in guest order.
    #[serde(default)]
    pub net: Vec<NetConfig>,
    /// The vsock device.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// Console output destination.
    #[serde(default)]
    pub console: Console,
    /// Unix socket for the control API (pause, resume, snapshot).
    #[serde(default)]
    pub api_socket: Option<PathBuf>,
    /// Snapshot directory to restore from (flag only).
    #[serde(skip)]
    pub restore: Option<PathBuf>,
}

/// A validated block device: a file, or a placeholder (`path` None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidBlock {
    /// Backing file; None for a placeholder.
    pub path: Option<PathBuf>,
    /// Read-only for the guest.
    pub read_only: bool,
    /// Device id, at most 20 bytes.
    pub id: Option<String>,
    /// Bytes and requests a second.
    pub rate: RateLimit,
}

/// A validated network device: a tap, or a placeholder (`tap` None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidNet {
    /// Tap name; None for a placeholder.
    pub tap: Option<String>,
    /// Guest MAC.
    pub mac: Option<[u8; 6]>,
    /// Bytes and frames a second to the guest.
    pub rx_rate: RateLimit,
    /// Bytes and frames a second from the guest.
    pub tx_rate: RateLimit,
}

/// The backings of a VM restored from a snapshot: one per device slot of
/// the snapshot, of its kind, in order.
#[derive(Clone, Debug)]
pub struct ValidRestore {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Block device backings.
    pub block: Vec<ValidBlock>,
    /// Network device backings.
    pub net: Vec<ValidNet>,
    /// Vsock: CID (the snapshot's if None) and socket path.
    pub vsock: Option<(Option<u32>, PathBuf)>,
    /// Console output.
    pub console: Console,
    /// Control API socket.
    pub api_socket: Option<PathBuf>,
}

/// A validated VM description, every field resolved.
#[derive(Clone, Debug)]
pub struct ValidConfig {
    /// Kernel path.
    pub kernel: PathBuf,
    /// Base command line.
    pub cmdline: String,
    /// Initramfs path.
    pub initramfs: Option<PathBuf>,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Block devices.
    pub block: Vec<ValidBlock>,
    /// Net devices, MAC parsed.
    pub net: Vec<ValidNet>,
    /// Vsock: CID and socket path.
    pub vsock: Option<(u32, PathBuf)>,
    /// Console output.
    pub console: Console,
    /// Control API socket.
    pub api_socket: Option<PathBuf>,
}

/// The `--help` text: every option.
pub const USAGE: &str = "\
hull-vmm: boot a KVM microVM (one process per VM)

USAGE: hull-vmm [--config FILE] [OPTIONS]
       hull-vmm --kernel FILE --memory MIB [--api-socket PATH]
       hull-vmm --restore DIR [DEVICE OPTIONS] [--api-socket PATH]

OPTIONS (flags override the config file; device flags add devices):
  --config FILE          JSON VM description with the fields kernel, cmdline,
                         initramfs, vcpus, memory_mib, block[{path,
                         placeholder, read_only, id, bytes_per_sec,
                         ops_per_sec}], net[{tap, placeholder, mac,
                         rx_bytes_per_sec, rx_frames_per_sec, tx_bytes_per_sec,
                         tx_frames_per_sec}], vsock{guest_cid, uds_path}, console,
                         api_socket; unknown fields are errors
  --kernel FILE          guest kernel: ELF vmlinux (entered through PVH when it
                         has a PVH note, else 64-bit) or bzImage
  --cmdline STRING       kernel command line (default: \"console=ttyS0 reboot=k
                         panic=1 pci=off nomodule i8042.noaux i8042.nomux
                         i8042.nopnp i8042.dumbkbd\");
                         virtio_mmio.device=<size>@<addr>:<irq>
                         entries are appended for every virtio device
  --initramfs FILE       initramfs (loaded at the top of low memory)
  --vcpus N              vCPU count, 1..=32 (default 1)
  --memory MIB           guest memory in MiB (required)
  --block PATH[,ro][,id=ID][,bw=RATE][,iops=N]
                         virtio-blk device backed by PATH; ro = read-only;
                         ID = device id the guest reads (<= 20 bytes); repeatable;
                         PATH \"placeholder\": a slot of capacity 0 that a VM
                         restored from a snapshot gives a file; bw = data bytes
                         a second, iops = requests a second (token buckets
                         holding one second's worth; RATE takes K, M, G)
  --net TAP[,mac=MAC][,rx-bw=RATE][,rx-pps=N][,tx-bw=RATE][,tx-pps=N]
                         virtio-net device on the existing tap device TAP;
                         repeatable; TAP \"placeholder\": a slot with no tap
                         that a restored VM gives one; rx (to the guest) and tx
                         (from it) limits in bytes and frames a second
  --vsock [cid=CID,]uds=PATH
                         virtio-vsock device; the host connects to PATH and
                         writes \"CONNECT <port>\\n\" (answered \"OK <port>\\n\");
                         guest connections to host port P go to PATH_P; CID is
                         required except with --restore
  --api-socket PATH      control API on a unix socket: one command per line,
                         \"pause\", \"resume\", \"snapshot DIR\", \"status\";
                         answered \"ok[ ...]\" or \"error: ...\"
  --restore DIR          restore the VM saved in DIR (files state and memory,
                         written by \"snapshot DIR\"); memory, vCPUs and kernel
                         come from the snapshot; give one --block/--net per
                         slot of the snapshot, in order (a file, or
                         placeholder), --vsock uds=PATH if it has vsock, and
                         --console as usual
  --console DEST         serial console output: stdout (default; then stdin
                         is the console's input), none, or a file path
                         (appended)
  -h, --help             this text

EXIT STATUS: 0 after a guest reset or power-off event, or SIGTERM/SIGINT (a
Linux guest ends by rebooting, reboot=k: without ACPI its poweroff only
halts the CPUs); otherwise non-zero with one line on stderr: 1 bad
configuration or setup failure,
2 triple fault, 3 KVM internal error or entry failure, 4 vCPU error,
5 device error.
";

fn flag_value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a String> {
    it.next()
        .ok_or_else(|| Error::Flag(format!("{flag} needs a value")))
}

fn parse_u64(flag: &str, v: &str) -> Result<u64> {
    v.parse()
        .map_err(|_| Error::Flag(format!("{flag}: {v:?} is not a number")))
}

/// Parses `--block` values: `PATH[,ro][,id=ID]`, PATH `placeholder` for
/// a slot without a backing.
pub fn parse_block(v: &str) -> Result<BlockConfig> {
    let mut parts = v.split(',');
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::Flag("--block needs a path".into()))?;
    let mut b = BlockConfig {
        path: (path != PLACEHOLDER).then(|| PathBuf::from(path)),
        placeholder: path == PLACEHOLDER,
        ..Default::default()
    };
    for p in parts {
        match p {
            "ro" | "readonly" => b.read_only = true,
            "rw" => b.read_only = false,
            _ if p.starts_with("id=") => b.id = Some(p[3..].to_string()),
            _ if p.starts_with("bw=") => b.bytes_per_sec = flag_rate("--block bw", &p[3..])?,
            _ if p.starts_with("iops=") => b.ops_per_sec = flag_rate("--block iops", &p[5..])?,
            _ => return Err(Error::Flag(format!("--block: unknown option {p:?}"))),
        }
    }
    Ok(b)
}

/// A rate limit from its two optional rates; zero is refused (a device
/// that may never move anything is a mistake, not a limit).
fn rate_limit(what: &str, bytes: Option<u64>, ops: Option<u64>) -> Result<RateLimit> {
    if bytes == Some(0) || ops == Some(0) {
        return Err(Error::Flag(format!("{what}: a rate limit must be above 0")));
    }
    Ok(RateLimit { bytes, ops })
}

/// Parses a rate flag value (`1000`, `64K`, `10M`, `1G`).
fn flag_rate(flag: &str, v: &str) -> Result<Option<u64>> {
    parse_rate(v).map(Some).ok_or_else(|| {
        Error::Flag(format!(
            "{flag}: bad rate {v:?} (a number above 0, optionally with K, M or G)"
        ))
    })
}

/// Parses `--net` values: `TAP[,mac=MAC]`, TAP `placeholder` for a slot
/// without a tap.
pub fn parse_net(v: &str) -> Result<NetConfig> {
    let mut parts = v.split(',');
    let tap = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::Flag("--net needs a tap name".into()))?;
    let mut n = NetConfig {
        tap: (tap != PLACEHOLDER).then(|| tap.to_string()),
        placeholder: tap == PLACEHOLDER,
        ..Default::default()
    };
    for p in parts {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        let flag = format!("--net {key}");
        match key {
            "mac" => n.mac = Some(value.to_string()),
            "rx-bw" => n.rx_bytes_per_sec = flag_rate(&flag, value)?,
            "rx-pps" => n.rx_frames_per_sec = flag_rate(&flag, value)?,
            "tx-bw" => n.tx_bytes_per_sec = flag_rate(&flag, value)?,
            "tx-pps" => n.tx_frames_per_sec = flag_rate(&flag, value)?,
            _ => return Err(Error::Flag(format!("--net: unknown option {p:?}"))),
        }
    }
    Ok(n)
}

/// Parses `--vsock` values: `[cid=CID,]uds=PATH`.
pub fn parse_vsock(v: &str) -> Result<VsockConfig> {
    let (mut cid, mut uds) = (None, None);
    for p in v.split(',') {
        if let Some(c) = p.strip_prefix("cid=") {
            cid = Some(parse_u64("--vsock cid", c)?);
        } else if let Some(u) = p.strip_prefix("uds=") {
            uds = Some(PathBuf::from(u));
        } else {
            return Err(Error::Flag(format!("--vsock: unknown option {p:?}")));
        }
    }
    match uds {
        Some(uds_path) => Ok(VsockConfig {
            guest_cid: cid,
            uds_path,
        }),
        None => Err(Error::Flag("--vsock needs cid=CID,uds=PATH".into())),
    }
}

/// Parses a MAC address.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(Error::BadMac(s.into()));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(Error::BadMac(s.into()));
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| Error::BadMac(s.into()))?;
    }
    Ok(mac)
}

/// What the command line asked for.
pub enum Command {
    /// Print help.
    Help,
    /// Boot this VM.
    Run(Box<VmConfig>),
}

/// Reads a JSON config file.
pub fn from_file(path: &Path) -> Result<VmConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::ReadFile(path.into(), e))?;
    serde_json::from_str(&text).map_err(|e| Error::Parse(path.into(), e.to_string()))
}

/// Parses the arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Command> {
    let mut cfg = VmConfig::default();
    let mut flags = VmConfig::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        // Accept both "--flag value" and "--flag=value".
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => flag_value(flag, &mut it).cloned(),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--config" => cfg = from_file(Path::new(&value()?))?,
            "--kernel" => flags.kernel = Some(value()?.into()),
            "--cmdline" => flags.cmdline = Some(value()?),
            "--initramfs" => flags.initramfs = Some(value()?.into()),
            "--vcpus" => flags.vcpus = Some(parse_u64(flag, &value()?)?),
            "--memory" => flags.memory_mib = Some(parse_u64(flag, &value()?)?),
            "--block" => flags.block.push(parse_block(&value()?)?),
            "--net" => flags.net.push(parse_net(&value()?)?),
            "--vsock" => flags.vsock = Some(parse_vsock(&value()?)?),
            "--console" => flags.console = Console::parse(&value()?),
            "--api-socket" => flags.api_socket = Some(value()?.into()),
            "--restore" => flags.restore = Some(value()?.into()),
            other => {
                return Err(Error::Flag(format!(
                    "unknown option {other:?} (see --help)"
                )))
            }
        }
    }
    // Flags win over the file.
    cfg.kernel = flags.kernel.or(cfg.kernel);
    cfg.cmdline = flags.cmdline.or(cfg.cmdline);
    cfg.initramfs = flags.initramfs.or(cfg.initramfs);
    cfg.vcpus = flags.vcpus.or(cfg.vcpus);
    cfg.memory_mib = flags.memory_mib.or(cfg.memory_mib);
    cfg.block.extend(flags.block);
    cfg.net.extend(flags.net);
    cfg.vsock = flags.vsock.or(cfg.vsock);
    if flags.console != Console::Stdout {
        cfg.console = flags.console;
    }
    cfg.api_socket = flags.api_socket.or(cfg.api_socket);
    cfg.restore = flags.restore;
    Ok(Command::Run(Box::new(cfg)))
}

fn readable_file(what: &'static str, path: &Path) -> Result<()> {
    match std::fs::File::open(path) {
        Ok(f) if f.metadata().map(|m| !m.is_dir()).unwrap_or(false) => Ok(()),
        _ => Err(Error::BadFile {
            what,
            path: path.into(),
        }),
    }
}

/// Whether a network interface of that name exists in our namespace.
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

impl VmConfig {
    /// Checks everything that can be checked before booting.
    pub fn validate(&self) -> Result<ValidConfig> {
        let kernel = self.kernel.clone().ok_or(Error::MissingKernel)?;
        readable_file("kernel", &kernel)?;
        let memory_mib = self.memory_mib.ok_or(Error::MissingMemory)?;
        if memory_mib == 0 || memory_mib > MAX_MEMORY_MIB {
            return Err(Error::BadMemory(memory_mib));
        }
        let vcpus = self.vcpus.unwrap_or(1);
        if vcpus == 0 || vcpus > u64::from(MAX_CPUS) {
            return Err(Error::BadVcpus(vcpus));
        }
        if let Some(i) = &self.initramfs {
            readable_file("initramfs", i)?;
        }
        let block = self.valid_blocks()?;
        let net = self.valid_nets()?;
        let vsock = match &self.vsock {
            Some(v) => {
                let cid = v
                    .guest_cid
                    .ok_or_else(|| Error::Flag("--vsock needs cid=CID,uds=PATH".into()))?;
                Some((valid_cid(cid)?, valid_uds(&v.uds_path)?))
            }
            None => None,
        };
        let devices = self.block.len() + self.net.len() + usize::from(vsock.is_some());
        if devices > (IRQ_MAX - VIRTIO_IRQ_BASE + 1) as usize {
            return Err(Error::TooManyDevices(devices));
        }
        Ok(ValidConfig {
            kernel,
            cmdline: self
                .cmdline
                .clone()
                .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
            initramfs: self.initramfs.clone(),
            vcpus: vcpus as u8,
            memory_mib,
            block,
            net,
            vsock,
            console: self.console.clone(),
            api_socket: self
                .api_socket
                .as_deref()
                .map(valid_api_socket)
                .transpose()?,
        })
    }

    fn valid_blocks(&self) -> Result<Vec<ValidBlock>> {
        let mut out = Vec::new();
        for b in &self.block {
            let path = match (&b.path, b.placeholder) {
                (Some(p), false) => {
                    readable_file("block device", p)?;
                    Some(p.clone())
                }
                (None, true) => None,
                _ => {
                    return Err(Error::Flag(
                        "a block device needs either a path or placeholder".into(),
                    ))
                }
            };
            if b.id.as_ref().is_some_and(|id| id.len() > 20) {
                return Err(Error::Flag(format!(
                    "block device id {:?} is longer than 20 bytes",
                    b.id
                )));
            }
            out.push(ValidBlock {
                path,
                read_only: b.read_only,
                id: b.id.clone(),
                rate: rate_limit("block device", b.bytes_per_sec, b.ops_per_sec)?,
            });
        }
        Ok(out)
    }

    fn valid_nets(&self) -> Result<Vec<ValidNet>> {
        let mut out: Vec<ValidNet> = Vec::new();
        for n in &self.net {
            let tap = match (&n.tap, n.placeholder) {
                (Some(t), false) => {
                    if !interface_exists(t) {
                        return Err(Error::NoTap(t.clone()));
                    }
                    if out.iter().any(|v| v.tap.as_ref() == Some(t)) {
                        return Err(Error::Duplicate(format!("tap device {t} is used twice")));
                    }
                    Some(t.clone())
                }
                (None, true) => None,
                _ => {
                    return Err(Error::Flag(
                        "a net device needs either a tap or placeholder".into(),
                    ))
                }
            };
            let mac = n.mac.as_deref().map(parse_mac).transpose()?;
            out.push(ValidNet {
                tap,
                mac,
                rx_rate: rate_limit("net device rx", n.rx_bytes_per_sec, n.rx_frames_per_sec)?,
                tx_rate: rate_limit("net device tx", n.tx_bytes_per_sec, n.tx_frames_per_sec)?,
            });
        }
        Ok(out)
    }

    /// Checks a restore request: the snapshot directory, and the device
    /// backings (matched against the snapshot's slots when it is read).
    pub fn validate_restore(&self) -> Result<ValidRestore> {
        let dir = self
            .restore
            .clone()
            .ok_or(Error::NotWithRestore("--restore"))?;
        for (given, flag) in [
            (self.kernel.is_some(), "--kernel"),
            (self.initramfs.is_some(), "--initramfs"),
            (self.cmdline.is_some(), "--cmdline"),
            (self.memory_mib.is_some(), "--memory"),
            (self.vcpus.is_some(), "--vcpus"),
        ] {
            if given {
                return Err(Error::NotWithRestore(flag));
            }
        }
        if !dir.is_dir() {
            return Err(Error::NoSnapshotDir(dir));
        }
        let vsock = match &self.vsock {
            Some(v) => Some((
                v.guest_cid.map(valid_cid).transpose()?,
                valid_uds(&v.uds_path)?,
            )),
            None => None,
        };
        Ok(ValidRestore {
            dir,
            block: self.valid_blocks()?,
            net: self.valid_nets()?,
            vsock,
            console: self.console.clone(),
            api_socket: self
                .api_socket
                .as_deref()
                .map(valid_api_socket)
                .transpose()?,
        })
    }
}

fn valid_cid(cid: u64) -> Result<u32> {
    if cid < 3 || cid >= u64::from(u32::MAX) {
        return Err(Error::BadCid(cid));
    }
    Ok(cid as u32)
}

/// Whether `p` names a file in an existing directory.
fn in_existing_dir(p: &Path) -> bool {
    let parent = p.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    });
    parent.is_some_and(Path::is_dir) && p.file_name().is_some()
}

fn valid_uds(p: &Path) -> Result<PathBuf> {
    if !in_existing_dir(p) {
        return Err(Error::BadUds(p.into()));
    }
    Ok(p.into())
}

fn valid_api_socket(p: &Path) -> Result<PathBuf> {
    if !in_existing_dir(p) {
        return Err(Error::BadApiSocket(p.into()));
    }
    Ok(p.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str]) -> Result<VmConfig> {
        match parse_args(&args(a))? {
            Command::Run(c) => Ok(*c),
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn minimal_flags_validate() {
        let k = tempfile::NamedTempFile::new().unwrap();
        let c = run(&["--kernel", k.path().to_str().unwrap(), "--memory", "64"]).unwrap();
        let v = c.validate().unwrap();
        assert_eq!((v.vcpus, v.memory_mib), (1, 64));
        assert_eq!(v.cmdline, DEFAULT_CMDLINE);
    }

    #[test]
    fn bad_configs_fail_with_one_line_naming_the_problem() {
        let k = tempfile::NamedTempFile::new().unwrap();
        let kp = k.path().to_str().unwrap();
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--memory", "64"], "no kernel"),
            (vec!["--kernel", kp], "no memory"),
            (vec!["--kernel", kp, "--memory", "0"], "memory size 0"),
            (
                vec!["--kernel", "/nonexistent/k", "--memory", "8"],
                "kernel /nonexistent/k",
            ),
            (
                vec!["--kernel", kp, "--memory", "8", "--vcpus", "0"],
                "vCPU count 0",
            ),
            (
                vec!["--kernel", kp, "--memory", "8", "--net", "hullnotap0"],
                "tap device hullnotap0 does not exist",
            ),
            (
                vec![
                    "--kernel",
                    kp,
                    "--memory",
                    "8",
                    "--vsock",
                    "cid=2,uds=/tmp/x",
                ],
                "CID 2",
            ),
            (
                vec![
                    "--kernel",
                    kp,
                    "--memory",
                    "8",
                    "--block",
                    "/nonexistent/disk",
                ],
                "block device /nonexistent/disk",
            ),
        ];
        for (a, want) in cases {
            let e = run(&a).and_then(|c| c.validate()).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e:?} lacks {want:?}");
            assert!(!e.contains('\n'));
        }
        assert!(run(&["--bogus"])
            .unwrap_err()
            .to_string()
            .contains("--bogus"));
        assert!(run(&["--memory"])
            .unwrap_err()
            .to_string()
            .contains("needs a value"));
    }

    #[test]
    fn config_file_rejects_unknown_fields_and_flags_override() {
        let k = tempfile::NamedTempFile::new().unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(
            f,
            r#"{{"kernel": "{}", "memory_mib": 32, "colour": "red"}}"#,
            k.path().display()
        )
        .unwrap();
        let e = run(&["--config", f.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");

        let mut g = tempfile::NamedTempFile::new().unwrap();
        write!(
            g,
            r#"{{"kernel": "{}", "memory_mib": 32, "vcpus": 2, "block": [{{"path": "{}", "read_only": true}}], "console": "none"}}"#,
            k.path().display(),
            k.path().display()
        )
        .unwrap();
        let c = run(&["--config", g.path().to_str().unwrap(), "--memory", "48"]).unwrap();
        let v = c.validate().unwrap();
        assert_eq!((v.memory_mib, v.vcpus, v.block.len()), (48, 2, 1));
        assert!(v.block[0].read_only);
        assert_eq!(v.console, Console::None);
    }

    #[test]
    fn device_flag_syntax() {
        let b = parse_block("/d,ro,id=disk0").unwrap();
        assert!(b.read_only);
        assert_eq!(b.id.as_deref(), Some("disk0"));
        assert!(parse_block("/d,bogus").is_err());
        let p = parse_block("placeholder,id=slot").unwrap();
        assert!(p.placeholder && p.path.is_none());
        assert!(parse_net("placeholder").unwrap().placeholder);
        assert_eq!(
            parse_net("tap0,mac=02:00:00:00:00:01")
                .unwrap()
                .mac
                .as_deref(),
            Some("02:00:00:00:00:01")
        );
        assert_eq!(parse_mac("02:00:00:00:00:0a").unwrap(), [2, 0, 0, 0, 0, 10]);
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
        let v = parse_vsock("cid=3,uds=/tmp/v.sock").unwrap();
        assert_eq!(v.guest_cid, Some(3));
        assert!(parse_vsock("cid=3").is_err());
        assert_eq!(parse_vsock("uds=/tmp/v").unwrap().guest_cid, None);
    }

    #[test]
    fn rate_limit_flags_and_fields() {
        let b = parse_block("placeholder,bw=10M,iops=500").unwrap();
        assert_eq!(
            (b.bytes_per_sec, b.ops_per_sec),
            (Some(10 << 20), Some(500))
        );
        let n = parse_net("placeholder,rx-bw=1M,rx-pps=100,tx-bw=64K,tx-pps=50").unwrap();
        assert_eq!(
            (
                n.rx_bytes_per_sec,
                n.rx_frames_per_sec,
                n.tx_bytes_per_sec,
                n.tx_frames_per_sec
            ),
            (Some(1 << 20), Some(100), Some(65536), Some(50))
        );
        for bad in ["placeholder,bw=0", "placeholder,iops=x", "placeholder,bw="] {
            let e = parse_block(bad).unwrap_err().to_string();
            assert!(e.contains("bad rate") && !e.contains('\n'), "{bad}: {e}");
        }
        assert!(parse_net("placeholder,rx-bw=fast").is_err());
        assert!(parse_net("placeholder,rx-bps=1").is_err());
        let k = tempfile::NamedTempFile::new().unwrap();
        let cfg: VmConfig = serde_json::from_value(serde_json::json!({
            "kernel": k.path(),
            "memory_mib": 32,
            "block": [{"placeholder": true, "bytes_per_sec": 4096}],
            "net": [{"placeholder": true, "tx_frames_per_sec": 10}],
        }))
        .unwrap();
        let v = cfg.validate().unwrap();
        assert_eq!(
            v.block[0].rate,
            RateLimit {
                bytes: Some(4096),
                ops: None
            }
        );
        assert_eq!(v.net[0].tx_rate.ops, Some(10));
        assert!(!v.net[0].rx_rate.is_some());
        let zero: VmConfig = serde_json::from_value(serde_json::json!({
            "kernel": k.path(),
            "memory_mib": 32,
            "block": [{"placeholder": true, "ops_per_sec": 0}],
        }))
        .unwrap();
        let e = zero.validate().unwrap_err().to_string();
        assert_eq!(e, "block device: a rate limit must be above 0");
    }

    #[test]
    fn restore_takes_backings_but_not_what_the_snapshot_holds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let disk = dir.path().join("d.img");
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let sock = dir.path().join("v.sock");
        let c = run(&[
            "--restore",
            d,
            "--block",
            "placeholder",
            "--block",
            &format!("{},ro", disk.display()),
            "--net",
            "placeholder,mac=02:00:00:00:00:07",
            "--vsock",
            &format!("uds={}", sock.display()),
            "--api-socket",
            &format!("{d}/api"),
        ])
        .unwrap();
        let r = c.validate_restore().unwrap();
        assert_eq!(r.block[0].path, None);
        assert!(r.block[1].read_only);
        assert_eq!(r.net[0].tap, None);
        assert_eq!(r.net[0].mac, Some([2, 0, 0, 0, 0, 7]));
        assert_eq!(r.vsock, Some((None, sock.clone())));
        for (flag, value) in [
            ("--kernel", d),
            ("--memory", "8"),
            ("--vcpus", "2"),
            ("--cmdline", "x"),
        ] {
            let e = run(&["--restore", d, flag, value])
                .unwrap()
                .validate_restore()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("{flag} comes from the snapshot")),
                "{e}"
            );
        }
        let e = run(&["--restore", "/nonexistent/snap"])
            .unwrap()
            .validate_restore()
            .unwrap_err();
        assert!(matches!(e, Error::NoSnapshotDir(_)));
        // A cold boot needs the CID, and a placeholder has no path.
        let k = tempfile::NamedTempFile::new().unwrap();
        let kp = k.path().to_str().unwrap();
        let u = format!("uds={}", sock.display());
        let e = run(&["--kernel", kp, "--memory", "8", "--vsock", &u])
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cid=CID"), "{e}");
        let v = run(&[
            "--kernel",
            kp,
            "--memory",
            "8",
            "--block",
            "placeholder,ro,id=s",
        ])
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(v.block[0].path, None);
        let e = run(&[
            "--kernel",
            kp,
            "--memory",
            "8",
            "--api-socket",
            "/nonexistent/x/api",
        ])
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(matches!(e, Error::BadApiSocket(_)));
    }

    #[test]
    fn help_documents_every_flag() {
        for f in [
            "--config",
            "--kernel",
            "--cmdline",
            "--initramfs",
            "--vcpus",
            "--memory",
            "--block",
            "--net",
            "--vsock",
            "--console",
            "--api-socket",
            "--restore",
        ] {
            assert!(USAGE.contains(f), "{f}");
        }
        assert!(matches!(parse_args(&args(&["--help"])), Ok(Command::Help)));
    }
}
