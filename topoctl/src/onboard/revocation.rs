//! Revocation at plan time: a topology that still advertises a prefix whose onboarding was
//! revoked is refused by `topoctl plan` and `topoctl push` (dry run or not), before the daemon
//! is asked — never a silent withdrawal. The operator withdraws the prefix explicitly
//! (`advertise = false`), and that plan goes through the guards as any withdrawal does.
//!
//! The revocation list is the onboarding store's (token digests); it is consulted whenever the
//! onboarding settings file exists (`$TOPOCTL_ONBOARDING`, or the default path). A prefix is
//! refused when it is advertised with `[prefix.evidence]` whose token digest is revoked; a
//! prefix re-onboarded after the revocation carries a new token and is not.
//!
//! Owns: matching topologies against the revocation list and the refusal's text. Must not
//! touch: the store's transactions, the daemon.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use topologyd_config::{RawTopology, Source, parse_topology_sources};

use super::settings::{OnboardingSettings, default_settings_path};
use super::store::{OnboardingStore, Revocation};
use crate::render::rfc3339;

/// One advertised prefix whose onboarding is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedAdvertisement {
    /// `file:line:column` of the prefix's cidr.
    pub location: String,
    pub revocation: Revocation,
}

/// The advertised prefixes of `raw` whose evidence's token is in `revocations`.
pub fn revoked_advertisements(
    raw: &RawTopology,
    revocations: &BTreeMap<String, Revocation>,
) -> Vec<RevokedAdvertisement> {
    raw.prefixes
        .iter()
        .filter(|prefix| prefix.advertise)
        .filter_map(|prefix| {
            let evidence = prefix.evidence()?;
            let revocation = revocations.get(&evidence.value.token_sha256.to_ascii_lowercase())?;
            Some(RevokedAdvertisement {
                location: raw.sources.locate(prefix.cidr_span()).to_string(),
                revocation: revocation.clone(),
            })
        })
        .collect()
}

/// The refusal's text, one paragraph per prefix.
pub fn render_refusal(refused: &[RevokedAdvertisement]) -> String {
    let mut text = String::new();
    for item in refused {
        let revocation = &item.revocation;
        let _ = writeln!(
            text,
            "refused: {}: prefix {} (owner \"{}\") is still advertised, but its onboarding was revoked at {}",
            item.location,
            revocation.prefix,
            revocation.owner,
            rfc3339(revocation.revoked_at_unix)
        );
    }
    let _ = writeln!(
        text,
        "  withdraw explicitly: set advertise = false for the prefix(es) above and plan again (the withdrawal is then judged by the guards like any other), or onboard and verify again for new evidence"
    );
    text
}

/// The revoked prefixes the sources `load` gives still advertise, by the store named in the
/// onboarding settings; empty when there are no onboarding settings or the sources do not
/// parse (the compiler reports that). `load` is called only when there are revocations to
/// check against (a push reads no file for it otherwise).
pub fn check_sources_with(
    load: impl FnOnce() -> Result<Vec<Source>, String>,
) -> Result<Vec<RevokedAdvertisement>, String> {
    let Some(path) = default_settings_path().filter(|path| path.exists()) else {
        return Ok(Vec::new());
    };
    let settings = OnboardingSettings::load(&path)?;
    if !settings.store.exists() {
        return Ok(Vec::new());
    }
    let store = OnboardingStore::open(&settings.store).map_err(|error| error.to_string())?;
    let revocations = store.revocations().map_err(|error| error.to_string())?;
    if revocations.is_empty() {
        return Ok(Vec::new());
    }
    let sources = load()?;
    let Ok(raw) = parse_topology_sources(&sources) else {
        return Ok(Vec::new());
    };
    Ok(revoked_advertisements(&raw, &revocations))
}
