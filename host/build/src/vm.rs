//! RUN in a microVM: the [`Runner`] that runs a step as a hull container
//! on the image built so far (no published ports, no stdin, no TTY), its
//! output streamed into the build's progress; once the main process has
//! exited (its VM kept for it) the container's writable-layer changes
//! come back through a [`ChangesExporter`] — [`HullExport`], i.e.
//! `hull_container::changes::export`: a layer tar the agent writes and
//! the host re-reads through the hostile-layer bounds — and are gzip'd
//! into the step's layer. The container is removed whatever happens.
//! With [`NotWired`], [`VmRunner::check`] refuses RUN before a build
//! starts.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use hull_container::spec::RunOverrides;
use hull_container::supervisor::control::{ControlClient, ControlReply, ControlRequest};
use hull_container::supervisor::launch;
use hull_container::{lifecycle, Container, ContainerConfig, Containers, Paths, RunRequest};
use hull_image::NewLayer;
use tokio::io::AsyncReadExt;

use crate::run::{self, RunError, Runner};

/// A boxed cause from the container library.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Exports a container's writable-layer changes.
pub trait ChangesExporter {
    /// Whether this build of hull can export at all.
    fn available(&self) -> bool;

    /// Writes `container`'s changes (its main process has exited, its VM
    /// kept) into `out` as an uncompressed OCI layer tar (sorted entries,
    /// whiteouts, mtimes clamped to `source_date_epoch`); how many entries
    /// it holds.
    fn export(
        &self,
        container: &Container,
        source_date_epoch: Option<i64>,
        out: &mut File,
    ) -> impl Future<Output = Result<u64, Cause>>;
}

/// `hull_container`'s export of a container's changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct HullExport;

impl ChangesExporter for HullExport {
    fn available(&self) -> bool {
        true
    }

    async fn export(
        &self,
        container: &Container,
        source_date_epoch: Option<i64>,
        out: &mut File,
    ) -> Result<u64, Cause> {
        let summary = hull_container::changes::export(container, source_date_epoch, out).await?;
        Ok(summary.entries)
    }
}

/// No exporter: RUN is refused up front.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotWired;

impl ChangesExporter for NotWired {
    fn available(&self) -> bool {
        false
    }

    async fn export(&self, _: &Container, _: Option<i64>, _: &mut File) -> Result<u64, Cause> {
        Err(Box::new(RunError::Unavailable))
    }
}

/// Runs RUN steps as hull containers.
#[derive(Debug, Clone)]
pub struct VmRunner<E> {
    /// `HULL_ROOT` (the image store's root).
    pub root: PathBuf,
    /// `HULL_RUN_DIR`.
    pub run_dir: PathBuf,
    /// The network the step's VM joins (`bridge`, `none`, …).
    pub network: String,
    /// `auto`, `qemu` or `hull-vmm`.
    pub hypervisor: String,
    pub source_date_epoch: Option<u64>,
    pub exporter: E,
}

impl<E: ChangesExporter> Runner for VmRunner<E> {
    fn check(&self) -> Result<(), RunError> {
        if self.exporter.available() {
            Ok(())
        } else {
            Err(RunError::Unavailable)
        }
    }

    async fn run(
        &self,
        req: run::RunRequest<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<NewLayer>, RunError> {
        let Some((program, args)) = req.argv.split_first() else {
            return Err(RunError::EmptyCommand);
        };
        let request = RunRequest {
            image: req.image.id.clone(),
            name: None,
            hostname: None,
            process: RunOverrides {
                entrypoint: Some(program.clone()),
                cmd: args.to_vec(),
                env: req.env.clone(),
                workdir: Some(req.workdir.clone()),
                user: (!req.user.is_empty()).then(|| req.user.clone()),
            },
            tty: false,
            terminal_size: None,
            open_stdin: false,
            auto_remove: false,
            memory_bytes: None,
            cpus: None,
            pids_limit: None,
            read_only: false,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: Vec::new(),
            limits: Default::default(),
            network: self.network.clone(),
            ports: Vec::new(),
            aliases: Vec::new(),
            hypervisor: self.hypervisor.clone(),
            kernel: None,
            initramfs: None,
            no_template: false,
            template_scope: None,
            mounts: Vec::new(),
            labels: Default::default(),
            // The changes are read after the main process exits.
            keep_vm_for_export: true,
        };
        let containers = Containers::new(&self.run_dir);
        let paths = Paths {
            root: &self.root,
            run_dir: &self.run_dir,
        };
        let plan = ContainerConfig::from_run(&request, paths, &containers).map_err(boxed)?;
        hull_container::private::ensure_dir(&self.run_dir).map_err(boxed)?;
        let container = containers.create(plan.config).map_err(boxed)?;
        let mut supervisor = None;
        let result = self.run_in(&container, &req, out, &mut supervisor).await;
        // The step's container never outlives it, whatever happened: its
        // VM, kept for the export, goes with it, and so its supervisor.
        lifecycle::remove(&self.run_dir, &container).await;
        if let Some(mut s) = supervisor {
            let _ = tokio::task::spawn_blocking(move || s.wait()).await;
        }
        result
    }
}

impl<E: ChangesExporter> VmRunner<E> {
    async fn run_in(
        &self,
        container: &Container,
        req: &run::RunRequest<'_>,
        out: &mut (dyn Write + Send),
        supervisor: &mut Option<launch::Supervisor>,
    ) -> Result<Option<NewLayer>, RunError> {
        hull_sandbox::scratch::create(&self.root, container.short_id(), &container.layer_owner())
            .map_err(boxed)?;
        *supervisor =
            Some(launch::spawn(&self.root, &self.run_dir, container, true).map_err(boxed)?);
        // The supervisor keeps the VM after the exit, for the export.
        match attach(container, out).await? {
            0 => {}
            code => return Err(RunError::Exit(code)),
        }
        let mut tmp = tempfile::NamedTempFile::new_in(req.layer_dir).map_err(boxed)?;
        let epoch = self.source_date_epoch.map(|e| e as i64);
        let entries = self
            .exporter
            .export(container, epoch, tmp.as_file_mut())
            .await
            .map_err(RunError::Container)?;
        if entries == 0 {
            return Ok(None);
        }
        let layer = crate::layer::compress(tmp.path(), req.layer_dir).map_err(boxed)?;
        Ok(Some(layer))
    }
}

/// Attaches a pipe as the step's stdout and stderr, copies what comes
/// through it to `out`, and waits for the exit code.
async fn attach(container: &Container, out: &mut (dyn Write + Send)) -> Result<i32, RunError> {
    let (read, write) = rustix::pipe::pipe().map_err(|e| boxed(std::io::Error::from(e)))?;
    let mut client = ControlClient::connect(
        &container.socket_path(),
        &ControlRequest::Attach { stdin: false },
        &[write.as_fd(), write.as_fd()],
    )
    .await
    .map_err(boxed)?;
    // The supervisor holds its own copies now: ours would keep the pipe open.
    drop(write);
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read).map_err(boxed)?;
    let copy = async {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                }
            }
        }
    };
    let (reply, ()) = tokio::join!(client.reply(), copy);
    match reply.map_err(boxed)? {
        ControlReply::Exited {
            exit_code, error, ..
        } => match error {
            Some(message) if exit_code != 0 => Err(RunError::Failed(message)),
            _ => Ok(exit_code),
        },
        ControlReply::Error { message, .. } => Err(RunError::Failed(message)),
        other => Err(RunError::Failed(format!(
            "unexpected supervisor reply {other:?}"
        ))),
    }
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> RunError {
    RunError::Container(Box::new(e))
}
