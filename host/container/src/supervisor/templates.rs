//! Finding a VM's template, made the first time a shape asks for one:
//! for a container's own VM (`boot`) and for a clone waiting in the warm
//! pool (`pooled`).

use hull_sandbox::assets::GuestAssets;
use hull_sandbox::hypervisor;
use hull_sandbox::template;

/// The template for `shape`, made now if there is none. Without one (the
/// backend cannot save VMs, or making it failed) the VM boots cold, with a
/// warning when something went wrong.
pub(super) async fn find_template(
    hypervisor: &dyn hypervisor::Hypervisor,
    assets: &GuestAssets,
    shape: template::Shape,
    dir: &std::path::Path,
) -> Option<(template::Template, template::Templates)> {
    hypervisor.snapshots()?;
    let templates = template::Templates::new(dir);
    let key = template::key(hypervisor, assets, shape).ok();
    if let Some(key) = &key {
        if templates.recently_failed(key) {
            return None;
        }
        if let template::Found::Broken(why) = templates.find(key) {
            warn(&format!("template {key} removed ({why})"));
        }
    }
    match template::make(hypervisor, assets, shape, &templates).await {
        Ok(template) => Some((template, templates)),
        Err(err) => {
            warn(&format!("no VM template ({err}); booting cold"));
            // A template VM that cannot boot fails the same way cold, which
            // reports it; what fails only for templates backs off.
            let boot_failed = matches!(err, template::MakeError::Boot(_));
            if let (Some(key), false) = (&key, boot_failed) {
                templates.mark_failed(key);
            }
            None
        }
    }
}

/// One warning, in the supervisor's log.
pub(super) fn warn(message: &str) {
    tracing::warn!("{message}");
}
