//! What a snapshot keeps of a virtio-net device besides the shared state:
//! the MAC in its config space. The tap is not saved: a restored VM names
//! its own (or stays a placeholder), and may give the device a new MAC if
//! it offered one. A frame read from the tap and not delivered is lost,
//! as on a wire.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;

use super::{Net, NetBacking};
use crate::devices::virtio::DeviceError;

/// A network device as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetState {
    /// The MAC in config space (VIRTIO_NET_F_MAC offered when set).
    pub mac: Option<[u8; 6]>,
    /// Whether it stood on a placeholder.
    pub placeholder: bool,
}

impl Net<NetBacking> {
    /// The device's own part of the state.
    pub fn save_net(&self) -> NetState {
        NetState {
            mac: self.mac,
            placeholder: self.is_placeholder(),
        }
    }

    /// A device for a saved slot on `backing`, with `mac` in place of the
    /// saved one when given (the shared state is restored after).
    pub fn for_saved(
        mem: Arc<GuestMemoryMmap>,
        backing: NetBacking,
        s: &NetState,
        mac: Option<[u8; 6]>,
    ) -> Result<Self, DeviceError> {
        Net::with_backing(mem, backing, s.mac.map(|saved| mac.unwrap_or(saved)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::guest_memory;
    use crate::devices::virtio::VirtioDevice;

    #[test]
    fn a_saved_slot_keeps_its_features_and_may_change_its_mac() {
        let mac = [2, 0, 0, 0, 0, 1];
        let t = Net::with_backing(
            guest_memory(),
            NetBacking::placeholder().unwrap(),
            Some(mac),
        )
        .unwrap();
        let saved = t.save_net();
        assert!(saved.placeholder);
        let new_mac = [2, 0, 0, 0, 0, 9];
        let c = Net::for_saved(
            guest_memory(),
            NetBacking::placeholder().unwrap(),
            &saved,
            Some(new_mac),
        )
        .unwrap();
        assert_eq!(c.state().avail_features(), t.state().avail_features());
        let mut m = [0u8; 6];
        c.read_config(0, &mut m);
        assert_eq!(m, new_mac);
        let none = NetState {
            mac: None,
            placeholder: false,
        };
        let c = Net::for_saved(
            guest_memory(),
            NetBacking::placeholder().unwrap(),
            &none,
            None,
        )
        .unwrap();
        assert_eq!(c.save_net().mac, None);
    }
}
