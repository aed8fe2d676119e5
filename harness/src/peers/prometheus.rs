//! Prometheus launcher: writes `prometheus.yml` scraping the given loopback targets every second
//! (plus Prometheus itself; each target may carry static labels, e.g. the fleet harness's
//! `location`), runs `prometheus` with its TSDB in the instance directory and its web
//! listener on a fresh loopback address, and queries it through the HTTP API.
//!
//! The HTTP client is a dozen lines of HTTP/1.1 GET over `std::net::TcpStream`: the harness needs
//! one request shape against one local server, and a client crate (with its TLS and async stacks)
//! would add far more build time and dependency surface than that is worth. Responses are read to
//! the end (`Connection: close`), chunked bodies are decoded, and JSON goes through `serde_json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::process::{self, DaemonProcess};
use super::{Daemon, Error, Result, STARTUP_TIMEOUT, Transport, alloc};

const DAEMON: Daemon = Daemon::Prometheus;
/// Scrape and evaluation interval written to `prometheus.yml`.
const SCRAPE_INTERVAL: &str = "1s";
/// Timeout of one HTTP request to the API.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Label set of one sample.
pub type Labels = BTreeMap<String, String>;

/// A running Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    address: SocketAddr,
    process: DaemonProcess,
    directory: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `targets`, path `/metrics`) and waits until it is
    /// ready.
    pub fn start(targets: &[SocketAddr]) -> Result<Prometheus> {
        let labeled: Vec<(SocketAddr, Labels)> = targets
            .iter()
            .map(|target| (*target, Labels::new()))
            .collect();
        Prometheus::start_labeled(&labeled)
    }

    /// Like [`Prometheus::start`], with static labels per target (one `static_configs` entry
    /// each), so that every sample scraped from a target carries them (e.g. `location`).
    pub fn start_labeled(targets: &[(SocketAddr, Labels)]) -> Result<Prometheus> {
        let directory = process::temp_dir(DAEMON, "topologyd-prometheus-")?;
        let address = alloc::endpoint(Transport::V4);
        let config = directory.path().join("prometheus.yml");
        let log = directory.path().join("daemon.log");
        process::write_file(DAEMON, &config, &render_config(address, targets))?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"));
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let mut prometheus = Prometheus {
            address,
            process,
            directory,
        };
        prometheus.wait_until_ready(&log)?;
        Ok(prometheus)
    }

    fn wait_until_ready(&mut self, log: &Path) -> Result<()> {
        let address = self.address;
        super::poll(
            DAEMON,
            "/-/ready",
            STARTUP_TIMEOUT,
            || process::file_tail(log),
            || {
                self.process.check_running()?;
                Ok(match http_get(address, "/-/ready") {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
                    Err(error) => Err(error.to_string()),
                })
            },
        )
    }

    /// Where the web UI and API listen.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The temporary directory holding `prometheus.yml`, the TSDB and `daemon.log`.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Evaluates an instant PromQL query: each sample's labels and value (a scalar result has no
    /// labels).
    pub fn query(&self, promql: &str) -> Result<Vec<(Labels, f64)>> {
        self.process.check_running()?;
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(self.address, &path)?;
        let bad = |message: String| Error::Parse {
            daemon: DAEMON,
            command: format!("GET {path}"),
            message,
        };
        let value: Value = serde_json::from_str(&body)
            .map_err(|error| bad(format!("HTTP {status}: {error} in: {body}")))?;
        if value.get("status").and_then(Value::as_str) != Some("success") {
            return Err(Error::Command {
                daemon: DAEMON,
                command: format!("GET {path}"),
                status: format!("HTTP {status}"),
                stderr: body,
            });
        }
        let data = value
            .get("data")
            .ok_or_else(|| bad(format!("no data in: {body}")))?;
        let sample_value = |pair: Option<&Value>| -> Result<f64> {
            pair.and_then(|pair| pair.get(1))
                .and_then(Value::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| bad(format!("bad sample in: {body}")))
        };
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector") => data
                .get("result")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|sample| {
                    let labels = sample
                        .get("metric")
                        .and_then(Value::as_object)
                        .map(|labels| {
                            labels
                                .iter()
                                .map(|(name, value)| {
                                    (name.clone(), value.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok((labels, sample_value(sample.get("value"))?))
                })
                .collect(),
            Some("scalar") => Ok(vec![(Labels::new(), sample_value(data.get("result"))?)]),
            other => Err(bad(format!("unsupported result type {other:?}"))),
        }
    }

    /// Polls until `up{instance="TARGET"}` is 1, i.e. Prometheus scraped the target successfully.
    pub fn wait_for_target_up(&self, target: SocketAddr, timeout: Duration) -> Result<()> {
        let promql = format!("up{{instance=\"{target}\"}}");
        super::poll(
            DAEMON,
            &format!("target {target} up"),
            timeout,
            || self.process.log_tail(),
            || {
                let samples = self.query(&promql)?;
                Ok(if samples.iter().any(|(_, value)| *value == 1.0) {
                    Ok(())
                } else {
                    Err(format!("{samples:?}"))
                })
            },
        )
    }

    /// Stops Prometheus (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) -> Result<()> {
        self.process.stop()
    }
}

fn render_config(own: SocketAddr, targets: &[(SocketAddr, Labels)]) -> String {
    let mut config = String::new();
    let _ = writeln!(
        config,
        "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}"
    );
    let _ = writeln!(
        config,
        "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{own}']"
    );
    if !targets.is_empty() {
        let _ = writeln!(config, "  - job_name: targets\n    static_configs:");
        for (target, labels) in targets {
            let _ = writeln!(config, "      - targets: ['{target}']");
            if !labels.is_empty() {
                // Single-quoted YAML scalars: a quote is written twice.
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(name, value)| format!("{name}: '{}'", value.replace('\'', "''")))
                    .collect();
                let _ = writeln!(config, "        labels: {{ {} }}", labels.join(", "));
            }
        }
    }
    config
}

