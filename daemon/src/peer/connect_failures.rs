//! Outbound connection failures of one peer, summarised for the log: the first failure is
//! logged at once, then one summary per [`SUMMARY_INTERVAL`] (how many attempts failed, since
//! when, the last error) instead of a line per attempt forever; a different error is logged at
//! once (the cause changed); the first success after failures says how long it took.
//!
//! Owns: the counting and the words. Pure: the caller passes the time in. Must not touch: the
//! session, the connect-retry timer (the FSM's back-off decides when to try again).

use std::time::{Duration, Instant};

/// How often a peer that keeps failing gets a summary line.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);

/// Failed outbound connection attempts since the last success.
#[derive(Debug, Default)]
pub struct ConnectFailures {
    /// Attempts failed since the last success.
    attempts: u64,
    /// Attempts failed since the last line logged.
    since_logged: u64,
    first_at: Option<Instant>,
    logged_at: Option<Instant>,
    last_error: String,
}

impl ConnectFailures {
    /// Records one failed attempt; the line to log at WARN when one is due.
    pub fn failed(&mut self, error: &str, now: Instant) -> Option<String> {
        self.attempts += 1;
        self.since_logged += 1;
        let first_at = *self.first_at.get_or_insert(now);
        let changed = self.last_error != error;
        self.last_error = error.to_owned();
        let line = if self.attempts == 1 {
            Some(format!(
                "cannot connect to the peer: {error}; retrying with back-off, one summary line \
                 every {} s while it keeps failing",
                SUMMARY_INTERVAL.as_secs()
            ))
        } else if changed {
            Some(format!(
                "cannot connect to the peer: {error} (the error changed; {} attempts failed over \
                 {} s)",
                self.attempts,
                now.saturating_duration_since(first_at).as_secs()
            ))
        } else if self
            .logged_at
            .is_none_or(|logged| now.saturating_duration_since(logged) >= SUMMARY_INTERVAL)
        {
            Some(format!(
                "still cannot connect to the peer: {} attempts failed in the last {} s, {} over {} \
                 s; last error: {error}",
                self.since_logged,
                self.logged_at
                    .map_or(0, |logged| now.saturating_duration_since(logged).as_secs()),
                self.attempts,
                now.saturating_duration_since(first_at).as_secs()
            ))
        } else {
            None
        };
        if line.is_some() {
            self.logged_at = Some(now);
            self.since_logged = 0;
        }
        line
    }

    /// A connection succeeded: the line to log at INFO when attempts had failed before.
    pub fn connected(&mut self, now: Instant) -> Option<String> {
        let line = self.first_at.map(|first_at| {
            format!(
                "connected to the peer after {} failed attempts over {} s (last error: {})",
                self.attempts,
                now.saturating_duration_since(first_at).as_secs(),
                self.last_error
            )
        });
        *self = ConnectFailures::default();
        line
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_at_once_then_one_summary_per_interval() {
        let start = Instant::now();
        let mut failures = ConnectFailures::default();
        let first = failures.failed("Connection refused", start).unwrap();
        assert!(first.contains("Connection refused"), "{first}");
        // Retries every 5 s for just under the interval: silent.
        let mut logged = 0;
        let mut at = start;
        for _ in 0..59 {
            at += Duration::from_secs(5);
            logged += usize::from(failures.failed("Connection refused", at).is_some());
        }
        assert_eq!(logged, 0);
        at += Duration::from_secs(5);
        let summary = failures.failed("Connection refused", at).unwrap();
        assert!(
            summary.contains("60 attempts failed in the last 300 s, 61 over 300 s"),
            "{summary}"
        );
        // An hour of retries: one line per interval, not one per attempt.
        let mut lines = 0;
        for _ in 0..720 {
            at += Duration::from_secs(5);
            lines += usize::from(failures.failed("Connection refused", at).is_some());
        }
        assert_eq!(lines, 12);
    }

    #[test]
    fn a_new_error_is_logged_at_once_and_success_summarises() {
        let start = Instant::now();
        let mut failures = ConnectFailures::default();
        assert!(failures.failed("Connection refused", start).is_some());
        let changed = failures
            .failed("No route to host", start + Duration::from_secs(2))
            .unwrap();
        assert!(
            changed.contains("the error changed; 2 attempts"),
            "{changed}"
        );
        let up = failures.connected(start + Duration::from_secs(30)).unwrap();
        assert!(
            up.contains("after 2 failed attempts over 30 s (last error: No route to host)"),
            "{up}"
        );
        // Counting starts again; a success without failures says nothing.
        assert_eq!(failures.connected(start + Duration::from_secs(31)), None);
        assert!(
            failures
                .failed("Connection refused", start + Duration::from_secs(40))
                .unwrap()
                .starts_with("cannot connect to the peer")
        );
    }
}
