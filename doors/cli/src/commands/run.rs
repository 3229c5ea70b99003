//! `hull run`: the flags become a [`RunRequest`], the library plans the
//! container, and a supervisor runs it; then `-d` prints the id or the
//! command attaches until the container exits.

use anyhow::{anyhow, Context, Result};
use hull_container::oci::limits;
use hull_container::spec::RunOverrides;
use hull_container::supervisor::control::{self, ControlReply, ControlRequest};
use hull_container::supervisor::launch;
use hull_container::units::parse_bytes;
use hull_container::volume::{self, MountRequest};
use hull_container::{Container, ContainerConfig, Containers, Paths, RunRequest};
use hull_net::forward::PortMapping;
use hull_sandbox::{scratch, timings};

use super::attach;
use crate::cli::{Cli, RunArgs};

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<i32> {
    let memory_bytes = args
        .memory
        .as_deref()
        .map(|m| parse_bytes(m).map_err(|e| anyhow!("invalid --memory: {e}")))
        .transpose()?;
    let request = RunRequest {
        image: args.image.clone(),
        name: args.name.clone(),
        hostname: args.hostname.clone(),
        process: RunOverrides {
            entrypoint: args.entrypoint.clone(),
            cmd: args.command.clone(),
            env: args.process.env.clone(),
            workdir: args.process.workdir.clone(),
            user: args.process.user.clone(),
        },
        tty: args.process.tty,
        terminal_size: args.process.tty.then(crate::terminal::size),
        open_stdin: args.process.interactive,
        auto_remove: args.rm,
        memory_bytes,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        read_only: args.read_only,
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        security_opt: args.security_opt.clone(),
        limits: limits::parse(&args.limits.flags())?,
        network: args.network.clone(),
        ports: args
            .publish
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<Result<_, _>>()?,
        aliases: args.network_alias.clone(),
        hypervisor: args.hypervisor.clone(),
        kernel: args.kernel.clone(),
        initramfs: args.initramfs.clone(),
        no_template: args.no_template,
        template_scope: args.template_scope.clone(),
        mounts: mount_requests(args)?,
        keep_vm_for_export: args.keep_vm_for_export,
    };
    let paths = Paths {
        root: &cli.root,
        run_dir: &cli.run_dir,
    };
    let containers = Containers::new(&cli.run_dir);
    // Nothing is written before the request is known to be good.
    let plan = ContainerConfig::from_run(&request, paths, &containers)?;
    hull_container::private::ensure_dir(&cli.run_dir)
        .with_context(|| format!("create {}", cli.run_dir.display()))?;
    containers.sweep(&cli.root, false);
    if plan.emulated {
        tcg_notice_once(cli);
    }
    for warning in &plan.warnings {
        eprintln!("hull: warning: {warning}");
    }
    let container = containers.create(plan.config)?;
    // From here on a failure removes the record again.
    let started = start_new(cli, &containers, &container, args).await;
    match started {
        Ok(code) => Ok(code),
        Err(e) => {
            containers.remove(&container);
            volume::remove_anonymous(&cli.root, &containers, &container.config);
            Err(e)
        }
    }
}

/// `-v`, then `--mount`, then `--tmpfs`, each in the order given.
fn mount_requests(args: &RunArgs) -> Result<Vec<MountRequest>> {
    let mut requests = Vec::new();
    for value in &args.volume {
        requests.push(volume::parse_volume_flag(value)?);
    }
    for value in &args.mount {
        requests.push(volume::parse_mount_flag(value)?);
    }
    for value in &args.tmpfs {
        requests.push(volume::parse_tmpfs_flag(value)?);
    }
    Ok(requests)
}

/// Makes the writable layer and hands the container to a supervisor;
/// then either prints the id (`-d`) or attaches until the container exits.
async fn start_new(
    cli: &Cli,
    containers: &Containers,
    container: &Container,
    args: &RunArgs,
) -> Result<i32> {
    scratch::create(&cli.root, container.short_id(), &container.layer_owner())?;
    timings::mark("writable_layer_ready");
    let mut supervisor = launch::spawn(&cli.root, &cli.run_dir, container, !args.detach)?;
    timings::mark("supervisor_ready");
    if args.detach {
        let reply = control::call(&container.socket_path(), &ControlRequest::Started).await;
        return match reply {
            Ok(ControlReply::Started { .. }) => {
                println!("{}", container.config.id);
                Ok(0)
            }
            Ok(ControlReply::Error { message, code }) => {
                let _ = supervisor.wait();
                containers.remove(container);
                eprintln!("hull: {message}");
                Ok(code)
            }
            Ok(other) => Err(anyhow!("unexpected supervisor reply {other:?}")),
            Err(e) => {
                let _ = supervisor.kill();
                let _ = supervisor.wait();
                Err(anyhow!("the container's supervisor: {e}"))
            }
        };
    }
    let outcome =
        attach::attach_and_wait(container, args.process.interactive, args.process.tty).await;
    // The supervisor has recorded and cleaned up by the time it answers;
    // wait for it so nothing of this run outlives the command. One that
    // keeps the VM for an export runs on until `rm`.
    if !container.config.keep_vm_for_export {
        let _ = tokio::task::spawn_blocking(move || supervisor.wait()).await;
    }
    let exit = outcome?;
    if container.state().started_at.is_none() {
        // It never ran: a failed `run` leaves nothing behind.
        containers.remove(container);
    }
    Ok(exit.report())
}

/// Says once per store that VMs run under emulation here.
fn tcg_notice_once(cli: &Cli) {
    let marker = cli.root.join(".tcg-notice-shown");
    if marker.exists() {
        return;
    }
    eprintln!(
        "hull: no hardware virtualization here (no vmx/svm in /proc/cpuinfo): VMs run under QEMU's TCG \
         emulator, which is slower and a weaker isolation boundary than KVM"
    );
    let _ = std::fs::write(marker, b"");
}
