//! Saving and restoring a QEMU VM for templates, over QMP (Debian's QEMU
//! 7.2 under TCG; recipe in docs/ARCHITECTURE.md). With the capability
//! `x-ignore-shared` on both sides, guest RAM, which lives in a shared
//! file, stays out of the migration stream: what is saved is the device
//! and CPU state, a few hundred KB. QEMU runs sandboxed (`-sandbox
//! spawn=deny`, so no `exec:` URI; 7.2 has no `file:` one either): the
//! state file is opened here and handed to QEMU over QMP (`getfd`, then
//! the `fd:` URI).

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::qmp::{Qmp, QmpError};

/// How long a save or a restore may take: the stream is small, so this is
/// only reached by a VM that is stuck.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(2);

/// The name the state file's descriptor has in QEMU.
const STATE_FD: &str = "hull-state";

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("{what} {}", path.display())]
    State {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migration {0}")]
    Failed(String),
    #[error("migration did not end within {0:?}")]
    Timeout(Duration),
}

async fn ignore_shared(qmp: &mut Qmp) -> Result<(), QmpError> {
    qmp.execute(
        "migrate-set-capabilities",
        json!({ "capabilities": [ { "capability": "x-ignore-shared", "state": true } ] }),
    )
    .await
    .map(|_| ())
}

/// Stops the VM in `vm_dir` and writes its state to `state`. The VM stays
/// stopped; its RAM file then holds the rest.
pub async fn save(vm_dir: &Path, state: &Path) -> Result<(), MigrationError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(state)
        .map_err(|source| MigrationError::State {
            what: "create",
            path: state.to_path_buf(),
            source,
        })?;
    let mut qmp = Qmp::connect(vm_dir).await?;
    qmp.execute("stop", json!({})).await?;
    ignore_shared(&mut qmp).await?;
    qmp.send_fd(STATE_FD, file.as_fd()).await?;
    qmp.execute("migrate", json!({ "uri": format!("fd:{STATE_FD}") }))
        .await?;
    until_migrated(&mut qmp).await?;
    // Complete on disk before the caller names it a template.
    file.sync_all().map_err(|source| MigrationError::State {
        what: "sync",
        path: state.to_path_buf(),
        source,
    })
}

/// Loads `state` into the VM in `vm_dir` (started with `-incoming defer`
/// on the template's RAM file) and lets it run.
pub async fn restore(vm_dir: &Path, state: &Path) -> Result<(), MigrationError> {
    let file = std::fs::File::open(state).map_err(|source| MigrationError::State {
        what: "open",
        path: state.to_path_buf(),
        source,
    })?;
    let mut qmp = connect_early(vm_dir).await?;
    ignore_shared(&mut qmp).await?;
    qmp.send_fd(STATE_FD, file.as_fd()).await?;
    qmp.execute(
        "migrate-incoming",
        json!({ "uri": format!("fd:{STATE_FD}") }),
    )
    .await?;
    until_migrated(&mut qmp).await?;
    // Without -S the VM runs once the state is in; a `cont` is needed only
    // if it was stopped, and does no harm otherwise.
    if !running(&mut qmp).await? {
        qmp.execute("cont", json!({})).await?;
    }
    Ok(())
}

/// Stops the vCPUs of the VM in `vm_dir` (a clone waiting in the pool).
pub async fn pause(vm_dir: &Path) -> Result<(), QmpError> {
    run_state(vm_dir, "stop").await
}

/// Lets the VM in `vm_dir` run again.
pub async fn resume(vm_dir: &Path) -> Result<(), QmpError> {
    run_state(vm_dir, "cont").await
}

async fn run_state(vm_dir: &Path, command: &str) -> Result<(), QmpError> {
    let mut qmp = Qmp::connect(vm_dir).await?;
    qmp.execute(command, json!({})).await.map(|_| ())
}

/// QEMU creates its QMP socket a few milliseconds after it starts.
async fn connect_early(vm_dir: &Path) -> Result<Qmp, QmpError> {
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    loop {
        match Qmp::connect(vm_dir).await {
            Err(QmpError::Connect { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await
            }
            other => return other,
        }
    }
}

async fn running(qmp: &mut Qmp) -> Result<bool, QmpError> {
    let status = qmp.execute("query-status", json!({})).await?;
    Ok(status.get("running").and_then(Value::as_bool) == Some(true))
}

/// Polls `query-migrate` until the migration completed (or failed).
async fn until_migrated(qmp: &mut Qmp) -> Result<(), MigrationError> {
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    loop {
        let answer = qmp.execute("query-migrate", json!({})).await?;
        match answer.get("status").and_then(Value::as_str) {
            Some("completed") => return Ok(()),
            Some(status @ ("failed" | "cancelled")) => {
                let why = answer
                    .get("error-desc")
                    .and_then(Value::as_str)
                    .unwrap_or(status);
                return Err(MigrationError::Failed(why.to_string()));
            }
            _ if Instant::now() >= deadline => {
                return Err(MigrationError::Timeout(MIGRATION_TIMEOUT))
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}
