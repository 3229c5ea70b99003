use anyhow::{anyhow, Context, Result};
use hull_protocol::ErrorKind;

use super::EXIT_HULL_ERROR;
use crate::assets::GuestAssets;
use crate::cli::{parse_mib, Cli, RunArgs};
use crate::hypervisor::{self, DiskSpec};
use crate::image::ImageStore;
use crate::sandbox::{self, ContainerSpec, MainProcess, Sandbox, SandboxConfig, SandboxError};
use crate::spec::{plan_process, ImageDefaults, RunOverrides};

/// Serial of the image disk, which the agent looks for.
const ROOTFS_SERIAL: &str = "hull-rootfs";

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<i32> {
    let memory_mib =
        parse_mib(&args.memory).ok_or_else(|| anyhow!("invalid --memory {:?}", args.memory))?;
    if args.cpus == 0 {
        return Err(anyhow!("--cpus must be at least 1"));
    }
    let store = ImageStore::open(&cli.root)?;
    let image = store.resolve(&args.image)?;
    let assets = GuestAssets::locate(args.kernel.as_deref(), args.initramfs.as_deref())?;
    let hypervisor = hypervisor::select(&args.hypervisor)?;
    if args.hypervisor == "auto" && !hypervisor.accelerated() {
        tcg_notice_once(cli);
    }
    let disk = store.rootfs_disk(&image)?;

    sandbox::sweep_stale(&cli.run_dir);
    let id = sandbox::new_id().context("generate a container id")?;
    let hostname = id[..12].to_string();
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

    let config = SandboxConfig {
        id,
        run_dir: &cli.run_dir,
        assets: &assets,
        vcpus: args.cpus,
        memory_mib,
        disks: vec![DiskSpec {
            path: disk.path.clone(),
            read_only: true,
            serial: ROOTFS_SERIAL.into(),
        }],
    };
    let mut sandbox = Sandbox::create(hypervisor.as_ref(), config).await?;
    let container = ContainerSpec {
        hostname,
        disk_serial: ROOTFS_SERIAL.into(),
        fs_type: disk.fs_type.to_string(),
        shutdown_on_exit: args.rm,
    };
    let main = MainProcess {
        args: plan.args,
        env: plan.env,
        cwd: plan.cwd,
        user: plan.user,
        interactive: args.interactive,
    };
    let outcome = sandbox.run_attached(container, main).await;
    sandbox.delete().await;
    match outcome {
        Ok(status) => Ok(status.shell_code()),
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
