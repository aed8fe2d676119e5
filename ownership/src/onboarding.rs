//! An onboarding: one prefix's token, its state (pending, valid, missing, invalid,
//! mismatch_asn, expired, revoked), the evidence of every check, and the signed evidence once
//! valid. The state moves only through [`Onboarding::record_checks`] and [`Onboarding::revoke`],
//! which are pure: the store persists the result.
//!
//! Owns: the states and their transitions. Must not touch: the store, the network, the clock.

use serde::{Deserialize, Serialize};

use crate::check::{CheckEvidence, CheckKind, CheckStatus};
use crate::evidence::SignedEvidence;
use crate::token::ValidationToken;

/// Where an onboarding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnboardingState {
    /// Token issued; not verified yet (or the last attempt could not reach a server).
    Pending,
    /// Ownership and intent verified; signed evidence issued.
    Valid,
    /// Nothing was published (yet) where a check looked.
    Missing,
    /// Something was published but it is not the token, the exact prefix or a long enough ROA.
    Invalid,
    /// The route object or ROA names another origin ASN.
    MismatchAsn,
    /// The token's lifetime ended before it was verified: onboard again for a new one.
    Expired,
    /// The operator revoked the onboarding: the prefix may no longer be advertised.
    Revoked,
}

impl OnboardingState {
    pub fn as_str(self) -> &'static str {
        match self {
            OnboardingState::Pending => "pending",
            OnboardingState::Valid => "valid",
            OnboardingState::Missing => "missing",
            OnboardingState::Invalid => "invalid",
            OnboardingState::MismatchAsn => "mismatch_asn",
            OnboardingState::Expired => "expired",
            OnboardingState::Revoked => "revoked",
        }
    }
}

/// One prefix's onboarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onboarding {
    pub token: ValidationToken,
    /// The longest route the topology will announce for the prefix (its own length, or the
    /// split length): what the ROA's max-length must reach.
    pub longest_announced: u8,
    pub state: OnboardingState,
    /// The latest evidence of each check run, in the order they ran.
    pub checks: Vec<CheckEvidence>,
    /// Set once the onboarding became valid.
    pub evidence: Option<SignedEvidence>,
    pub updated_at_unix: u64,
    pub revoked_at_unix: Option<u64>,
}

/// Why an onboarding cannot take new check results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the onboarding of {0} is revoked: onboard it again for a new token")]
    Revoked(String),
    #[error(
        "the token of {0} was already used for a valid verification: onboard again for a new token"
    )]
    AlreadyUsed(String),
}

impl Onboarding {
    /// A pending onboarding for `token`, announced as routes of `longest_announced` (at least
    /// the prefix's own length).
    pub fn new(token: ValidationToken, longest_announced: u8) -> Onboarding {
        Onboarding {
            longest_announced: longest_announced.max(token.prefix.prefix_len()),
            updated_at_unix: token.issued_at_unix,
            token,
            state: OnboardingState::Pending,
            checks: Vec::new(),
            evidence: None,
            revoked_at_unix: None,
        }
    }

    /// Takes the results of a verification at `now_unix` and answers the new state. Valid
    /// needs `roa` valid and one of `rdns`/`irr` valid; otherwise the most telling failure
    /// wins (mismatch_asn, then invalid, then missing); a check that could not reach its
    /// server leaves the onboarding pending. An expired token is expired whatever was found.
    pub fn record_checks(
        &mut self,
        checks: Vec<CheckEvidence>,
        now_unix: u64,
    ) -> Result<OnboardingState, TransitionError> {
        match self.state {
            OnboardingState::Revoked => {
                return Err(TransitionError::Revoked(self.token.prefix.to_string()));
            }
            OnboardingState::Valid => {
                return Err(TransitionError::AlreadyUsed(self.token.prefix.to_string()));
            }
            _ => {}
        }
        self.updated_at_unix = now_unix;
        self.state = if self.token.is_expired(now_unix) {
            OnboardingState::Expired
        } else {
            judge(&checks)
        };
        self.checks = checks;
        Ok(self.state)
    }

    /// Attaches the signed evidence of a valid verification.
    pub fn attach_evidence(&mut self, evidence: SignedEvidence) {
        self.evidence = Some(evidence);
    }

    /// Revokes the onboarding at `now_unix`.
    pub fn revoke(&mut self, now_unix: u64) {
        self.state = OnboardingState::Revoked;
        self.revoked_at_unix = Some(now_unix);
        self.updated_at_unix = now_unix;
    }

