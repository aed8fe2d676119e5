//! Verification: the three checks for an onboarding (reverse DNS and IRR against real servers,
//! concurrently; the ROA intent check against the VRPs given), then the one step that records
//! them, consumes the token and signs the evidence ([`complete_verification`]); and many
//! prefixes at once, with a bound on how many are in flight and a progress line on a terminal.
//!
//! Owns: the order of a verification and its concurrency. Must not touch: how a check asks its
//! server (`checks/`), the store's transactions.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use topologyd_ownership::evidence::{EvidenceClaim, SigningKey};
use topologyd_ownership::roa::{IntentQuery, check_roa};
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus, Onboarding, OnboardingState};
use topologyd_rpki::VrpSet;

use super::checks::irr::check_irr;
use super::checks::rdns::check_rdns;
use super::settings::OnboardingSettings;
use super::store::{OnboardingStore, StoreError};

/// The VRPs the intent check reads, and where they came from.
#[derive(Debug, Clone, Default)]
pub struct VrpInput {
    pub vrps: Option<VrpSet>,
    pub source: String,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Runs the checks of one onboarding: none when its token has expired (the store then marks it
/// expired), else reverse DNS and IRR concurrently, and the ROA check.
pub async fn run_checks(
    settings: &OnboardingSettings,
    onboarding: &Onboarding,
    vrps: &VrpInput,
    now: u64,
) -> Vec<CheckEvidence> {
    let token = &onboarding.token;
    if token.is_expired(now) {
        return Vec::new();
    }
    let (rdns, irr) = tokio::join!(
        check_rdns(&settings.rdns, token.prefix, &token.token),
        check_irr(&settings.irr, token.prefix, token.origin_asn, &token.token),
    );
    vec![rdns, irr, roa_check(onboarding, vrps, now)]
}

/// The ROA check of one onboarding (pure but for reading `vrps`).
pub fn roa_check(onboarding: &Onboarding, vrps: &VrpInput, now: u64) -> CheckEvidence {
    let token = &onboarding.token;
    let query = IntentQuery {
        prefix: token.prefix,
        origin_asn: token.origin_asn,
        longest_announced: onboarding.longest_announced,
    };
    match &vrps.vrps {
        Some(set) => check_roa(query, &set.covering(&token.prefix), &vrps.source, now),
        None => CheckEvidence {
            kind: CheckKind::Roa,
            status: CheckStatus::Unreachable,
            queried: Vec::new(),
            server: String::new(),
            found: Vec::new(),
            checked_at_unix: now,
            detail: "no VRPs to check the ROA against: give --vrps FILE or --rtr HOST:PORT".into(),
        },
    }
}

/// Records `checks`, run for `checked`, at `now` (refused when the stored onboarding is no
/// longer `checked`'s); when they make it valid, consumes the token and
/// attaches evidence signed with `key`. The one path from passed checks to evidence.
pub fn complete_verification(
    store: &OnboardingStore,
    key: &SigningKey,
    checked: &Onboarding,
    checks: Vec<CheckEvidence>,
    now: u64,
) -> Result<Onboarding, StoreError> {
    store.record_verification(checked, checks, now, |onboarding| {
        let verified_at_unix = onboarding
            .checks
            .iter()
            .map(|check| check.checked_at_unix)
            .max()
            .unwrap_or(now);
        EvidenceClaim {
            prefix: onboarding.token.prefix,
            owner: onboarding.token.owner.clone(),
            origin_asn: onboarding.token.origin_asn,
            longest_announced: onboarding.longest_announced,
            token_sha256: onboarding.token.digest(),
            checks: onboarding.passed(),
            verified_at_unix,
        }
        .sign(key)
    })
}

/// What verifying many prefixes came to, per prefix in the order given.
pub type Outcomes = Vec<(IpNet, Result<Onboarding, String>)>;

/// Verifies `prefixes`, at most `settings.concurrency` at once, printing a progress line on
/// standard error when it is a terminal.
pub async fn verify_many(
    settings: Arc<OnboardingSettings>,
    store: Arc<OnboardingStore>,
    key: Arc<SigningKey>,
    vrps: Arc<VrpInput>,
    prefixes: Vec<IpNet>,
) -> Outcomes {
    let total = prefixes.len();
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut tasks = JoinSet::new();
    for (index, prefix) in prefixes.iter().copied().enumerate() {
        let (settings, store, key, vrps, permits) = (
            Arc::clone(&settings),
            Arc::clone(&store),
            Arc::clone(&key),
            Arc::clone(&vrps),
            Arc::clone(&permits),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (
                index,
                verify_one(&settings, &store, &key, &vrps, prefix).await,
            )
        });
    }
    let mut outcomes: Vec<Option<Result<Onboarding, String>>> = vec![None; total];
    let mut progress = Progress::new(total);
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, outcome)) = joined else {
            continue;
        };
        progress.record(&outcome);
        outcomes[index] = Some(outcome);
    }
    progress.finish();
    prefixes
        .into_iter()
        .zip(outcomes)
        .map(|(prefix, outcome)| {
            (
                prefix,
                outcome.unwrap_or_else(|| Err("the verification task failed".into())),
            )
        })
        .collect()
}

async fn verify_one(
    settings: &OnboardingSettings,
    store: &OnboardingStore,
    key: &SigningKey,
    vrps: &VrpInput,
    prefix: IpNet,
) -> Result<Onboarding, String> {
    let onboarding = store
        .get(prefix)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| StoreError::NotOnboarded(prefix).to_string())?;
    let now = now_unix();
    let checks = run_checks(settings, &onboarding, vrps, now).await;
    complete_verification(store, key, &onboarding, checks, now).map_err(|error| error.to_string())
}

/// The progress line: done of total, how many valid, failed and still pending, elapsed.
struct Progress {
    total: usize,
    done: usize,
    valid: usize,
    failed: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            valid: 0,
            failed: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal() && total > 1,
        }
    }

    fn record(&mut self, outcome: &Result<Onboarding, String>) {
        self.done += 1;
        match outcome {
            Ok(onboarding) if onboarding.state == OnboardingState::Valid => self.valid += 1,
            Ok(onboarding) if onboarding.state == OnboardingState::Pending => {}
            _ => self.failed += 1,
        }
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(
                stderr,
                "\rverifying {}/{} prefixes: {} valid, {} not, {:.1}s ",
                self.done,
                self.total,
                self.valid,
                self.failed,
                self.started.elapsed().as_secs_f64()
            );
            let _ = stderr.flush();
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests;
