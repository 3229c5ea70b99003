//! What the server keeps between requests: where hull's state is, which
//! `hull` binary runs supervisors, the exec instances created through
//! the API, and the attach requests waiting for their container to start.
//! Everything else lives in hull's records, so restarting the server
//! loses no container.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use hull_container::{Container, Containers};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};
use crate::exec::entry::ExecEntry;

/// Most exec instances remembered; finished ones go first beyond it.
const MAX_EXECS: usize = 1024;

pub struct App {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    /// The `hull` binary whose `__supervise` runs each container.
    pub hull: PathBuf,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
    /// Per container id, how many attach requests wait for its start.
    waiting_attach: Mutex<HashMap<String, usize>>,
    /// Ids of containers as their supervisors are started.
    started: broadcast::Sender<String>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub fn new(root: PathBuf, run_dir: PathBuf, hull: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            root,
            run_dir,
            hull,
            execs: Mutex::default(),
            waiting_attach: Mutex::default(),
            started: broadcast::channel(64).0,
        })
    }

    pub fn containers(&self) -> Containers {
        Containers::new(&self.run_dir)
    }

    /// A container by id, id prefix or name.
    pub fn container(&self, reference: &str) -> ApiResult<Container> {
        Ok(self.containers().find(reference)?)
    }

    pub fn store(&self) -> ApiResult<hull_image::ImageStore> {
        Ok(hull_image::ImageStore::open(&self.root)?)
    }

    pub fn networks(&self) -> hull_net::Networks {
        hull_net::Networks::new(&self.root, &self.run_dir)
    }

    pub fn add_exec(&self, entry: Arc<ExecEntry>) {
        let mut execs = lock(&self.execs);
        if execs.len() >= MAX_EXECS {
            execs.retain(|_, e| !e.finished());
        }
        execs.insert(entry.id.clone(), entry);
    }

    pub fn exec(&self, id: &str) -> ApiResult<Arc<ExecEntry>> {
        lock(&self.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    /// Forgets the execs of a removed container.
    pub fn forget_execs(&self, container_id: &str) {
        lock(&self.execs).retain(|_, e| e.container_id != container_id);
    }

    /// An attach that waits for `id` to start: the start then holds the
    /// main process until it is attached. Drop the guard once attached.
    pub fn wait_for_start(self: &Arc<Self>, id: &str) -> (AttachWait, broadcast::Receiver<String>) {
        let receiver = self.started.subscribe();
        *lock(&self.waiting_attach)
            .entry(id.to_string())
            .or_default() += 1;
        let guard = AttachWait {
            app: self.clone(),
            id: id.to_string(),
        };
        (guard, receiver)
    }

    pub fn has_waiting_attach(&self, id: &str) -> bool {
        lock(&self.waiting_attach).get(id).is_some_and(|n| *n > 0)
    }

    /// Hears the starts announced from now on.
    pub fn started(&self) -> broadcast::Receiver<String> {
        self.started.subscribe()
    }

    /// Tells waiting attaches that `id`'s supervisor is up.
    pub fn announce_start(&self, id: &str) {
        let _ = self.started.send(id.to_string());
    }
}

/// One attach counted as waiting for its container's start.
pub struct AttachWait {
    app: Arc<App>,
    id: String,
}

impl Drop for AttachWait {
    fn drop(&mut self) {
        let mut waiting = lock(&self.app.waiting_attach);
        if let Some(n) = waiting.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.id);
            }
        }
    }
}
