//! Fuzzes the snapshot state decoder: the input is a whole state file and,
//! sealed with a valid checksum, a state payload.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_vmm::persist::fuzz_state(data);
});
