//! Making a template: boot the VM of the shape (QEMU: its RAM in a shared
//! file; hull-vmm: empty disk slots and its API socket), wait for the
//! agent, save the VM as its backend's `SnapshotMethod` does and stop
//! it. Made in a scratch directory and renamed into place complete,
//! under a lock per key, so concurrent sandboxes make one template and
//! never see half of one.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::{
    check, digest_of, key_inputs, sha256_of, template_spec, FileIdentity, Found, KeyError, Meta,
    Shape, Template, Templates, MEMORY_FILE, META_FILE, STATE_FILE,
};
use crate::assets::GuestAssets;
use crate::hypervisor::{Hypervisor, SaveError};
use crate::{Sandbox, SandboxError};

#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("boot the template VM: {0}")]
    Boot(#[source] SandboxError),
    #[error("save the template VM: {0}")]
    Save(#[from] SaveError),
    #[error("the template just made fails its checks: {0}")]
    Check(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MakeError {
    let what = what.into();
    move |source| MakeError::Io { what, source }
}

/// The template for `shape`: found, or made now.
pub async fn make(
    hypervisor: &dyn Hypervisor,
    assets: &GuestAssets,
    shape: Shape,
    templates: &Templates,
) -> Result<Template, MakeError> {
    let inputs = key_inputs(hypervisor, assets, shape)?;
    let key = digest_of(&inputs);
    if let Found::Ready(template) = templates.find(&key) {
        return Ok(template);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(templates.root())
        .map_err(io(format!("create {}", templates.root().display())))?;
    let lock_path = templates.root().join(format!(".lock-{key}"));
    let lock = lock(&lock_path).await?;
    // Another sandbox may have made it while this one waited.
    let made = match templates.find(&key) {
        Found::Ready(template) => Ok(template),
        _ => make_locked(hypervisor, shape, templates, &key, inputs).await,
    };
    let _ = fs::remove_file(&lock_path);
    drop(lock);
    made
}

/// Takes the key's lock, waiting for whoever makes the template now.
async fn lock(path: &Path) -> Result<File, MakeError> {
    let file = File::create(path).map_err(io(format!("create {}", path.display())))?;
    let taken = tokio::task::spawn_blocking(move || {
        // SAFETY: flock on a descriptor this closure owns.
        let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if ret == 0 {
            Ok(file)
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    taken
        .await
        .map_err(|e| MakeError::Io {
            what: "lock the template".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(io(format!("lock {}", path.display())))
}

async fn make_locked(
    hypervisor: &dyn Hypervisor,
    shape: Shape,
    templates: &Templates,
    key: &str,
    inputs: super::KeyInputs,
) -> Result<Template, MakeError> {
    let scratch = templates
        .root()
        .join(format!(".make-{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .map_err(io(format!("create {}", scratch.display())))?;
    let made = boot_and_save(hypervisor, shape, &scratch, inputs, key).await;
    let renamed = made.and_then(|()| {
        let dir = templates.root().join(key);
        match fs::rename(&scratch, &dir) {
            Ok(()) => Ok(dir),
            // Made meanwhile by a sandbox that did not see our lock (its
            // lock file was removed under it): keep that one.
            Err(_) if dir.join(META_FILE).exists() => Ok(dir),
            Err(e) => Err(io(format!("rename {}", scratch.display()))(e)),
        }
    });
    let _ = fs::remove_dir_all(&scratch);
    check(&renamed?, Some(key)).map_err(MakeError::Check)
}

async fn boot_and_save(
    hypervisor: &dyn Hypervisor,
    shape: Shape,
    scratch: &Path,
    inputs: super::KeyInputs,
    key: &str,
) -> Result<(), MakeError> {
    let method = inputs.method;
    let memory = scratch.join(MEMORY_FILE);
    let state = scratch.join(STATE_FILE);
    if method.ram_file_before_boot() {
        File::create(&memory)
            .and_then(|f| f.set_len(u64::from(shape.memory_mib) << 20))
            .map_err(io(format!("create {}", memory.display())))?;
    }
    let assets = GuestAssets {
        kernel: inputs.kernel.path.clone(),
        initramfs: inputs.initramfs.path.clone(),
    };
    let spec = template_spec(&assets, shape, &scratch.join("vm"), &memory);
    let (mut sandbox, stream) = Sandbox::launch(hypervisor, format!("template-{key}"), &spec)
        .await
        .map_err(MakeError::Boot)?;
    sandbox.greet(stream).await.map_err(MakeError::Boot)?;
    method.save(sandbox.dir(), scratch).await?;
    // Saved: the template VM has done its work.
    sandbox.destroy().await;
    for file in [&memory, &state] {
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("sync {}", file.display())))?;
    }
    let (state_len, state_sha256) = sha256_of(&state).map_err(io("read the saved state"))?;
    let meta = Meta {
        key: key.to_string(),
        inputs,
        created: crate::process::now_nanos(),
        state_sha256,
        state_len,
        memory: FileIdentity::of(&memory).map_err(io("read the RAM file"))?,
    };
    let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    fs::write(scratch.join(META_FILE), json).map_err(io("write template.json"))?;
    Ok(())
}
