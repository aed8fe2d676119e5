//! The ownership checks that ask real servers: the validation token in the prefix's reverse
//! DNS ([`rdns`]) and in an IRR route object ([`irr`]), and [`check_many`], which runs many of
//! them with a bound on how many are in flight and reports progress as each one finishes
//! ([`CheckTally`] turns that into a one-line display).
//!
//! Each check returns a [`CheckEvidence`] whatever happens: a server that is down, slow or
//! answers garbage gives `unreachable`, never an error and never `valid`.
//!
//! Owns: the network side of the checks. Must not touch: tokens, the onboarding store or
//! signing (the rest of `onboard`), which only read the evidence.

pub mod irr;
pub mod rdns;

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use topologyd_ownership::{CheckEvidence, CheckStatus};

/// Where a batch of checks stands, passed to [`check_many`]'s progress callback after each
/// check finishes.
#[derive(Debug, Clone, Copy)]
pub struct CheckProgress<'a> {
    /// Checks finished so far, this one included.
    pub done: usize,
    /// Checks in the batch.
    pub total: usize,
    /// The index in the input of the check that just finished.
    pub index: usize,
    /// What it found.
    pub evidence: &'a CheckEvidence,
}

/// Runs `check` on every item with at most `concurrency` (at least 1) in flight, calls
/// `progress` as each finishes (in completion order), and returns the evidence in input order.
pub async fn check_many<T, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    check: F,
    mut progress: impl FnMut(CheckProgress<'_>),
) -> Vec<CheckEvidence>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = CheckEvidence>,
{
    let total = items.len();
    let mut results: Vec<Option<CheckEvidence>> = vec![None; total];
    let check = &check;
    let mut finished = futures_util::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| async move { (index, check(item).await) })
        .buffer_unordered(concurrency.max(1));
    let mut done = 0;
    while let Some((index, evidence)) = finished.next().await {
        done += 1;
        progress(CheckProgress {
            done,
            total,
            index,
            evidence: &evidence,
        });
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(evidence);
        }
    }
    results.into_iter().flatten().collect()
}

/// Running counts of a batch's verdicts, for a progress display: feed it every
/// [`CheckProgress`] and print [`CheckTally::line`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckTally {
    pub done: usize,
    pub total: usize,
    pub valid: usize,
    pub missing: usize,
    pub invalid: usize,
    pub mismatch_asn: usize,
    pub unreachable: usize,
}

impl CheckTally {
    /// Counts one finished check.
    pub fn record(&mut self, progress: &CheckProgress<'_>) {
        self.done = progress.done;
        self.total = progress.total;
        let count = match progress.evidence.status {
            CheckStatus::Valid => &mut self.valid,
            CheckStatus::Missing => &mut self.missing,
            CheckStatus::Invalid => &mut self.invalid,
            CheckStatus::MismatchAsn => &mut self.mismatch_asn,
            CheckStatus::Unreachable => &mut self.unreachable,
        };
        *count += 1;
    }

    /// `checked 120/1000: 117 valid, 2 missing, 1 unreachable` (zero counts left out).
    pub fn line(&self) -> String {
        let counts = [
            (self.valid, "valid"),
            (self.missing, "missing"),
            (self.invalid, "invalid"),
            (self.mismatch_asn, "mismatch_asn"),
            (self.unreachable, "unreachable"),
        ];
        let parts: Vec<String> = counts
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, name)| format!("{count} {name}"))
            .collect();
        format!("checked {}/{}: {}", self.done, self.total, parts.join(", "))
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use topologyd_ownership::CheckKind;

    fn evidence(n: u64) -> CheckEvidence {
        CheckEvidence {
            kind: CheckKind::Irr,
            status: CheckStatus::Missing,
            queried: vec![n.to_string()],
            server: String::new(),
            found: Vec::new(),
            checked_at_unix: n,
            detail: String::new(),
        }
    }

    #[tokio::test]
    async fn bounded_in_input_order_with_progress() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let results = check_many(
            (0..40u64).collect(),
            4,
            |n| {
                let (in_flight, peak) = (&in_flight, &peak);
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis((n * 7) % 5)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    evidence(n)
                }
            },
            |progress| seen.push((progress.done, progress.total, progress.index)),
        )
        .await;
        assert_eq!(results.len(), 40);
        assert!(
            results
                .iter()
                .enumerate()
                .all(|(i, e)| e.checked_at_unix == i as u64)
        );
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(peak.load(Ordering::SeqCst) >= 2, "never ran concurrently");
        assert_eq!(seen.len(), 40);
        assert!(
            seen.iter()
                .enumerate()
                .all(|(i, (done, total, _))| *done == i + 1 && *total == 40)
        );
    }

    #[test]
    fn tally_counts_every_status() {
        let mut tally = CheckTally::default();
        let statuses = [
            CheckStatus::Valid,
            CheckStatus::Valid,
            CheckStatus::Unreachable,
        ];
        for (n, status) in statuses.into_iter().enumerate() {
            let mut finished = evidence(n as u64);
            finished.status = status;
            tally.record(&CheckProgress {
                done: n + 1,
                total: 4,
                index: n,
                evidence: &finished,
            });
        }
        assert_eq!(tally.line(), "checked 3/4: 2 valid, 1 unreachable");
    }
}
