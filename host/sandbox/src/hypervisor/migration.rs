//! Saving and restoring a QEMU VM for templates, over QMP (Debian's QEMU
//! 7.2 under TCG; recipe in docs/ARCHITECTURE.md). With the capability
//! `x-ignore-shared` on both sides, guest RAM, which lives in a shared
//! file, stays out of the migration stream: what is saved is the device
//! and CPU state, a few hundred KB, written by `exec:cat`. QEMU 7.2 has
//! no `file:` URI.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::qmp::{Qmp, QmpError};
use super::HypervisorError;

/// How long a save or a restore may take: the stream is small, so this is
/// only reached by a VM that is stuck.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(2);

/// `exec:` runs its command through `sh -c`: the path goes in single
/// quotes, so it may not hold one.
fn quoted(path: &Path) -> Result<String, HypervisorError> {
    match path.to_str() {
        Some(text) if !text.contains('\'') => Ok(format!("'{text}'")),
        _ => Err(HypervisorError::UnquotablePath(path.to_path_buf())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error(transparent)]
    Path(#[from] HypervisorError),
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
    let uri = format!("exec:cat > {}", quoted(state)?);
    let mut qmp = Qmp::connect(vm_dir).await?;
    qmp.execute("stop", json!({})).await?;
    ignore_shared(&mut qmp).await?;
    qmp.execute("migrate", json!({ "uri": uri })).await?;
    until_migrated(&mut qmp).await
}

/// Loads `state` into the VM in `vm_dir` (started with `-incoming defer`
/// on the template's RAM file) and lets it run.
pub async fn restore(vm_dir: &Path, state: &Path) -> Result<(), MigrationError> {
    let uri = format!("exec:cat {}", quoted(state)?);
    let mut qmp = connect_early(vm_dir).await?;
    ignore_shared(&mut qmp).await?;
    qmp.execute("migrate-incoming", json!({ "uri": uri }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_paths_are_quoted_for_the_shell_or_refused() {
        assert_eq!(
            quoted(Path::new("/var/lib/hull/templates/k/state")).unwrap(),
            "'/var/lib/hull/templates/k/state'"
        );
        assert!(quoted(Path::new("/tmp/it's")).is_err());
    }
}
