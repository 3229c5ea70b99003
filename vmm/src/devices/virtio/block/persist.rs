//! What a snapshot keeps of a virtio-blk device besides the shared state:
//! its read-only flag, its id and the capacity the guest was told. The
//! backing is not saved: a restored VM names its own, and when that
//! changes the capacity (a placeholder given a file), the device tells
//! the guest through a configuration change.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;

use super::{Backing, Block, ID_BYTES};
use crate::devices::virtio::DeviceError;

/// A block device as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockState {
    /// Capacity in sectors the guest knew.
    pub capacity: u64,
    /// Read-only for the guest (offered as VIRTIO_BLK_F_RO).
    pub read_only: bool,
    /// The id GET_ID returns.
    pub id: [u8; ID_BYTES],
    /// Whether it stood on a placeholder.
    pub placeholder: bool,
}

impl BlockState {
    /// The id without its NUL padding.
    pub fn id_bytes(&self) -> &[u8] {
        let end = self.id.iter().position(|b| *b == 0).unwrap_or(ID_BYTES);
        &self.id[..end]
    }
}

impl Block<Backing> {
    /// The device's own part of the state.
    pub fn save_block(&self) -> BlockState {
        BlockState {
            capacity: self.disk.capacity,
            read_only: self.disk.read_only,
            id: self.disk.id,
            placeholder: self.is_placeholder(),
        }
    }

    /// A device for a saved slot, on this VM's `backing`, with the saved
    /// read-only flag and id (the shared state is restored after).
    pub fn for_saved(
        mem: Arc<GuestMemoryMmap>,
        backing: Backing,
        s: &BlockState,
    ) -> Result<Self, DeviceError> {
        Block::with_backing(mem, backing, s.read_only, s.id_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::guest_memory;

    #[test]
    fn a_saved_slot_comes_back_with_a_new_backing() {
        let slot =
            Block::with_backing(guest_memory(), Backing::Placeholder, true, b"scratch").unwrap();
        let saved = slot.save_block();
        assert!(saved.placeholder && saved.read_only);
        assert_eq!(saved.id_bytes(), b"scratch");
        let back: BlockState =
            serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        let real = Block::for_saved(guest_memory(), Backing::File(f), &back).unwrap();
        let now = real.save_block();
        assert_eq!(
            (now.capacity, now.read_only, now.placeholder),
            (2048, true, false)
        );
        assert_eq!(now.id, saved.id);
    }
}
