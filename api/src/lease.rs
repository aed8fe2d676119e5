//! The fleet lock's vocabulary: [`LeaseClaim`] (who claims to act, carried by apply and
//! rollback), [`LeaseRequest`] (`POST /v1/lease`: acquire, release or break the daemon's lease)
//! and [`LeaseView`] (the lease a daemon holds, in `/v1/status` and the lease answer).
//!
//! Must not touch: the rules (the daemon's engine decides who may hold the lease). Pure data.

use serde::{Deserialize, Serialize};

/// Who claims to act: a holder (a rollout id) and its fencing token. A daemon holding a lease
/// refuses a mutation whose claim is not the holder's, or whose token is lower than the lease's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseClaim {
    /// The holder's name (a rollout id).
    pub holder: String,
    /// The fencing token: a new leader of the same holder takes a higher one.
    pub token: u64,
}

/// What a [`LeaseRequest`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseAction {
    /// Take the lease, or renew (or re-fence with a higher token) the holder's own.
    Acquire,
    /// Give the lease up: only the holder with the lease's token may.
    Release,
    /// Clear whatever lease is held (the operator's emergency hatch; audited).
    Break,
}

impl LeaseAction {
    /// The action's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseAction::Acquire => "acquire",
            LeaseAction::Release => "release",
            LeaseAction::Break => "break",
        }
    }
}

/// `POST /v1/lease` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Who asks.
    pub holder: String,
    /// The fencing token it claims.
    pub token: u64,
    /// How long the lease lasts from now (acquire), in seconds.
    pub ttl_seconds: u64,
    /// What it asks.
    pub action: LeaseAction,
}

/// A live lease as the daemon holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// Who holds it.
    pub holder: String,
    /// Its fencing token.
    pub token: u64,
    /// The time to live it was (last) granted with, in seconds.
    pub ttl_seconds: u64,
    /// When it expires (wall clock, unix milliseconds).
    pub expires_unix_ms: u64,
    /// Milliseconds left when the answer was written.
    pub remaining_ms: u64,
}

impl LeaseView {
    /// The claim the holder of this lease makes.
    pub fn claim(&self) -> LeaseClaim {
        LeaseClaim {
            holder: self.holder.clone(),
            token: self.token,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lease_bodies_keep_their_wire_shape() {
        let wire = json!({ "holder": "r-1", "token": 3, "ttl_seconds": 60, "action": "break" });
        let request: LeaseRequest = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(request.action, LeaseAction::Break);
        assert_eq!(serde_json::to_value(&request).unwrap(), wire);
        let claim: LeaseClaim =
            serde_json::from_value(json!({ "holder": "r-1", "token": 2 })).unwrap();
        assert_eq!(claim.token, 2);
        assert!(
            serde_json::from_value::<LeaseClaim>(json!({ "holder": "r", "token": 1, "x": 1 }))
                .is_err()
        );
        assert!(
            serde_json::from_value::<LeaseRequest>(
                json!({ "holder": "r", "token": 1, "ttl_seconds": 1, "action": "steal" })
            )
            .is_err()
        );
    }
}
