//! How a bundle becomes a topology in the daemon: [`compile_bundle`] (start-up from a stored
//! generation, and the bootstrap), [`compile_bundle_against`] (pushes, plans and rollbacks,
//! compiled against the running generation: incrementally, with the full compile's result)
//! and [`undecodable_file`], which the control API uses when a request body is not UTF-8 to
//! report the file and `line:column` of the first bad byte exactly as `topoctl check` reports
//! it for a file on disk (both go through `topologyd_config::decode_source`). Pure: no I/O, no
//! tasks.
//!
//! `topoctl check` and the daemon agree on validity because both end in the pure compile of
//! `topologyd_topology`, which applies every input bound of `topologyd_config` (sizes, nesting,
//! selector limits, names) before anything else; the incremental compile's result is the full
//! compile's (a property test checks it; any failure is compiled again in full). This module
//! only turns a bundle into its sources.

use serde::Deserialize;
use topologyd_config::{Diagnostic, Source, decode_source};
use topologyd_topology::{
    CompileReuse, Diagnostics, RunningText, Topology, compile_incremental_with_previous,
    compile_owned,
};

use crate::state_store::SourceBundle;

/// Compiles a pushed bundle into generation `generation`. Takes the bundle by value so that its
/// texts move into the compiled topology without another copy.
pub fn compile_bundle(bundle: SourceBundle, generation: u64) -> Result<Topology, Diagnostics> {
    let sources = bundle
        .sources
        .into_iter()
        .map(|file| Source::new(file.name, file.text))
        .collect();
    compile_owned(sources, generation)
}

/// [`compile_bundle`] for a push onto `running`: a finding that involves two places (a cidr bound
/// twice) is reported at the place the push added, as `topoctl plan` reports it. Files that
/// `running` compiled with the same name and text are not parsed again (the result is the full
/// compile's; see [`topologyd_topology::compile_incremental_with_digests`]); the reuse says how
/// many. `digests` are the files' SHA-256 when the caller checked or computed them (a resolved
/// delta's, a whole push's), so the texts are not hashed again. A bundle that does not compile
/// is handed back with the diagnostics.
pub fn compile_bundle_against(
    bundle: SourceBundle,
    digests: Option<Vec<[u8; 32]>>,
    generation: u64,
    running: &Topology,
) -> (Result<Topology, (Diagnostics, SourceBundle)>, CompileReuse) {
    compile_bundle_against_texts(bundle, digests, generation, running, &[])
}

/// [`compile_bundle_against`] with the texts `running` was compiled from, as the state
/// directory keeps them: a large file of bindings changed in a few tables has only those read
/// (see [`compile_incremental_with_previous`]).
pub fn compile_bundle_against_texts(
    bundle: SourceBundle,
    digests: Option<Vec<[u8; 32]>>,
    generation: u64,
    running: &Topology,
    running_texts: &[RunningText<'_>],
) -> (Result<Topology, (Diagnostics, SourceBundle)>, CompileReuse) {
    let sources: Vec<Source> = bundle
        .sources
        .into_iter()
        .map(|file| Source::new(file.name, file.text))
        .collect();
    let (compiled, reuse) =
        compile_incremental_with_previous(sources, digests, generation, running, running_texts);
    let compiled =
        compiled.map_err(|(diagnostics, sources)| (diagnostics, SourceBundle { sources }));
    (compiled, reuse)
}

/// A plan or apply request seen only for its files, with each text kept as raw bytes (JSON
/// strings are read without the UTF-8 check that `String` needs).
#[derive(Deserialize)]
struct RawRequest {
    bundle: RawBundle,
}

#[derive(Deserialize)]
struct RawBundle {
    sources: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    name: String,
    text: RawText,
}

struct RawText(Vec<u8>);

impl<'de> Deserialize<'de> for RawText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawText;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a file's text")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<RawText, E> {
                Ok(RawText(bytes.to_vec()))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawText, E> {
                Ok(RawText(text.as_bytes().to_vec()))
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

/// For a plan or apply request body that is not UTF-8: the error at the first bad byte of the
/// first file whose text is not UTF-8 (`name:line:column`, as `topoctl check` says it). `None`
/// when the body is UTF-8, or when the bad bytes are outside the files' texts (then the body is
/// simply malformed JSON).
pub fn undecodable_file(body: &[u8]) -> Option<Diagnostic> {
    if std::str::from_utf8(body).is_ok() {
        return None;
    }
    let request: RawRequest = serde_json::from_slice(body).ok()?;
    request
        .bundle
        .sources
        .into_iter()
        .find_map(|file| decode_source(&file.name, file.text.0).err())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_body_with_a_file_that_is_not_utf8_names_the_file_line_and_column() {
        let mut body = br#"{"bundle":{"sources":[{"name":"a.toml","text":"x = 1\n"},{"name":"b.toml","text":"y = 2\nz = \"caf"#.to_vec();
        body.push(0xE9);
        body.extend_from_slice(br#"\"\n"}]},"intent":[]}"#);
        let diagnostic = undecodable_file(&body).unwrap();
        assert_eq!(diagnostic.location.unwrap().to_string(), "b.toml:2:9");
        assert!(
            diagnostic.message.contains("0xE9"),
            "{}",
            diagnostic.message
        );
        let valid = br#"{"bundle":{"sources":[{"name":"a.toml","text":"x = \"\u00e9\"\n"}]}}"#;
        assert!(undecodable_file(valid).is_none());
    }
}
