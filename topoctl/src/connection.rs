//! How `topoctl` reaches one daemon and what a failed call means: the `--daemon`/`--cert`/
//! `--key`/`--ca` arguments ([`DaemonArguments`]), the client built from them, the one-call
//! runner every daemon command uses ([`call`]), and the exit-code table for a daemon's answer
//! ([`exit_code_of`]): errors go to stderr (with `--json`, also as the daemon's error body on
//! stderr), results to stdout.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use topologyd::control_client::{ClientError, ControlClient};
use topologyd::tls::{TlsFiles, client_config};
use topologyd_api::{EXIT_CONFLICT, EXIT_INVALID, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};

use crate::error_chain;
use crate::render::inert;

/// Where the daemon is and the credentials to call it with.
#[derive(Args, Debug, Clone)]
pub struct DaemonArguments {
    /// The daemon's control API address.
    #[arg(long, env = "TOPOCTL_DAEMON", default_value = "127.0.0.1:9180")]
    pub daemon: SocketAddr,
    /// The name in the daemon's certificate.
    #[arg(long, env = "TOPOCTL_SERVER_NAME", default_value = "localhost")]
    pub server_name: String,
    /// Our client certificate (PEM).
    #[arg(long, env = "TOPOCTL_CERT")]
    pub cert: PathBuf,
    /// Our client private key (PEM).
    #[arg(long, env = "TOPOCTL_KEY")]
    pub key: PathBuf,
    /// The CA that signed the daemon's certificate (PEM).
    #[arg(long, env = "TOPOCTL_CA")]
    pub ca: PathBuf,
}

/// Why a call could not even be made: the credentials could not be loaded (exit 6).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

impl DaemonArguments {
    /// A client for the daemon, with the credentials loaded.
    pub fn client(&self) -> Result<ControlClient, ConnectError> {
        let tls = client_config(&TlsFiles {
            certificate: self.cert.clone(),
            private_key: self.key.clone(),
            ca: self.ca.clone(),
        })
        .map_err(|error| ConnectError(error_chain(&error)))?;
        ControlClient::new(self.daemon, &self.server_name, tls)
            .map_err(|error| ConnectError(error.to_string()))
    }
}

/// A single-threaded runtime for one command's calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
}

/// Runs one daemon command: builds the client (exit 6 with the reason on stderr when the
/// credentials cannot be loaded), then runs `command`, which prints and answers the exit code.
pub fn call<Command, Outcome>(daemon: &DaemonArguments, command: Command) -> i32
where
    Command: FnOnce(ControlClient) -> Outcome,
    Outcome: Future<Output = i32>,
{
    let client = match daemon.client() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("topoctl: {error}");
            return EXIT_UNREACHABLE;
        }
    };
    match runtime() {
        Ok(runtime) => runtime.block_on(command(client)),
        Err(error) => {
            eprintln!("topoctl: {error}");
            EXIT_USAGE
        }
    }
}

/// Prints a view as pretty JSON on stdout, keys in the order the daemon writes them.
pub fn print_json<T: Serialize>(view: &T) {
    println!("{}", pretty(view));
}

/// A view as pretty JSON.
pub fn pretty<T: Serialize>(view: &T) -> String {
    serde_json::to_value(view)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_default()
}

/// The exit code of a failed call (README, "Exit codes"): 3 refused by a guard, 4 invalid or
/// not found, 5 a compare-and-swap, lease or deadline conflict, 6 the daemon unreachable, the
/// TLS handshake refused, a certificate without the role, the daemon busy or its disk full;
/// 1 for anything else (an answer that is not the API's).
pub fn exit_code_of(error: &ClientError) -> i32 {
    match error {
        ClientError::Status { status, body } => match (*status, body.error.kind.as_str()) {
            (422, _) => EXIT_REFUSED,
            (409, _) => EXIT_CONFLICT,
            (400, "invalid") | (404, _) | (413, _) => EXIT_INVALID,
            (401 | 403 | 503 | 507, _) => EXIT_UNREACHABLE,
            _ => EXIT_USAGE,
        },
        ClientError::ServerName { .. }
        | ClientError::Connect { .. }
        | ClientError::Tls { .. }
        | ClientError::Http { .. }
        | ClientError::Timeout { .. } => EXIT_UNREACHABLE,
        ClientError::Request { .. } | ClientError::Decode { .. } | ClientError::View { .. } => {
            EXIT_USAGE
        }
    }
}

/// Reports a failed call on stderr and answers its exit code. A compile error or a guard
/// refusal carries its rendered text (file:line:column, violations), printed after the
/// one-line summary; with `json`, the daemon's error body follows as JSON, also on stderr.
pub fn report_error(error: &ClientError, json: bool) -> i32 {
    match error {
        ClientError::Status { status, body } => {
            let view = &body.error;
            eprintln!(
                "topoctl: the daemon answered {status} ({}): {}",
                inert(&view.kind),
                inert(&view.message)
            );
            if json {
                eprintln!("{}", pretty(body));
            } else {
                match (
                    view.detail.as_ref(),
                    view.detail.as_ref().and_then(|d| d.text()),
                ) {
                    (_, Some(text)) => {
                        let text = inert(text);
                        eprint!("{text}");
                        if !text.ends_with('\n') {
                            eprintln!();
                        }
                    }
                    (Some(detail), None) => eprintln!("{}", pretty(detail)),
                    (None, None) => {}
                }
            }
        }
        error => eprintln!("topoctl: {}", error_chain(error)),
    }
    exit_code_of(error)
}

/// Prints a call's view (human text from `human`, or JSON) and answers `code`, or reports its
/// error.
pub fn show<View: Serialize>(
    answer: Result<View, ClientError>,
    json: bool,
    human: impl FnOnce(&View) -> String,
    code: impl FnOnce(&View) -> i32,
) -> i32 {
    match answer {
        Ok(view) => {
            if json {
                print_json(&view);
            } else {
                print!("{}", human(&view));
            }
            code(&view)
        }
        Err(error) => report_error(&error, json),
    }
}