    /// The kinds of the checks that passed.
    pub fn passed(&self) -> Vec<CheckKind> {
        self.checks
            .iter()
            .filter(|check| check.status == CheckStatus::Valid)
            .map(|check| check.kind)
            .collect()
    }
}

/// The state the checks' results lead to (see [`Onboarding::record_checks`]).
pub fn judge(checks: &[CheckEvidence]) -> OnboardingState {
    let valid = |kind| {
        checks
            .iter()
            .any(|check| check.kind == kind && check.status == CheckStatus::Valid)
    };
    let ownership = valid(CheckKind::Rdns) || valid(CheckKind::Irr);
    let intent = valid(CheckKind::Roa);
    if ownership && intent {
        return OnboardingState::Valid;
    }
    // Only the failing side tells what to fix.
    let failing: Vec<&CheckEvidence> = checks
        .iter()
        .filter(|check| {
            let is_ownership = check.kind != CheckKind::Roa;
            if is_ownership { !ownership } else { !intent }
        })
        .collect();
    let has = |status| failing.iter().any(|check| check.status == status);
    if has(CheckStatus::MismatchAsn) {
        OnboardingState::MismatchAsn
    } else if has(CheckStatus::Invalid) {
        OnboardingState::Invalid
    } else if has(CheckStatus::Unreachable) || failing.is_empty() {
        OnboardingState::Pending
    } else {
        OnboardingState::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(kind: CheckKind, status: CheckStatus) -> CheckEvidence {
        CheckEvidence {
            kind,
            status,
            queried: Vec::new(),
            server: String::new(),
            found: Vec::new(),
            checked_at_unix: 5,
            detail: String::new(),
        }
    }

    fn onboarding() -> Onboarding {
        Onboarding::new(
            ValidationToken::issue(
                [1; crate::token::TOKEN_RANDOM_BYTES],
                "198.51.100.0/24".parse().expect("a prefix"),
                "acme",
                64500,
                0,
                100,
            ),
            24,
        )
    }

    use CheckKind::{Irr, Rdns, Roa};
    use CheckStatus::{Invalid, MismatchAsn, Missing, Unreachable, Valid};

    #[test]
    fn ownership_by_either_check_plus_intent_is_valid() {
        assert_eq!(
            judge(&[
                evidence(Rdns, Valid),
                evidence(Irr, Missing),
                evidence(Roa, Valid)
            ]),
            OnboardingState::Valid
        );
        assert_eq!(
            judge(&[
                evidence(Rdns, Unreachable),
                evidence(Irr, Valid),
                evidence(Roa, Valid)
            ]),
            OnboardingState::Valid
        );
    }

    #[test]
    fn the_most_telling_failure_wins() {
        assert_eq!(
            judge(&[evidence(Rdns, Valid), evidence(Roa, Invalid)]),
            OnboardingState::Invalid
        );
        assert_eq!(
            judge(&[
                evidence(Rdns, Missing),
                evidence(Irr, MismatchAsn),
                evidence(Roa, Valid)
            ]),
            OnboardingState::MismatchAsn
        );
        assert_eq!(
            judge(&[
                evidence(Rdns, Missing),
                evidence(Irr, Missing),
                evidence(Roa, Valid)
            ]),
            OnboardingState::Missing
        );
        assert_eq!(
            judge(&[
                evidence(Rdns, Unreachable),
                evidence(Irr, Missing),
                evidence(Roa, Valid)
            ]),
            OnboardingState::Pending
        );
    }

    #[test]
    fn expired_revoked_and_used_tokens() {
        let mut late = onboarding();
        assert_eq!(
            late.record_checks(vec![evidence(Rdns, Valid), evidence(Roa, Valid)], 100),
            Ok(OnboardingState::Expired)
        );
        let mut used = onboarding();
        assert_eq!(
            used.record_checks(vec![evidence(Rdns, Valid), evidence(Roa, Valid)], 50),
            Ok(OnboardingState::Valid)
        );
        assert!(matches!(
            used.record_checks(vec![], 51),
            Err(TransitionError::AlreadyUsed(_))
        ));
        used.revoke(60);
        assert_eq!(used.state, OnboardingState::Revoked);
        assert!(matches!(
            used.record_checks(vec![], 61),
            Err(TransitionError::Revoked(_))
        ));
    }
}
