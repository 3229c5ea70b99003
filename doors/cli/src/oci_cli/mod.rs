//! A runc-compatible command line (`hull-runc`, or `hull oci`), following
//! the OCI runtime command-line interface as runc implements it, so that
//! containerd's runc shim (`ctr run --runc-binary`) and podman (`--runtime`)
//! run their containers in hull VMs. Model: youki's `crates/youki` (argument
//! structs apart, one short function per verb).
//!
//! How runc's model maps onto hull's:
//! - `--root` is the hull run dir: one record per container, named by the
//!   caller's id. The rootfs disk (see `bundle`), the writable layer and the
//!   VM's sockets all live under it, so `delete` leaves nothing behind.
//! - `create` spawns a supervisor in runc mode, which inherits the
//!   caller's stdio (or the slave of the pty sent to `--console-socket`),
//!   boots the VM and waits for `start`. The pid in `--pid-file` is the
//!   supervisor's: callers are subreapers that wait on that pid, and it
//!   exits with the container's exit status (128+N for a signal N).
//! - `exec --detach` spawns a small process that owns the exec (its stdio
//!   goes to the supervisor, it forwards signals sent to it, and exits
//!   with the exec'd process's status); its pid goes to `--pid-file`.
//! - `ps` lists host pids, as runc does: the supervisor's, the one process
//!   on the host that stands for the container (guest pids would mean
//!   nothing to the caller, who may signal them).
//! - `pause`/`resume` freeze the container's cgroup in the guest.
//! - Host hooks (`prestart`, `createRuntime`, `poststart`, `poststop`) run
//!   on the host with the state on stdin; `createContainer` and
//!   `startContainer` run in the guest (see `hull_container::hooks`).
//! - `update` and `events` act on the container's cgroup in the guest (the
//!   agent writes and reads it); realtime CPU limits and kernel memory are
//!   accepted and ignored, as by runc on cgroup v2, Intel RDT refused.

mod args;
mod checkpoint;
mod console;
mod create;
mod delete;
mod events;
mod exec;
mod kill;
mod list;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Result};
use clap::Parser;

use args::{RuncArgs, RuncCommand};
use hull_container::hooks::{HookState, HostHook};
use hull_container::plan::BundleInfo;
use hull_container::{Container, Containers};

/// The file name that makes the `hull` binary behave as `hull-runc`.
pub const RUNC_NAME: &str = "hull-runc";

/// runc's command line when this process was invoked as `hull-runc` (by
/// name) or as `hull oci …`; `None` for the ordinary `hull` CLI.
pub fn runc_argv() -> Option<Vec<OsString>> {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let name = Path::new(argv.first()?).file_name()?.to_owned();
    if name == RUNC_NAME {
        return Some(argv);
    }
    if argv.get(1).is_some_and(|a| a == "oci") {
        argv.remove(1);
        argv[0] = "hull oci".into();
        return Some(argv);
    }
    None
}

/// Runs one runc command; returns the exit status.
pub fn main(argv: Vec<OsString>) -> i32 {
    let args = match RuncArgs::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    if !matches!(args.log_format.as_str(), "text" | "json") {
        eprintln!(
            "{RUNC_NAME}: invalid log-format {:?}: use text or json",
            args.log_format
        );
        return 1;
    }
    init_logging(&args);
    if args.version {
        println!(
            "{RUNC_NAME} version {}\nspec: 1.0.2",
            env!("CARGO_PKG_VERSION")
        );
        return 0;
    }
    let Some(command) = &args.command else {
        eprintln!("{RUNC_NAME}: no command given (try --help)");
        return 1;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&args, &format!("start the async runtime: {e}"));
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match command {
            RuncCommand::Spec(a) => spec::spec(&args, a),
            RuncCommand::Run(a) => run::run(&args, a).await,
            RuncCommand::List(a) => list::list(&args, a),
            RuncCommand::Checkpoint(a) => checkpoint::checkpoint(&args, a).await,
            RuncCommand::Restore(a) => checkpoint::restore(&args, a).await,
            RuncCommand::Create(a) => create::create(&args, a).await,
            RuncCommand::Start(a) => start::start(&args, &a.id).await,
            RuncCommand::State(a) => state::state(&args, &a.id),
            RuncCommand::Kill(a) => kill::kill(&args, a).await,
            RuncCommand::Delete(a) => delete::delete(&args, a).await,
            RuncCommand::Exec(a) => exec::exec(&args, a).await,
            RuncCommand::ExecHelper(a) => exec::helper(&args, a).await,
            RuncCommand::Ps(a) => ps::ps(&args, a),
            RuncCommand::Features => ps::features(),
            RuncCommand::Pause(a) => kill::freeze(&args, &a.id, true).await,
            RuncCommand::Resume(a) => kill::freeze(&args, &a.id, false).await,
            RuncCommand::Update(a) => update::update(&args, a).await,
            RuncCommand::Events(a) => events::events(&args, a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            report(&args, &message);
            1
        }
    }
}

