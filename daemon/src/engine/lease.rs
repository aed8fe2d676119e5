//! The fleet lock's rules at one daemon, pure: [`LeaseBook`] holds the lease a rollout holds
//! here (holder, fencing token, expiry on the wall clock) and the highest token ever seen per
//! holder (its *fence*), and decides every `POST /v1/lease` ([`LeaseBook::decide`]) and whether
//! an apply or rollback's claim may act ([`LeaseBook::check`]). Time is an argument (unix
//! milliseconds), so expiry survives a restart: the book is persisted with the state store and
//! reloaded at start.
//!
//! Rules:
//! - acquire (H, t, ttl): refused `stale_token` when t is below H's fence; refused
//!   `lease_held` while another holder's lease is live; otherwise granted (taken, renewed, or
//!   re-fenced by a higher token), expiring ttl seconds from now. ttl is 1..=3600 s.
//! - release (H, t): clears the lease if it is H's with token t (live or expired); otherwise
//!   `lease_not_held`.
//! - break: clears whatever lease is held (the operator's emergency hatch).
//! - a mutation's claim: while a lease is live, no claim or another holder's is `lease_held`,
//!   the holder's with a lower token `stale_token`, with a higher token (never acquired)
//!   `lease_not_held`; with no live lease any claim is `lease_not_held` (the holder must
//!   acquire again), and no claim may act.
//! - fences are kept after release and expiry, for the last [`FENCE_CAPACITY`] holders.
//!
//! Must not touch: files, clocks, the audit log, metrics (the engine shell runs those).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use topologyd_api::{LeaseAction, LeaseClaim, LeaseRequest, LeaseView};

/// The shortest lease, in seconds.
pub const TTL_MIN_SECONDS: u64 = 1;

/// The longest lease, in seconds.
pub const TTL_MAX_SECONDS: u64 = 3600;

/// How many holders' fences are remembered (the least recently seen is forgotten first).
pub const FENCE_CAPACITY: usize = 256;

/// The longest holder name accepted.
pub const HOLDER_MAX_BYTES: usize = 256;

/// A lease as held (live or expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub holder: String,
    pub token: u64,
    pub ttl_seconds: u64,
    /// When it expires, unix milliseconds.
    pub expires_unix_ms: u64,
}

impl Lease {
    /// Live at `now_ms`: not yet expired.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_unix_ms
    }

    /// Milliseconds left at `now_ms` (0 once expired).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.expires_unix_ms.saturating_sub(now_ms)
    }

    /// The view the control API shows.
    pub fn view(&self, now_ms: u64) -> LeaseView {
        LeaseView {
            holder: self.holder.clone(),
            token: self.token,
            ttl_seconds: self.ttl_seconds,
            expires_unix_ms: self.expires_unix_ms,
            remaining_ms: self.remaining_ms(now_ms),
        }
    }
}

/// The highest token seen for one holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    pub token: u64,
    /// When it was last raised or confirmed, as the book's sequence number (for eviction).
    pub seen: u64,
}

/// The lease and the fences, as persisted (`lease.json` in the state directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseBook {
    pub lease: Option<Lease>,
    pub fences: BTreeMap<String, Fence>,
    /// Counts fence updates (orders them for eviction).
    pub sequence: u64,
}

/// Why a lease request or a mutation's claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another holder's lease is live.
    #[error(
        "the fleet lock is held by `{holder}` (token {token}) for {remaining_ms} ms more; wait for that rollout to finish, or, if it is dead, for the lease to expire or break it with `topoctl lease break --daemon ADDR --yes`"
    )]
    Held {
        holder: String,
        token: u64,
        remaining_ms: u64,
        lease: LeaseView,
    },
    /// The claimed token is below the highest one seen for the holder: a newer instance of
    /// the holder has fenced this one off.
    #[error(
        "stale fencing token {token} for `{holder}`: this daemon has seen token {highest}; a newer controller holds the lock, stop acting"
    )]
    StaleToken {
        holder: String,
        token: u64,
        highest: u64,
        lease: Option<LeaseView>,
    },
    /// The claim names a lease this daemon does not hold.
    #[error("{message}")]
    NotHeld {
        message: String,
        lease: Option<LeaseView>,
    },
    /// The request itself is wrong (ttl out of range, bad holder name).
    #[error("{0}")]
    Invalid(String),
}

