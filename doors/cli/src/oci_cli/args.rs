//! runc's command line, as the callers use it (containerd's runc shim,
//! conmon, podman): global flags first, then one command. Flags hull has
//! no use for are accepted and ignored, as runc ignores what does not apply.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where records live when no `--root` is given (runc's is /run/runc).
pub const DEFAULT_ROOT: &str = "/run/hull-runc";

/// hull's OCI runtime command line: runs each container in its own microVM.
#[derive(Debug, Parser)]
#[command(name = "hull-runc", disable_version_flag = true)]
pub struct RuncArgs {
    /// Where container records live (one directory per container).
    #[arg(long, default_value = DEFAULT_ROOT, global = true)]
    pub root: PathBuf,
    /// Where errors are written, besides stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// `text` or `json` (one object per line, as runc writes them).
    #[arg(long, default_value = "text", global = true)]
    pub log_format: String,
    /// Accepted for compatibility; the host's cgroups are not used.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Log debug messages (to --log, or stderr).
    #[arg(long, global = true)]
    pub debug: bool,
    /// `true`, `false` or `auto`: accepted (a VM needs no rootless mode);
    /// `spec --rootless` writes a rootless spec.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<RuncCommand>,
}

#[derive(Debug, Subcommand)]
pub enum RuncCommand {
    /// Write a default config.json (runc's) into the bundle directory.
    Spec(SpecArgs),
    /// Create and start a container; in the foreground, wait for it and
    /// exit with its status.
    Run(RunArgs),
    /// List the containers under --root.
    List(ListArgs),
    /// Create a container from a bundle: boot its VM; `start` runs the process.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start(IdArgs),
    /// Print a container's state as JSON.
    State(IdArgs),
    /// Send a signal to a container's process.
    Kill(KillArgs),
    /// Remove a container (with `--force`, stop it first).
    Delete(DeleteArgs),
    /// Run a process in a running container.
    Exec(Box<ExecArgs>),
    /// List a container's processes (host pids, see the module docs).
    Ps(PsArgs),
    /// Print what this runtime supports, as JSON.
    Features,
    /// Freeze every process of a running container (the guest's cgroup
    /// freezer).
    Pause(IdArgs),
    /// Thaw a paused container.
    Resume(IdArgs),
    /// Change a running container's resource limits (in its VM's cgroup).
    Update(Box<UpdateArgs>),
    /// Print a container's stats (and OOM kills) as JSON lines.
    Events(EventsArgs),
    /// Save a running container's whole VM to disk (and stop it, unless
    /// --leave-running).
    Checkpoint(CheckpointArgs),
    /// Create and start a container from a checkpoint: its VM comes back
    /// and its processes carry on.
    Restore(Box<RestoreArgs>),
    /// The process that owns a detached exec (started by `exec`).
    #[command(name = "__exec", hide = true)]
    ExecHelper(ExecHelperArgs),
}

#[derive(Debug, Args)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Where the pid to wait on is written.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that gets the master of the container's terminal.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub no_pivot: bool,
    #[arg(long, hide = true)]
    pub no_new_keyring: bool,
    #[arg(long, hide = true)]
    pub preserve_fds: Option<u32>,
    #[arg(long, hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process of the container, not only its main one.
    #[arg(short = 'a', long)]
    pub all: bool,
    pub id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Stop the container first if it runs.
    #[arg(short = 'f', long)]
    pub force: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A JSON file holding the OCI process to run.
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs; its owner's pid goes to --pid-file.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<String>,
    #[arg(short = 'e', long)]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(long, hide = true)]
    pub preserve_fds: Option<u32>,
    /// Set no_new_privileges for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Add a capability (CAP_NAME or NAME) to every set of the process.
    #[arg(short = 'c', long)]
    pub cap: Vec<String>,
    #[arg(long, hide = true)]
    pub ignore_paused: bool,
    #[arg(long, hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    pub id: String,
    /// The command, when no --process is given.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecHelperArgs {
    /// The exec request, as JSON (written by `exec`, removed by the helper).
    #[arg(long)]
    pub request: PathBuf,
    /// A descriptor to report "started" (or the error) on, then close.
    #[arg(long)]
    pub ready_fd: Option<i32>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// `table` or `json`.
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    pub id: String,
    /// ps(1) options; accepted and ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A JSON file of OCI linux.resources (`-` for stdin); the other
    /// flags are then ignored, as by runc.
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    /// Memory limit: bytes, or 512k/64m/1g; -1 for none.
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory reservation (soft limit; memory.low).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap; -1 for unlimited swap.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Accepted and ignored, as by runc on cgroup v2.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight; cpu.weight).
    #[arg(long = "cpu-share", visible_alias = "cpu-shares")]
    pub cpu_share: Option<String>,
    /// CFS quota in microseconds per period; -1 for none.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<String>,
    /// CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<String>,
    /// Accepted and ignored: cgroup v2 has no realtime limits.
    #[arg(long)]
    pub cpu_rt_period: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<String>,
    /// CPUs the container may use (`0-1`, `0,2`).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Most processes the container may have; 0 or -1 for no limit.
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Refused: a VM has no Intel RDT.
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print the stats once and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print the stats (a Go duration: 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Where config.json is written.
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the stopped container (do not delete it after it exits).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// `table` or `json`.
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    /// Only the container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// CRIU's options, which runc passes on: accepted, and of no use to a
/// VM (the whole VM is saved, its sockets, files and namespaces with it).
#[derive(Debug, Args)]
pub struct CriuArgs {
    #[arg(long, hide = true)]
    pub work_path: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub tcp_established: bool,
    #[arg(long, hide = true)]
    pub ext_unix_sk: bool,
    #[arg(long, hide = true)]
    pub shell_job: bool,
    #[arg(long, hide = true)]
    pub file_locks: bool,
    #[arg(long, hide = true)]
    pub lazy_pages: bool,
    #[arg(long, hide = true)]
    pub manage_cgroups_mode: Option<String>,
    #[arg(long, hide = true)]
    pub empty_ns: Vec<String>,
    #[arg(long, hide = true)]
    pub auto_dedup: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Where the checkpoint is written (runc's default: ./checkpoint).
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Keep the container running after it is saved.
    #[arg(long)]
    pub leave_running: bool,
    #[arg(long, hide = true)]
    pub parent_path: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub pre_dump: bool,
    #[arg(long, hide = true)]
    pub page_server: Option<String>,
    #[arg(long, hide = true)]
    pub status_fd: Option<i32>,
    #[command(flatten)]
    pub criu: CriuArgs,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The checkpoint to restore (runc's default: ./checkpoint).
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// The bundle directory (holding config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container runs instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where the pid to wait on is written.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that gets the master of the container's terminal.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub no_subreaper: bool,
    #[arg(long, hide = true)]
    pub no_pivot: bool,
    #[arg(long, hide = true)]
    pub lsm_profile: Option<String>,
    #[arg(long, hide = true)]
    pub lsm_mount_context: Option<String>,
    #[command(flatten)]
    pub criu: CriuArgs,
    pub id: String,
}
