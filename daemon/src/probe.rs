//! Health probes (issue #6): runs one already-expanded [`ProbeSpec`] under a timeout and says
//! [`ProbeOutcome::Pass`], `Fail` (the service answered wrongly or refused) or `Error` (the
//! probe could not run: timeout, spawn failure, a target that does not resolve, a broken runner).
//!
//! Owns: the probe sockets (HTTP/1.1 over TCP through hyper, TCP connect, DNS over UDP through
//! `simple-dns`) and the processes of exec probes (each in its own process group, killed with
//! everything it started when the probe ends or times out).
//!
//! Must not touch: rise/fall and verdicts (`health.rs`), scheduling (`health_task.rs`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use hyper::Uri;
use hyper::header::{CONNECTION, USER_AGENT};
use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::Command;
use topologyd_config::health::{DnsRecordType, ProbeSpec};

use crate::health::ProbeOutcome;
use topologyd_transport::http_client::{ExchangeError, OneShot, exchange};

/// How much of an exec probe's output (stderr, else stdout) a failure's detail keeps.
pub const EXEC_DETAIL_BYTES: usize = 200;

/// Largest DNS answer read over UDP (EDNS-sized; a classic server sends at most 512).
const DNS_BUFFER_BYTES: usize = 4_096;

/// Runs `probe` and gives up after `timeout` with an `Error`.
pub async fn run_probe(probe: &ProbeSpec, timeout: Duration) -> ProbeOutcome {
    let run = async {
        match probe {
            ProbeSpec::Http { url, expect_status } => http(url, *expect_status).await,
            ProbeSpec::Tcp { address } => tcp(address).await,
            ProbeSpec::Dns {
                server,
                name,
                record_type,
                expect,
            } => dns(server, name, *record_type, expect.as_deref()).await,
            ProbeSpec::Exec { command } => exec(command).await,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => error(format!("timed out after {} ms", timeout.as_millis())),
    }
}

fn fail(detail: impl Into<String>) -> ProbeOutcome {
    ProbeOutcome::Fail {
        detail: detail.into(),
    }
}

fn error(detail: impl Into<String>) -> ProbeOutcome {
    ProbeOutcome::Error {
        detail: detail.into(),
    }
}

/// Resolves `host:port` (`[v6]:port`); literals do not touch the resolver.
async fn resolve(target: &str) -> Result<Vec<SocketAddr>, ProbeOutcome> {
    if let Ok(address) = target.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    match tokio::net::lookup_host(target).await {
        Ok(addresses) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Err(error(format!("{target} resolves to no address")))
            } else {
                Ok(addresses)
            }
        }
        Err(err) => Err(error(format!("cannot resolve {target}: {err}"))),
    }
}

/// Connects to the first address of `target` that accepts; a refusal is the service's fault.
async fn connect(target: &str) -> Result<TcpStream, ProbeOutcome> {
    let mut last = None;
    for address in resolve(target).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = Some(format!("connect to {address}: {}", describe(&err))),
        }
    }
    Err(fail(
        last.unwrap_or_else(|| format!("connect to {target} failed")),
    ))
}

fn describe(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => err.to_string(),
    }
}

async fn tcp(address: &str) -> ProbeOutcome {
    match connect(address).await {
        Ok(_) => ProbeOutcome::Pass,
        Err(outcome) => outcome,
    }
}

