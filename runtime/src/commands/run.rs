use anyhow::{anyhow, Context, Result};

use super::attach;
use crate::assets::GuestAssets;
use crate::cli::{parse_bytes, Cli, RunArgs};
use crate::container::{now_nanos, random_name, Container, ContainerConfig, Containers};
use crate::hypervisor;
use crate::image::ImageStore;
use crate::network::forward::PortMapping;
use crate::network::{Networks, NO_NETWORK};

/// `--network container:NAME`: run in NAME's VM.
const CONTAINER_NETWORK: &str = "container:";
use crate::oci::{build_spec, ContainerOptions, SeccompChoice};
use crate::sandbox::{self, scratch};
use crate::spec::{plan_process, ImageDefaults, RunOverrides};
use crate::supervisor::control::{self, ControlReply, ControlRequest};
use crate::supervisor::launch;
use crate::timings;

/// VM memory when the container has no limit.
const DEFAULT_VM_MEMORY_MIB: u64 = 512;

/// What the guest kernel and agent need on top of the container's memory
/// limit (kernel ≈ 30 MiB with its page tables and caches, agent ≈ 2 MiB,
/// plus headroom so the container's limit, not the VM, is what bites).
const GUEST_OVERHEAD_MIB: u64 = 96;

/// The smallest memory limit accepted (Docker's minimum is 6 MiB).
const MIN_MEMORY_BYTES: u64 = 6 << 20;

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<i32> {
    let memory_bytes = args
        .memory
        .as_deref()
        .map(|m| parse_bytes(m).map_err(|e| anyhow!("invalid --memory: {e}")))
        .transpose()?;
    if memory_bytes.is_some_and(|b| b < MIN_MEMORY_BYTES) {
        return Err(anyhow!("--memory must be at least 6m"));
    }
    if args.cpus.is_some_and(|c| !(c > 0.0 && c <= 256.0)) {
        return Err(anyhow!("--cpus must be between 0 and 256"));
    }
    let (seccomp, no_new_privileges) = parse_security_opts(&args.security_opt)?;
    let limits = crate::oci::limits::parse(&args.limits.flags())?;

    let store = ImageStore::open(&cli.root)?;
    let image = store.resolve(&args.image)?;
    timings::mark("image_resolved");
    let assets = GuestAssets::locate(args.kernel.as_deref(), args.initramfs.as_deref())?;
    let hypervisor = hypervisor::select(&args.hypervisor)?;
    if args.hypervisor == "auto" && !hypervisor.accelerated() {
        tcg_notice_once(cli);
    }

    let containers = Containers::new(&cli.run_dir);
    std::fs::create_dir_all(&cli.run_dir)
        .with_context(|| format!("create {}", cli.run_dir.display()))?;
    containers.sweep(&cli.root);
    let (network, shares_vm_with) = match args.network.as_str() {
        NO_NETWORK => (None, None),
        mode if mode.starts_with(CONTAINER_NETWORK) => {
            (None, Some(vm_to_join(&containers, mode, args)?))
        }
        name => {
            Networks::new(&cli.root, &cli.run_dir).get(name)?;
            (Some(name.to_string()), None)
        }
    };
    let ports = args
        .publish
        .iter()
        .map(|p| PortMapping::parse(p).map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    if network.is_none() && shares_vm_with.is_none() && !ports.is_empty() {
        return Err(anyhow!(
            "-p needs a network; the container has --network none"
        ));
    }
    for alias in &args.network_alias {
        crate::container::validate_name(alias)
            .map_err(|_| anyhow!("invalid --network-alias {alias:?}"))?;
    }
    let id = sandbox::new_id().context("generate a container id")?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => random_name(&id),
    };
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let defaults = ImageDefaults {
        entrypoint: image.config.entrypoint.clone(),
        cmd: image.config.cmd.clone(),
        env: image.config.env.clone(),
        working_dir: image.config.working_dir.clone(),
        user: image.config.user.clone(),
    };
    let overrides = RunOverrides {
        entrypoint: args.entrypoint.clone(),
        cmd: args.command.clone(),
        env: args.process.env.clone(),
        workdir: args.process.workdir.clone(),
        user: args.process.user.clone(),
    };
    let plan = plan_process(&defaults, &overrides, &hostname, |k| std::env::var(k).ok())?;
    let options = ContainerOptions {
        hostname,
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        seccomp,
        no_new_privileges,
        read_only: args.read_only,
        memory_bytes,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        terminal: args.process.tty.then(crate::terminal::size),
        limits,
    };
    let spec = build_spec(&plan, &options)?;
    let disk = store.rootfs_disk(&image)?;
    timings::mark("disk_ready");

    let memory_mib = memory_bytes.map_or(DEFAULT_VM_MEMORY_MIB, |b| {
        b.div_ceil(1 << 20) + GUEST_OVERHEAD_MIB
    });
    let scratch_dir = scratch::sandboxes_dir(&cli.root).join(&id[..12]);
    let config = ContainerConfig {
        id: id.clone(),
        name,
        created: now_nanos(),
        image: args.image.clone(),
        image_id: image.id.clone(),
        spec,
        user: plan.user,
        rootfs_disk: disk.path.clone(),
        fs_type: disk.fs_type.to_string(),
        scratch_disk: scratch_dir.join(scratch::DISK_FILE),
        scratch_dir,
        vcpus: args.cpus.map_or(1, |c| c.ceil() as u32),
        memory_mib: u32::try_from(memory_mib).context("--memory is too large")?,
        hypervisor: args.hypervisor.clone(),
        kernel: assets.kernel,
        initramfs: assets.initramfs,
        tty: args.process.tty,
        open_stdin: args.process.interactive,
        auto_remove: args.rm,
        network,
        aliases: args.network_alias.clone(),
        ports,
        shares_vm_with,
    };
    let container = containers.create(config)?;
    // From here on a failure removes the record again.
    let started = start_new(cli, &containers, &container, args).await;
    match started {
        Ok(code) => Ok(code),
        Err(e) => {
            containers.remove(&container);
            Err(e)
        }
    }
}

