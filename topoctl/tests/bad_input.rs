//! Bad input never crashes or balloons, and `topoctl check` and the daemon agree on it.
//!
//! - The real `topoctl check` binary on adversarial files (a selector nested 3,000 parentheses
//!   deep, 20 MB of nested arrays, bytes that are not UTF-8, a bidirectional override in a name):
//!   exit 4 with `file:line:column`, never a crash and never exit 1.
//! - Property tests over random selector strings (deep nesting, long chains, stray characters)
//!   and random TOML-ish documents (including bytes that are not UTF-8): the path `topoctl check`
//!   takes (`load_sources` from a file, then `compile_owned`) and the path a pushed bundle takes
//!   in the daemon (the request body's bytes through `bundle::undecodable_file`, the JSON into a
//!   `PlanRequest`, then `bundle::compile_bundle`) never panic, agree on validity, and allocate
//!   at most ten times the input plus a constant (a counting global allocator measures it). A
//!   smaller number of cases runs the built `topoctl check` binary itself and compares its exit
//!   code with the daemon path.

// A global allocator is an `unsafe impl` by definition; it forwards to `System` unchanged.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use proptest::prelude::*;
use topologyd::bundle::{compile_bundle, undecodable_file};
use topologyd::control::PlanRequest;
use topologyd_config::load_sources;
use topologyd_topology::compile_owned;

#[path = "../../topology/tests/support/counting_allocator.rs"]
mod counting_allocator;

use counting_allocator::{MEMORY_ALLOWANCE, MEMORY_PER_INPUT_BYTE, measured};

/// Serialises the tests of this binary, so that a measured compile has the counters to itself.
static MEASURING: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
tags = ["canary"]
state = "live"

[[location]]
name = "iad01"
region = "us"
metro = "IAD"
country = "US"
state = "live"

[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "resolver"
"#;

fn services_with(selector: &str) -> String {
    // A TOML literal string when the selector has no `'` and no line break; otherwise a basic
    // string with escapes (which the compiler reads back exactly).
    let quoted = if !selector.contains('\'') && !selector.contains('\n') {
        format!("'{selector}'")
    } else {
        toml_basic_string(selector)
    };
    format!("[[service]]\nname = \"resolver\"\ntopology = {quoted}\n")
}

fn toml_basic_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            character if character.is_control() => {
                quoted.push_str(&format!("\\u{:04X}", u32::from(character)));
            }
            character => quoted.push(character),
        }
    }
    quoted.push('"');
    quoted
}

/// The JSON body a client sends to `POST /v1/plan` for these files, byte for byte: file texts
/// that are not UTF-8 go into the JSON string raw, as a client other than topoctl could send.
fn plan_body(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = br#"{"bundle":{"sources":["#.to_vec();
    for (index, (name, text)) in files.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"name":"#);
        body.extend_from_slice(
            serde_json::to_string(name)
                .unwrap_or_else(|error| panic!("{error}"))
                .as_bytes(),
        );
        body.extend_from_slice(br#","text":""#);
        for byte in text {
            match byte {
                b'"' => body.extend_from_slice(b"\\\""),
                b'\\' => body.extend_from_slice(b"\\\\"),
                byte if *byte < 0x20 => body.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
                byte => body.push(*byte),
            }
        }
        body.extend_from_slice(b"\"}");
    }
    body.extend_from_slice(br#"]},"intent":[]}"#);
    body
}

/// The daemon's path for a pushed bundle: body bytes → UTF-8 check → `PlanRequest` →
/// `compile_bundle`. Returns validity and the peak allocation of the compile.
fn daemon_path(files: &[(&str, Vec<u8>)]) -> (bool, usize) {
    let body = plan_body(files);
    if undecodable_file(&body).is_some() {
        return (false, 0);
    }
    let request: PlanRequest = serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("the body of UTF-8 files must decode: {error}"));
    let (result, peak, _) = measured(|| compile_bundle(request.bundle, 1));
    (result.is_ok(), peak)
}

/// `topoctl check`'s path: the files written to disk, read with `load_sources`, compiled with
/// `compile_owned`.
fn check_path(directory: &Path, files: &[(&str, Vec<u8>)]) -> (bool, usize) {
    let paths = write(directory, files);
    let sources = match load_sources(&paths) {
        Ok(sources) => sources,
        Err(error) => {
            assert!(error.invalid.is_some(), "unreadable: {error}");
            return (false, 0);
        }
    };
    let (result, peak, _) = measured(|| compile_owned(sources, 0));
    (result.is_ok(), peak)
}

fn write(directory: &Path, files: &[(&str, Vec<u8>)]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, text)| {
            let path = directory.join(name);
            std::fs::write(&path, text).unwrap_or_else(|error| panic!("write: {error}"));
            path
        })
        .collect()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"))
}

fn topoctl_check(paths: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topoctl"))
        .arg("check")
        .args(paths)
        .output()
        .unwrap_or_else(|error| panic!("running topoctl: {error}"))
}

