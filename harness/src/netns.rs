//! Network namespaces for the tests that change interfaces or addresses, so that no test ever
//! touches the host's: [`Netns`] creates a uniquely named namespace with `ip netns add`, brings
//! its `lo` up, runs commands inside it with `ip netns exec`, and deletes it when dropped (also
//! when the test panics), after killing what still runs inside.
//!
//! [`isolate`] runs the calling test again, as a child process, inside a fresh namespace. The
//! child's body then shares the namespace with everything it starts (topologyd, BIRD, the
//! address binder) and with its own sockets: the existing launchers and their admin,
//! control and `birdc` clients work unchanged, on a loopback that is the namespace's own.
//!
//! Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; dummy interfaces may be
//! unavailable (no `dummy` module), so tests use the namespace's `lo`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::IpNet;

/// The environment variable that tells a re-run test which namespace it is inside of.
pub const INSIDE_VARIABLE: &str = "TOPOLOGYD_TEST_NETNS";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A failure to create, use or query a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("running `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed output that is not what was expected ({reason}):\n{stdout}")]
    Parse {
        command: String,
        reason: String,
        stdout: String,
    },
    #[error("the test {test} failed inside namespace {namespace} ({status}):\n{output}")]
    Test {
        test: String,
        namespace: String,
        status: String,
        output: String,
    },
}

/// A network namespace made for one test; dropping it deletes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `topo-TAG-PID-N` (unique among the processes of this machine) and brings its
    /// `lo` up.
    pub fn create(tag: &str) -> Result<Netns, NetnsError> {
        let name = format!(
            "topo-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, the guard deletes the namespace whatever happens.
        let namespace = Netns { name };
        namespace.ip(["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROGRAM`: add arguments, environment and stdio, then run it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `PROGRAM ARGUMENTS…` inside the namespace and returns its stdout; a non-zero
    /// exit is an error carrying stderr.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        arguments: impl IntoIterator<Item = S>,
    ) -> Result<String, NetnsError> {
        run(self.command(program).args(arguments))
    }

    /// `ip -n NAME ARGUMENTS…` (iproute2 acting on the namespace), returning stdout.
    pub fn ip<S: AsRef<OsStr>>(
        &self,
        arguments: impl IntoIterator<Item = S>,
    ) -> Result<String, NetnsError> {
        run(Command::new("ip").args(["-n", &self.name]).args(arguments))
    }

    /// The addresses on `interface` inside the namespace, as `ip -j address show` lists them.
    pub fn addresses(&self, interface: &str) -> Result<BTreeSet<IpNet>, NetnsError> {
        let stdout = self.ip(["-j", "address", "show", "dev", interface])?;
        parse_addresses(&stdout).map_err(|reason| NetnsError::Parse {
            command: format!("ip -n {} -j address show dev {interface}", self.name),
            reason,
            stdout,
        })
    }

    /// The processes still running inside the namespace.
    pub fn pids(&self) -> Result<Vec<u32>, NetnsError> {
        let stdout = run(Command::new("ip").args(["netns", "pids", &self.name]))?;
        Ok(stdout
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever the test started in here, and left running, dies with the namespace.
        for pid in self.pids().unwrap_or_default() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where [`isolate`] left the calling test.
#[derive(Debug)]
pub enum Isolation {
    /// This process is the re-run, inside the named namespace: go on with the test body.
    Inside(String),
    /// This process is the original: the re-run passed inside a namespace, now deleted, and
    /// its output was printed (shown by `cargo test` on failure or with `--nocapture`).
    Passed,
}

/// Runs the calling test again inside a fresh namespace, unless this process already is that
/// re-run. `test` is the test's name as the test binary knows it (the function name for a
/// top-level test in `tests/NAME.rs`), matched with `--exact`. Fails with the child's output
/// if the re-run fails or runs no test.
///
/// ```text
/// #[test]
/// fn binds_inside_a_namespace() {
///     let Isolation::Inside(_) = check(isolate("binds_inside_a_namespace")) else {
///         return;
///     };
///     // Everything below runs in the namespace, with `lo` up.
/// }
/// ```
pub fn isolate(test: &str) -> Result<Isolation, NetnsError> {
    if let Ok(namespace) = std::env::var(INSIDE_VARIABLE) {
        return Ok(Isolation::Inside(namespace));
    }
    let executable = std::env::current_exe().map_err(|source| NetnsError::Spawn {
        command: "the test binary (current_exe)".to_string(),
        source,
    })?;
    let tag: String = test
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let namespace = Netns::create(&tag)?;
    let mut command = namespace.command(&executable);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE_VARIABLE, namespace.name())
        .stdin(Stdio::null());
    let output = spawn(&mut command)?;
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    let ran_one = String::from_utf8_lossy(&output.stdout).contains("1 passed");
    if output.status.success() && ran_one {
        Ok(Isolation::Passed)
    } else {
        Err(NetnsError::Test {
            test: test.to_string(),
            namespace: namespace.name().to_string(),
            status: if ran_one {
                output.status.to_string()
            } else {
                format!(
                    "{}, and no test named exactly `{test}` passed",
                    output.status
                )
            },
            output: text,
        })
    }
}

/// The addresses in `ip -j address show` output (one interface or several).
pub fn parse_addresses(json: &str) -> Result<BTreeSet<IpNet>, String> {
    let links: serde_json::Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    let mut addresses = BTreeSet::new();
    for link in links.as_array().ok_or("not a JSON array")? {
        let Some(entries) = link.get("addr_info").and_then(|entries| entries.as_array()) else {
            continue;
        };
        for entry in entries {
            let local = entry
                .get("local")
                .and_then(|local| local.as_str())
                .ok_or("an addr_info entry without `local`")?;
            let length = entry
                .get("prefixlen")
                .and_then(|length| length.as_u64())
                .and_then(|length| u8::try_from(length).ok())
                .ok_or("an addr_info entry without `prefixlen`")?;
            let address = format!("{local}/{length}");
            addresses.insert(
                address
                    .parse()
                    .map_err(|error| format!("{address}: {error}"))?,
            );
        }
    }
    Ok(addresses)
}

fn spawn(command: &mut Command) -> Result<Output, NetnsError> {
    command.output().map_err(|source| NetnsError::Spawn {
        command: describe(command),
        source,
    })
}

fn run(command: &mut Command) -> Result<String, NetnsError> {
    let output = spawn(command.stdin(Stdio::null()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetnsError::Command {
            command: describe(command),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_addresses_of_ip_json_output() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8,"label":"lo"},
            {"family":"inet","local":"192.0.2.53","prefixlen":32,"label":"lo:topo"},
            {"family":"inet6","local":"2001:db8::53","prefixlen":128,"nodad":true},
            {"family":"inet6","local":"::1","prefixlen":128}]}]"#;
        let expected: BTreeSet<IpNet> = [
            "127.0.0.1/8",
            "192.0.2.53/32",
            "2001:db8::53/128",
            "::1/128",
        ]
        .iter()
        .filter_map(|address| address.parse().ok())
        .collect();
        assert_eq!(parse_addresses(json), Ok(expected));
        assert_eq!(parse_addresses("[]"), Ok(BTreeSet::new()));
        assert!(parse_addresses("{}").is_err());
    }
}
