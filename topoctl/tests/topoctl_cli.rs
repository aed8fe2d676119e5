//! `topoctl` as an operator runs it: exit codes, `file:line:column` errors, plans and guards on
//! the command line, and `explain`. Uses the bundled example topology.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/topology")
        .join(name)
}

fn example_files() -> Vec<PathBuf> {
    ["fleet.toml", "services.toml", "prefixes.toml"]
        .iter()
        .map(|name| example(name))
        .collect()
}

fn topoctl(arguments: &[&str], files: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topoctl"))
        .args(arguments)
        .args(files)
        .output()
        .unwrap_or_else(|error| panic!("running topoctl: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"))
}

/// The example with `prefixes.toml` replaced by `prefixes` (written to a scratch directory).
fn with_prefixes(directory: &Path, prefixes: &str) -> Vec<PathBuf> {
    let path = directory.join("prefixes.toml");
    std::fs::write(&path, prefixes).unwrap_or_else(|error| panic!("write: {error}"));
    vec![example("fleet.toml"), example("services.toml"), path]
}

fn example_prefixes() -> String {
    std::fs::read_to_string(example("prefixes.toml")).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn check_accepts_the_example_and_exits_zero() {
    let output = topoctl(&["check"], &example_files());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("valid:"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn check_reports_every_error_with_file_line_column_and_exits_four() {
    let directory = scratch();
    let broken = format!(
        "{}\n[[binding]]\ncidr = \"10.0.0.1/8\"\nservice = \"no-such-service\"\n",
        example_prefixes()
    );
    let files = with_prefixes(directory.path(), &broken);
    let output = topoctl(&["check"], &files);
    assert_eq!(output.status.code(), Some(4));
    let errors = text(&output.stderr);
    let lines = example_prefixes().lines().count();
    // Both problems of the one binding are reported, each at its own position.
    assert!(
        errors.contains(&format!("prefixes.toml:{}:8: error", lines + 3)),
        "{errors}"
    );
    assert!(errors.contains("no-such-service"), "{errors}");
    assert!(errors.contains("help:"), "{errors}");
}

#[test]
fn plan_exit_codes_follow_the_verdict() {
    let directory = scratch();
    let files = example_files();
    let same = topoctl(&["plan", "--old"], &files);
    assert_eq!(
        same.status.code(),
        Some(1),
        "--new is required: usage error"
    );

    let mut arguments: Vec<String> = vec!["plan".into(), "--old".into()];
    arguments.extend(files.iter().map(|path| path.display().to_string()));
    arguments.push("--new".into());
    arguments.extend(files.iter().map(|path| path.display().to_string()));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let unchanged = topoctl(&arguments, &[]);
    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}",
        text(&unchanged.stdout)
    );

    // Un-advertising the resolver's 1.1.1.0/24 withdraws a bound route everywhere: G2 and G3.
    let withdrawn = example_prefixes().replacen("advertise = true", "advertise = false", 1);
    let new_files = with_prefixes(directory.path(), &withdrawn);
    let mut arguments: Vec<String> = vec!["plan".into(), "--old".into()];
    arguments.extend(files.iter().map(|path| path.display().to_string()));
    arguments.push("--new".into());
    arguments.extend(new_files.iter().map(|path| path.display().to_string()));
    let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let refused = topoctl(&borrowed, &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stdout));
    assert!(
        text(&refused.stdout).contains("1.1.1.0/24"),
        "{}",
        text(&refused.stdout)
    );

    let mut json = arguments.clone();
    json.push("--json".into());
    let borrowed: Vec<&str> = json.iter().map(String::as_str).collect();
    let refused_json = topoctl(&borrowed, &[]);
    assert_eq!(refused_json.status.code(), Some(3));
    let value: serde_json::Value = serde_json::from_slice(&refused_json.stdout)
        .unwrap_or_else(|error| panic!("plan --json is JSON: {error}"));
    assert_eq!(value["verdict"], "refused", "{value}");
}

#[test]
fn explain_names_the_binding_service_and_locations() {
    let output = topoctl(&["explain", "1.1.1.1"], &example_files());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("resolver"), "{stdout}");
    assert!(
        stdout.contains("prefixes.toml:"),
        "the binding's position is shown: {stdout}"
    );
    assert!(stdout.contains("announced at"), "{stdout}");
}

#[test]
fn compile_lists_the_routes_of_a_location_and_rejects_unknown_ones() {
    let output = topoctl(&["compile", "--location", "ams01"], &example_files());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("1.1.1.0/24"));
    let unknown = topoctl(&["compile", "--location", "nowhere"], &example_files());
    assert_ne!(unknown.status.code(), Some(0));
    assert!(
        text(&unknown.stderr).contains("nowhere"),
        "{}",
        text(&unknown.stderr)
    );
}
