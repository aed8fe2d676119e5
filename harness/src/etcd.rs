//! A real etcd cluster on loopback for the etcd-mode rollout tests: three (or any number of)
//! Debian `etcd` processes on 127.0.0.1, each with its own client, peer and metrics port and its
//! data directory in one temporary directory, started together as a new cluster; optionally
//! with TLS and client certificates on the client port ([`EtcdCluster::start_tls`]). Members
//! can be killed one by one (to take the quorum away); every member still running is killed
//! when the cluster is dropped. Readiness is read from `GET /health` on the plain metrics port.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::alloc::free_port;
use crate::topologyd::{ControlPki, TlsIdentity};

/// How long the cluster may take to elect its first raft leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd member {member} is not healthy after {timeout:?}; log tail:\n{log}")]
    NotReady {
        member: String,
        timeout: Duration,
        log: String,
    },
    #[error("etcd member {0} does not exist")]
    NoMember(usize),
    #[error("etcd TLS material: {0}")]
    Pki(String),
}

/// The TLS material of a cluster started with [`EtcdCluster::start_tls`].
#[derive(Debug)]
struct ClusterTls {
    pki: ControlPki,
    server: TlsIdentity,
    client: TlsIdentity,
}

fn io_error(context: &str) -> impl FnOnce(std::io::Error) -> EtcdError + '_ {
    move |source| EtcdError::Io {
        context: context.to_string(),
        source,
    }
}

