//! The onboarding checks that ask real servers: reverse DNS (TXT records under the prefix's
//! reverse zones) and IRR (a whois query for the exact route object). Each answers a
//! `topologyd_ownership::CheckEvidence`. Placeholder build: both answer `unreachable`.
pub mod irr;
pub mod rdns;
