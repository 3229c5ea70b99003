//! Fuzzes blk descriptor-chain parsing: the input is a guest descriptor
//! table, a head index and guest memory contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_vmm::devices::virtio::fuzzing::blk(data);
});
