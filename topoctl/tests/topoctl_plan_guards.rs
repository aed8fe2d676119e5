//! `topoctl plan` and `check` on the guards' hard cases, as an SRE meets them: a refusal by G3
//! that no intent and no blast-radius override lifts (and every other hint saying so first),
//! compile warnings in both output forms, and a duplicate binding reported where the change
//! added it. Uses the bundled example topology with one file replaced.

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

fn read_example(name: &str) -> String {
    std::fs::read_to_string(example(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// The example with `name` replaced by `text`, written to `directory`.
fn with_file(directory: &Path, name: &str, text: &str) -> Vec<PathBuf> {
    let path = directory.join(name);
    std::fs::write(&path, text).unwrap_or_else(|error| panic!("write: {error}"));
    example_files()
        .into_iter()
        .map(|file| {
            if file.file_name() == path.file_name() {
                path.clone()
            } else {
                file
            }
        })
        .collect()
}

fn plan(old: &[PathBuf], new: &[PathBuf], extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_topoctl"));
    command
        .arg("plan")
        .arg("--old")
        .args(old)
        .arg("--new")
        .args(new);
    command.args(extra);
    command
        .output()
        .unwrap_or_else(|error| panic!("running topoctl: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"))
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", text(&output.stdout)))
}

/// The resolver's IPv6 prefix re-bound to the pending `dls-eu` service: the replay of the
/// incident's latent error.
fn rebound_to_pending(directory: &Path) -> Vec<PathBuf> {
    let prefixes = read_example("prefixes.toml").replacen(
        "cidr = \"2606:4700:4700::/48\"\nservice = \"resolver\"",
        "cidr = \"2606:4700:4700::/48\"\nservice = \"dls-eu\"",
        1,
    );
    assert!(prefixes.contains("service = \"dls-eu\""));
    with_file(directory, "prefixes.toml", &prefixes)
}

#[test]
fn following_every_hint_but_the_per_route_override_is_still_refused() {
    let directory = scratch();
    let new = rebound_to_pending(directory.path());
    let bare = plan(&example_files(), &new, &[]);
    assert_eq!(bare.status.code(), Some(3), "{}", text(&bare.stdout));
    let output = text(&bare.stdout);
    // G3 comes first, and G2's hint says that its intent is not enough.
    let g3 = output
        .find("G3 route 2606:4700:4700::/48")
        .unwrap_or_else(|| panic!("{output}"));
    let g2 = output
        .find("G2 route 2606:4700:4700::/48")
        .unwrap_or_else(|| panic!("{output}"));
    assert!(g3 < g2, "{output}");
    assert!(
        output.contains("G3 refuses 1 route(s) that would be announced from no live location"),
        "{output}"
    );
    assert!(
        output.contains("even with this intent the change is refused by G3"),
        "{output}"
    );
    assert!(
        output.contains("become bound to pending service `dls-eu`"),
        "{output}"
    );

    // Every hint followed: still refused, by G3 alone.
    let hinted = plan(
        &example_files(),
        &new,
        &[
            "--intent",
            "service:resolver",
            "--intent",
            "service:dls-eu",
            "--override",
            "blast-radius",
            "--json",
        ],
    );
    assert_eq!(hinted.status.code(), Some(3));
    let value = json(&hinted);
    assert_eq!(
        value["refusal"]["unlockable_without_per_route_overrides"],
        false
    );
    assert_eq!(
        value["refusal"]["per_route_overrides"],
        serde_json::json!(["--override global-withdrawal:2606:4700:4700::/48"])
    );
    let violations = value["violations"].as_array().cloned().unwrap_or_default();
    assert_eq!(violations.len(), 1, "{value}");
    assert_eq!(violations[0]["guard"], "G3");
    assert_eq!(violations[0]["unlock"]["by"], "per_route_override");
    assert_eq!(violations[0]["bound_to"], "dls-eu");

    // Naming the route lifts it.
    let allowed = plan(
        &example_files(),
        &new,
        &[
            "--intent",
            "service:resolver",
            "--intent",
            "service:dls-eu",
            "--override",
            "global-withdrawal:2606:4700:4700::/48",
        ],
    );
    assert_eq!(allowed.status.code(), Some(2), "{}", text(&allowed.stdout));
}

#[test]
fn plan_and_check_carry_every_warning_with_its_position() {
    let directory = scratch();
    let services = format!(
        "{}\n[[service]]\nname = \"spare\"\ntopology = \"all\"\n",
        read_example("services.toml")
    );
    // The name's line (the last but one) and the column of its value.
    let line = services.lines().count() - 1;
    let new = with_file(directory.path(), "services.toml", &services);
    let expected = format!("services.toml:{line}:8: warning: service `spare` has no bindings");

    let checked = Command::new(env!("CARGO_BIN_EXE_topoctl"))
        .arg("check")
        .arg("--json")
        .args(&new)
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(checked.status.code(), Some(0));
    let value = json(&checked);
    let warning = &value["warnings"][0];
    assert_eq!(warning["severity"], "warning", "{value}");
    assert_eq!(warning["location"]["line"], line, "{value}");
    assert!(warning["location"]["column"].as_u64().is_some(), "{value}");

    let planned = plan(&example_files(), &new, &["--json"]);
    let value = json(&planned);
    assert_eq!(value["warnings"][0]["location"]["line"], line, "{value}");
    assert_eq!(
        value["warnings"][0]["message"], "service `spare` has no bindings",
        "{value}"
    );

    let planned = plan(&example_files(), &new, &[]);
    let output = text(&planned.stdout);
    let warning = output.find(&expected).unwrap_or_else(|| panic!("{output}"));
    let summary = output
        .find("summary:")
        .unwrap_or_else(|| panic!("{output}"));
    assert!(
        warning < summary,
        "warnings come before the summary:\n{output}"
    );
}

#[test]
fn a_duplicate_binding_is_reported_where_the_change_added_it() {
    let directory = scratch();
    // The added binding comes first in the file, before the one that is already running.
    let prefixes = format!(
        "[[binding]]\ncidr = \"1.1.1.0/24\"\nservice = \"cdn\"\n\n{}",
        read_example("prefixes.toml")
    );
    let new = with_file(directory.path(), "prefixes.toml", &prefixes);
    let planned = plan(&example_files(), &new, &[]);
    assert_eq!(planned.status.code(), Some(4));
    let errors = text(&planned.stderr);
    assert!(
        errors.contains(
            "prefixes.toml:2:8: error: 1.1.1.0/24 is bound twice: already bound to service `resolver`"
        ),
        "{errors}"
    );
    assert!(errors.contains("help: the other binding is at"), "{errors}");
}

#[test]
fn a_production_service_moved_onto_a_test_location_is_called_out() {
    let directory = scratch();
    let services = read_example("services.toml").replacen(
        "name = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"",
        "name = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\nannounce_at_test_locations = true",
        1,
    );
    assert!(services.contains("announce_at_test_locations = true\ncommunities"));
    let new = with_file(directory.path(), "services.toml", &services);
    let planned = plan(&example_files(), &new, &["--json"]);
    let value = json(&planned);
    let callouts = value["callouts"].as_array().cloned().unwrap_or_default();
    assert!(
        callouts
            .iter()
            .any(|callout| callout["kind"] == "production_at_test_locations"
                && callout["service"] == "resolver"),
        "{value}"
    );
}

#[test]
fn vrps_at_plan_time_refuse_an_invalid_split_and_check_names_invalid_routes() {
    let directory = scratch();
    // The example announces 198.51.100.0/23 as /24s; a ROA up to /23 only makes them invalid.
    let vrps = directory.path().join("vrps.json");
    std::fs::write(
        &vrps,
        r#"{"metadata":{"buildtime":"2026-12-04T00:00:00Z"},"roas":[
            {"prefix":"198.51.100.0/23","maxLength":24,"asn":13335,"ta":"test","expires":1},
            {"prefix":"1.1.1.0/24","maxLength":24,"asn":13335,"ta":"test","expires":1}]}"#,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let strict = directory.path().join("strict.json");
    std::fs::write(
        &strict,
        r#"{"roas":[{"prefix":"198.51.100.0/23","maxLength":23,"asn":13335}]}"#,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let check = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_topoctl"))
            .arg("check")
            .arg("--vrps")
            .arg(file)
            .args(example_files())
            .output()
            .unwrap_or_else(|error| panic!("{error}"))
    };
    let valid = check(&vrps);
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid.stdout));
    assert!(
        text(&valid.stdout).contains("rpki: 2 VRPs"),
        "{}",
        text(&valid.stdout)
    );
    let invalid = check(&strict);
    assert_eq!(invalid.status.code(), Some(3), "{}", text(&invalid.stdout));
    assert!(
        text(&invalid.stdout).contains("G5 route 198.51.100.0/24 from AS13335"),
        "{}",
        text(&invalid.stdout)
    );
    // Plan: the same topology changes nothing, so nothing is newly invalid.
    let unchanged = plan(
        &example_files(),
        &example_files(),
        &["--vrps", &strict.display().to_string()],
    );
    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}",
        text(&unchanged.stdout)
    );
    // A broken VRP file is a usage error that says where.
    let broken = directory.path().join("broken.json");
    std::fs::write(&broken, "{\"roas\": [}").unwrap_or_else(|error| panic!("{error}"));
    let output = check(&broken);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("broken.json:1:"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_file_larger_than_a_topology_is_refused_without_being_read_whole() {
    let output = Command::new(env!("CARGO_BIN_EXE_topoctl"))
        .args(["check", "/dev/zero"])
        .output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output.stderr).contains("/dev/zero:1:1: error: the file holds more than 256 MiB"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_reader_that_goes_away_ends_topoctl_quietly() {
    // `topoctl plan --json | head -c 0`: the pipe's reader is gone before topoctl writes.
    let directory = scratch();
    let new = rebound_to_pending(directory.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_topoctl"))
        .arg("plan")
        .arg("--old")
        .args(example_files())
        .arg("--new")
        .args(&new)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{error}"));
    drop(child.stdout.take());
    let output = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("{error}"));
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
