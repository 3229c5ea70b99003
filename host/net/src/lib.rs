//! Container networks, inside network namespaces hull owns: each network
//! is a bridge in `hull-net-<name>`, each sandbox on it a tap enslaved to
//! that bridge, with an address from the network's subnet. Nothing is
//! added to the host's own network: the only way in from the host is a
//! published port, forwarded by the sandbox's supervisor ([`forward`]).
//!
//! ```text
//! <root>/networks/<name>.json          the definition (kept until `network rm`)
//! <run dir>/networks/<name>.json       who has which address now
//! <run dir>/networks/<name>.dns        the network's name server process
//! ```
//!
//! Every change happens under a flock of the run dir itself.
//!
//! The namespace is made when the first sandbox joins and deleted when the
//! last one leaves (a host reboot wipes it with `/run`).

pub mod dns;
pub mod forward;
mod netns;
mod pin;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hull_sandbox::private;
use hull_sandbox::process::{now_nanos, ProcessRef};
use thiserror::Error;

/// The network containers join unless told otherwise.
pub const DEFAULT_NETWORK: &str = "bridge";
/// What `--network none` names.
pub const NO_NETWORK: &str = "none";
/// The bridge's name inside a network's namespace.
const BRIDGE: &str = "hull0";
const MTU: u32 = 1500;
/// The name (after the prefix) of the namespace of a warm pool's taps;
/// network names cannot start with `@`.
const POOL_NAMESPACE: &str = "@pool";

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("network {name} is in use by {users}")]
    InUse { name: String, users: String },
    #[error("invalid network name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 20 characters")]
    InvalidName(String),
    #[error("invalid subnet {0:?}: give an IPv4 a.b.c.d/len with len between 16 and 29")]
    InvalidSubnet(String),
    #[error("network {0} has no free address left")]
    Full(String),
    #[error("no free subnet left under 10.89.0.0/16; give --subnet")]
    NoSubnet,
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("run ip (install iproute2)")]
    NoIp(#[source] std::io::Error),
    /// `ip` failed; what it said on stderr.
    #[error("ip {args}: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("run nft (install nftables): it pins each tap's addresses")]
    NoNft(#[source] std::io::Error),
    /// `nft` refused a ruleset; what it said on stderr.
    #[error("nft in {namespace}: {stderr}")]
    Nft { namespace: String, stderr: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// A network as the user defined it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkDef {
    pub name: String,
    /// e.g. `10.89.0.0/24`.
    pub subnet: String,
    pub gateway: String,
    /// Unix nanoseconds.
    pub created: u64,
}

impl NetworkDef {
    fn prefix(&self) -> (Ipv4Addr, u8) {
        parse_subnet(&self.subnet).expect("definitions hold valid subnets")
    }
}

/// The run dir of a standard installation, whose namespaces are plainly
/// `hull-net-<name>`; others (tests, several users) get a tag from their
/// run dir so that their namespaces never meet.
const STANDARD_RUNTIME: &str = "/run/hull/networks";

fn namespace_prefix(runtime: &Path) -> String {
    if runtime == Path::new(STANDARD_RUNTIME) {
        return "hull-net-".into();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(runtime.as_os_str().as_encoded_bytes());
    format!("hull-net-{}-", hex::encode(&digest[..3]))
}

/// Who holds which address.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocations {
    /// address → the sandbox holding it.
    by_ip: BTreeMap<String, Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Member {
    container_id: String,
    /// Its name and aliases, for the other members' `/etc/hosts`.
    names: Vec<String>,
}

/// A sandbox's place on a network, for as long as its VM runs.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub network: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub tap: String,
    pub netns: PathBuf,
    pub mtu: u32,
    /// The other members now: (address, names). Later ones are found
    /// through the network's name server at the gateway.
    pub peers: Vec<(Ipv4Addr, Vec<String>)>,
}

pub struct Networks {
    definitions: PathBuf,
    runtime: PathBuf,
    namespace_prefix: String,
}

impl Networks {
    pub fn new(root: &Path, run_dir: &Path) -> Self {
        let runtime = run_dir.join("networks");
        Self {
            definitions: root.join("networks"),
            namespace_prefix: namespace_prefix(&runtime),
            runtime,
        }
    }

    /// The namespace of network `name`, as `ip netns` names it.
    pub fn namespace(&self, name: &str) -> String {
        format!("{}{name}", self.namespace_prefix)
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.definitions.join(format!("{name}.json"))
    }

    fn alloc_path(&self, name: &str) -> PathBuf {
        self.runtime.join(format!("{name}.json"))
    }

    /// Holds the lock for network changes: a flock on the run dir itself,
    /// which outlives every network (a lock file would be left behind).
    fn lock(&self) -> Result<File, NetworkError> {
        let run_dir = self.runtime.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(run_dir).map_err(io_err(format!("create {}", run_dir.display())))?;
        let dir = File::open(run_dir).map_err(io_err(format!("open {}", run_dir.display())))?;
        rustix::fs::flock(dir.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(format!("lock {}", run_dir.display()))(e.into()))?;
        Ok(dir)
    }

    /// Writes a network's allocations, or removes the file (and the
    /// then empty runtime dir) when there are none. Under the lock.
    fn write_allocations(&self, name: &str, allocations: &Allocations) -> Result<(), NetworkError> {
        if allocations.by_ip.is_empty() {
            let _ = fs::remove_file(self.alloc_path(name));
            let _ = fs::remove_dir(&self.runtime);
            return Ok(());
        }
        private::ensure_dir(&self.runtime)
            .map_err(io_err(format!("create {}", self.runtime.display())))?;
        write_json(&self.alloc_path(name), allocations)
    }

    /// Defines a network; without a subnet, the first free 10.89.N.0/24.
    pub fn create(&self, name: &str, subnet: Option<&str>) -> Result<NetworkDef, NetworkError> {
        validate_name(name)?;
        if name == NO_NETWORK {
            return Err(NetworkError::Exists(name.into()));
        }
        let _lock = self.lock()?;
        if self.def_path(name).exists() {
            return Err(NetworkError::Exists(name.into()));
        }
        let subnet = match subnet {
            Some(s) => {
                let (net, prefix) =
                    parse_subnet(s).ok_or_else(|| NetworkError::InvalidSubnet(s.into()))?;
                format!("{net}/{prefix}")
            }
            None => self.free_subnet(name)?,
        };
        let (net, _) = parse_subnet(&subnet).expect("just checked");
        let def = NetworkDef {
            name: name.into(),
            gateway: Ipv4Addr::from(u32::from(net) + 1).to_string(),
            subnet,
            created: now_nanos(),
        };
        fs::create_dir_all(&self.definitions)
            .map_err(io_err(format!("create {}", self.definitions.display())))?;
        write_json(&self.def_path(name), &def)?;
        Ok(def)
    }

    fn free_subnet(&self, name: &str) -> Result<String, NetworkError> {
        if name == DEFAULT_NETWORK {
            return Ok("10.89.0.0/24".into());
        }
        let used: Vec<String> = self.list().into_iter().map(|d| d.subnet).collect();
        (1..=255u8)
            .map(|n| format!("10.89.{n}.0/24"))
            .find(|s| !used.contains(s))
            .ok_or(NetworkError::NoSubnet)
    }

    pub fn get(&self, name: &str) -> Result<NetworkDef, NetworkError> {
        let path = self.def_path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_err(format!("parse {}", path.display()))(std::io::Error::other(e))),
            Err(_) if name == DEFAULT_NETWORK => match self.create(name, None) {
                Err(NetworkError::Exists(_)) => self.get(name),
                other => other,
            },
            Err(_) => Err(NetworkError::NotFound(name.into())),
        }
    }

    /// Every defined network (the default one once used).
    pub fn list(&self) -> Vec<NetworkDef> {
        let mut all: Vec<NetworkDef> = fs::read_dir(&self.definitions)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The containers (ids) on a network now.
    pub fn members(&self, name: &str) -> Vec<String> {
        self.read_allocations(name)
            .by_ip
            .values()
            .map(|m| m.container_id.clone())
            .collect()
    }

    /// Removes a network that no sandbox is on.
    pub fn remove(&self, name: &str) -> Result<(), NetworkError> {
        let def = self.get(name)?;
        let _lock = self.lock()?;
        let members = self.members(name);
        if !members.is_empty() {
            let users: Vec<String> = members.iter().map(|id| id[..12].to_string()).collect();
            return Err(NetworkError::InUse {
                name: name.into(),
                users: users.join(", "),
            });
        }
        netns::delete(&self.namespace(&def.name));
        fs::remove_file(self.def_path(name))
            .map_err(io_err(format!("remove {}", self.def_path(name).display())))
    }

    fn read_allocations(&self, name: &str) -> Allocations {
        fs::read(self.alloc_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Puts a sandbox on `name`: an address, a tap on the bridge (the
    /// namespace and bridge are made if this is the first sandbox).
    pub fn attach(
        &self,
        name: &str,
        container_id: &str,
        names: Vec<String>,
    ) -> Result<Attachment, NetworkError> {
        self.attach_with(name, container_id, names, None)
    }

    /// The namespace where a warm pool keeps the taps of its clones.
    pub fn pool_namespace(&self) -> String {
        format!("{}{POOL_NAMESPACE}", self.namespace_prefix)
    }

    /// Makes `tap` in the pool's namespace (made if missing) for a clone
    /// to open; returns the namespace's path.
    pub fn add_pool_tap(&self, tap: &str) -> Result<PathBuf, NetworkError> {
        let namespace = self.pool_namespace();
        netns::ensure_bare(&namespace)?;
        netns::add_loose_tap(&namespace, tap)?;
        Ok(netns::path(&namespace))
    }

    /// Removes a pooled tap that was never taken.
    pub fn remove_pool_tap(&self, tap: &str) {
        netns::delete_link(&self.pool_namespace(), tap);
    }

    /// Removes the pool's namespace with whatever taps are left in it.
    pub fn remove_pool_namespace(&self) {
        netns::delete(&self.pool_namespace());
    }

    /// As [`attach`](Self::attach), but the sandbox's tap is `ready`, made
    /// ahead in [`pool_namespace`](Self::pool_namespace) and already open
    /// by a restored clone's hypervisor: it is moved onto the network.
    pub fn attach_with(
        &self,
        name: &str,
        container_id: &str,
        names: Vec<String>,
        ready: Option<&str>,
    ) -> Result<Attachment, NetworkError> {
        let def = self.get(name)?;
        let _lock = self.lock()?;
        let mut allocations = self.read_allocations(name);
        // A stale entry of this container (its supervisor was killed).
        allocations
            .by_ip
            .retain(|_, m| m.container_id != container_id);
        let (net, prefix) = def.prefix();
        let gateway: Ipv4Addr = def
            .gateway
            .parse()
            .expect("definitions hold valid gateways");
        let size = 1u32 << (32 - prefix);
        let address = (2..size - 1)
            .map(|i| Ipv4Addr::from(u32::from(net) + i))
            .find(|a| *a != gateway && !allocations.by_ip.contains_key(&a.to_string()))
            .ok_or_else(|| NetworkError::Full(name.into()))?;
        let namespace = self.namespace(&def.name);
        netns::ensure(&namespace, BRIDGE, &format!("{gateway}/{prefix}"))?;
        // The first member's failure must not leave the namespace behind.
        let first = allocations.by_ip.is_empty();
        let abandon = |tap: Option<&str>| {
            if let Some(tap) = tap {
                netns::delete_link(&namespace, tap);
            }
            if first {
                self.stop_dns(name);
                netns::delete(&namespace);
            }
        };
        if let Err(e) = self.ensure_dns(name, gateway) {
            tracing::warn!("network {name}: no name server: {e}");
        }
        let tap = tap_name(container_id);
        let mac = mac_of(address);
        let joined = match ready {
            Some(ready) => {
                netns::adopt_tap(&self.pool_namespace(), ready, &namespace, &tap, BRIDGE)
            }
            None => netns::add_tap(&namespace, &tap, BRIDGE),
        };
        if let Err(e) = joined {
            abandon(None);
            return Err(e);
        }
        // Until this is in, the bridge drops all the tap sends.
        if let Err(e) = pin::pin(&namespace, &tap, &mac, address) {
            abandon(Some(&tap));
            return Err(e);
        }
        let peers = allocations
            .by_ip
            .iter()
            .filter_map(|(ip, m)| Some((ip.parse().ok()?, m.names.clone())))
            .collect();
        allocations.by_ip.insert(
            address.to_string(),
            Member {
                container_id: container_id.into(),
                names,
            },
        );
        if let Err(e) = self.write_allocations(name, &allocations) {
            abandon(Some(&tap));
            return Err(e);
        }
        Ok(Attachment {
            network: name.into(),
            address,
            prefix,
            gateway,
            mac,
            tap,
            netns: netns::path(&namespace),
            mtu: MTU,
            peers,
        })
    }

    /// Takes a sandbox off `name`: its tap and address go, and with the
    /// last sandbox the namespace. Safe to call twice.
    pub fn detach(&self, name: &str, container_id: &str) {
        let Ok(_lock) = self.lock() else {
            return;
        };
        let namespace = self.namespace(name);
        let tap = tap_name(container_id);
        netns::delete_link(&namespace, &tap);
        let mut allocations = self.read_allocations(name);
        allocations
            .by_ip
            .retain(|_, m| m.container_id != container_id);
        if allocations.by_ip.is_empty() {
            self.stop_dns(name);
            netns::delete(&namespace);
        } else if let Err(e) = pin::unpin(&namespace, &tap) {
            tracing::warn!("network {name}: {tap}'s pin stays: {e}");
        }
        let _ = self.write_allocations(name, &allocations);
    }
}

impl Networks {
    fn dns_path(&self, name: &str) -> PathBuf {
        self.runtime.join(format!("{name}.dns"))
    }

    /// Starts the network's name server unless it runs. Under the lock.
    fn ensure_dns(&self, name: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
        let running: Option<ProcessRef> = fs::read(self.dns_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if running.is_some_and(|p| p.is_alive()) {
            return Ok(());
        }
        private::ensure_dir(&self.runtime)?;
        let run_dir = self.runtime.parent().unwrap_or(Path::new("/"));
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .arg("--run-dir")
            .arg(run_dir)
            .arg(dns::COMMAND)
            .arg("--netns")
            .arg(netns::path(&self.namespace(name)))
            .arg("--listen")
            .arg(gateway.to_string())
            .arg("--allocations")
            .arg(self.alloc_path(name))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        hull_sandbox::process::in_new_session(&mut command);
        let child = command.spawn()?;
        let process = ProcessRef::of(child.id() as i32)
            .ok_or_else(|| std::io::Error::other("the name server exited at once"))?;
        let bytes = serde_json::to_vec(&process).map_err(std::io::Error::other)?;
        private::create_file(&self.dns_path(name))?.write_all(&bytes)
    }

    /// Stops the network's name server. Under the lock.
    fn stop_dns(&self, name: &str) {
        let running: Option<ProcessRef> = fs::read(self.dns_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(p) = running.filter(ProcessRef::is_alive) {
            // SAFETY: kill of the pid whose start time says it is ours.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        let _ = fs::remove_file(self.dns_path(name));
    }
}

/// Takes a container off its network given only the run dir (for `rm`
/// after its supervisor died); the same as [`Networks::detach`].
pub fn release(run_dir: &Path, name: &str, container_id: &str) {
    Networks::new(Path::new(""), run_dir).detach(name, container_id);
}

/// A sandbox's MAC, from its address (locally administered, unicast).
fn mac_of(address: Ipv4Addr) -> String {
    let o = address.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// `tap` + 12 hex digits: within the 15 characters of an interface name.
fn tap_name(container_id: &str) -> String {
    format!("tap{}", &container_id[..12])
}

pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 20;
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidName(name.into()))
    }
}

/// `a.b.c.d/len` → (network address, len); host bits must be zero.
fn parse_subnet(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    if !(16..=29).contains(&prefix) {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    (u32::from(addr) & !mask == 0).then_some((addr, prefix))
}

/// Owner-only, whole or not at all (synced before its rename).
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), NetworkError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| io_err(format!("encode {}", path.display()))(std::io::Error::other(e)))?;
    private::write_atomic(path, &bytes).map_err(io_err(format!("write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_names_are_checked() {
        assert_eq!(
            parse_subnet("10.89.3.0/24"),
            Some(("10.89.3.0".parse().unwrap(), 24))
        );
        assert!(parse_subnet("10.89.3.1/24").is_none(), "host bits set");
        assert!(parse_subnet("10.0.0.0/8").is_none(), "too big");
        assert!(parse_subnet("10.89.3.0").is_none());
        assert!(validate_name("front-1").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name(&"n".repeat(21)).is_err());
        assert_eq!(tap_name(&"ab".repeat(32)).len(), 15);
    }

    #[test]
    fn definitions_get_free_subnets_and_cannot_clash() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::new(&dir.path().join("root"), &dir.path().join("run"));
        let default = nets.get(DEFAULT_NETWORK).unwrap();
        assert_eq!(default.subnet, "10.89.0.0/24");
        assert_eq!(default.gateway, "10.89.0.1");
        let a = nets.create("a", None).unwrap();
        assert_eq!(a.subnet, "10.89.1.0/24");
        let b = nets.create("b", Some("192.168.7.0/24")).unwrap();
        assert_eq!(b.gateway, "192.168.7.1");
        assert!(matches!(
            nets.create("a", None),
            Err(NetworkError::Exists(_))
        ));
        assert!(matches!(nets.get("zzz"), Err(NetworkError::NotFound(_))));
        assert_eq!(nets.list().len(), 3);
        nets.remove("a").unwrap();
        assert_eq!(nets.list().len(), 2);
    }
}
