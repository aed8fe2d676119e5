//! Fuzz target: arbitrary bytes as a delta push's body (`POST /v1/plan` or `/v1/apply`),
//! resolved against a fixed base: no panic, and a delta that resolves gives exactly the files
//! it lists (`topologyd_api::delta::fuzz_resolve`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topologyd_api::delta::fuzz_resolve(data);
});
