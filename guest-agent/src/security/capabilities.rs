//! Linux capabilities by name, and the sets a container process gets
//! (bounding, effective, permitted, inheritable, ambient) as 64-bit masks.

use hull_protocol::CAPABILITY_NAMES as NAMES;
use thiserror::Error;

/// The highest capability number we know.
pub const LAST_CAP: u32 = NAMES.len() as u32 - 1;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

/// The bit of a capability name (`CAP_` prefix optional, any case).
pub fn bit(name: &str) -> Result<u32, UnknownCapability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES
        .iter()
        .position(|n| *n == full)
        .map(|i| i as u32)
        .ok_or(UnknownCapability(name.to_string()))
}

/// A set of capability names as a mask.
pub fn mask<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<u64, UnknownCapability> {
    names
        .into_iter()
        .try_fold(0u64, |acc, name| Ok(acc | (1u64 << bit(name)?)))
}

/// The five sets of a process, as masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    pub fn from_oci(
        caps: &oci_spec::runtime::LinuxCapabilities,
    ) -> Result<Self, UnknownCapability> {
        let names =
            |set: &Option<oci_spec::runtime::Capabilities>| -> Result<u64, UnknownCapability> {
                let strings: Vec<String> = set.iter().flatten().map(|c| c.to_string()).collect();
                mask(strings.iter())
            };
        Ok(Self {
            bounding: names(caps.bounding())?,
            effective: names(caps.effective())?,
            permitted: names(caps.permitted())?,
            inheritable: names(caps.inheritable())?,
            ambient: names(caps.ambient())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_bits() {
        assert_eq!(bit("CAP_CHOWN"), Ok(0));
        assert_eq!(bit("sys_admin"), Ok(21));
        assert_eq!(bit("CAP_CHECKPOINT_RESTORE"), Ok(40));
        assert!(bit("CAP_FLY").is_err());
    }

    #[test]
    fn docker_default_set_matches_its_known_mask() {
        let docker: Vec<String> = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // What `grep CapBnd /proc/self/status` shows in a default Docker container.
        assert_eq!(mask(docker.iter()), Ok(0x00000000a80425fb));
    }

    #[test]
    fn oci_capability_display_round_trips() {
        // oci-spec's Capability displays as "CAP_…"; make sure we parse it.
        let cap = oci_spec::runtime::Capability::SysAdmin;
        assert_eq!(bit(&cap.to_string()), Ok(21));
    }
}
