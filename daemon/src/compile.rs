//! The memory budget of topology compiles (plan, apply, rollback), which run on the blocking
//! pool, never on the engine task.
//!
//! Owns: [`CompileBudget`] — how many bytes the compiles in flight may use together — and the
//! estimate of one compile's peak from its input size. A compile whose estimate does not fit is
//! refused before it starts, with an error that says how much it needs and what the budget is.
//!
//! Must not touch: the compile itself (the engine's job functions run it) or any socket.
//!
//! The estimate: [`COMPILE_MEMORY_PER_INPUT_BYTE`] × the bundle's source bytes, and at least
//! [`COMPILE_MEMORY_FLOOR`]. Measured on synthetic topologies (release build, 3 MB and 14 MB of
//! TOML): compiling a bundle and planning it against a running topology of the same size peaked
//! at about 6 bytes per source byte; 8 leaves headroom for the request body and its copies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Estimated peak memory of one compile and plan per byte of TOML source.
pub const COMPILE_MEMORY_PER_INPUT_BYTE: u64 = 8;

/// The smallest estimate: the fixed cost of a compile (tables, the plan, its rendering).
pub const COMPILE_MEMORY_FLOOR: u64 = 1024 * 1024;

/// The estimated peak memory of compiling and planning `source_bytes` of TOML.
pub fn estimate(source_bytes: u64) -> u64 {
    source_bytes
        .saturating_mul(COMPILE_MEMORY_PER_INPUT_BYTE)
        .max(COMPILE_MEMORY_FLOOR)
}

/// Why a compile was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The compile alone would exceed the budget.
    #[error(
        "this bundle ({source_bytes} bytes of sources) needs an estimated {estimate} bytes to compile, more than the compile memory budget of {limit} bytes; splitting it into more files does not help; reduce it, or raise [control] compile_memory_bytes"
    )]
    TooLarge {
        /// The bundle's source bytes.
        source_bytes: u64,
        /// Its estimated peak.
        estimate: u64,
        /// The budget.
        limit: u64,
    },
    /// The compiles in flight leave too little of the budget.
    #[error(
        "compile memory budget exhausted: this bundle needs an estimated {estimate} bytes and {compiles} compile(s) in flight use {in_use} of {limit} bytes; retry when they finish"
    )]
    Busy {
        /// Its estimated peak.
        estimate: u64,
        /// Bytes reserved by the compiles in flight.
        in_use: u64,
        /// How many compiles are in flight.
        compiles: usize,
        /// The budget.
        limit: u64,
    },
}

/// The bytes the compiles in flight may use together.
#[derive(Debug)]
pub struct CompileBudget {
    limit: AtomicU64,
    /// (bytes reserved, compiles in flight)
    in_use: Mutex<(u64, usize)>,
}

impl CompileBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<CompileBudget> {
        Arc::new(CompileBudget {
            limit: AtomicU64::new(limit),
            in_use: Mutex::new((0, 0)),
        })
    }

    /// Changes the budget (configuration reload); compiles in flight keep their reservation.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes reserved and compiles in flight.
    pub fn in_use(&self) -> (u64, usize) {
        *self
            .in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves the estimate for a compile of `source_bytes`; released when the
    /// [`Reservation`] is dropped.
    pub fn reserve(self: &Arc<Self>, source_bytes: u64) -> Result<Reservation, BudgetError> {
        let estimate = estimate(source_bytes);
        let limit = self.limit();
        if estimate > limit {
            return Err(BudgetError::TooLarge {
                source_bytes,
                estimate,
                limit,
            });
        }
        let mut in_use = self
            .in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if in_use.0.saturating_add(estimate) > limit {
            return Err(BudgetError::Busy {
                estimate,
                in_use: in_use.0,
                compiles: in_use.1,
                limit,
            });
        }
        in_use.0 += estimate;
        in_use.1 += 1;
        Ok(Reservation {
            budget: Arc::clone(self),
            bytes: estimate,
        })
    }
}

/// A compile's share of the budget, held while it runs.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<CompileBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_use = self
            .budget
            .in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_use.0 = in_use.0.saturating_sub(self.bytes);
        in_use.1 = in_use.1.saturating_sub(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_compile_larger_than_the_budget_is_refused_and_says_what_to_do() {
        let budget = CompileBudget::new(64 * 1024 * 1024);
        let error = budget.reserve(10 * 1024 * 1024).unwrap_err();
        assert!(matches!(error, BudgetError::TooLarge { .. }), "{error}");
        assert!(
            error.to_string().contains("compile_memory_bytes"),
            "{error}"
        );
        assert_eq!(budget.in_use(), (0, 0));
    }

    #[test]
    fn compiles_in_flight_share_the_budget_and_release_it() {
        let budget = CompileBudget::new(100 * 1024 * 1024);
        let first = budget.reserve(7 * 1024 * 1024).unwrap();
        let error = budget.reserve(7 * 1024 * 1024).unwrap_err();
        assert!(
            matches!(error, BudgetError::Busy { compiles: 1, .. }),
            "{error}"
        );
        drop(first);
        let _second = budget.reserve(7 * 1024 * 1024).unwrap();
        assert_eq!(budget.in_use().1, 1);
    }

    proptest! {
        /// Whatever is reserved and released in whatever order, the reservations held never
        /// exceed the budget and everything is given back.
        #[test]
        fn reservations_never_exceed_the_budget(
            sizes in proptest::collection::vec(0_u64..40 * 1024 * 1024, 1..40),
            releases in proptest::collection::vec(any::<bool>(), 1..40),
        ) {
            let limit = 128 * 1024 * 1024;
            let budget = CompileBudget::new(limit);
            let mut held = Vec::new();
            for (index, size) in sizes.iter().enumerate() {
                if let Ok(reservation) = budget.reserve(*size) {
                    held.push(reservation);
                }
                prop_assert!(budget.in_use().0 <= limit);
                prop_assert_eq!(budget.in_use().1, held.len());
                if releases.get(index).copied().unwrap_or(false) && !held.is_empty() {
                    held.remove(0);
                }
            }
            held.clear();
            prop_assert_eq!(budget.in_use(), (0, 0));
        }
    }
}
