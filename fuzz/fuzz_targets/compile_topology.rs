//! Fuzz target: arbitrary bytes as a topology file, through the compile path `topoctl check`
//! and the daemon share: no panic, no unbounded recursion, inert diagnostics
//! (`topologyd_topology::fuzz_entry::compile_file`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topologyd_topology::fuzz_entry::compile_file(data);
});
