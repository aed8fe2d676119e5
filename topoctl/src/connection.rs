//! How `topoctl` reaches one daemon and what a failed call means: the `--daemon`/`--cert`/
//! `--key`/`--ca` arguments ([`DaemonArguments`]), the client built from them, the one-call
//! runner every daemon command uses ([`call`]), and the exit-code table for a daemon's answer
//! ([`exit_code_of`]): errors go to stderr (with `--json`, also as the daemon's error body on
//! stderr), results to stdout. A failed TLS handshake is explained in words naming the file
//! that is wrong ([`tls_hint`]).

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::control_client::{ClientError, ControlClient};
use clap::Args;
use serde::Serialize;
use topologyd_api::{EXIT_CONFLICT, EXIT_INVALID, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};
use topologyd_transport::tls::{TlsFiles, client_config};

use crate::error_chain;
use crate::render::inert;

/// Where the daemon is and the credentials to call it with. Each falls back to the context
/// (`--context`, `$TOPOCTL_CONTEXT`, or the contexts file's default; see [`crate::context`]).
#[derive(Args, Debug, Clone)]
pub struct DaemonArguments {
    /// The daemon's control API, `HOST:PORT` (a host name or an address) [default: the
    /// context's, else 127.0.0.1:9180].
    #[arg(long, env = "TOPOCTL_DAEMON")]
    pub daemon: Option<String>,
    /// The name the daemon's certificate must carry [default: the host name of --daemon;
    /// `localhost` for an IP address].
    #[arg(long, env = "TOPOCTL_SERVER_NAME")]
    pub server_name: Option<String>,
    /// A context of the contexts file ($TOPOCTL_CONTEXTS, ~/.config/topoctl/contexts.toml).
    #[arg(long, env = "TOPOCTL_CONTEXT")]
    pub context: Option<String>,
    /// Our client certificate (PEM).
    #[arg(long, env = "TOPOCTL_CERT")]
    pub cert: Option<PathBuf>,
    /// Our client private key (PEM).
    #[arg(long, env = "TOPOCTL_KEY")]
    pub key: Option<PathBuf>,
    /// The CA that signed the daemon's certificate (PEM).
    #[arg(long, env = "TOPOCTL_CA")]
    pub ca: Option<PathBuf>,
}

/// The daemon's address when neither `--daemon` nor a context gives one.
pub const DEFAULT_DAEMON: &str = "127.0.0.1:9180";

/// Why a call could not even be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Arguments or the contexts file (exit 1).
    #[error("{0}")]
    Usage(String),
    /// The credentials cannot be loaded, the host name does not resolve (exit 6).
    #[error("{0}")]
    Unreachable(String),
}

/// The daemon and credentials one run uses, flags over context over defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As given (`HOST:PORT`).
    pub daemon: String,
    /// The name verified in the daemon's certificate.
    pub server_name: String,
    /// Client certificate, key and the daemon's CA.
    pub files: TlsFiles,
}

impl DaemonArguments {
    /// Resolves the flags against the context.
    pub fn target(&self) -> Result<Target, ConnectError> {
        let context =
            crate::context::select(self.context.as_deref()).map_err(ConnectError::Usage)?;
        let from_context = context.clone().unwrap_or_default();
        let daemon = self
            .daemon
            .clone()
            .or_else(|| context.as_ref().map(|context| context.daemon.clone()))
            .unwrap_or_else(|| DEFAULT_DAEMON.to_string());
        let file = |flag: &Option<PathBuf>, fallback: PathBuf, name: &str| {
            flag.clone()
                .or_else(|| context.as_ref().map(|_| fallback))
                .ok_or_else(|| {
                    ConnectError::Usage(format!(
                        "no --{name}: give --{name} (or $TOPOCTL_{}) or a context (--context NAME; see `topoctl pki` and README, \"Contexts\")",
                        name.to_uppercase()
                    ))
                })
        };
        let files = TlsFiles {
            certificate: file(&self.cert, from_context.cert.clone(), "cert")?,
            private_key: file(&self.key, from_context.key.clone(), "key")?,
            ca: file(&self.ca, from_context.ca.clone(), "ca")?,
        };
        // A context's server name belongs to its daemon: another daemon given with --daemon is
        // verified against its own name.
        let same_daemon = context
            .as_ref()
            .is_some_and(|context| context.daemon == daemon);
        let server_name = self
            .server_name
            .clone()
            .or(from_context.server_name.filter(|_| same_daemon))
            .unwrap_or_else(|| default_server_name(&daemon));
        Ok(Target {
            daemon,
            server_name,
            files,
        })
    }

