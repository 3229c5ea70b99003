//! Fuzzes the host's reader of a hostile agent's connection: every bound it keeps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_sandbox::agent_client::fuzzing::agent_to_host(data);
});
