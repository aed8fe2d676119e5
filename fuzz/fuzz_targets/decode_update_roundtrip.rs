//! Fuzz target: whatever decodes re-encodes and decodes to the same value (idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topologyd_bgp::fuzz_entry::decode_update_roundtrip(data);
});
