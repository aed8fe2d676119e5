//! topologyd-ownership: proving that a customer's prefix may be announced by us (BYOIP).
//!
//! Owns the pure vocabulary of onboarding: what one check found ([`check`]), where in the
//! reverse DNS a validation token is published ([`reverse_zone`]), the token and what to publish
//! ([`token`]), the intent check over VRPs ([`roa`]), an onboarding's states ([`onboarding`])
//! and the signed evidence the topology carries ([`evidence`]). Must not touch the network, the
//! clock or files: the checks that query real servers and the store live in topoctl, which
//! records their outcome here.

pub mod check;
pub mod evidence;
pub mod onboarding;
pub mod reverse_zone;
pub mod roa;
pub mod token;

pub use check::{CheckEvidence, CheckKind, CheckStatus};
pub use evidence::{EvidenceClaim, EvidenceError, EvidenceKeys, SignedEvidence};
pub use onboarding::{Onboarding, OnboardingState};
pub use reverse_zone::{challenge_record_names, reverse_zones};
pub use token::ValidationToken;
