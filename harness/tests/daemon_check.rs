//! End to end: `topologyd --check` runs every start-up check that needs no socket, and start-up
//! refuses the same configurations with the same message. A valid configuration (bootstrap
//! topology, control API with real TLS material, audit log, admin and BGP listeners, a peer with
//! an MD5 key file) passes `--check`; then each row of a table breaks one thing, and both
//! `topologyd --check` and a plain `topologyd` start must exit 2 with the error at the key that
//! names the problem (`topologyd.toml:line:column: error: …`), before anything is bound.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use topologyd_harness::peers::alloc;
use topologyd_harness::topologyd::{ControlPki, binaries};

const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"
"#;

const SERVICES: &str = r#"
[[service]]
name = "resolver"
topology = "all"
"#;

const PREFIXES: &str = r#"
[[prefix]]
cidr = "1.1.1.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "1.1.1.0/24"
service = "resolver"
"#;

fn check<T, E: std::fmt::Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

/// The world a configuration names: topology files, TLS material, key files, directories.
struct World {
    directory: tempfile::TempDir,
    pki: ControlPki,
    topology: Vec<PathBuf>,
}

impl World {
    fn new() -> World {
        let directory = check(tempfile::tempdir(), "a test directory");
        let mut topology = Vec::new();
        for (name, text) in [
            ("fleet.toml", FLEET),
            ("services.toml", SERVICES),
            ("prefixes.toml", PREFIXES),
        ] {
            let path = directory.path().join(name);
            check(std::fs::write(&path, text), "writing the topology");
            topology.push(path);
        }
        check(
            std::fs::write(directory.path().join("edge.key"), "s3cret\n"),
            "writing the MD5 key",
        );
        check(
            std::fs::create_dir(directory.path().join("audit")),
            "the audit directory",
        );
        World {
            directory,
            pki: check(ControlPki::generate(), "generating the PKI"),
            topology,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// A configuration that start-up accepts.
    fn valid_config(&self) -> String {
        let address = alloc::loopback_v4();
        let port = |address| alloc::free_port(std::net::IpAddr::V4(address));
        let files: Vec<String> = self
            .topology
            .iter()
            .map(|path| format!("\"{}\"", path.display()))
            .collect();
        format!(
            r#"location = "ams01"
local_asn = 13335
router_id = "{address}"
state_dir = "{state}"
bootstrap_topology = [{files}]

[bgp]
listen = ["{address}:{bgp}"]

[admin]
listen = "{address}:{admin}"

[control]
listen = "{address}:{control}"
certificate = "{certificate}"
private_key = "{private_key}"
client_ca = "{ca}"
audit_log = "{audit}"
roles = {{ "sre" = "admin" }}

[[peer]]
name = "edge"
address = "127.0.0.2"
asn = 64512
local_address = "{address}"
families = ["ipv4", "ipv6"]
next_hop_ipv6 = "2001:db8::1"
md5_key_file = "{key}"
"#,
            state = self.path("state").display(),
            files = files.join(", "),
            bgp = port(address),
            admin = port(address),
            control = port(address),
            certificate = self.pki.server.certificate.display(),
            private_key = self.pki.server.private_key.display(),
            ca = self.pki.ca.display(),
            audit = self.path("audit/audit.log").display(),
            key = self.path("edge.key").display(),
        )
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("topologyd.toml");
        check(std::fs::write(&path, text), "writing topologyd.toml");
        path
    }
}

/// Runs `topologyd` with `arguments`; returns its exit code and stderr. A start that does not
/// end within a minute is killed and reported.
fn run(arguments: &[&str]) -> (Option<i32>, String) {
    let binary = check(binaries(), "building topologyd").join("topologyd");
    let mut child = check(
        Command::new(binary)
            .args(arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        "running topologyd",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if check(child.try_wait(), "waiting for topologyd").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = check(child.wait_with_output(), "collecting the output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `path:line:column` of the value after `marker` (the first occurrence) in `text`.
fn position(path: &Path, text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in\n{text}"));
    let value = start + marker.len();
    let line = text[..value].matches('\n').count() + 1;
    let line_start = text[..value].rfind('\n').map_or(0, |newline| newline + 1);
    let column = text[line_start..value].chars().count() + 1;
    format!("{}:{line}:{column}", path.display())
}

/// Rewrites the valid configuration text (and may change the world).
type Breaking = Box<dyn Fn(&World, String) -> String>;

/// One broken configuration: how to break it, where the error must point, what it must say.
struct Case {
    name: &'static str,
    /// Rewrites the valid configuration (and may change the world).
    breaking: Breaking,
    /// The text right before the value the error points at.
    marker: &'static str,
    /// The start of the error message.
    message: Box<dyn Fn(&World) -> String>,
}

fn replace_line(text: &str, key: &str, line: &str) -> String {
    text.lines()
        .map(|current| {
            if current.starts_with(&format!("{key} = ")) {
                line.to_string()
            } else {
                current.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "location not in the bootstrap topology",
            breaking: Box::new(|_, text| replace_line(&text, "location", "location = \"lhr01\"")),
            marker: "location = ",
            message: Box::new(|_| "location `lhr01` is not in the topology's fleet".into()),
        },
        Case {
            name: "bootstrap file missing",
            breaking: Box::new(|world, text| {
                text.replace(
                    &world.topology[1].display().to_string(),
                    &world.path("gone.toml").display().to_string(),
                )
            }),
            marker: "fleet.toml\", ",
            message: Box::new(|world| {
                format!(
                    "reading {}: No such file or directory",
                    world.path("gone.toml").display()
                )
            }),
        },
        Case {
            name: "bootstrap topology does not compile",
            breaking: Box::new(|world, text| {
                check(
                    std::fs::write(world.path("broken.toml"), "[[service]]\nname = 7\n"),
                    "writing a broken topology file",
                );
                text.replace(
                    &world.topology[1].display().to_string(),
                    &world.path("broken.toml").display().to_string(),
                )
            }),
            marker: "bootstrap_topology = [",
            message: Box::new(|world| {
                // The compile errors follow at their own positions, after the finding's help.
                format!(
                    "the bootstrap topology does not compile:\n  help: fix the topology (`topoctl check` shows the same errors)\n{}:2:8: error",
                    world.path("broken.toml").display()
                )
            }),
        },
        Case {
            // Found by the compile after the parse, when the texts are no longer held: the
            // position comes from the file read again.
            name: "bootstrap topology binds an unknown service",
            breaking: Box::new(|world, text| {
                check(
                    std::fs::write(
                        world.path("renamed.toml"),
                        "[[service]]\nname = \"dns\"\ntopology = \"all\"\n",
                    ),
                    "writing a services file without the bound service",
                );
                text.replace(
                    &world.topology[1].display().to_string(),
                    &world.path("renamed.toml").display().to_string(),
                )
            }),
            marker: "bootstrap_topology = [",
            message: Box::new(|world| {
                format!(
                    "the bootstrap topology does not compile:\n  help: fix the topology (`topoctl check` shows the same errors)\n\
                     {}:2:8: warning: service `dns` has no bindings\n  help: bind a cidr to it, or remove it\n\
                     {}:3:8: error: G1: prefix 1.1.1.0/24 is advertised but has no default binding",
                    world.path("renamed.toml").display(),
                    world.topology[2].display()
                )
            }),
        },
        Case {
            name: "TLS certificate missing",
            breaking: Box::new(|world, text| {
                replace_line(
                    &text,
                    "certificate",
                    &format!(
                        "certificate = \"{}\"",
                        world.path("missing-cert.pem").display()
                    ),
                )
            }),
            marker: "\ncertificate = ",
            message: Box::new(|_| "control API TLS: ".into()),
        },
        Case {
            name: "TLS certificate does not match the key",
            breaking: Box::new(|world, text| {
                let client = check(world.pki.client("sre"), "a client identity");
                replace_line(
                    &text,
                    "private_key",
                    &format!("private_key = \"{}\"", client.private_key.display()),
                )
            }),
            marker: "\ncertificate = ",
            message: Box::new(|_| "control API TLS: server certificate and key".into()),
        },
        Case {
            name: "audit log directory missing",
            breaking: Box::new(|world, text| {
                replace_line(
                    &text,
                    "audit_log",
                    &format!(
                        "audit_log = \"{}\"",
                        world.path("no-such-dir/audit.log").display()
                    ),
                )
            }),
            marker: "audit_log = ",
            message: Box::new(|world| {
                format!(
                    "audit log {}: the directory {} does not exist",
                    world.path("no-such-dir/audit.log").display(),
                    world.path("no-such-dir").display()
                )
            }),
        },
        Case {
            name: "admin and control listeners on the same address",
            breaking: Box::new(|_, text| {
                let admin = text
                    .lines()
                    .skip_while(|line| *line != "[admin]")
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                let control = lines
                    .iter()
                    .position(|line| line == "[control]")
                    .unwrap_or_default();
                lines[control + 1] = admin;
                lines.join("\n") + "\n"
            }),
            marker: "[control]\nlisten = ",
            message: Box::new(|_| "[control] listen ".into()),
        },
        Case {
            name: "MD5 key file unreadable",
            breaking: Box::new(|world, text| {
                replace_line(
                    &text,
                    "md5_key_file",
                    &format!("md5_key_file = \"{}\"", world.path("gone.key").display()),
                )
            }),
            marker: "md5_key_file = ",
            message: Box::new(|world| {
                format!(
                    "peer `edge`: reading {}: No such file",
                    world.path("gone.key").display()
                )
            }),
        },
        Case {
            name: "state directory cannot be created",
            breaking: Box::new(|world, text| {
                check(
                    std::fs::write(world.path("plain-file"), "not a directory"),
                    "writing a plain file",
                );
                replace_line(
                    &text,
                    "state_dir",
                    &format!(
                        "state_dir = \"{}\"",
                        world.path("plain-file/state").display()
                    ),
                )
            }),
            marker: "state_dir = ",
            message: Box::new(|world| {
                format!(
                    "state_dir {} does not exist and cannot be created: {} is not a directory",
                    world.path("plain-file/state").display(),
                    world.path("plain-file").display()
                )
            }),
        },
        Case {
            name: "an IPv6 next hop that can never be encoded",
            breaking: Box::new(|_, text| {
                replace_line(&text, "next_hop_ipv6", "next_hop_ipv6 = \"::1\"")
            }),
            marker: "next_hop_ipv6 = ",
            message: Box::new(|_| "peer `edge`: next_hop_ipv6 ::1 is the loopback address".into()),
        },
    ]
}

#[test]
fn check_refuses_what_start_up_refuses_with_the_same_message() {
    let world = World::new();
    let valid = world.valid_config();
    let path = world.write_config(&valid);
    let config = path.display().to_string();
    let (code, stderr) = run(&["--check", "--config", &config]);
    assert_eq!(code, Some(0), "the valid configuration: {stderr}");
    // --check binds and writes nothing lasting: no state directory appears.
    assert!(
        !world.path("state").exists(),
        "--check created the state dir"
    );

    for case in cases() {
        let text = (case.breaking)(&world, valid.clone());
        let path = world.write_config(&text);
        let expected = format!(
            "{}: error: {}",
            position(&path, &text, case.marker),
            (case.message)(&world)
        );
        let (code, checked) = run(&["--check", "--config", &config]);
        assert_eq!(code, Some(2), "{}: --check exit code\n{checked}", case.name);
        assert!(
            checked.contains(&expected),
            "{}: --check must say\n{expected}\nbut said\n{checked}",
            case.name
        );
        assert!(
            checked.contains("help: "),
            "{}: no help\n{checked}",
            case.name
        );
        let (code, started) = run(&["--config", &config]);
        assert_eq!(
            code,
            Some(2),
            "{}: start-up exit code\n{started}",
            case.name
        );
        assert!(
            started.contains(&expected),
            "{}: start-up must say\n{expected}\nbut said\n{started}",
            case.name
        );
        assert!(
            !world.path("state").exists(),
            "{}: start-up went on to create the state dir",
            case.name
        );
    }
}

/// Starts topologyd with `config` and returns once its first generation is committed.
fn start_until_stored(world: &World, config: &str) -> std::process::Child {
    let binary = check(binaries(), "building topologyd").join("topologyd");
    let child = check(
        Command::new(binary)
            .args(["--config", config])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn(),
        "starting topologyd",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // A committed generation, not the temporary file it is written to first (under a loaded
    // disk its fsync and rename can take longer than the wait below).
    while !world.path("state/generations").is_dir()
        || check(
            std::fs::read_dir(world.path("state/generations")),
            "listing generations",
        )
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with(".tmp-"))
        .count()
            == 0
    {
        assert!(Instant::now() < deadline, "no generation stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child
}

/// A downgrade to a release that reads only state format 1: `--write-state-format-1` refuses
/// while the daemon holds the state directory, then rewrites the stored generation with its
/// texts inline (what such a release reads), and the result still checks and starts.
#[test]
fn write_state_format_1_rewrites_the_generations_for_an_older_release() {
    let world = World::new();
    let path = world.write_config(&world.valid_config());
    let config = path.display().to_string();
    let mut daemon = start_until_stored(&world, &config);
    assert!(
        matches!(daemon.try_wait(), Ok(None)),
        "topologyd exited after storing its first generation"
    );
    let (code, refused) = run(&["--write-state-format-1", "--config", &config]);
    assert_eq!(code, Some(1), "{refused}");
    assert!(refused.contains("locked"), "{refused}");
    let _ = daemon.kill();
    let _ = daemon.wait();

    let stored = world.path("state/generations/00000000000000000001.json");
    let before: serde_json::Value = check(
        serde_json::from_slice(&check(std::fs::read(&stored), "reading generation 1")),
        "generation 1",
    );
    assert_eq!(before["format"], 2, "{before}");
    let (code, stderr) = run(&["--write-state-format-1", "--config", &config]);
    assert_eq!(code, Some(0), "{stderr}");
    let after: serde_json::Value = check(
        serde_json::from_slice(&check(std::fs::read(&stored), "reading generation 1")),
        "generation 1",
    );
    assert_eq!(after["format"], 1, "{after}");
    assert_eq!(after["meta"], before["meta"]);
    let sources = after["bundle"]["sources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sources.len(), world.topology.len(), "{after}");
    for (file, written) in sources.iter().zip(&world.topology) {
        let text = check(std::fs::read_to_string(written), "reading the topology");
        assert_eq!(file["text"].as_str(), Some(text.as_str()));
    }
    // What start-up would recover still checks.
    let (code, stderr) = run(&["--check", "--config", &config]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// With a generation stored, start-up runs it and never reads the bootstrap topology: `--check`
/// then checks the stored generation instead (it loads, compiles and has this location), and a
/// missing bootstrap file is no error, as it is none at start-up.
#[test]
fn with_a_stored_generation_check_looks_at_it_as_start_up_does() {
    let world = World::new();
    let valid = world.valid_config();
    let path = world.write_config(&valid);
    let config = path.display().to_string();
    // A first start stores generation 1 (compiled from the bootstrap topology); then it is
    // killed, as a crash would.
    let mut first = start_until_stored(&world, &config);
    let _ = first.kill();
    let _ = first.wait();

    // The bootstrap topology is gone: start-up would not read it, --check does not either.
    for file in &world.topology {
        check(
            std::fs::remove_file(file),
            "removing the bootstrap topology",
        );
    }
    let (code, stderr) = run(&["--check", "--config", &config]);
    assert_eq!(code, Some(0), "{stderr}");

    // A location the stored generation does not have: refused at the key, with the message
    // start-up gives when it loads the generation.
    let text = replace_line(&valid, "location", "location = \"lhr01\"");
    let path = world.write_config(&text);
    let message = "location `lhr01` is not in the topology's fleet";
    let (code, checked) = run(&["--check", "--config", &config]);
    assert_eq!(code, Some(2), "{checked}");
    let expected = format!(
        "{}: error: {message}",
        position(&path, &text, "location = ")
    );
    assert!(checked.contains(&expected), "{expected}\nin\n{checked}");
    let (code, started) = run(&["--config", &config]);
    assert_eq!(code, Some(1), "{started}");
    assert!(started.contains(message), "{started}");
}
