//! Fuzzes image manifests, indexes, configs, docker manifest.json and references.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_image::fuzzing::image_documents(data);
});
