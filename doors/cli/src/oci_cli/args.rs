//! runc's command line, as the callers use it (containerd's runc shim,
//! conmon, podman): global flags first, then one command. Flags hull has
//! no use for are accepted and ignored, as runc ignores what does not apply.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where records live when no `--root` is given (runc's is /run/runc).
pub const DEFAULT_ROOT: &str = "/run/hull-runc";

/// hull's OCI runtime command line: runs each container in its own microVM.
#[derive(Debug, Parser)]
#[command(
    name = "hull-runc",
    disable_help_subcommand = true,
    disable_version_flag = true
)]
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
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    #[arg(long, global = true, hide = true)]
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
    #[arg(long, hide = true)]
    pub no_new_privs: bool,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    #[arg(short = 'c', long, hide = true)]
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