impl LeaseError {
    /// The error kind the control API names (`lease_held`, `stale_token`, `lease_not_held`,
    /// `invalid`).
    pub fn kind(&self) -> &'static str {
        match self {
            LeaseError::Held { .. } => "lease_held",
            LeaseError::StaleToken { .. } => "stale_token",
            LeaseError::NotHeld { .. } => "lease_not_held",
            LeaseError::Invalid(_) => "invalid",
        }
    }

    /// The live lease the refusal was measured against, if any.
    pub fn lease(&self) -> Option<&LeaseView> {
        match self {
            LeaseError::Held { lease, .. } => Some(lease),
            LeaseError::StaleToken { lease, .. } | LeaseError::NotHeld { lease, .. } => {
                lease.as_ref()
            }
            LeaseError::Invalid(_) => None,
        }
    }
}

/// What a granted lease request changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// Taken where none was live (`previous`: an expired lease it replaced).
    Acquired { previous: Option<Lease> },
    /// The holder's own lease, renewed (same token) or re-fenced (higher token).
    Renewed { previous_token: u64 },
    /// Given up by its holder.
    Released,
    /// Cleared by an operator (`None`: there was none).
    Broken { broken: Option<Lease> },
}

impl LeaseChange {
    /// One line for the audit log and the daemon's log.
    pub fn describe(&self, request: &LeaseRequest) -> String {
        let who = format!("`{}` token {}", request.holder, request.token);
        match self {
            LeaseChange::Acquired { previous: None } => {
                format!("lease acquired by {who} for {} s", request.ttl_seconds)
            }
            LeaseChange::Acquired {
                previous: Some(previous),
            } => format!(
                "lease acquired by {who} for {} s (the expired lease of `{}` token {} replaced)",
                request.ttl_seconds, previous.holder, previous.token
            ),
            LeaseChange::Renewed { previous_token } if *previous_token == request.token => {
                format!("lease renewed by {who} for {} s", request.ttl_seconds)
            }
            LeaseChange::Renewed { previous_token } => format!(
                "lease re-fenced by {who} (was token {previous_token}) for {} s",
                request.ttl_seconds
            ),
            LeaseChange::Released => format!("lease released by {who}"),
            LeaseChange::Broken { broken: None } => {
                format!(
                    "lease break asked by `{}`: no lease was held",
                    request.holder
                )
            }
            LeaseChange::Broken {
                broken: Some(broken),
            } => format!(
                "lease of `{}` token {} broken by `{}`",
                broken.holder, broken.token, request.holder
            ),
        }
    }
}

impl LeaseBook {
    /// The live lease at `now_ms`, if any.
    pub fn live(&self, now_ms: u64) -> Option<&Lease> {
        self.lease.as_ref().filter(|lease| lease.is_live(now_ms))
    }

    /// The live lease's view at `now_ms`, if any.
    pub fn view(&self, now_ms: u64) -> Option<LeaseView> {
        self.live(now_ms).map(|lease| lease.view(now_ms))
    }

    /// The highest token seen for `holder`, if it is remembered.
    pub fn fence(&self, holder: &str) -> Option<u64> {
        self.fences.get(holder).map(|fence| fence.token)
    }

    /// Decides `request` at `now_ms`: the book afterwards and what changed, or the refusal.
    /// `self` is untouched; the shell persists the new book before it takes effect.
    pub fn decide(
        &self,
        request: &LeaseRequest,
        now_ms: u64,
    ) -> Result<(LeaseBook, LeaseChange), LeaseError> {
        let mut next = self.clone();
        let change = match request.action {
            LeaseAction::Acquire => next.acquire(request, now_ms)?,
            LeaseAction::Release => next.release(request, now_ms)?,
            LeaseAction::Break => LeaseChange::Broken {
                broken: next.lease.take().filter(|lease| lease.is_live(now_ms)),
            },
        };
        Ok((next, change))
    }

    fn acquire(&mut self, request: &LeaseRequest, now_ms: u64) -> Result<LeaseChange, LeaseError> {
        validate_holder(&request.holder)?;
        if !(TTL_MIN_SECONDS..=TTL_MAX_SECONDS).contains(&request.ttl_seconds) {
            return Err(LeaseError::Invalid(format!(
                "ttl_seconds {} is out of range: a lease lasts {TTL_MIN_SECONDS} to {TTL_MAX_SECONDS} seconds",
                request.ttl_seconds
            )));
        }
        self.refuse_stale(&request.holder, request.token, now_ms)?;
        let change = match self.live(now_ms) {
            Some(lease) if lease.holder != request.holder => return Err(self.held(lease, now_ms)),
            Some(lease) => LeaseChange::Renewed {
                previous_token: lease.token,
            },
            None => LeaseChange::Acquired {
                previous: self.lease.take(),
            },
        };
        self.lease = Some(Lease {
            holder: request.holder.clone(),
            token: request.token,
            ttl_seconds: request.ttl_seconds,
            expires_unix_ms: now_ms.saturating_add(request.ttl_seconds.saturating_mul(1000)),
        });
        self.raise_fence(&request.holder, request.token);
        Ok(change)
    }