    /// A client for the daemon, with the credentials loaded and the address resolved.
    pub fn client(&self) -> Result<ControlClient, ConnectError> {
        let target = self.target()?;
        let _ = TARGET.set(target.clone());
        let address = resolve(&target.daemon)?;
        let tls = client_config(&target.files)
            .map_err(|error| ConnectError::Unreachable(error_chain(&error)))?;
        ControlClient::new(address, &target.server_name, tls)
            .map_err(|error| ConnectError::Usage(error.to_string()))
    }
}

/// The host part of `HOST:PORT` (`[v6]:port` too).
fn host_of(daemon: &str) -> &str {
    let host = daemon.rsplit_once(':').map_or(daemon, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The name to verify when none is given: the host name of `daemon`, or `localhost` when it is
/// an IP address (the certificate `topoctl pki server` makes carries `localhost` by default).
pub fn default_server_name(daemon: &str) -> String {
    let host = host_of(daemon);
    if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        "localhost".to_string()
    } else {
        host.to_string()
    }
}

/// `HOST:PORT` to a socket address: an address as it is, a host name resolved (the first
/// answer).
pub fn resolve(daemon: &str) -> Result<SocketAddr, ConnectError> {
    if let Ok(address) = daemon.parse::<SocketAddr>() {
        return Ok(address);
    }
    if !daemon.contains(':') {
        return Err(ConnectError::Usage(format!(
            "--daemon {daemon}: expected HOST:PORT (e.g. {DEFAULT_DAEMON} or ams01.example.net:9180)"
        )));
    }
    daemon
        .to_socket_addrs()
        .map_err(|error| {
            ConnectError::Unreachable(format!("--daemon {daemon}: cannot resolve: {error}"))
        })?
        .next()
        .ok_or_else(|| {
            ConnectError::Unreachable(format!("--daemon {daemon}: the name has no address"))
        })
}

/// The target of this run, for error messages that name the files ([`tls_hint`]).
static TARGET: OnceLock<Target> = OnceLock::new();

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
        Err(ConnectError::Usage(message)) => {
            eprintln!("topoctl: {message}");
            return EXIT_USAGE;
        }
        Err(ConnectError::Unreachable(message)) => {
            eprintln!("topoctl: {message}");
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
        ClientError::SourceChanged { .. } => EXIT_CONFLICT,
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
        error => {
            eprintln!("topoctl: {}", error_chain(error));
            if let Some(hint) = TARGET.get().and_then(|target| tls_hint(error, target)) {
                eprintln!("topoctl: {hint}");
            }
        }
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
                // Every command's text, whatever it quotes of the daemon's answer (drain
                // reasons, source names, errors), reaches the terminal inert.
                print!("{}", crate::render::inert(&human(&view)));
            }
            code(&view)
        }
        Err(error) => report_error(&error, json),
    }
}

/// The first `rustls::Error` in an error's chain (inside `io::Error`s too).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// A failed handshake in words: which file is wrong and what to do.
pub fn tls_hint(error: &ClientError, target: &Target) -> Option<String> {
    use rustls::{AlertDescription, CertificateError};
    let rustls = rustls_error(error)?;
    let ca = target.files.ca.display();
    let certificate = target.files.certificate.display();
    let server_name = &target.server_name;
    Some(match rustls {
        rustls::Error::InvalidCertificate(problem) => match problem {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the daemon's certificate is not signed by the CA in {ca} (--ca): give the CA that signed the daemon's `certificate`"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the daemon's certificate is not valid for the name `{server_name}`: connect by a name it carries (--server-name, or --daemon HOST:PORT), or issue it with `topoctl pki server --san {server_name}`"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the daemon's certificate has expired: issue a new one (`topoctl pki server`)"
                    .to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the daemon's certificate is not valid yet: check both machines' clocks".to_string()
            }
            other => format!("the daemon's certificate is refused ({other:?}); CA {ca}"),
        },
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown,
        ) => format!(
            "client certificate {certificate}: the daemon does not accept it (unknown issuer) — the daemon's `client_ca` does not sign it; issue one with `topoctl pki issue` from that CA"
        ),
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => format!(
            "client certificate {certificate}: expired — issue a new one with `topoctl pki issue`"
        ),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            format!("client certificate {certificate}: the daemon requires one and got none")
        }
        rustls::Error::AlertReceived(AlertDescription::DecryptError) => format!(
            "client key {}: does not match the certificate {certificate}",
            target.files.private_key.display()
        ),
        other => format!("TLS: {other}; files: --cert {certificate}, --ca {ca}"),
    })
}
