//! Fuzz target: framing and decoding of arbitrary bytes never panic (RFC 4271 §6, RFC 7606).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topologyd_bgp::fuzz_entry::decode_stream(data);
});
