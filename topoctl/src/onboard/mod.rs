//! BYOIP onboarding (`topoctl prefix …`): a customer's prefix is announced only after its
//! ownership (a single-use validation token published in an IRR route object or in TXT records
//! of its reverse DNS zones) and intent (a ROA authorising our ASN) are verified; verification
//! produces evidence signed with the onboarding key that the topology carries and
//! `topology::compile` checks (G6), and a document replacing a Letter of Agency.
//!
//! ```text
//! onboard ─► store (pending) ─► customer publishes ─► verify: rdns ┐
//!                                                            irr  ├─► store: state, evidence,
//!                                                            roa  ┘   token consumed, signed
//!   status / loa (PDF, JSON) ◄── store ──► revoke ──► revocation list ──► plan/push refused
//! ```
//!
//! Owns: the workflow: settings (`settings`), the store (`store`), verification (`verify`),
//! the LOA (`loa`), revocation at plan time (`revocation`), the commands (`command`). The
//! pure vocabulary (tokens, states, evidence, the ROA check) is topologyd-ownership's; the
//! checks that ask real servers are `checks/`. Must not touch: the daemon.
pub mod checks;
pub mod command;
pub mod loa;
pub mod revocation;
pub mod settings;
pub mod store;
pub mod verify;
