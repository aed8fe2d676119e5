//! End to end: from nothing to `topoctl status` with certificates `topoctl pki` makes.
//! `pki init`, `pki server --san localhost --san 127.0.0.1`, `pki issue --role admin alice`
//! and `--role reader bob` write 0600 files; a real topologyd starts with them (its
//! `[control]` naming the files and the roles `issue` printed); `topoctl status --context x`
//! through a contexts file (`$TOPOCTL_CONTEXTS`) reaches it by the host name `localhost`,
//! verifying its certificate against that name. Then each TLS mistake is explained naming the
//! file: a `--ca` that did not sign the daemon's certificate, a client certificate from a CA
//! the daemon's `client_ca` does not sign, a server name the certificate does not carry — each
//! exit 6 with nothing on stdout; a reader's push is refused (exit 6, forbidden).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use topologyd_harness::daemon_fixture::{
    self, AMS01_ROUTES, LOCAL_ASN, check, start_bird, topology, wait_for_routes,
};
use topologyd_harness::peers::Transport;
use topologyd_harness::peers::alloc::{RefusingEndpoint, free_port};
use topologyd_harness::topologyd::{
    ControlSection, DaemonConfig, TopoctlOutput, Topologyd, binaries,
};

/// `topoctl ARGUMENTS…` with `$TOPOCTL_CONTEXTS` set to `contexts` and no other TOPOCTL_*.
fn topoctl(contexts: &Path, arguments: &[&str]) -> TopoctlOutput {
    let output = check(
        Command::new(check(binaries(), "the binaries").join("topoctl"))
            .args(arguments)
            .env("TOPOCTL_CONTEXTS", contexts)
            .env(
                "HOME",
                contexts.parent().unwrap_or(Path::new("/nonexistent")),
            )
            .env_remove("TOPOCTL_DAEMON")
            .env_remove("TOPOCTL_SERVER_NAME")
            .env_remove("TOPOCTL_CONTEXT")
            .env_remove("TOPOCTL_CERT")
            .env_remove("TOPOCTL_KEY")
            .env_remove("TOPOCTL_CA")
            .stdin(Stdio::null())
            .output(),
        "running topoctl",
    );
    TopoctlOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn from_nothing_to_status_with_topoctl_pki_and_a_context() {
    let directory = check(tempfile::tempdir(), "a directory");
    let pki = directory.path().join("pki");
    let other = directory.path().join("other");
    let contexts = directory.path().join("contexts.toml");
    let dir = pki.display().to_string();
    let other_dir = other.display().to_string();

    // The five commands of README's quick start, minus starting the daemon.
    for arguments in [
        vec!["pki", "init", "--dir", &dir],
        vec![
            "pki",
            "server",
            "--dir",
            &dir,
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
        ],
        vec!["pki", "issue", "--dir", &dir, "--role", "admin", "alice"],
        vec!["pki", "issue", "--dir", &dir, "--role", "reader", "bob"],
        vec!["pki", "init", "--dir", &other_dir, "--name", "another CA"],
        vec![
            "pki", "issue", "--dir", &other_dir, "--role", "admin", "alice",
        ],
        vec!["pki", "server", "--dir", &other_dir, "--san", "localhost"],
    ] {
        let output = topoctl(&contexts, &arguments);
        assert_eq!(output.code, Some(2), "files written: {output}");
    }
    let issued = topoctl(
        &contexts,
        &["pki", "issue", "--dir", &dir, "--role", "admin", "alice"],
    );
    assert_eq!(issued.code, Some(1), "{issued}");
    assert!(issued.stderr.contains("--force"), "{issued}");
    for file in [
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        "alice-key.pem",
    ] {
        let mode = check(std::fs::metadata(pki.join(file)), file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    // The daemon with those files, listening where `localhost` resolves.
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let loopback = "127.0.0.1".parse().unwrap_or_else(|_| unreachable!());
    let port = free_port(loopback);
    daemon.control = Some(ControlSection {
        listen: std::net::SocketAddr::new(loopback, port),
        certificate: pki.join("server.pem"),
        private_key: pki.join("server-key.pem"),
        client_ca: pki.join("ca.pem"),
        roles: vec![
            ("alice".into(), "admin".into()),
            ("bob".into(), "reader".into()),
        ],
        audit_log: directory.path().join("audit.jsonl"),
    });
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);

    let context = |name: &str, daemon: &str, cert: &str, ca: &str| {
        format!(
            "[context.{name}]\ndaemon = \"{daemon}\"\ncert = \"{cert}.pem\"\nkey = \"{cert}-key.pem\"\nca = \"{ca}\"\n"
        )
    };
    let text = [
        "default = \"x\"\n".to_string(),
        context("x", &format!("localhost:{port}"), "pki/alice", "pki/ca.pem"),
        context(
            "reader",
            &format!("localhost:{port}"),
            "pki/bob",
            "pki/ca.pem",
        ),
        context(
            "wrong-ca",
            &format!("localhost:{port}"),
            "pki/alice",
            "other/ca.pem",
        ),
        context(
            "foreign-client",
            &format!("localhost:{port}"),
            "other/alice",
            "pki/ca.pem",
        ),
        format!(
            "{}server_name = \"ams01.example.net\"\n",
            context(
                "wrong-name",
                &format!("127.0.0.1:{port}"),
                "pki/alice",
                "pki/ca.pem"
            )
        ),
    ]
    .concat();
    check(std::fs::write(&contexts, text), "writing the contexts file");

    // status --context x: by host name, verified against it.
    let status = topoctl(&contexts, &["status", "--context", "x"]);
    assert_eq!(status.code, Some(0), "{status}");
    assert!(
        status.stdout.starts_with("location ams01  generation 1"),
        "{status}"
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|line| line.starts_with("edge-bird") && line.contains("Established")),
        "{status}"
    );
    // The file's default.
    let default = topoctl(&contexts, &["routes"]);
    assert_eq!(default.code, Some(0), "{default}");
    assert!(default.stdout.contains("NEXT HOP"), "{default}");
    let unknown = topoctl(&contexts, &["status", "--context", "nope"]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(
        unknown.stderr.contains("context `nope` is not in"),
        "{unknown}"
    );

    // Each TLS mistake, in words naming the file.
    let wrong_ca = topoctl(&contexts, &["status", "--context", "wrong-ca"]);
    assert_eq!(wrong_ca.code, Some(6), "{wrong_ca}");
    assert!(wrong_ca.stdout.is_empty(), "{wrong_ca}");
    assert!(
        wrong_ca.stderr.contains("not signed by the CA in")
            && wrong_ca.stderr.contains("other/ca.pem"),
        "{wrong_ca}"
    );
    let foreign = topoctl(&contexts, &["status", "--context", "foreign-client"]);
    assert_eq!(foreign.code, Some(6), "{foreign}");
    assert!(
        foreign.stderr.contains("client certificate")
            && foreign.stderr.contains("other/alice.pem")
            && foreign.stderr.contains("client_ca"),
        "{foreign}"
    );
    let wrong_name = topoctl(&contexts, &["status", "--context", "wrong-name"]);
    assert_eq!(wrong_name.code, Some(6), "{wrong_name}");
    assert!(
        wrong_name
            .stderr
            .contains("not valid for the name `ams01.example.net`"),
        "{wrong_name}"
    );

    // The fleet view, live: ams01 answers (a drained service shows), fra01 does not.
    let drained = topoctl(
        &contexts,
        &["drain", "--service", "resolver", "--reason", "matrix"],
    );
    assert_eq!(drained.code, Some(2), "{drained}");
    let refusing = RefusingEndpoint::new(Transport::V4);
    let dead = refusing.address();
    let fleet = directory.path().join("fleet.toml");
    let fleet_text = format!(
        "[defaults]\nca = \"pki/ca.pem\"\ncertificate = \"pki/alice.pem\"\nprivate_key = \"pki/alice-key.pem\"\n\n\
         [[location]]\nname = \"ams01\"\ncontrol = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\n\n\
         [[location]]\nname = \"fra01\"\ncontrol = \"{dead}\"\nserver_name = \"localhost\"\n\n\
         [[wave]]\nname = \"all\"\nshare = 1.0\n"
    );
    check(std::fs::write(&fleet, fleet_text), "writing the fleet file");
    let fleet_arg = fleet.display().to_string();
    let matrix = topoctl(&contexts, &["matrix", "--fleet", &fleet_arg]);
    assert_eq!(matrix.code, Some(6), "fra01 is unreachable: {matrix}");
    let header: Vec<&str> = matrix
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["SERVICE", "ams01", "fra01"], "{matrix}");
    let row = |service: &str| -> Vec<String> {
        matrix
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{service} ")))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("resolver"), ["resolver", "drained", "?"], "{matrix}");
    assert_eq!(row("cdn"), ["cdn", "announced", "?"], "{matrix}");
    assert!(matrix.stdout.contains("fra01: unreachable"), "{matrix}");
    let by_region = topoctl(
        &contexts,
        &["matrix", "--fleet", &fleet_arg, "--by", "region", "--json"],
    );
    let view: serde_json::Value = check(serde_json::from_str(&by_region.stdout), "matrix --json");
    assert_eq!(view["services"]["resolver"]["eu"]["drained"], 1, "{view}");
    assert!(view["unreachable"]["fra01"].is_string(), "{view}");
    eprintln!("--- sample: topoctl matrix --fleet\n{}", matrix.stdout);
    eprintln!("--- sample: topoctl status\n{}", status.stdout);
    eprintln!("--- sample: topoctl routes\n{}", default.stdout);

    // The reader reads, and may not drain.
    let read = topoctl(&contexts, &["health", "--context", "reader"]);
    assert_eq!(read.code, Some(0), "{read}");
    let drain = topoctl(
        &contexts,
        &["drain", "--context", "reader", "--service", "resolver"],
    );
    assert_eq!(drain.code, Some(6), "{drain}");
    assert!(drain.stderr.contains("forbidden"), "{drain}");
    drop(topologyd);
    drop(bird);
}
