//! Command-line arguments, apart from what the commands do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hull_container::oci::limits::LimitFlags;
use hull_container::units::parse_bytes;

/// hull runs each OCI container in its own microVM.
#[derive(Debug, Parser)]
#[command(name = "hull", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Where images and disks are kept.
    #[arg(
        long,
        env = "HULL_ROOT",
        default_value = "/var/lib/hull",
        global = true
    )]
    pub root: PathBuf,
    /// Where running sandboxes keep their sockets and logs.
    #[arg(long, env = "HULL_RUN_DIR", default_value = "/run/hull", global = true)]
    pub run_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container, in its own VM.
    Run(Box<RunArgs>),
    /// Load images from an OCI archive (oci-archive or `docker save` tar).
    Load(LoadArgs),
    /// List images.
    Images,
    /// Remove images.
    Rmi(RmiArgs),
    /// Make a new image from a container's changes.
    Commit(CommitArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Build an image from a Dockerfile (every RUN step in a VM of its own).
    Build(BuildArgs),
    /// Manage the build cache (prune).
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Log in to a registry (credentials are kept in HULL_ROOT/auth.json, mode 0600).
    Login(LoginArgs),
    /// Forget the credentials for a registry.
    Logout(LogoutArgs),
    /// Save images to an OCI archive.
    Save(SaveArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Show how an image was made, newest step first.
    History(HistoryArgs),
    /// Manage images (inspect, prune).
    #[command(subcommand)]
    Image(ImageCommand),
    /// List containers.
    Ps(PsArgs),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(Box<ExecArgs>),
    /// Stop containers: SIGTERM, then SIGKILL after a grace time.
    Stop(StopArgs),
    /// Send a signal to containers' main processes.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Start stopped containers (a fresh VM on the same writable layer).
    Start(StartArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(ContainersArgs),
    /// Freeze every process of running containers.
    Pause(ContainersArgs),
    /// Thaw paused containers.
    Unpause(ContainersArgs),
    /// Show everything about containers, as JSON.
    Inspect(ContainersArgs),
    /// Show the processes of a container.
    Top(TopArgs),
    /// Show containers' resource usage.
    Stats(StatsArgs),
    /// Manage hull as a whole.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage container networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage volumes (HULL_ROOT/volumes).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage VM templates (booted once, cloned by every new VM).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Keep restored VM clones ready so `hull run` starts from one.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// List a container's published ports.
    Port(TopArgs),
    /// A network's name server (started by hull itself).
    #[command(name = "__netdns", hide = true)]
    NetDns(NetDnsArgs),
    /// Supervise one container (started by hull itself).
    #[command(name = "__supervise", hide = true)]
    Supervise(SuperviseArgs),
    /// The warm pool's server (started by `hull pool start`).
    #[command(name = "__pool", hide = true)]
    PoolServe(PoolServeArgs),
    /// A pooled clone's supervisor (started by the pool server).
    #[command(name = "__pooled", hide = true)]
    Pooled,
    /// A container's share server (started by its supervisor).
    #[command(name = "__share", hide = true)]
    Share(ShareArgs),
    /// The runc-compatible OCI runtime CLI (also installed as `hull-runc`):
    /// `hull oci [--root DIR] create|start|state|kill|delete|exec|ps|features …`.
    Oci(OciArgs),
}

/// runc's command line, parsed by `oci_cli` (runc's `--root` would clash
/// with hull's own, so it is taken raw here).
#[derive(Debug, Args)]
pub struct OciArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: `table` or `json` (one object per line).
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (`all` for everything).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub container: String,
}

/// How the process of `run` and `exec` is set up, as docker spells it.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Keep stdin open and pass it to the process.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal (a pty in the guest).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as (name|uid[:group|gid]).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub process: ProcessArgs,
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (name like TERM or SIGTERM, or number).
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also remove the containers' anonymous volumes.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it to exit.
    #[arg(short = 'a', long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Containers (default: all running).
    pub containers: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates.
    Ls,
    /// Remove templates (by key or a unique prefix of one).
    Rm(TemplateKeysArgs),
    /// Remove broken and stale templates (made by another hull, kernel,
    /// initramfs or hypervisor); with --all, every template.
    Prune(TemplatePruneArgs),
}