/// `--network container:NAME`: hull's pods. The container runs in NAME's
/// VM, as a container of its own (its own root, namespaces and cgroup)
/// that shares the VM's network, the way Docker's containers share a
/// network namespace. Returns NAME's id.
fn vm_to_join(containers: &Containers, mode: &str, args: &RunArgs) -> Result<String> {
    let name = &mode[CONTAINER_NETWORK.len()..];
    if !args.publish.is_empty() || !args.network_alias.is_empty() {
        return Err(anyhow!(
            "--network {mode}: the network is {name}'s; publish ports and give aliases there"
        ));
    }
    let host = containers
        .find(name)
        .map_err(|e| anyhow!("--network {mode}: {e}"))?;
    if !host.state().is_running() {
        return Err(anyhow!("--network {mode}: {name} is not running"));
    }
    // Pods are flat: joining a joined container means joining its VM.
    Ok(host
        .config
        .shares_vm_with
        .clone()
        .unwrap_or_else(|| host.config.id.clone()))
}

/// Makes the writable layer and hands the container to a supervisor;
/// then either prints the id (`-d`) or attaches until the container exits.
async fn start_new(
    cli: &Cli,
    containers: &Containers,
    container: &Container,
    args: &RunArgs,
) -> Result<i32> {
    scratch::create(&cli.root, container.short_id())?;
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
    // wait for it so nothing of this run outlives the command.
    let _ = tokio::task::spawn_blocking(move || supervisor.wait()).await;
    let exit = outcome?;
    if container.state().started_at.is_none() {
        // It never ran: a failed `run` leaves nothing behind.
        containers.remove(container);
    }
    Ok(exit.report())
}

/// `--security-opt` values: `seccomp=unconfined|FILE` and
/// `no-new-privileges[=true|false]` (Docker also accepts `:` for `=`).
fn parse_security_opts(opts: &[String]) -> Result<(SeccompChoice, bool)> {
    let mut seccomp = SeccompChoice::Default;
    let mut no_new_privileges = false;
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some(path)) => {
                let text =
                    std::fs::read(path).with_context(|| format!("read seccomp profile {path}"))?;
                let profile = serde_json::from_slice(&text)
                    .with_context(|| format!("seccomp profile {path}"))?;
                seccomp = SeccompChoice::Profile(profile);
            }
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            _ => return Err(anyhow!("invalid --security-opt {opt:?}")),
        }
    }
    Ok((seccomp, no_new_privileges))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn security_opts_parse_like_docker() {
        assert_eq!(
            parse_security_opts(&opts(&[])).unwrap(),
            (SeccompChoice::Default, false)
        );
        assert_eq!(
            parse_security_opts(&opts(&["seccomp=unconfined", "no-new-privileges"])).unwrap(),
            (SeccompChoice::Unconfined, true)
        );
        assert!(
            !parse_security_opts(&opts(&["no-new-privileges:false"]))
                .unwrap()
                .1
        );
        assert!(parse_security_opts(&opts(&["apparmor=x"])).is_err());
        assert!(parse_security_opts(&opts(&["seccomp=/nonexistent.json"])).is_err());
    }
}
