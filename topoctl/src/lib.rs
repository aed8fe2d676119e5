//! topoctl's library: the fleet rollout controller (`rollout/`), used by the `topoctl` binary
//! (`main.rs`) and by the end-to-end tests. The per-location daemon lives in `daemon/`; topoctl
//! talks to it only through the control API.
pub mod rollout;