fn input_size(files: &[(&str, Vec<u8>)]) -> usize {
    files.iter().map(|(_, text)| text.len()).sum()
}

fn assert_agreement(files: &[(&str, Vec<u8>)]) -> Result<(), TestCaseError> {
    let directory = scratch();
    let bound = MEMORY_PER_INPUT_BYTE * input_size(files) + MEMORY_ALLOWANCE;
    let (check_valid, check_peak) = check_path(directory.path(), files);
    let (daemon_valid, daemon_peak) = daemon_path(files);
    prop_assert_eq!(check_valid, daemon_valid, "check and the daemon disagree");
    prop_assert!(
        check_peak <= bound,
        "check allocated {} > {}",
        check_peak,
        bound
    );
    prop_assert!(
        daemon_peak <= bound,
        "daemon allocated {} > {}",
        daemon_peak,
        bound
    );
    Ok(())
}

/// Selector text: random tokens (valid and not), deep nesting of `(` and `not`, long chains.
fn selector() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "(",
        ")",
        "not",
        "and",
        "or",
        "all",
        "none",
        "region",
        "=",
        "!=",
        "in",
        "[",
        "]",
        ",",
        "'eu'",
        "\"us\"",
        "tag:canary",
        "tag",
        ":",
        "metro",
        "'AMS'",
        "location",
        "state",
        "'live'",
        "\u{202E}",
        "'x\u{1b}y'",
        "é",
        "'",
        "\"",
        "\\",
        "\n",
    ]);
    let leaf = prop::sample::select(vec![
        "all",
        "none",
        "region = 'eu'",
        "tag:canary",
        "metro in ['AMS', 'IAD',]",
        "state != 'test'",
        "location = 'ams01'",
        "country = \"NL\"",
    ])
    .prop_map(str::to_string);
    let composed = leaf.prop_recursive(6, 48, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone())
                .prop_map(|(left, right)| format!("({left}) and {right}")),
            (inner.clone(), inner.clone()).prop_map(|(left, right)| format!("{left} or ({right})")),
            inner.prop_map(|operand| format!("not {operand}")),
        ]
    });
    prop_oneof![
        3 => composed,
        1 => prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.join(" ")),
        1 => (0..400_usize, 0..400_usize, any::<bool>()).prop_map(|(open, close, negate)| {
            let opener = if negate { "not (" } else { "(" };
            format!("{}region = 'eu'{}", opener.repeat(open), ")".repeat(close))
        }),
        1 => (0..2000_usize).prop_map(|count| format!("{}all", "not ".repeat(count))),
        1 => (1..1500_usize).prop_map(|count| vec!["tag:canary"; count].join(" or ")),
    ]
}

