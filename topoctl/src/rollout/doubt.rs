//! Where each location's doubt began, and the deadlines of the calls the controller dropped
//! there: pure bookkeeping (wall-clock unix milliseconds as arguments), fed with every journal
//! record as it is written and rebuilt from the journal on resume.
//!
//! A location is *in doubt* from its first apply or rollback not yet settled by a definitive
//! outcome (applied, apply failed, rolled back, rollback failed, stalled; "not done" is not
//! one: the retry that follows stays in the same doubt). Its stall bound is measured from that
//! moment, so apply → answer lost → not done → apply again cannot go on past the bound.
//!
//! Every apply or rollback carries a deadline: `since + bound`, or sooner, `now + window` when
//! a call window is set (the request timeout plus a margin), so that a lost answer is known
//! "not done" one window later instead of at the end of the bound (the daemon refuses a call
//! after its deadline by its own clock, when it arrives and again at commit). A settle may conclude "not
//! done" only from a status the daemon answered after the deadline of every call dropped at
//! that location ([`Doubts::not_done_is_final`]): the engine decides a commit in one step with
//! its deadline check, so such a status reflects every commit those calls could ever make.
//!
//! Replaying the journal gives a deadline at least as late as the one a call carried (a doubt
//! begins at its first journaled call, or earlier when a settle began it), so a resumed
//! controller never concludes too early.
//!
//! Must not touch: HTTP, the clock, the journal format.

use std::collections::BTreeMap;

use super::journal::{Line, Record};
use super::waves::Wave;

/// The doubt at one location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Doubt {
    /// When the current doubt began (unset after a stall: the next settle begins a new one).
    pub since_unix_ms: Option<u64>,
    /// The latest deadline a call dropped here carried (kept across a stall, cleared by an
    /// outcome that settles the location).
    pub outlast_unix_ms: Option<u64>,
}

/// The doubts of every location of a rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Doubts {
    bound_ms: BTreeMap<String, u64>,
    entries: BTreeMap<String, Doubt>,
    /// The longest a single call may stay undecided (`None`: the whole bound).
    call_window_ms: Option<u64>,
}

/// How much later than its journal record a call may begin: the margin a journaled call's
/// deadline is assumed to have, so that a replay never assumes a deadline earlier than the one
/// the call carried.
pub const JOURNAL_TO_CALL_MARGIN_MS: u64 = 10_000;

impl Doubts {
    /// No location in doubt; each location's bound is its wave's stall bound.
    pub fn new(waves: &[Wave]) -> Doubts {
        let bound_ms = waves
            .iter()
            .flat_map(|wave| {
                let bound = wave.stall_seconds.max(1).saturating_mul(1000);
                wave.locations.iter().map(move |name| (name.clone(), bound))
            })
            .collect();
        Doubts {
            bound_ms,
            entries: BTreeMap::new(),
            call_window_ms: None,
        }
    }

    /// As [`Doubts::new`], each call deciding within `call_window_ms` (the request timeout
    /// plus a margin) unless the bound ends sooner.
    pub fn with_call_window(waves: &[Wave], call_window_ms: u64) -> Doubts {
        Doubts {
            call_window_ms: Some(call_window_ms),
            ..Doubts::new(waves)
        }
    }

    /// Rebuilds the doubts a journal leaves.
    pub fn replay(&mut self, lines: &[Line]) {
        for line in lines {
            self.observe(&line.record, unix_ms_of(line.time));
        }
    }

    /// The stall bound of `location` (milliseconds).
    pub fn bound_ms(&self, location: &str) -> u64 {
        self.bound_ms
            .get(location)
            .copied()
            .unwrap_or_else(|| topologyd_config::fleet::DEFAULT_STALL_SECONDS.saturating_mul(1000))
    }

    pub fn get(&self, location: &str) -> Doubt {
        self.entries.get(location).copied().unwrap_or_default()
    }

    /// Takes `record`, journaled at `time_unix_ms`, into account.
    pub fn observe(&mut self, record: &Record, time_unix_ms: u64) {
        match record {
            Record::Applying { location, .. } | Record::RollingBack { location, .. } => {
                // The call follows its record: assume its deadline as late as it can be.
                let call_time = match self.call_window_ms {
                    Some(_) => time_unix_ms.saturating_add(JOURNAL_TO_CALL_MARGIN_MS),
                    None => time_unix_ms,
                };
                self.begin_at(location, time_unix_ms, call_time);
            }
            Record::Applied { location, .. }
            | Record::ApplyFailed { location, .. }
            | Record::RolledBack { location, .. }
            | Record::RollbackFailed { location, .. } => {
                self.entries.remove(location);
            }
            Record::Stalled { location, .. } => {
                if let Some(doubt) = self.entries.get_mut(location) {
                    doubt.since_unix_ms = None;
                }
            }
            _ => {}
        }
    }

    /// A `call` (or a settle) at `location` at `now_unix_ms`: begins a doubt there unless one
    /// is under way. A settle gets the deadline of the doubt (`since + bound`); a call gets
    /// the deadline it carries (that, or `now + window` if sooner), which it must outlast from
    /// then on.
    pub fn begin(&mut self, location: &str, now_unix_ms: u64, call: bool) -> u64 {
        if call {
            self.begin_at(location, now_unix_ms, now_unix_ms)
        } else {
            let bound = self.bound_ms(location);
            let doubt = self.entries.entry(location.to_owned()).or_default();
            doubt
                .since_unix_ms
                .get_or_insert(now_unix_ms)
                .saturating_add(bound)
        }
    }

    /// A call at `call_unix_ms` in a doubt begun at `now_unix_ms` at the latest: its deadline,
    /// recorded as one to outlast.
    fn begin_at(&mut self, location: &str, now_unix_ms: u64, call_unix_ms: u64) -> u64 {
        let bound = self.bound_ms(location);
        let window = self.call_window_ms;
        let doubt = self.entries.entry(location.to_owned()).or_default();
        let since = *doubt.since_unix_ms.get_or_insert(now_unix_ms);
        let end_of_bound = since.saturating_add(bound);
        let carried = window.map_or(end_of_bound, |window| {
            end_of_bound.min(call_unix_ms.saturating_add(window))
        });
        doubt.outlast_unix_ms = Some(
            doubt
                .outlast_unix_ms
                .map_or(carried, |outlast| outlast.max(carried)),
        );
        carried
    }

    /// Whether "not done" (the daemon still runs the generation the call was made against) is
    /// final, from a status answered at `status_time_unix_ms` by the daemon's clock: only when
    /// that is past the deadline of every call dropped at `location`. A daemon that predates
    /// deadlines (time 0) neither reports its clock nor refuses late calls: its "not done" is
    /// final only in a later doubt, begun after that deadline (the first one ends stalled, in
    /// doubt and reported).
    pub fn not_done_is_final(&self, location: &str, status_time_unix_ms: u64) -> bool {
        let doubt = self.get(location);
        let Some(outlast) = doubt.outlast_unix_ms else {
            return true;
        };
        if status_time_unix_ms == 0 {
            doubt.since_unix_ms.is_some_and(|since| since > outlast)
        } else {
            status_time_unix_ms > outlast
        }
    }
}

/// Unix seconds (a journal line's time) as unix milliseconds.
pub fn unix_ms_of(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0) as u64
    } else {
        0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
