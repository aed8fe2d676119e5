//! StayRTR launcher: a real RPKI-to-Router cache (Debian `stayrtr`) on loopback, fed an
//! rpki-client-format JSON file that this module writes (with a fresh `buildtime`, or StayRTR
//! serves nothing) and rewrites atomically when a test changes the ROAs; StayRTR re-reads it
//! every second and sends Serial Notify to its clients. Its metrics listener is bound to
//! loopback too. Owns nothing else: what the RTR client makes of the data is the test's business.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::process::{self, DaemonProcess};
use super::{Daemon, Error, Result, STARTUP_TIMEOUT, Transport, alloc};

const DAEMON: Daemon = Daemon::StayRtr;
/// The line StayRTR logs once it has loaded its first file and listens.
const STARTED_LINE: &str = "StayRTR Server started";

/// One ROA as rpki-client exports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roa {
    pub prefix: String,
    pub max_length: u8,
    pub asn: u32,
}

impl Roa {
    pub fn new(prefix: &str, max_length: u8, asn: u32) -> Roa {
        Roa {
            prefix: prefix.to_string(),
            max_length,
            asn,
        }
    }
}

/// How StayRTR is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StayRtrOptions {
    /// The highest RTR version it speaks (`-protocol`: 0, 1 or 2).
    pub protocol: u8,
    /// Refresh, retry and expire sent to clients in End of Data (seconds).
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
}

impl Default for StayRtrOptions {
    fn default() -> StayRtrOptions {
        StayRtrOptions {
            protocol: 2,
            refresh: 3600,
            retry: 600,
            expire: 7200,
        }
    }
}

/// A running StayRTR; dropping it kills it.
#[derive(Debug)]
pub struct StayRtr {
    address: SocketAddr,
    process: DaemonProcess,
    cache_file: PathBuf,
    directory: tempfile::TempDir,
}

impl StayRtr {
    /// Writes `roas`, starts StayRTR on a fresh loopback address and waits until it serves them.
    pub fn start(roas: &[Roa], options: StayRtrOptions) -> Result<StayRtr> {
        StayRtr::start_with_aspas(roas, &[], options)
    }

    /// Like [`StayRtr::start`], with ASPA objects too (customer AS, provider ASes; for both
    /// address families), which StayRTR sends to RTR v2 clients.
    pub fn start_with_aspas(
        roas: &[Roa],
        aspas: &[(u32, Vec<u32>)],
        options: StayRtrOptions,
    ) -> Result<StayRtr> {
        let directory = process::temp_dir(DAEMON, "topologyd-stayrtr-")?;
        let address = alloc::endpoint(Transport::V4);
        let metrics = alloc::endpoint(Transport::V4);
        let cache_file = directory.path().join("vrps.json");
        let log = directory.path().join("daemon.log");
        write_file(&cache_file, roas, aspas)?;
        let mut command = Command::new("stayrtr");
        command
            .current_dir(directory.path())
            .arg(format!("-cache={}", cache_file.display()))
            .arg(format!("-bind={address}"))
            .arg(format!("-metrics.addr={metrics}"))
            .arg("-refresh=1")
            .arg(format!("-protocol={}", options.protocol))
            .arg(format!("-rtr.refresh={}", options.refresh))
            .arg(format!("-rtr.retry={}", options.retry))
            .arg(format!("-rtr.expire={}", options.expire));
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let stayrtr = StayRtr {
            address,
            process,
            cache_file,
            directory,
        };
        super::poll(
            DAEMON,
            STARTED_LINE,
            STARTUP_TIMEOUT,
            || process::file_tail(&log),
            || {
                stayrtr.process.check_running()?;
                let started = std::fs::read_to_string(&log)
                    .map(|text| text.contains(STARTED_LINE))
                    .unwrap_or(false);
                Ok(
                    if started && std::net::TcpStream::connect(address).is_ok() {
                        Ok(())
                    } else {
                        Err("not serving yet".to_string())
                    },
                )
            },
        )?;
        Ok(stayrtr)
    }

    /// The RTR listener (`HOST:PORT`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Replaces the ROAs (write and rename); StayRTR picks them up within about a second.
    pub fn set_roas(&self, roas: &[Roa]) -> Result<()> {
        write_file(&self.cache_file, roas, &[])
    }

    /// SIGKILL: the cache disappears mid-session, as in a crash.
    pub fn kill(&mut self) -> Result<()> {
        self.process.kill()
    }

    /// The end of StayRTR's log, for failure messages.
    pub fn log_tail(&self) -> String {
        process::file_tail(&self.directory.path().join("daemon.log"))
    }
}

/// Writes the rpki-client JSON file atomically, with `buildtime` now and expiry in a day (ASPA
/// in the `provider_authorizations` form StayRTR 0.5 reads).
fn write_file(path: &std::path::Path, roas: &[Roa], aspas: &[(u32, Vec<u32>)]) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let mut text = format!(
        "{{\"metadata\":{{\"buildtime\":\"{}\"}},\"roas\":[",
        rfc3339(now)
    );
    for (index, roa) in roas.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            "{{\"prefix\":\"{}\",\"maxLength\":{},\"asn\":{},\"ta\":\"test\",\"expires\":{}}}",
            roa.prefix,
            roa.max_length,
            roa.asn,
            now + 86_400
        );
    }
    text.push(']');
    if !aspas.is_empty() {
        let entries: Vec<String> = aspas
            .iter()
            .map(|(customer, providers)| {
                let providers: Vec<String> = providers.iter().map(ToString::to_string).collect();
                format!(
                    "{{\"customer_asid\":{customer},\"expires\":{},\"providers\":[{}]}}",
                    now + 86_400,
                    providers.join(",")
                )
            })
            .collect();
        let list = entries.join(",");
        let _ = write!(
            text,
            ",\"provider_authorizations\":{{\"ipv4\":[{list}],\"ipv6\":[{list}]}}"
        );
    }
    text.push_str("}\n");
    let temporary = path.with_extension("json.tmp");
    process::write_file(DAEMON, &temporary, &text)?;
    std::fs::rename(&temporary, path).map_err(|source| Error::Io {
        daemon: DAEMON,
        context: format!("rename {} to {}", temporary.display(), path.display()),
        source,
    })
}

/// `seconds` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_449_618), "2026-12-05T05:46:58Z");
    }
}
