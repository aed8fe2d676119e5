//! Entry point shared by the cargo-fuzz target `compile_topology` (`fuzz/fuzz_targets/`,
//! nightly) and the stable corpus replay (`topology/tests/fuzz_corpus_replay.rs`). Panics only
//! when an invariant is broken, never because the input is malformed.
//!
//! Owns: the compile path's properties on arbitrary bytes given as one more file next to a small
//! valid fleet — bytes that are not UTF-8 are an error at a position inside the file, the
//! compile never panics or recurses without bound, and every diagnostic it prints is free of
//! control and bidirectional characters. This is the path `topoctl check` and the daemon's push
//! both take (`decode_source`, then [`compile_owned`]). Must not touch: anything stateful.

use topologyd_config::fuzz_entry::is_inert;
use topologyd_config::{Source, decode_source};

use crate::compile::compile_owned;

/// A small valid fleet and service the fuzzed file is compiled with, so that its selectors,
/// prefixes and bindings have something to refer to.
pub const FUZZ_FLEET: &str = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\n\
country = \"NL\"\ntags = [\"canary\"]\nstate = \"live\"\n\n[[service]]\nname = \"resolver\"\n\
topology = \"all\"\n";

/// Compiles `data` as `fuzz.toml` beside [`FUZZ_FLEET`]; returns whether it compiled.
pub fn compile_file(data: &[u8]) -> bool {
    let source = match decode_source("fuzz.toml", data.to_vec()) {
        Ok(source) => source,
        Err(diagnostic) => {
            let location = diagnostic
                .location
                .as_ref()
                .unwrap_or_else(|| panic!("a UTF-8 error without a position"));
            assert_eq!(location.file, "fuzz.toml");
            assert!(location.line >= 1 && location.column >= 1);
            assert!(location.line as usize <= data.len() + 1);
            return false;
        }
    };
    match compile_owned(vec![Source::new("fleet.toml", FUZZ_FLEET), source], 0) {
        Ok(topology) => {
            for warning in topology.warnings() {
                assert!(is_inert(&warning.to_string()), "warning {warning:?}");
            }
            true
        }
        Err(diagnostics) => {
            assert!(diagnostics.has_errors());
            assert!(
                is_inert(&diagnostics.to_string()),
                "diagnostics {diagnostics:?}"
            );
            false
        }
    }
}