#[derive(Debug, Args)]
pub struct TemplateKeysArgs {
    #[arg(required = true)]
    pub keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TemplatePruneArgs {
    #[arg(short = 'a', long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Start the pool server for this run directory (it warms the shape of
    /// a plain `hull run`, and learns others from the runs that ask).
    Start(PoolStartArgs),
    /// Show the pool's clones, per shape.
    Status(PoolStatusArgs),
    /// Remove every ready clone and stop the server.
    Stop,
}

#[derive(Debug, Args)]
pub struct PoolLimits {
    /// Ready clones kept per shape.
    #[arg(long, default_value_t = 2)]
    pub size: usize,
    /// The host memory the ready clones may hold together (their
    /// processes' private memory).
    #[arg(long, default_value = "1g", value_parser = parse_bytes)]
    pub max_memory: u64,
}

#[derive(Debug, Args)]
pub struct PoolStartArgs {
    #[command(flatten)]
    pub limits: PoolLimits,
    /// Do not warm the default shape; learn shapes from runs only.
    #[arg(long)]
    pub no_warm: bool,
    /// Serve in this process until stopped (for a service manager).
    #[arg(long)]
    pub foreground: bool,
    /// The backend of the default shape.
    #[arg(long, env = "HULL_HYPERVISOR", default_value = "auto")]
    pub hypervisor: String,
}

#[derive(Debug, Args)]
pub struct PoolStatusArgs {
    /// Wait up to this many seconds until every shape has its clones ready.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    /// `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct PoolServeArgs {
    #[command(flatten)]
    pub limits: PoolLimits,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a new one is filled from the image on first use).
    Create(VolumeCreateArgs),
    /// List volumes.
    Ls(VolumeLsArgs),
    /// Show volumes as JSON.
    Inspect(VolumeNamesArgs),
    /// Remove volumes no container uses.
    Rm(VolumeRmArgs),
    /// Remove the unused anonymous volumes (with --all, every unused one).
    Prune(VolumePruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// A label: KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Its name (default: a random one).
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only the names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct VolumeNamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// A missing volume is no error.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Named volumes too.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not ask (hull never asks; accepted for docker compatibility).
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (a bridge in a network namespace of hull's).
    Create(NetworkCreateArgs),
    /// List networks.
    Ls,
    /// Show networks and their containers, as JSON.
    Inspect(NetworkNamesArgs),
    /// Remove networks no container is on.
    Rm(NetworkNamesArgs),
}

#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// IPv4 subnet (e.g. 10.90.0.0/24); default: the next free 10.89.N.0/24.
    #[arg(long)]
    pub subnet: Option<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct NetworkNamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove stopped containers, unused images and leftovers.
    Prune(SystemPruneArgs),
    /// Serve the Docker Engine API (runs `hull-api`, installed next to hull).
    Service(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The unix socket to listen on (mode 0660).
    #[arg(long, default_value = "/run/hull/docker.sock")]
    pub socket: PathBuf,
    /// Also listen on this TCP address (plain HTTP: keep it on loopback).
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Also remove images no container uses, not only untagged ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not ask (hull never asks; accepted for docker compatibility).
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ShareArgs {
    /// What it serves (hull_sandbox::share::ShareSpec, as JSON).
    #[arg(long)]
    pub spec: String,
    /// An empty directory for the jail's root.
    #[arg(long)]
    pub scratch: PathBuf,
}

#[derive(Debug, Args)]
pub struct NetDnsArgs {
    #[arg(long)]
    pub netns: PathBuf,
    #[arg(long)]
    pub listen: std::net::Ipv4Addr,
    #[arg(long)]
    pub allocations: PathBuf,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The container's short id.
    pub id: String,
    /// Start the main process only once a client attached.
    #[arg(long)]
    pub wait_attach: bool,
    /// runc mode (`hull-runc create`): stdio is the container's, the main
    /// process starts on request, the exit status is the container's.
    #[arg(long)]
    pub runc: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show everything the store knows about images, as JSON.
    Inspect(ImageInspectArgs),
    /// Remove untagged images and leftovers of interrupted pulls.
    Prune(ImagePruneArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Speak plain HTTP to the registry (for a registry on loopback).
    #[arg(long)]
    pub plain_http: bool,
    /// Largest uncompressed size of one layer (e.g. 512m, 16g).
    #[arg(long, env = "HULL_MAX_LAYER_SIZE", value_parser = parse_bytes)]
    pub max_layer_size: Option<u64>,
    /// Do not draw progress bars.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image to pull: [REGISTRY/]REPO[:TAG|@DIGEST].
    pub image: String,
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Empty the build cache.
    Prune,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image NAME[:TAG]; may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// A build-time variable, K=V (K alone takes it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage (and the stages it needs) only.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step instead of taking it from the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// A label for the image, K=V.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The target platform: linux/amd64 is the only one.
    #[arg(long)]
    pub platform: Option<String>,
    /// Speak plain HTTP to registries base images come from (loopback).
    #[arg(long)]
    pub plain_http: bool,
    /// The network RUN steps' VMs join.
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Print only the image id, no progress.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The build context directory.
    pub context: PathBuf,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Speak plain HTTP to the registry (for a registry on loopback).
    #[arg(long)]
    pub plain_http: bool,
    /// Print only the repository and the digest, not a line per blob.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image in the store: NAME[:TAG] (naming a registry unless REMOTE_REF is given), or an id.
    pub image: String,
    /// Where to push it: REGISTRY/REPO[:TAG].
    pub remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Image in the store: NAME[:TAG] or an id.
    pub source: String,
    /// The new name: [REGISTRY/]REPO[:TAG].
    pub target: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show full ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// `json`: one JSON object a line.
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(short = 'u', long)]
    pub username: String,
    /// The password (prefer --password-stdin: this shows in `ps`).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Speak plain HTTP to the registry (for a registry on loopback).
    #[arg(long)]
    pub plain_http: bool,
    /// Registry host[:port].
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The archive to write.
    #[arg(short = 'o', long = "output", value_name = "ARCHIVE")]
    pub output: std::path::PathBuf,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses, not only untagged ones.
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// `-h` is `--hostname`, as in `docker run`; help is `--help` only.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Name the container (unique).
    #[arg(long)]
    pub name: Option<String>,
    /// Network to join (`none`: loopback only).
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Another name the container has on its network.
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Publish a port: [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (IP defaults to 127.0.0.1).
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Bind mount or volume: HOST-PATH:CTR-PATH[:ro], NAME:CTR-PATH[:ro]
    /// or CTR-PATH (an anonymous volume); a missing host directory is made.
    #[arg(short = 'v', long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// type=bind|volume|tmpfs,src=…,dst=…[,readonly] (a missing bind
    /// source is an error).
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// A tmpfs: PATH[:OPTIONS] (e.g. /run:size=64m).
    #[arg(long = "tmpfs", value_name = "PATH")]
    pub tmpfs: Vec<String>,
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit of the container (e.g. 64m, 1g); the VM gets this plus
    /// room for the guest kernel and agent.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPUs for the container (e.g. 1.5); the VM gets as many vCPUs,
    /// rounded up.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Container hostname (default: the short container id).
    #[arg(long, short = 'h')]
    pub hostname: Option<String>,
    /// Give the container every capability, no seccomp filter, writable /sys.
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability (e.g. NET_ADMIN, or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined|FILE, no-new-privileges[=true|false].
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Maximum number of processes in the container (-1: unlimited).
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Which hypervisor runs the VM: auto, qemu or hull-vmm.
    #[arg(long, env = "HULL_HYPERVISOR", default_value = "auto")]
    pub hypervisor: String,
    /// Guest kernel (default: found next to hull, or HULL_KERNEL).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Guest initramfs with the agent (default: found next to hull, or HULL_INITRAMFS).
    #[arg(long, value_name = "FILE")]
    pub initramfs: Option<PathBuf>,
    /// Boot the VM's kernel rather than clone the VM from a template
    /// (also HULL_TEMPLATE=off).
    #[arg(long = "no-template")]
    pub no_template: bool,
    /// Who this VM shares templates (and so memory pages) with: `host`
    /// (default, or HULL_TEMPLATE_SCOPE), a tenant's NAME, or `none`.
    #[arg(long = "template-scope", value_name = "SCOPE")]
    pub template_scope: Option<String>,
    /// Keep the VM after the main process exits, until `stop` or `rm`, so
    /// the exited container can still be committed (what the builder's
    /// steps do).
    #[arg(long = "keep-vm-for-export", hide = true)]
    pub keep_vm_for_export: bool,
    /// Image to run.
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `run`'s rlimit, block I/O and user-namespace flags (Docker's and
/// podman's spelling); checked in `oci::limits`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// A resource limit: NAME=SOFT[:HARD] (core, cpu, data, fsize, locks,
    /// memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime,
    /// sigpending, stack); repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Block I/O weight of the container's cgroup, 10 to 1000.
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    pub blkio_weight: Option<u16>,
    /// Limit reads per second from a disk of the container: DISK:RATE, DISK
    /// one of rootfs (both disks), image (the image disk), writable (the
    /// writable-layer disk); RATE like 1mb.
    #[arg(long = "device-read-bps", value_name = "DISK:RATE")]
    pub device_read_bps: Vec<String>,
    /// Limit writes per second to a disk of the container (DISK:RATE, as
    /// --device-read-bps).
    #[arg(long = "device-write-bps", value_name = "DISK:RATE")]
    pub device_write_bps: Vec<String>,
    /// Limit read operations per second on a disk of the container (DISK:N).
    #[arg(long = "device-read-iops", value_name = "DISK:N")]
    pub device_read_iops: Vec<String>,
    /// Limit write operations per second on a disk of the container (DISK:N).
    #[arg(long = "device-write-iops", value_name = "DISK:N")]
    pub device_write_iops: Vec<String>,
    /// Run in a user namespace mapping CONTAINER_ID..+SIZE to the VM's
    /// HOST_ID..+SIZE; repeatable.
    #[arg(long = "uidmap", value_name = "CONTAINER_ID:HOST_ID:SIZE")]
    pub uidmap: Vec<String>,
    /// The user namespace's group ids, as --uidmap (default: the uid map).
    #[arg(long = "gidmap", value_name = "CONTAINER_ID:HOST_ID:SIZE")]
    pub gidmap: Vec<String>,
    /// User namespace: host (the VM's, the default) unless --uidmap/--gidmap.
    #[arg(long = "userns", value_name = "MODE")]
    pub userns: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to load.
    #[arg(short = 'i', long = "input", value_name = "ARCHIVE")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Commit message (the history entry's comment).
    #[arg(short = 'm', long = "message", value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short = 'a', long = "author", value_name = "AUTHOR")]
    pub author: Option<String>,
    /// A Dockerfile instruction applied to the image's config (CMD,
    /// ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// The container.
    pub container: String,
    /// NAME[:TAG] of the new image.
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove the image even while a container uses it.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

impl LimitArgs {
    /// The flags, for [`parse`].
    pub fn flags(&self) -> LimitFlags<'_> {
        LimitFlags {
            ulimit: &self.ulimit,
            blkio_weight: self.blkio_weight,
            device_read_bps: &self.device_read_bps,
            device_write_bps: &self.device_write_bps,
            device_read_iops: &self.device_read_iops,
            device_write_iops: &self.device_write_iops,
            uidmap: &self.uidmap,
            gidmap: &self.gidmap,
            userns: self.userns.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_keeps_hyphenated_command_args() {
        let cli =
            Cli::try_parse_from(["hull", "run", "--rm", "img", "sh", "-c", "echo -n hi"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.rm);
        assert_eq!(run.command, ["sh", "-c", "echo -n hi"]);
    }
}
