//! The shim's life: `start` (spawn the daemon, print its address),
//! `delete` (clean up after a dead daemon), and the daemon itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Flags, StartOpts};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;

use crate::service::TaskService;

/// Where the shims keep container records: one run dir per namespace.
const RUN_ROOT: &str = "/run/hull-shim";

/// The run dir of a namespace.
pub fn run_dir(namespace: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(namespace)
}

pub struct HullShim {
    id: String,
    namespace: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for HullShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        HullShim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    /// One daemon per task: containerd 1.6 reads its address, a plain
    /// `unix:///…` line, from our stdout.
    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = opts.id.clone();
        spawn(opts, &grouping, Vec::new()).await
    }

    /// After a daemon died: stop and remove the task's VM and record, and
    /// unmount its rootfs if that was left mounted.
    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let root = run_dir(&self.namespace);
        if let Ok(container) = hull_container::Containers::new(&root).find_exact(&self.id) {
            hull_container::lifecycle::remove(&root, &container).await;
        }
        crate::rootfs::unmount_if_mounted(&self.bundle.join("rootfs"));
        Ok(DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(Timestamp::now()),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        TaskService::new(
            self.namespace.clone(),
            run_dir(&self.namespace),
            publisher,
            self.exit.clone(),
        )
    }
}