    fn release(&mut self, request: &LeaseRequest, now_ms: u64) -> Result<LeaseChange, LeaseError> {
        match &self.lease {
            Some(lease) if lease.holder == request.holder && lease.token == request.token => {
                self.lease = None;
                Ok(LeaseChange::Released)
            }
            _ => Err(LeaseError::NotHeld {
                message: format!(
                    "`{}` token {} does not hold the lease here ({}): nothing to release",
                    request.holder,
                    request.token,
                    self.describe_live(now_ms)
                ),
                lease: self.view(now_ms),
            }),
        }
    }

    /// Whether a mutation carrying `claim` may act at `now_ms`.
    pub fn check(&self, claim: Option<&LeaseClaim>, now_ms: u64) -> Result<(), LeaseError> {
        let Some(lease) = self.live(now_ms) else {
            return match claim {
                None => Ok(()),
                Some(claim) => Err(LeaseError::NotHeld {
                    message: format!(
                        "the request claims the fleet lock for `{}` token {}, but no lease is held here (expired, released or broken): acquire it again before acting",
                        claim.holder, claim.token
                    ),
                    lease: None,
                }),
            };
        };
        match claim {
            Some(claim) if claim.holder == lease.holder => {
                if claim.token < lease.token {
                    Err(LeaseError::StaleToken {
                        holder: claim.holder.clone(),
                        token: claim.token,
                        highest: self.fence(&claim.holder).unwrap_or(lease.token),
                        lease: Some(lease.view(now_ms)),
                    })
                } else if claim.token > lease.token {
                    Err(LeaseError::NotHeld {
                        message: format!(
                            "the lease of `{}` here has token {}, not {}: acquire with token {} before acting",
                            lease.holder, lease.token, claim.token, claim.token
                        ),
                        lease: Some(lease.view(now_ms)),
                    })
                } else {
                    Ok(())
                }
            }
            _ => Err(self.held(lease, now_ms)),
        }
    }

    fn refuse_stale(&self, holder: &str, token: u64, now_ms: u64) -> Result<(), LeaseError> {
        match self.fence(holder) {
            Some(highest) if token < highest => Err(LeaseError::StaleToken {
                holder: holder.to_owned(),
                token,
                highest,
                lease: self.view(now_ms),
            }),
            _ => Ok(()),
        }
    }

    fn held(&self, lease: &Lease, now_ms: u64) -> LeaseError {
        LeaseError::Held {
            holder: lease.holder.clone(),
            token: lease.token,
            remaining_ms: lease.remaining_ms(now_ms),
            lease: lease.view(now_ms),
        }
    }

    fn describe_live(&self, now_ms: u64) -> String {
        match self.live(now_ms) {
            Some(lease) => format!(
                "held by `{}` token {} for {} ms more",
                lease.holder,
                lease.token,
                lease.remaining_ms(now_ms)
            ),
            None => "no lease is held".to_owned(),
        }
    }

    /// Remembers `token` as `holder`'s fence (never lowers it); forgets the least recently
    /// seen holder past [`FENCE_CAPACITY`].
    fn raise_fence(&mut self, holder: &str, token: u64) {
        self.sequence += 1;
        let seen = self.sequence;
        let fence = self
            .fences
            .entry(holder.to_owned())
            .or_insert(Fence { token, seen });
        fence.token = fence.token.max(token);
        fence.seen = seen;
        while self.fences.len() > FENCE_CAPACITY {
            let oldest = self
                .fences
                .iter()
                .filter(|(name, _)| name.as_str() != holder)
                .min_by_key(|(_, fence)| fence.seen)
                .map(|(name, _)| name.clone());
            match oldest {
                Some(name) => {
                    self.fences.remove(&name);
                }
                None => break,
            }
        }
    }
}

fn validate_holder(holder: &str) -> Result<(), LeaseError> {
    if holder.is_empty() || holder.len() > HOLDER_MAX_BYTES {
        return Err(LeaseError::Invalid(format!(
            "the holder must be 1 to {HOLDER_MAX_BYTES} bytes (a rollout id), not {} bytes",
            holder.len()
        )));
    }
    if holder.chars().any(char::is_control) {
        return Err(LeaseError::Invalid(
            "the holder may not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
