//! Fuzzes a bundle's config.json and runc update's resources as hull plans with them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_container::fuzzing::oci_config(data);
});
