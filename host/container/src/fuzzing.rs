//! Harnesses of the `oci_config` fuzz target (`fuzz/`), also run as a
//! randomized unit test: a bundle's `config.json` and a `runc update`
//! resources file come from whoever calls `hull-runc` or the shim. What
//! hull makes of them (the guest's spec, the VM's size) must be a value
//! or an error, never a panic or an overflow.

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{bundle, oci};

/// Byte 0 picks the document (a bundle's config, or update resources);
/// the rest is its bytes. True if hull accepted it.
pub fn oci_config(data: &[u8]) -> bool {
    let Some((&kind, bytes)) = data.split_first() else {
        return false;
    };
    if kind % 2 == 1 {
        return oci::resources::from_reader(bytes).is_ok();
    }
    let Ok(spec) = serde_json::from_slice::<Spec>(bytes) else {
        return false;
    };
    let _ = bundle::user_annotations(&spec);
    let memory = bundle::vm_memory_mib(&spec, 256, 64);
    assert!(memory >= 64 || memory == 256);
    assert!((1..=256).contains(&bundle::vcpus(&spec)));
    let Ok((guest, _shares)) = bundle::guest_spec(&spec, Some(1)) else {
        return false;
    };
    // The guest never gets the host's user namespace or id maps.
    let linux = guest.linux().as_ref();
    assert!(linux
        .and_then(|l| l.namespaces().as_ref())
        .is_none_or(|ns| ns.iter().all(|n| n.typ() != LinuxNamespaceType::User)));
    assert!(linux.is_none_or(|l| l.uid_mappings().is_none()));
    // It goes to the agent as JSON.
    assert!(serde_json::to_vec(&guest).is_ok());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocol::fuzzing::Rng;

    const CONFIG: &str = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"mounts":[{"destination":"/data","type":"bind","source":"/tmp","options":["rbind","ro"]},{"destination":"/dev/shm","type":"bind","source":"/dev/shm"}],"linux":{"namespaces":[{"type":"user"},{"type":"network","path":"/proc/1/ns/net"},{"type":"pid"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":1}],"resources":{"memory":{"limit":9223372036854775807},"cpu":{"quota":9223372036854775807,"period":1}}}}"#;
    const RESOURCES: &str = r#"{"memory":{"limit":1048576},"cpu":{"shares":2,"quota":50000,"period":100000},"pids":{"limit":5}}"#;

    #[test]
    fn random_configs_are_taken_or_refused_cleanly() {
        let mut r = Rng(0x5851_f42d_4c95_7f2d);
        let mut accepted = 0;
        for i in 0..5_000u64 {
            let (kind, seed) = if i % 2 == 0 {
                (0, CONFIG)
            } else {
                (1, RESOURCES)
            };
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..(r.next_u64() % 3) {
                let at = (r.next_u64() as usize) % bytes.len();
                bytes[at] = b"0123456789-\"{}[],:ae "[(r.next_u64() as usize) % 21];
            }
            let mut input = vec![kind];
            input.extend(bytes);
            accepted += usize::from(oci_config(&input));
        }
        assert!(accepted > 500, "only {accepted} documents accepted");
    }
}
