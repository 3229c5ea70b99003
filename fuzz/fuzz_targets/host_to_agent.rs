//! Fuzzes what the agent decodes from the host: frames split anywhere, control messages.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_protocol::fuzzing::host_to_agent(data);
});
