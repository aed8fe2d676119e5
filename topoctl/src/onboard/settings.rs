//! The onboarding settings file (`--settings FILE`, else `$TOPOCTL_ONBOARDING`, else
//! `$XDG_CONFIG_HOME/topoctl/onboarding.toml` or `~/.config/topoctl/onboarding.toml`), and the
//! onboarding key. Relative paths in the file are relative to its directory.
//!
//! ```toml
//! operator_asn = 64500              # our ASN: the origin customers authorise
//! operator_owner = "example-net"    # the `owner` of our own prefixes in the topology
//! signing_key = "onboarding.key"    # created by `topoctl prefix key --generate`
//! store = "onboarding.redb"
//! token_lifetime_days = 14
//! concurrency = 16                  # prefixes verified at once
//!
//! [rdns]
//! nameservers = ["192.0.2.53:53"]
//! timeout_ms = 2000
//! attempts = 2
//!
//! [irr]
//! server = "whois.example.net:43"
//! sources = ["RIPE", "ARIN", "APNIC", "AFRINIC", "LACNIC"]   # RIR-authoritative only
//! timeout_ms = 5000
//! ```
//!
//! Owns: reading the file and the key. Must not touch: the store, the checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng as _;
use serde::Deserialize;
use topologyd_ownership::evidence::{SigningKey, signing_key};
use topologyd_ownership::token::{DEFAULT_TOKEN_LIFETIME_SECONDS, hex, unhex};

use super::checks::irr::IrrSettings;
use super::checks::rdns::RdnsSettings;

/// Prefixes verified at once unless the file says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
const DEFAULT_RDNS_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_RDNS_ATTEMPTS: usize = 2;
const DEFAULT_IRR_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    operator_asn: u32,
    operator_owner: String,
    signing_key: PathBuf,
    store: PathBuf,
    token_lifetime_days: Option<u64>,
    concurrency: Option<usize>,
    rdns: RdnsFile,
    irr: IrrFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RdnsFile {
    nameservers: Vec<SocketAddr>,
    timeout_ms: Option<u64>,
    attempts: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IrrFile {
    server: String,
    sources: Vec<String>,
    timeout_ms: Option<u64>,
}

/// The onboarding settings, paths resolved, defaults filled in.
#[derive(Debug, Clone)]
pub struct OnboardingSettings {
    pub operator_asn: u32,
    pub operator_owner: String,
    pub signing_key: PathBuf,
    pub store: PathBuf,
    pub token_lifetime_seconds: u64,
    pub concurrency: usize,
    pub rdns: RdnsSettings,
    pub irr: IrrSettings,
}

/// Where the settings file is when `--settings` is not given.
pub fn default_settings_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOPOCTL_ONBOARDING") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("topoctl").join("onboarding.toml"))
}

impl OnboardingSettings {
    /// Reads the settings at `path`.
    pub fn load(path: &Path) -> Result<OnboardingSettings, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Parses settings text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<OnboardingSettings, String> {
        let file: SettingsFile = toml::from_str(text).map_err(|error| error.to_string())?;
        if file.rdns.nameservers.is_empty() {
            return Err("[rdns] nameservers must name at least one server".into());
        }
        if file.irr.sources.is_empty() {
            return Err("[irr] sources must name at least one accepted IRR source".into());
        }
        Ok(OnboardingSettings {
            operator_asn: file.operator_asn,
            operator_owner: file.operator_owner,
            signing_key: base.join(file.signing_key),
            store: base.join(file.store),
            token_lifetime_seconds: file
                .token_lifetime_days
                .map_or(DEFAULT_TOKEN_LIFETIME_SECONDS, |days| {
                    days.saturating_mul(86_400)
                }),
            concurrency: file.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
            rdns: RdnsSettings {
                nameservers: file.rdns.nameservers,
                timeout: Duration::from_millis(
                    file.rdns.timeout_ms.unwrap_or(DEFAULT_RDNS_TIMEOUT_MS),
                ),
                attempts: file.rdns.attempts.unwrap_or(DEFAULT_RDNS_ATTEMPTS).max(1),
            },
            irr: IrrSettings {
                server: file.irr.server,
                sources: file.irr.sources,
                timeout: Duration::from_millis(
                    file.irr.timeout_ms.unwrap_or(DEFAULT_IRR_TIMEOUT_MS),
                ),
            },
        })
    }
}

/// Reads the onboarding key (64 hex digits on one line).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "reading the onboarding key {}: {error} (create it with `topoctl prefix key --generate`)",
            path.display()
        )
    })?;
    unhex::<32>(text.trim())
        .map(signing_key)
        .ok_or_else(|| format!("{}: not an onboarding key (64 hex digits)", path.display()))
}

/// Creates a new onboarding key at `path` (mode 0600), never over an existing file.
pub fn generate_signing_key(path: &Path) -> Result<SigningKey, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut secret = [0u8; 32];
    rand::rng().fill(&mut secret);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| format!("creating the onboarding key {}: {error}", path.display()))?;
    writeln!(file, "{}", hex(&secret))
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("writing the onboarding key {}: {error}", path.display()))?;
    Ok(signing_key(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "operator_asn = 64500\noperator_owner = \"example-net\"\nsigning_key = \"k\"\nstore = \"s.redb\"\n[rdns]\nnameservers = [\"127.0.0.1:5353\"]\n[irr]\nserver = \"127.0.0.1:4343\"\nsources = [\"TEST\"]\n";

    #[test]
    fn settings_resolve_paths_and_fill_defaults() {
        let settings = OnboardingSettings::parse(TEXT, Path::new("/etc/topoctl")).expect("valid");
        assert_eq!(settings.store, Path::new("/etc/topoctl/s.redb"));
        assert_eq!(settings.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(
            settings.token_lifetime_seconds,
            DEFAULT_TOKEN_LIFETIME_SECONDS
        );
        assert!(
            OnboardingSettings::parse(&TEXT.replace("[\"TEST\"]", "[]"), Path::new(".")).is_err()
        );
        assert!(
            OnboardingSettings::parse(&format!("{TEXT}\nsurprise = 1\n"), Path::new(".")).is_err()
        );
    }

    #[test]
    fn a_generated_key_loads_and_is_never_overwritten() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = directory.path().join("onboarding.key");
        let key = generate_signing_key(&path).expect("created");
        assert_eq!(
            load_signing_key(&path).expect("loads").to_bytes(),
            key.to_bytes()
        );
        assert!(generate_signing_key(&path).is_err());
    }
}
