//! BYOIP onboarding: proving that a customer's prefix may be announced by us.
//!
//! Owns: nothing yet but the network checks (`checks/`). Must not touch: the topology.
pub mod checks;