/// hull's own messages: to `--log` in `--log-format` when given (as runc
/// logs, containerd and podman read that file), else to stderr; at debug
/// level with `--debug`, else as `HULL_LOG` says (warnings by default).
fn init_logging(args: &RuncArgs) {
    let filter = if args.debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_env("HULL_LOG").unwrap_or_else(|_| "warn".into())
    };
    let file = args.log.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match (file, args.log_format.as_str()) {
        (Some(file), "json") => builder
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .try_init(),
        (Some(file), _) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init(),
        (None, _) => builder
            .with_writer(std::io::stderr)
            .without_time()
            .try_init(),
    };
}

/// An error on stderr and, with `--log`, in the log (callers such as
/// containerd's runc shim read the last error from there).
fn report(args: &RuncArgs, message: &str) {
    eprintln!("{RUNC_NAME}: {message}");
    let Some(path) = &args.log else {
        return;
    };
    let time = hull_container::logs::rfc3339_nano(std::time::SystemTime::now());
    let line = if args.log_format == "json" {
        let mut line =
            serde_json::json!({"level": "error", "msg": message, "time": time}).to_string();
        line.push('\n');
        line
    } else {
        format!("time={time:?} level=error msg={message:?}\n")
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// Runs the bundle's host hooks of `which` (as `create` recorded them)
/// with the container's state, `status` and `pid` as the spec has them.
fn host_hooks(container: &Container, which: HostHook, status: &str, pid: u32) -> Result<()> {
    run_hooks(
        container,
        BundleInfo::read(container).as_ref(),
        which,
        status,
        pid,
    )
}

/// [`host_hooks`] with the bundle info read before (`delete` reads it
/// before the record goes).
fn run_hooks(
    container: &Container,
    info: Option<&BundleInfo>,
    which: HostHook,
    status: &str,
    pid: u32,
) -> Result<()> {
    let Some(info) = info else {
        return Ok(());
    };
    let spec = &container.config.spec;
    let annotations = hull_container::bundle::user_annotations(spec);
    let state = HookState {
        oci_version: spec.version(),
        id: &container.config.name,
        status,
        pid,
        bundle: &info.bundle,
        annotations: &annotations,
    };
    Ok(hull_container::hooks::run(
        which,
        info.hooks.as_ref(),
        &state,
    )?)
}

fn containers(args: &RuncArgs) -> Containers {
    Containers::new(&args.root)
}

/// The container the caller calls `id` (runc ids are hull names).
fn find(args: &RuncArgs, id: &str) -> Result<Container> {
    Ok(containers(args).find_exact(id)?)
}

/// Writes `pid` to `path` atomically (callers poll for the file).
fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    let tmp = path.with_extension("hull-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow!("write the pid file {}: {e}", path.display()))
}

/// Marks every descriptor above stderr close-on-exec, so that nothing the
/// caller left open (sync pipes, sockets) is held by a supervisor or
/// helper that outlives this command.
fn close_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on this
    // process's descriptors; no memory is involved.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}
