//! Real local services for the health-check end-to-end tests (`tests/daemon_health.rs`): the
//! things a location's health checks probe, started from Debian packages on loopback.
//!
//! - [`HttpServer`]: `busybox httpd` (package `busybox`) serving a temporary document root. The
//!   health page `/health` exists while the test calls the server healthy
//!   ([`HttpServer::set_healthy`]): 200 when present, 404 when removed.
//! - [`DnsServer`]: `dnsmasq` (package `dnsmasq-base`) answering one name ([`DNS_NAME`]) with one
//!   address ([`DNS_ANSWER`]) and refusing everything else; no upstream, no hosts file, no
//!   configuration file.
//!
//! Each server binds a fresh `127.a.b.c` address from [`crate::peers::alloc`] and a free port, runs
//! in the foreground as the leader of its own process group with its output in a log file in its
//! temporary directory, can be killed (SIGKILL to the group, as a crash) and restarted on the same
//! address and port, and is killed and reaped on drop. Nothing here touches a non-loopback
//! address. Owns only these launchers; the daemon under test is `crate::topologyd`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::peers::alloc;

/// The name [`DnsServer`] answers.
pub const DNS_NAME: &str = "svc.test";
/// The address [`DnsServer`] answers for [`DNS_NAME`] (TEST-NET-1, an attribute value only).
pub const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The path of [`HttpServer`]'s health page.
pub const HEALTH_PATH: &str = "/health";
/// How long a launcher waits for a server to answer after starting it.
pub const SERVICE_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a server's log failure messages include.
const LOG_TAIL_BYTES: usize = 3000;

/// A failure of a service launcher, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot run `{command}` (is the Debian package installed? scripts/setup.sh): {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited ({status}); log:\n{log}")]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    #[error("timed out after {waited:?} waiting for {what}; last: {last}; log:\n{log}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
        log: String,
    },
    #[error("malformed DNS answer from {server}: {message}")]
    Dns { server: SocketAddr, message: String },
}

/// Result type of the service launchers.
pub type Result<T> = std::result::Result<T, ServiceError>;

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let context = context.into();
    move |source| ServiceError::Io { context, source }
}

/// One supervised server process: its own process group, output appended to `log`. The child
/// sits behind a mutex so that a test can kill and restart servers through shared references
/// (while another thread reads what BGP peers hold).
#[derive(Debug)]
struct Supervised {
    what: String,
    program: String,
    arguments: Vec<String>,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Supervised {
    fn new(what: String, program: &str, arguments: Vec<String>, log: PathBuf) -> Supervised {
        Supervised {
            what,
            program: program.to_string(),
            arguments,
            log,
            child: Mutex::new(None),
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self) -> Result<()> {
        self.kill()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_error(format!("opening {}", self.log.display())))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(io_error("duplicating the log file"))?;
        let child = Command::new(&self.program)
            .args(&self.arguments)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0)
            .spawn()
            .map_err(|source| ServiceError::Spawn {
                command: format!("{} {}", self.program, self.arguments.join(" ")),
                source,
            })?;
        *self.child() = Some(child);
        Ok(())
    }

    fn check_running(&self) -> Result<()> {
        let status = match self.child().as_mut() {
            None => "not running".to_string(),
            Some(child) => match child
                .try_wait()
                .map_err(io_error(format!("polling {}", self.what)))?
            {
                None => return Ok(()),
                Some(status) => status.to_string(),
            },
        };
        Err(ServiceError::Exited {
            what: self.what.clone(),
            status,
            log: self.log_tail(),
        })
    }

    fn is_running(&self) -> bool {
        self.check_running().is_ok()
    }

    /// SIGKILL to the whole group (a crash: no clean shutdown), then reaps the leader.
    fn kill(&self) -> Result<()> {
        let Some(mut child) = self.child().take() else {
            return Ok(());
        };
        // The child leads its own group, so its pid is the group id; busybox httpd forks one
        // process per connection, which the group signal reaches too.
        crate::peers::process::signal_group(&child, "KILL");
        let _ = child.kill();
        child
            .wait()
            .map(drop)
            .map_err(io_error(format!("reaping {}", self.what)))
    }

    fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    fn log_tail(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// Polls `ready` every 50 ms until it succeeds, failing early if the process exits.
    fn wait_until(
        &self,
        what: &str,
        mut ready: impl FnMut() -> std::result::Result<(), String>,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            let last = match ready() {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            if started.elapsed() >= SERVICE_STARTUP_TIMEOUT {
                return Err(ServiceError::Timeout {
                    what: format!("{} to {what}", self.what),
                    waited: started.elapsed(),
                    last,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A loopback address from the allocator and a port free for both TCP and UDP on it.
fn fresh_endpoint() -> SocketAddr {
    let ip = IpAddr::V4(alloc::loopback_v4());
    loop {
        let port = alloc::free_port(ip);
        let address = SocketAddr::new(ip, port);
        if UdpSocket::bind(address).is_ok() {
            return address;
        }
    }
}

fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(io_error("creating a temporary directory"))
}

/// `busybox httpd` on loopback, serving `/health` while healthy.
#[derive(Debug)]
pub struct HttpServer {
    address: SocketAddr,
    root: PathBuf,
    process: Supervised,
    // Last field: removed after the process is killed.
    directory: tempfile::TempDir,
}

impl HttpServer {
    /// Starts a healthy server on a fresh loopback address and waits until it answers 200.
    pub fn start() -> Result<HttpServer> {
        let directory = temp_dir("topologyd-httpd-")?;
        let root = directory.path().join("www");
        std::fs::create_dir_all(&root).map_err(io_error("creating the document root"))?;
        let address = fresh_endpoint();
        let process = Supervised::new(
            format!("busybox httpd on {address}"),
            "busybox",
            vec![
                "httpd".into(),
                "-f".into(),
                "-v".into(),
                "-p".into(),
                address.to_string(),
                "-h".into(),
                root.display().to_string(),
            ],
            directory.path().join("httpd.log"),
        );
        let server = HttpServer {
            address,
            root,
            process,
            directory,
        };
        server.set_healthy(true)?;
        server.restart()?;
        Ok(server)
    }

    /// `ADDRESS:PORT` of the server.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL of the health page.
    pub fn health_url(&self) -> String {
        format!("http://{}{HEALTH_PATH}", self.address)
    }

    /// The server's temporary directory (document root `www/`, `httpd.log`).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Creates (healthy: 200) or removes (unhealthy: 404) the health page.
    pub fn set_healthy(&self, healthy: bool) -> Result<()> {
        let page = self.root.join(HEALTH_PATH.trim_start_matches('/'));
        if healthy {
            std::fs::write(&page, "ok\n").map_err(io_error("writing the health page"))
        } else {
            match std::fs::remove_file(&page) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_error("removing the health page")(error))
                }
                _ => Ok(()),
            }
        }
    }

    /// SIGKILLs the server (connections are refused from now on).
    pub fn kill(&self) -> Result<()> {
        self.process.kill()
    }

    /// (Re)starts the server on the same address and waits until it accepts connections.
    pub fn restart(&self) -> Result<()> {
        self.process.spawn()?;
        let address = self.address;
        self.process.wait_until("accept connections", || {
            TcpStream::connect_timeout(&address, Duration::from_millis(500))
                .map(drop)
                .map_err(|error| error.to_string())
        })
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// The process id while started (None after [`Self::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The status code of `GET /health` now.
    pub fn health_status(&self) -> Result<u16> {
        crate::topologyd::http_get(self.address, HEALTH_PATH)
            .map(|(status, _)| status)
            .map_err(|error| ServiceError::Io {
                context: format!("GET {}", self.health_url()),
                source: std::io::Error::other(error.to_string()),
            })
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// `dnsmasq` on loopback, answering [`DNS_NAME`] `A` with [`DNS_ANSWER`].
#[derive(Debug)]
pub struct DnsServer {
    address: SocketAddr,
    process: Supervised,
    // Last field: removed after the process is killed.
    directory: tempfile::TempDir,
}

impl DnsServer {
    /// Starts the server on a fresh loopback address and waits until it answers [`DNS_NAME`].
    pub fn start() -> Result<DnsServer> {
        let directory = temp_dir("topologyd-dnsmasq-")?;
        let address = fresh_endpoint();
        let process = Supervised::new(
            format!("dnsmasq on {address}"),
            "dnsmasq",
            vec![
                "--keep-in-foreground".into(),
                "--conf-file=/dev/null".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                "--no-poll".into(),
                "--bind-interfaces".into(),
                format!("--listen-address={}", address.ip()),
                format!("--port={}", address.port()),
                format!("--address=/{DNS_NAME}/{DNS_ANSWER}"),
                format!(
                    "--pid-file={}",
                    directory.path().join("dnsmasq.pid").display()
                ),
                "--log-facility=-".into(),
            ],
            directory.path().join("dnsmasq.log"),
        );
        let server = DnsServer {
            address,
            process,
            directory,
        };
        server.restart()?;
        Ok(server)
    }

    /// `ADDRESS:PORT` of the server (UDP and TCP).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The server's temporary directory (`dnsmasq.log`, `dnsmasq.pid`).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// SIGKILLs the server (queries go unanswered from now on).
    pub fn kill(&self) -> Result<()> {
        self.process.kill()
    }

    /// (Re)starts the server on the same address and waits until it answers [`DNS_NAME`].
    pub fn restart(&self) -> Result<()> {
        self.process.spawn()?;
        let address = self.address;
        self.process.wait_until("answer DNS queries", || {
            match query_a(address, DNS_NAME, Duration::from_millis(300)) {
                Ok(answers) if answers.contains(&DNS_ANSWER) => Ok(()),
                Ok(answers) => Err(format!("answered {answers:?}")),
                Err(error) => Err(error.to_string()),
            }
        })
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// The process id while started (None after [`Self::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The `A` records the server answers for `name` (empty when refused or unknown).
    pub fn query(&self, name: &str) -> Result<Vec<Ipv4Addr>> {
        query_a(self.address, name, Duration::from_secs(2))
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// One DNS `A` query over UDP: the addresses in the answer section (empty on any non-NOERROR
/// response code).
pub fn query_a(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>> {
    let socket = UdpSocket::bind(SocketAddr::new(server.ip(), 0))
        .map_err(io_error(format!("binding a UDP socket to query {server}")))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(io_error("setting a read timeout"))?;
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0x4242);
    let query = encode_query(id, name).map_err(|message| ServiceError::Dns { server, message })?;
    socket
        .send_to(&query, server)
        .map_err(io_error(format!("sending a query to {server}")))?;
    let mut buffer = [0u8; 1500];
    let (length, _) = socket
        .recv_from(&mut buffer)
        .map_err(io_error(format!("waiting for {server}'s answer")))?;
    decode_a_answers(id, &buffer[..length]).map_err(|message| ServiceError::Dns { server, message })
}

fn encode_query(id: u16, name: &str) -> std::result::Result<Vec<u8>, String> {
    let mut message = Vec::with_capacity(32 + name.len());
    message.extend_from_slice(&id.to_be_bytes());
    // Flags: standard query, recursion desired; one question.
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let length = u8::try_from(label.len())
            .ok()
            .filter(|length| (1..=63).contains(length))
            .ok_or_else(|| format!("invalid label {label:?} in {name:?}"))?;
        message.push(length);
        message.extend_from_slice(label.as_bytes());
    }
    // Root label, QTYPE A, QCLASS IN.
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(message)
}

fn read_u16(message: &[u8], at: usize) -> std::result::Result<u16, String> {
    message
        .get(at..at + 2)
        .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(message: &[u8], mut at: usize) -> std::result::Result<usize, String> {
    loop {
        let length = *message
            .get(at)
            .ok_or_else(|| format!("truncated name at byte {at}"))?;
        match length {
            0 => return Ok(at + 1),
            length if length & 0xc0 == 0xc0 => return Ok(at + 2),
            length => at += 1 + usize::from(length),
        }
    }
}

fn decode_a_answers(id: u16, message: &[u8]) -> std::result::Result<Vec<Ipv4Addr>, String> {
    if read_u16(message, 0)? != id {
        return Err("answer to another query (id mismatch)".into());
    }
    let flags = read_u16(message, 2)?;
    if flags & 0x8000 == 0 {
        return Err("not a response".into());
    }
    if flags & 0x000f != 0 {
        return Ok(Vec::new());
    }
    let questions = read_u16(message, 4)?;
    let answers = read_u16(message, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(message, at)?;
        let kind = read_u16(message, at)?;
        let class = read_u16(message, at + 2)?;
        let length = usize::from(read_u16(message, at + 8)?);
        let data = message
            .get(at + 10..at + 10 + length)
            .ok_or_else(|| format!("truncated record at byte {at}"))?;
        if kind == 1 && class == 1 && length == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_encoding_and_answer_decoding() {
        let query = encode_query(7, "svc.test").unwrap_or_default();
        assert_eq!(&query[12..], b"\x03svc\x04test\x00\x00\x01\x00\x01");
        assert!(encode_query(7, "a..b").is_err());
        // The query turned into a response with one compressed A record.
        let mut response = query.clone();
        response[2] = 0x81;
        response[3] = 0x80;
        response[7] = 1;
        response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        assert_eq!(decode_a_answers(7, &response), Ok(vec![DNS_ANSWER]));
        assert!(decode_a_answers(8, &response).is_err());
        let mut refused = query;
        refused[2] = 0x81;
        refused[3] = 0x85;
        assert_eq!(decode_a_answers(7, &refused), Ok(Vec::new()));
        assert!(decode_a_answers(7, &response[..response.len() - 2]).is_err());
    }
}
