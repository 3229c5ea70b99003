//! Fuzzes unpacking one layer tar: it stays in its root or fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_image::fuzzing::image_layer(data);
});
