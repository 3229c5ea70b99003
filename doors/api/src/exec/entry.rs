//! An exec instance's data: what to run and how it went. Apart from the
//! handlers (`exec/mod.rs`) so the service's state can hold instances
//! without depending on the handlers that use that state.

use std::sync::Mutex;

use hull_container::supervisor::control::ControlRequest;
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub cmd: Vec<String>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
}

#[derive(Debug, Default)]
pub(super) struct ExecState {
    pub(super) started: bool,
    pub(super) running: bool,
    pub(super) pid: u32,
    pub(super) exit_code: Option<i32>,
    /// Requests for the running process's conversation (resizes).
    pub(super) requests: Option<mpsc::Sender<ControlRequest>>,
}

pub struct ExecEntry {
    pub id: String,
    pub container_id: String,
    pub(super) config: ExecConfig,
    pub(super) state: Mutex<ExecState>,
}

impl ExecEntry {
    pub fn finished(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.exit_code.is_some()
    }
}