/// One member process.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    metrics_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// A running etcd cluster on 127.0.0.1.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    tls: Option<ClusterTls>,
    directory: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members as a new cluster (plain HTTP) and waits until every one reports
    /// healthy.
    pub fn start(size: usize) -> Result<EtcdCluster, EtcdError> {
        EtcdCluster::launch(size, None)
    }

    /// Starts `size` members whose client port speaks TLS only and asks for a client
    /// certificate from the cluster's own throw-away CA ([`EtcdCluster::arguments`] names the
    /// CA and a client certificate for topoctl).
    pub fn start_tls(size: usize) -> Result<EtcdCluster, EtcdError> {
        let pki = ControlPki::generate().map_err(|error| EtcdError::Pki(error.to_string()))?;
        let server = pki
            .server_certificate("etcd-server", &["127.0.0.1", "localhost"])
            .map_err(|error| EtcdError::Pki(error.to_string()))?;
        let client = pki
            .client("topoctl")
            .map_err(|error| EtcdError::Pki(error.to_string()))?;
        EtcdCluster::launch(
            size,
            Some(ClusterTls {
                pki,
                server,
                client,
            }),
        )
    }

    fn launch(size: usize, tls: Option<ClusterTls>) -> Result<EtcdCluster, EtcdError> {
        let directory = tempfile::Builder::new()
            .prefix("topologyd-etcd-")
            .tempdir()
            .map_err(io_error("creating the data directory"))?;
        let loopback = Ipv4Addr::LOCALHOST.into();
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| {
                (
                    free_port(loopback),
                    free_port(loopback),
                    free_port(loopback),
                )
            })
            .collect();
        let initial_cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(index, (_, peer, _))| format!("member{index}=http://127.0.0.1:{peer}"))
            .collect();
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            tls,
            directory,
        };
        let scheme = if cluster.tls.is_some() {
            "https"
        } else {
            "http"
        };
        for (index, (client, peer, metrics)) in ports.iter().enumerate() {
            let name = format!("member{index}");
            let data = cluster.directory.path().join(&name);
            let log = cluster.directory.path().join(format!("{name}.log"));
            let log_file = std::fs::File::create(&log).map_err(io_error("creating a log"))?;
            let mut command = Command::new("etcd");
            command
                .arg(format!("--name={name}"))
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!(
                    "--listen-client-urls={scheme}://127.0.0.1:{client}"
                ))
                .arg(format!(
                    "--advertise-client-urls={scheme}://127.0.0.1:{client}"
                ))
                .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg(format!(
                    "--initial-cluster-token=test-{}",
                    std::process::id()
                ))
                .arg("--heartbeat-interval=50")
                .arg("--election-timeout=500")
                .arg("--logger=zap");
            if let Some(tls) = &cluster.tls {
                command
                    .arg(format!("--cert-file={}", tls.server.certificate.display()))
                    .arg(format!("--key-file={}", tls.server.private_key.display()))
                    .arg(format!("--trusted-ca-file={}", tls.pki.ca.display()))
                    .arg("--client-cert-auth");
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .process_group(0)
                .spawn()
                .map_err(io_error("starting etcd (Debian package etcd-server)"))?;
            cluster.members.push(Member {
                name,
                client_port: *client,
                metrics_port: *metrics,
                child: Some(child),
                log,
            });
        }
        for index in 0..size {
            cluster.wait_healthy(index, READY_TIMEOUT)?;
        }
        Ok(cluster)
    }

    /// The `topoctl rollout` arguments that name this cluster: `--etcd ENDPOINTS`, and with
    /// TLS `--etcd-ca`, `--etcd-cert`, `--etcd-key`.
    pub fn arguments(&self) -> Vec<String> {
        let mut arguments = vec!["--etcd".to_string(), self.endpoints()];
        if let Some(tls) = &self.tls {
            for (flag, path) in [
                ("--etcd-ca", &tls.pki.ca),
                ("--etcd-cert", &tls.client.certificate),
                ("--etcd-key", &tls.client.private_key),
            ] {
                arguments.push(flag.to_string());
                arguments.push(path.display().to_string());
            }
        }
        arguments
    }

    /// `127.0.0.1:PORT,…` of every member (running or not), as `topoctl --etcd` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|member| format!("127.0.0.1:{}", member.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The data directory (also the marker of its processes in `/proc`).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Waits until member `index` answers `GET /health` with a healthy cluster.
    pub fn wait_healthy(&self, index: usize, timeout: Duration) -> Result<(), EtcdError> {
        let member = self.members.get(index).ok_or(EtcdError::NoMember(index))?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if health(member.metrics_port).is_some_and(|body| body.contains("\"true\"")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(EtcdError::NotReady {
            member: member.name.clone(),
            timeout,
            log: self.log_tail(index),
        })
    }

    /// SIGKILL to member `index` (it stays dead).
    pub fn kill(&mut self, index: usize) -> Result<(), EtcdError> {
        let member = self
            .members
            .get_mut(index)
            .ok_or(EtcdError::NoMember(index))?;
        if let Some(mut child) = member.child.take() {
            crate::peers::process::signal_group(&child, "KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Deletes `key` through the first running member's JSON gateway (`POST
    /// /v3/kv/deleterange`; plain-HTTP clusters only): what an operator's `etcdctl del` does.
    pub fn delete(&self, key: &str) -> Result<String, EtcdError> {
        let failed = |message: String| EtcdError::Io {
            context: format!("deleting {key}"),
            source: std::io::Error::other(message),
        };
        if self.tls.is_some() {
            return Err(failed("the JSON gateway is not used with TLS".into()));
        }
        let member = self
            .members
            .iter()
            .find(|member| member.child.is_some())
            .ok_or_else(|| failed("no member is running".into()))?;
        let body = format!("{{\"key\":\"{}\"}}", base64(key.as_bytes()));
        let answer = http(
            member.client_port,
            &format!(
                "POST /v3/kv/deleterange HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .ok_or_else(|| failed("the member did not answer".into()))?;
        if !answer.contains("\"deleted\":\"1\"") {
            return Err(failed(format!("nothing deleted: {answer}")));
        }
        Ok(answer)
    }

    /// The last lines of member `index`'s log.
    pub fn log_tail(&self, index: usize) -> String {
        self.members.get(index).map_or_else(String::new, |member| {
            crate::peers::process::file_tail(&member.log)
        })
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.kill(index);
        }
    }
}

/// The body of `GET /health` on a member's metrics port, if it answers.
fn health(port: u16) -> Option<String> {
    http(port, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
}

/// Standard base64 (the JSON gateway's encoding of keys).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (index, byte)| {
            group | (u32::from(*byte) << (16 - 8 * index))
        });
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (group >> (18 - 6 * index)) & 63;
                text.push(char::from(ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Sends one HTTP/1.0 request to 127.0.0.1:`port`; answers the body.
fn http(port: u16, request: &str) -> Option<String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split("\r\n\r\n").nth(1).map(str::to_string)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_the_standard_encoding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(
            super::base64(b"/rollouts/e/leader"),
            "L3JvbGxvdXRzL2UvbGVhZGVy"
        );
    }
}