async fn http(url: &str, expect_status: u16) -> ProbeOutcome {
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(err) => return error(format!("invalid URL {url}: {err}")),
    };
    if uri.scheme_str() != Some("http") {
        return error(format!("{url}: only http:// URLs are probed"));
    }
    let Some(authority) = uri.authority().cloned() else {
        return error(format!("{url}: no host"));
    };
    let port = authority.port_u16().unwrap_or(80);
    let target = format!("{}:{port}", authority.host());
    let stream = match connect(&target).await {
        Ok(stream) => stream,
        Err(outcome) => return outcome,
    };
    let path = uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let request = OneShot {
        body_limit: None,
        ..OneShot::get(authority.as_str(), path)
            .header(USER_AGENT, "topologyd-health")
            .header(CONNECTION, "close")
    };
    match exchange(stream, request).await {
        Ok(answer) if answer.status.as_u16() == expect_status => ProbeOutcome::Pass,
        Ok(answer) => fail(format!(
            "GET {url}: status {}, expected {expect_status}",
            answer.status.as_u16()
        )),
        Err(ExchangeError::Handshake(err)) => fail(format!("HTTP handshake with {target}: {err}")),
        Err(err @ ExchangeError::Build { .. }) => error(format!("{url}: {err}")),
        Err(err) => fail(format!("GET {url}: {err}")),
    }
}

async fn dns(
    server: &str,
    name: &str,
    record_type: DnsRecordType,
    expect: Option<&str>,
) -> ProbeOutcome {
    let expect = match expect.map(str::parse::<IpAddr>).transpose() {
        Ok(expect) => expect,
        Err(err) => return error(format!("expected address is not an IP address: {err}")),
    };
    let server_address = match resolve(server).await {
        Ok(addresses) => addresses[0],
        Err(outcome) => return outcome,
    };
    let qname = match Name::new(name) {
        Ok(qname) => qname,
        Err(err) => return error(format!("invalid DNS name {name}: {err}")),
    };
    let qtype = match record_type {
        DnsRecordType::A => TYPE::A,
        DnsRecordType::Aaaa => TYPE::AAAA,
    };
    let id: u16 = rand::random();
    let mut query = Packet::new_query(id);
    query.set_flags(PacketFlag::RECURSION_DESIRED);
    query.questions.push(Question::new(
        qname.clone(),
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    let query = match query.build_bytes_vec() {
        Ok(bytes) => bytes,
        Err(err) => return error(format!("cannot encode the DNS query: {err}")),
    };
    let local: SocketAddr = if server_address.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(err) => return error(format!("cannot open a UDP socket: {err}")),
    };
    // Connected: the kernel drops datagrams from anyone but the server.
    if let Err(err) = socket.connect(server_address).await {
        return fail(format!("UDP to {server_address}: {}", describe(&err)));
    }
    if let Err(err) = socket.send(&query).await {
        return fail(format!("send to {server_address}: {}", describe(&err)));
    }
    let mut buffer = vec![0u8; DNS_BUFFER_BYTES];
    loop {
        let length = match socket.recv(&mut buffer).await {
            Ok(length) => length,
            Err(err) => return fail(format!("DNS {server_address}: {}", describe(&err))),
        };
        let Ok(answer) = Packet::parse(&buffer[..length]) else {
            // Not a DNS message for us; keep waiting until the timeout.
            continue;
        };
        if answer.id() != id || !answer.has_flags(PacketFlag::RESPONSE) {
            continue;
        }
        return judge(&answer, &qname, qtype, expect, server_address);
    }
}

/// The verdict on the answer to our query (same id, from the server).
fn judge(
    answer: &Packet<'_>,
    qname: &Name<'_>,
    qtype: TYPE,
    expect: Option<IpAddr>,
    server: SocketAddr,
) -> ProbeOutcome {
    let asked = normalise_name(&qname.to_string());
    let question_matches = answer.questions.len() == 1
        && answer.questions.iter().all(|question| {
            normalise_name(&question.qname.to_string()) == asked
                && question.qtype == QTYPE::TYPE(qtype)
                && question.qclass == QCLASS::CLASS(CLASS::IN)
        });
    if !question_matches {
        return fail(format!(
            "DNS {server}: the answer's question section does not match the query for {asked}"
        ));
    }
    let rcode = answer.rcode();
    if rcode != RCODE::NoError {
        return fail(format!("DNS {server}: {asked} answered {rcode:?}"));
    }
    let addresses: Vec<IpAddr> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.rdata {
            RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
            RData::AAAA(aaaa) => Some(IpAddr::V6(Ipv6Addr::from(aaaa.address))),
            _ => None,
        })
        .collect();
    match expect {
        Some(expect) if addresses.contains(&expect) => ProbeOutcome::Pass,
        Some(expect) => fail(format!(
            "DNS {server}: {asked} answered {addresses:?}, expected {expect}"
        )),
        None if !answer.answers.is_empty() => ProbeOutcome::Pass,
        None => fail(format!(
            "DNS {server}: {asked} answered NOERROR without records"
        )),
    }
}

fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn exec(command: &[String]) -> ProbeOutcome {
    let Some((program, arguments)) = command.split_first() else {
        return error("exec probe with an empty command");
    };
    let mut child = match Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout also kills what it started (`sh -c`).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => return error(format!("cannot run {program}: {err}")),
    };
    let _group = ProcessGroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
    );
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (stdout, stderr, status) =
        tokio::join!(read_prefix(stdout), read_prefix(stderr), child.wait());
    let status = match status {
        Ok(status) => status,
        Err(err) => return error(format!("waiting for {program}: {err}")),
    };
    if status.success() {
        return ProbeOutcome::Pass;
    }
    let output = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let output = output.trim();
    if output.is_empty() {
        fail(format!("{program}: {status}"))
    } else {
        fail(format!("{program}: {status}: {output}"))
    }
}

/// Kills an exec probe's whole process group when the probe ends, by completion or by its
/// timeout dropping the future: nothing a health check starts outlives it.
struct ProcessGroupGuard(Option<rustix::process::Pid>);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // ESRCH (the group is already gone) is the normal case.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// The first [`EXEC_DETAIL_BYTES`] of a pipe (lossy UTF-8); the rest is read and dropped so the
/// child never blocks on a full pipe.
async fn read_prefix(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::with_capacity(EXEC_DETAIL_BYTES);
    let mut chunk = [0u8; 1_024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = EXEC_DETAIL_BYTES - kept.len();
                kept.extend_from_slice(&chunk[..read.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use simple_dns::ResourceRecord;
    use simple_dns::rdata::{A, AAAA};
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// An HTTP server on 127.0.0.1 answering every request with `status`.
    async fn http_server(status: u16) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(move |_request: Request<Incoming>| async move {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() =
                            StatusCode::from_u16(status).expect("valid status");
                        Ok::<_, Infallible>(response)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        address
    }

    /// A port on 127.0.0.1 nobody listens on.
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        address
    }

    #[derive(Clone, Copy)]
    enum DnsBehaviour {
        Answer,
        /// First a reply with another id, then the right one.
        WrongIdFirst,
        WrongQuestion,
        ServFail,
        Silent,
    }

    /// A UDP DNS responder on 127.0.0.1 answering A 192.0.2.1 / AAAA 2001:db8::1.
    async fn dns_server(behaviour: DnsBehaviour) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let address = socket.local_addr().expect("address");
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
                let Ok(query) = Packet::parse(&buffer[..length]) else {
                    continue;
                };
                let Some(question) = query.questions.first().cloned() else {
                    continue;
                };
                let mut reply = Packet::new_reply(query.id());
                match behaviour {
                    DnsBehaviour::Silent => continue,
                    DnsBehaviour::WrongQuestion => reply.questions.push(Question::new(
                        Name::new_unchecked("other.test"),
                        question.qtype,
                        question.qclass,
                        false,
                    )),
                    _ => reply.questions.push(question.clone()),
                }
                if matches!(behaviour, DnsBehaviour::ServFail) {
                    *reply.rcode_mut() = RCODE::ServerFailure;
                } else {
                    let rdata = if question.qtype == QTYPE::TYPE(TYPE::AAAA) {
                        RData::AAAA(AAAA {
                            address: u128::from("2001:db8::1".parse::<Ipv6Addr>().expect("v6")),
                        })
                    } else {
                        RData::A(A {
                            address: u32::from(Ipv4Addr::new(192, 0, 2, 1)),
                        })
                    };
                    reply.answers.push(ResourceRecord::new(
                        question.qname.clone(),
                        CLASS::IN,
                        60,
                        rdata,
                    ));
                }
                if matches!(behaviour, DnsBehaviour::WrongIdFirst) {
                    let mut decoy = reply.clone();
                    decoy.set_id(query.id().wrapping_add(1));
                    decoy.answers.clear();
                    let bytes = decoy.build_bytes_vec().expect("encode");
                    let _ = socket.send_to(&bytes, peer).await;
                }
                let bytes = reply.build_bytes_vec().expect("encode");
                let _ = socket.send_to(&bytes, peer).await;
            }
        });
        address
    }

    fn http_probe(address: SocketAddr, expect_status: u16) -> ProbeSpec {
        ProbeSpec::Http {
            url: format!("http://{address}/health"),
            expect_status,
        }
    }

    fn dns_probe(
        server: SocketAddr,
        record_type: DnsRecordType,
        expect: Option<&str>,
    ) -> ProbeSpec {
        ProbeSpec::Dns {
            server: server.to_string(),
            name: "example.test".to_string(),
            record_type,
            expect: expect.map(str::to_string),
        }
    }

    fn exec_probe(command: &[&str]) -> ProbeSpec {
        ProbeSpec::Exec {
            command: command.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn http_checks_the_status() {
        let ok = http_server(200).await;
        let down = http_server(503).await;
        assert_eq!(
            run_probe(&http_probe(ok, 200), TIMEOUT).await,
            ProbeOutcome::Pass
        );
        let outcome = run_probe(&http_probe(down, 200), TIMEOUT).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail { detail } if detail.contains("status 503")),
            "{outcome:?}"
        );
        assert_eq!(
            run_probe(&http_probe(down, 503), TIMEOUT).await,
            ProbeOutcome::Pass
        );
    }

    #[tokio::test]
    async fn refused_connections_fail() {
        let closed = closed_port().await;
        let outcome = run_probe(&http_probe(closed, 200), TIMEOUT).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail { detail } if detail.contains("refused")),
            "{outcome:?}"
        );
        let tcp = ProbeSpec::Tcp {
            address: closed.to_string(),
        };
        let outcome = run_probe(&tcp, TIMEOUT).await;
        assert!(matches!(outcome, ProbeOutcome::Fail { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn tcp_connect_passes_on_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tcp = ProbeSpec::Tcp {
            address: listener.local_addr().expect("address").to_string(),
        };
        assert_eq!(run_probe(&tcp, TIMEOUT).await, ProbeOutcome::Pass);
    }

    #[tokio::test]
    async fn http_to_a_silent_server_times_out_as_an_error() {
        // Accepts, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let outcome = run_probe(&http_probe(address, 200), Duration::from_millis(200)).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Error {
                detail: "timed out after 200 ms".to_string()
            }
        );
        drop(listener);
    }

    #[tokio::test]
    async fn dns_checks_id_question_and_answer() {
        let server = dns_server(DnsBehaviour::Answer).await;
        let probe = dns_probe(server, DnsRecordType::A, Some("192.0.2.1"));
        assert_eq!(run_probe(&probe, TIMEOUT).await, ProbeOutcome::Pass);
        let probe = dns_probe(server, DnsRecordType::A, None);
        assert_eq!(run_probe(&probe, TIMEOUT).await, ProbeOutcome::Pass);
        let probe = dns_probe(server, DnsRecordType::Aaaa, Some("2001:db8::1"));
        assert_eq!(run_probe(&probe, TIMEOUT).await, ProbeOutcome::Pass);
        let probe = dns_probe(server, DnsRecordType::A, Some("192.0.2.99"));
        let outcome = run_probe(&probe, TIMEOUT).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail { detail } if detail.contains("192.0.2.99")),
            "{outcome:?}"
        );

        let server = dns_server(DnsBehaviour::WrongIdFirst).await;
        let probe = dns_probe(server, DnsRecordType::A, Some("192.0.2.1"));
        assert_eq!(run_probe(&probe, TIMEOUT).await, ProbeOutcome::Pass);

        let server = dns_server(DnsBehaviour::WrongQuestion).await;
        let outcome = run_probe(&dns_probe(server, DnsRecordType::A, None), TIMEOUT).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail { detail } if detail.contains("question")),
            "{outcome:?}"
        );

        let server = dns_server(DnsBehaviour::ServFail).await;
        let outcome = run_probe(&dns_probe(server, DnsRecordType::A, None), TIMEOUT).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail { detail } if detail.contains("ServerFailure")),
            "{outcome:?}"
        );

        let server = dns_server(DnsBehaviour::Silent).await;
        let probe = dns_probe(server, DnsRecordType::A, None);
        let outcome = run_probe(&probe, Duration::from_millis(200)).await;
        assert!(matches!(outcome, ProbeOutcome::Error { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn dns_to_a_closed_port_fails() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server = socket.local_addr().expect("address");
        drop(socket);
        let outcome = run_probe(&dns_probe(server, DnsRecordType::A, None), TIMEOUT).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail { detail } if detail.contains("refused")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn exec_follows_the_exit_status() {
        assert_eq!(
            run_probe(&exec_probe(&["/bin/true"]), TIMEOUT).await,
            ProbeOutcome::Pass
        );
        let outcome = run_probe(&exec_probe(&["/bin/false"]), TIMEOUT).await;
        assert!(matches!(outcome, ProbeOutcome::Fail { .. }), "{outcome:?}");
        let outcome = run_probe(&exec_probe(&["/nonexistent/probe"]), TIMEOUT).await;
        assert!(matches!(outcome, ProbeOutcome::Error { .. }), "{outcome:?}");
        let outcome = run_probe(&exec_probe(&[]), TIMEOUT).await;
        assert!(matches!(outcome, ProbeOutcome::Error { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn exec_keeps_the_start_of_the_output() {
        let long = "x".repeat(5_000);
        let script = format!("echo {long} >&2; exit 3");
        let outcome = run_probe(&exec_probe(&["/bin/sh", "-c", &script]), TIMEOUT).await;
        let ProbeOutcome::Fail { detail } = outcome else {
            panic!("expected a failure, got {outcome:?}");
        };
        assert!(detail.contains("exit status: 3"), "{detail}");
        assert!(detail.len() < EXEC_DETAIL_BYTES + 100, "{detail}");
    }

    #[tokio::test]
    async fn exec_timeout_kills_what_the_command_started() {
        let dir = std::env::temp_dir().join(format!("probe-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pid_file = dir.join("grandchild.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
        let outcome = run_probe(
            &exec_probe(&["/bin/sh", "-c", &script]),
            Duration::from_millis(300),
        )
        .await;
        assert!(matches!(outcome, ProbeOutcome::Error { .. }), "{outcome:?}");
        let pid = std::fs::read_to_string(&pid_file).expect("the script wrote its child's pid");
        let proc_path = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
        // SIGKILL is asynchronous: give the kernel a moment to reap it (a zombie has no cmdline).
        let mut alive = true;
        for _ in 0..50 {
            let cmdline = std::fs::read(proc_path.join("cmdline")).unwrap_or_default();
            if cmdline.is_empty() {
                alive = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            !alive,
            "the grandchild {} outlived the probe's timeout",
            pid.trim()
        );
    }

    #[tokio::test]
    async fn exec_timeout_is_an_error() {
        let started = std::time::Instant::now();
        let outcome = run_probe(
            &exec_probe(&["/bin/sleep", "10"]),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(
            outcome,
            ProbeOutcome::Error {
                detail: "timed out after 200 ms".to_string()
            }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
