//! The reverse-DNS ownership check. Placeholder: this build has no resolver, so the check
//! answers `unreachable` ("check not available in this build") and never proves anything.

use std::net::SocketAddr;
use std::time::Duration;

use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus};

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct RdnsSettings {
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: usize,
}

/// Placeholder: `unreachable`.
pub async fn check_rdns(
    settings: &RdnsSettings,
    prefix: ipnet::IpNet,
    token: &str,
) -> CheckEvidence {
    let _ = token;
    CheckEvidence {
        kind: CheckKind::Rdns,
        status: CheckStatus::Unreachable,
        queried: topologyd_ownership::challenge_record_names(prefix),
        server: settings
            .nameservers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        found: Vec::new(),
        checked_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        detail: "check not available in this build".to_string(),
    }
}
