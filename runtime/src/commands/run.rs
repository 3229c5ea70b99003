use anyhow::{anyhow, Context, Result};
use hull_protocol::ErrorKind;

use super::EXIT_HULL_ERROR;
use crate::assets::GuestAssets;
use crate::cli::{parse_bytes, Cli, RunArgs};
use crate::hypervisor::{self, DiskSpec};
use crate::image::ImageStore;
use crate::oci::{build_spec, ContainerOptions, SeccompChoice};
use crate::sandbox::{self, ContainerSpec, Sandbox, SandboxConfig, SandboxError};
use crate::spec::{plan_process, ImageDefaults, RunOverrides};

/// Serial of the image disk, which the agent looks for.
const ROOTFS_SERIAL: &str = "hull-rootfs";

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

    let store = ImageStore::open(&cli.root)?;
    let image = store.resolve(&args.image)?;
    let assets = GuestAssets::locate(args.kernel.as_deref(), args.initramfs.as_deref())?;
    let hypervisor = hypervisor::select(&args.hypervisor)?;
    if args.hypervisor == "auto" && !hypervisor.accelerated() {
        tcg_notice_once(cli);
    }

    sandbox::sweep_stale(&cli.run_dir, &cli.root);
    let id = sandbox::new_id().context("generate a container id")?;
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
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
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
        terminal: args.tty.then(crate::terminal::size),
    };
    let spec = build_spec(&plan, &options)?;
    let disk = store.rootfs_disk(&image)?;

    let memory_mib = memory_bytes.map_or(DEFAULT_VM_MEMORY_MIB, |b| {
        b.div_ceil(1 << 20) + GUEST_OVERHEAD_MIB
    });
    let config = SandboxConfig {
        id,
        run_dir: &cli.run_dir,
        assets: &assets,
        vcpus: args.cpus.map_or(1, |c| c.ceil() as u32),
        memory_mib: u32::try_from(memory_mib).context("--memory is too large")?,
        root: &cli.root,
        disks: vec![DiskSpec {
            path: disk.path.clone(),
            read_only: true,
            serial: ROOTFS_SERIAL.into(),
        }],
    };
    let mut sandbox = Sandbox::create(hypervisor.as_ref(), config).await?;
    let container = ContainerSpec {
        spec,
        user: plan.user,
        disk_serial: ROOTFS_SERIAL.into(),
        fs_type: disk.fs_type.to_string(),
        shutdown_on_exit: args.rm,
        interactive: args.interactive,
        tty: args.tty,
    };
    // Raw mode only while the container owns the terminal.
    let raw_mode = (args.tty && args.interactive)
        .then(crate::terminal::RawMode::enable)
        .flatten();
    let outcome = sandbox.run_attached(container).await;
    drop(raw_mode);
    sandbox.delete().await;
    match outcome {
        Ok(exit) => {
            if exit.oom_killed {
                eprintln!("hull: the container was killed by its memory limit (OOM)");
            }
            Ok(exit.status.shell_code())
        }
        Err(SandboxError::Start(err)) => {
            eprintln!("hull: {err}");
            Ok(match err.kind {
                ErrorKind::CommandNotFound => 127,
                ErrorKind::CommandNotExecutable => 126,
                _ => EXIT_HULL_ERROR,
            })
        }
        Err(err) => Err(err.into()),
    }
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
