//! topologyd-ownership: proving that a customer's prefix may be announced by us (BYOIP).
//!
//! Owns the pure vocabulary of onboarding: what one check found ([`check`]) and where in the
//! reverse DNS a validation token is published ([`reverse_zone`]). Must not touch the network,
//! the clock or files: the checks that query real servers live in topoctl, which records their
//! outcome here.

pub mod check;
pub mod reverse_zone;

pub use check::{CheckEvidence, CheckKind, CheckStatus};
pub use reverse_zone::{challenge_record_names, reverse_zones};