/// What stays as it is in a query value: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// One HTTP/1.1 GET; returns the status code and the (de-chunked) body.
fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    let io_error = |context: &str| {
        let context = format!("GET http://{address}{path}: {context}");
        move |source| Error::Io {
            daemon: DAEMON,
            context,
            source,
        }
    };
    let mut stream =
        TcpStream::connect_timeout(&address, HTTP_TIMEOUT).map_err(io_error("connect"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(io_error("set timeout"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io_error("send"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(io_error("receive"))?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let bad = |message: &str| Error::Parse {
        daemon: DAEMON,
        command: format!("GET {path}"),
        message: format!("{message} in: {text}"),
    };
    let header_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&response[..header_end]);
    let body = &response[header_end + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    Ok((status, body))
}

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1).
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::new();
    loop {
        let line_end = body.windows(2).position(|window| window == b"\r\n")?;
        let size_line = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(decoded);
        }
        let rest = &body[line_end + 2..];
        decoded.extend_from_slice(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_and_encodes() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some(&b"Wikipedia"[..])
        );
        assert_eq!(
            percent_encode("up{job=\"a b\"}"),
            "up%7Bjob%3D%22a%20b%22%7D"
        );
    }

    #[test]
    fn renders_one_static_config_per_target_with_its_labels() {
        let own: SocketAddr = "127.0.0.9:9090".parse().expect("address");
        let target: SocketAddr = "127.0.0.10:9180".parse().expect("address");
        let labels: Labels = [("location".to_string(), "ams01".to_string())].into();
        let config = render_config(own, &[(target, labels), (own, Labels::new())]);
        assert!(
            config.contains(
                "      - targets: ['127.0.0.10:9180']\n        labels: { location: 'ams01' }\n"
            ),
            "{config}"
        );
        assert!(
            config.contains("      - targets: ['127.0.0.9:9090']\n"),
            "{config}"
        );
    }
}