/// A TOML-ish document: lines drawn from valid topology lines, broken syntax, deep nesting and
/// stray bytes (some not UTF-8).
fn document() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        prop::sample::select(vec![
            "[[location]]",
            "name = \"par01\"",
            "region = \"eu\"",
            "metro = \"PAR\"",
            "country = \"FR\"",
            "state = \"live\"",
            "tags = [\"canary\", \"x\"]",
            "[[service]]",
            "topology = \"all\"",
            "[[prefix]]",
            "cidr = \"198.51.100.0/24\"",
            "origin_asn = 1",
            "owner = \"o\"",
            "advertise = true",
            "[[binding]]",
            "service = \"resolver\"",
            "announce = { split = 25 }",
            "x = [[[[[",
            "{",
            "]]",
            "a.b.c.d.e.f = 1",
            "name = \"a\\u202Eb\"",
            "name = \"\\u0007\"",
            "\"unterminated",
            "'''",
            "# comment",
            "[settings]",
            "= =",
            "roa = { asn = 1, max_length = 24 }",
        ])
        .prop_map(|line| line.as_bytes().to_vec()),
        (1..300_usize).prop_map(|depth| format!("x = {}", "[".repeat(depth)).into_bytes()),
        (1..300_usize).prop_map(|depth| format!("x = {}", "{a = ".repeat(depth)).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    let location = (
        "[a-z]{1,6}[0-9]{2}",
        prop::sample::select(vec!["eu", "us", "apac", "e\\u202Eu", "e\\tu", ""]),
        prop::collection::vec("[a-z-]{1,10}", 0..4),
        prop::sample::select(vec!["live", "test", "drained", "lve"]),
    )
        .prop_map(|(name, region, tags, state)| {
            let tags: Vec<String> = tags.iter().map(|tag| format!("\"{tag}\"")).collect();
            format!(
                "[[location]]\nname = \"{name}\"\nregion = \"{region}\"\nmetro = \"M\"\n\
                 country = \"C\"\ntags = [{}]\nstate = \"{state}\"\n",
                tags.join(", ")
            )
            .into_bytes()
        });
    prop_oneof![
        3 => prop::collection::vec(location, 0..6).prop_map(|tables| tables.join(&b'\n')),
        2 => prop::collection::vec(line, 0..40).prop_map(|lines| lines.join(&b'\n')),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_selectors_agree_never_panic_and_stay_bounded(selector in selector()) {
        let _serial = lock();
        assert_agreement(&[
            ("fleet.toml", FLEET.as_bytes().to_vec()),
            ("services.toml", services_with(&selector).into_bytes()),
        ])?;
    }

    #[test]
    fn random_documents_agree_never_panic_and_stay_bounded(document in document()) {
        let _serial = lock();
        assert_agreement(&[
            ("fleet.toml", FLEET.as_bytes().to_vec()),
            ("services.toml", services_with("all").into_bytes()),
            ("random.toml", document),
        ])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The built binary itself: exit 0 exactly when the daemon path compiles, 4 otherwise;
    /// never 1, never a signal.
    #[test]
    fn the_topoctl_binary_agrees_with_the_daemon(selector in selector(), document in document()) {
        let _serial = lock();
        let files = [
            ("fleet.toml", FLEET.as_bytes().to_vec()),
            ("services.toml", services_with(&selector).into_bytes()),
            ("random.toml", document),
        ];
        let directory = scratch();
        let output = topoctl_check(&write(directory.path(), &files));
        let (daemon_valid, _) = daemon_path(&files);
        let expected = if daemon_valid { Some(0) } else { Some(4) };
        prop_assert_eq!(
            output.status.code(),
            expected,
            "stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Runs the binary on `files` and returns (exit code, stderr).
fn check_files(files: &[(&str, Vec<u8>)]) -> (Option<i32>, String) {
    let directory = scratch();
    let output = topoctl_check(&write(directory.path(), files));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_selector_nested_3000_deep_is_invalid_at_its_position_in_check_and_the_daemon() {
    let _serial = lock();
    // The selector from the incident: 3,000 parentheses (6,003 bytes, over the length limit).
    let deep = format!("{}all{}", "(".repeat(3000), ")".repeat(3000));
    let files = [
        ("fleet.toml", FLEET.as_bytes().to_vec()),
        ("services.toml", services_with(&deep).into_bytes()),
    ];
    let (code, stderr) = check_files(&files);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("services.toml:3:4109: error: invalid topology selector of service `resolver`: selector is 6003 bytes long, more than the limit of 4096 bytes"),
        "{stderr}"
    );
    assert!(!daemon_path(&files).0);
    // Within the length limit, the depth limit: the 65th `(` is the error.
    let deep = format!("{}all{}", "(".repeat(1000), ")".repeat(1000));
    let files = [
        ("fleet.toml", FLEET.as_bytes().to_vec()),
        ("services.toml", services_with(&deep).into_bytes()),
    ];
    let (code, stderr) = check_files(&files);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("services.toml:3:77: error: invalid topology selector of service `resolver`: selector nests deeper than 64 levels"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: remove redundant parentheses"),
        "{stderr}"
    );
    assert!(!daemon_path(&files).0);
}

#[test]
fn twenty_megabytes_of_nested_arrays_are_invalid_without_ballooning() {
    let _serial = lock();
    let nested = format!("x = {}", "[".repeat(20 << 20)).into_bytes();
    let files = [
        ("fleet.toml", FLEET.as_bytes().to_vec()),
        ("nested.toml", nested),
    ];
    let (code, stderr) = check_files(&files);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("nested.toml:1:21: error: arrays, inline tables and dotted keys nest deeper than 16 levels here"),
        "{stderr}"
    );
    let (valid, peak) = daemon_path(&files);
    assert!(!valid);
    assert!(
        peak <= MEMORY_ALLOWANCE,
        "the daemon path allocated {peak} bytes"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_invalid_at_file_line_column_in_check_and_the_daemon() {
    let _serial = lock();
    let mut broken = b"[[location]]\nname = \"z\xC3\xBCrich\"\nregion = \"eu\xFF\"\n".to_vec();
    broken.extend_from_slice(b"metro = \"ZRH\"\n");
    let files = [
        ("fleet.toml", FLEET.as_bytes().to_vec()),
        ("broken.toml", broken),
    ];
    let (code, stderr) = check_files(&files);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("broken.toml:3:13: error: the file is not UTF-8: byte 0xFF"),
        "{stderr}"
    );
    let diagnostic = undecodable_file(&plan_body(&files)).unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        diagnostic.location.map(|location| location.to_string()),
        Some("broken.toml:3:13".to_string())
    );
    assert!(
        diagnostic
            .message
            .starts_with("the file is not UTF-8: byte 0xFF")
    );
}

#[test]
fn names_with_bidirectional_overrides_are_invalid_and_echoed_escaped() {
    let _serial = lock();
    let fleet = FLEET.replace("name = \"iad01\"", "name = \"iad01\\u202E10dai\"");
    let files = [
        ("fleet.toml", fleet.into_bytes()),
        ("services.toml", services_with("all").into_bytes()),
    ];
    let (code, stderr) = check_files(&files);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("fleet.toml:11:8: error: location name \"iad01\\u{202e}10dai\" contains the invisible or control character \\u{202e}"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{202E}'), "{stderr:?}");
    assert!(!daemon_path(&files).0);
}
