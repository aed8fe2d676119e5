//! The IRR ownership check. Placeholder: this build has no whois client, so the check answers
//! `unreachable` ("check not available in this build") and never proves anything.

use std::time::Duration;

use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus};

/// Which IRR server to ask and which sources to accept.
#[derive(Debug, Clone)]
pub struct IrrSettings {
    /// `host:port`.
    pub server: String,
    pub sources: Vec<String>,
    pub timeout: Duration,
}

/// Placeholder: `unreachable`.
pub async fn check_irr(
    settings: &IrrSettings,
    prefix: ipnet::IpNet,
    origin_asn: u32,
    token: &str,
) -> CheckEvidence {
    let _ = token;
    CheckEvidence {
        kind: CheckKind::Irr,
        status: CheckStatus::Unreachable,
        queried: vec![format!("route objects for {prefix} origin AS{origin_asn}")],
        server: settings.server.clone(),
        found: Vec::new(),
        checked_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        detail: "check not available in this build".to_string(),
    }
}
