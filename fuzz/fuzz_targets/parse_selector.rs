//! Fuzz target: the selector parser on arbitrary bytes never panics, never recurses past its
//! depth limit, and prints only inert error text (`topologyd_config::fuzz_entry::selector`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topologyd_config::fuzz_entry::selector(data);
});
