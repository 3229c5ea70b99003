//! Exec instances: `POST /containers/{id}/exec` remembers what to run,
//! `POST /exec/{id}/start` runs it through the container's supervisor on
//! a hijacked connection (or detached), `GET /exec/{id}/json` tells
//! whether it runs and how it ended, `POST /exec/{id}/resize` reaches its
//! terminal. The exit code is recorded before the stream ends, so a
//! client that inspects right after reading sees it.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use hull_container::supervisor::control::{
    ControlClient, ControlReply, ControlRequest, ExecRequest,
};
use hyper::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::hijack::{self, Pipes, Replies};
use crate::http::{empty, json, ok_json, read_json, Query, Request};
use crate::state::{lock, App};

pub(crate) mod entry;
pub use entry::{ExecConfig, ExecEntry};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
}

pub async fn create(app: &Arc<App>, container: &str, req: Request) -> ApiResult {
    let c = app.container(container)?;
    let config: ExecConfig = read_json(req).await?;
    if config.cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if config.privileged {
        return Err(ApiError::bad_request(
            "Privileged exec is not supported by hull",
        ));
    }
    if !c.state().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.config.id
        )));
    }
    let id = random_id();
    app.add_exec(Arc::new(ExecEntry {
        id: id.clone(),
        container_id: c.config.id.clone(),
        config,
        state: Mutex::default(),
    }));
    Ok(json(StatusCode::CREATED, &serde_json::json!({"Id": id})))
}

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    hex::encode(bytes)
}

pub async fn start(app: &Arc<App>, id: &str, mut req: Request) -> ApiResult {
    let entry = app.exec(id)?;
    let upgrade_asked = hijack::wants_upgrade(&req);
    let upgrade = hyper::upgrade::on(&mut req);
    let body: StartBody = read_json(req).await?;
    let c = app.container(&entry.container_id)?;
    if !body.detach && !upgrade_asked {
        return Err(ApiError::bad_request(
            "exec start needs a hijacked connection (Connection: Upgrade, Upgrade: tcp) or Detach",
        ));
    }
    if !c.state().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.config.id
        )));
    }
    {
        let mut state = lock(&entry.state);
        if state.started {
            return Err(ApiError::conflict(format!(
                "Exec instance {id} has already been started"
            )));
        }
        state.started = true;
    }
    let socket = c.socket_path();
    if body.detach {
        let (mut client, pipes) = begin(&entry, &socket, false).await.map_err(|e| {
            ApiError::conflict(format!("Container {} is not running: {e}", c.config.id))
        })?;
        // Nobody reads its output; the conversation still records its end.
        drop(pipes);
        let mut ends = ExecEnds(entry.clone());
        let first = client
            .reply()
            .await
            .map_err(|e| ApiError::internal(format!("exec: the container's supervisor: {e}")))?;
        if ends.reply(&first) {
            if let ControlReply::Error { message, .. } = first {
                return Err(ApiError::internal(message));
            }
        }
        tokio::spawn(async move {
            while let Ok(reply) = client.reply().await {
                if ends.reply(&reply) {
                    break;
                }
            }
        });
        return Ok(empty(StatusCode::OK));
    }
    let tty = entry.config.tty;
    // As Docker's: the process starts once the connection is the
    // client's, so none of its output races the 101 answer.
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            lock(&entry.state).exit_code = Some(EXIT_HULL_ERROR);
            return;
        };
        let mut ends = ExecEnds(entry.clone());
        let (client, pipes) = match begin(&entry, &socket, entry.config.attach_stdin).await {
            Ok(begun) => begun,
            Err(e) => {
                ends.reply(&ControlReply::Error {
                    message: e.to_string(),
                    code: EXIT_HULL_ERROR,
                });
                hijack::tell_and_close(upgraded, tty, &format!("exec: {e}")).await;
                return;
            }
        };
        let (tx, rx) = mpsc::channel(8);
        lock(&entry.state).requests = Some(tx);
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let early = hijack::EarlyInput::default();
        hijack::relay(io, client, pipes, Some(rx), &mut ends, early).await;
    });
    Ok(hijack::switching(tty))
}

/// What an exec's failure to start reports as its exit code.
const EXIT_HULL_ERROR: i32 = 125;

/// Asks the supervisor to start the exec'd process on new pipes.
async fn begin(
    entry: &ExecEntry,
    socket: &std::path::Path,
    stdin: bool,
) -> std::io::Result<(ControlClient, Pipes)> {
    let cfg = &entry.config;
    let mut pipes = Pipes::new(stdin, cfg.tty)?;
    let request = ExecRequest {
        process: None,
        owned: false,
        args: cfg.cmd.clone(),
        env: cfg
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|kv| kv.contains('='))
            .collect(),
        workdir: cfg.working_dir.clone().filter(|w| !w.is_empty()),
        user: cfg.user.clone().filter(|u| !u.is_empty()),
        tty: cfg.tty,
        stdin,
        size: cfg.tty.then_some((24, 80)),
    };
    let client = {
        let fds: Vec<_> = pipes.theirs.iter().map(|fd| fd.as_fd()).collect();
        ControlClient::connect(socket, &ControlRequest::Exec(Box::new(request)), &fds).await?
    };
    // The supervisor holds its own copies now.
    pipes.theirs.clear();
    Ok((client, pipes))
}

/// Records what the supervisor says of the exec'd process.
struct ExecEnds(Arc<ExecEntry>);

impl Replies for ExecEnds {
    fn reply(&mut self, reply: &ControlReply) -> bool {
        let mut state = lock(&self.0.state);
        match reply {
            ControlReply::Started { pid } => {
                state.running = true;
                state.pid = *pid;
                false
            }
            ControlReply::Exited { exit_code, .. } => {
                state.running = false;
                state.exit_code = Some(*exit_code);
                state.requests = None;
                true
            }
            ControlReply::Error { code, .. } => {
                state.running = false;
                state.exit_code = Some(*code);
                state.requests = None;
                true
            }
            _ => false,
        }
    }
}

pub async fn resize(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let entry = app.exec(id)?;
    let (rows, cols) = crate::containers::usage::size(query)?;
    let sender = lock(&entry.state).requests.clone();
    match sender {
        Some(tx) => {
            let _ = tx.send(ControlRequest::Resize { rows, cols }).await;
            Ok(empty(StatusCode::OK))
        }
        None => Err(ApiError::conflict(format!(
            "Exec instance {id} is not running"
        ))),
    }
}

pub fn inspect(app: &Arc<App>, id: &str) -> ApiResult {
    let entry = app.exec(id)?;
    let state = lock(&entry.state);
    let cfg = &entry.config;
    ok_json(&serde_json::json!({
        "ID": entry.id,
        "Running": state.running,
        "ExitCode": state.exit_code,
        "ProcessConfig": {
            "tty": cfg.tty,
            "entrypoint": cfg.cmd.first(),
            "arguments": cfg.cmd.get(1..).unwrap_or_default(),
            "privileged": false,
            "user": cfg.user.clone().unwrap_or_default(),
        },
        "OpenStdin": cfg.attach_stdin,
        "OpenStdout": cfg.attach_stdout,
        "OpenStderr": cfg.attach_stderr,
        "CanRemove": false,
        "ContainerID": entry.container_id,
        "DetachKeys": "",
        "Pid": state.pid,
    }))
}
