//! Readiness: whether enough peers hold the running generation for `/ready` to answer 200. The
//! shared handle through which the engine publishes that verdict to the admin listener and the
//! systemd STATUS= line is `topologyd_transport::readiness` (re-exported here).
//!
//! A peer *holds* the running generation when its session is Established, every route of the
//! generation has been written to it (End-of-RIB included) and none of its routes failed to
//! encode. [`evaluate`] is pure: the engine calls it with the peers' snapshots whenever a peer
//! reports a change (session state, publication sent, task ended), a peer starts or stops, or a
//! generation is applied, so readiness is gained and lost as peers come and go, without polling.
//! It never gates the start: READY=1 goes to systemd once the daemon serves (see `bin/topologyd.rs`).
//!
//! Must not touch: sockets, the engine's state (it gets snapshots), HTTP.

use topologyd_config::daemon::ReadinessConfig;

use crate::peer::PeerStatus;

pub use topologyd_transport::readiness::{Readiness, ReadinessState};

/// Whether `status` holds `generation`.
pub fn holds(status: &PeerStatus, generation: u64) -> bool {
    status.established
        && status.generation_synced == Some(generation)
        && status.routes_unencodable == 0
}

/// Why a peer does not hold `generation`, for the reason line.
fn why_not(status: &PeerStatus, generation: u64) -> String {
    if let Some(error) = &status.encode_error {
        return error.clone();
    }
    if !status.established {
        return match &status.last_error {
            Some(error) => format!("{} ({error})", status.state),
            None => status.state.clone(),
        };
    }
    format!("Established, generation {generation} not yet written")
}

/// The readiness verdict over the peers' snapshots.
pub fn evaluate(config: &ReadinessConfig, generation: u64, peers: &[PeerStatus]) -> ReadinessState {
    let total = peers.len();
    let required = config.required(total);
    let established = peers.iter().filter(|status| status.established).count();
    let holding = peers
        .iter()
        .filter(|status| holds(status, generation))
        .count();
    let ready = holding >= required;
    let mut reason = format!(
        "{}: {holding} of {total} peers hold generation {generation} (at least {required} needed)",
        if ready { "ready" } else { "not ready" }
    );
    for status in peers.iter().filter(|status| !holds(status, generation)) {
        reason.push_str(&format!(
            "; {}: {}",
            status.name,
            why_not(status, generation)
        ));
    }
    ReadinessState {
        ready,
        reason,
        established,
        holding,
        total,
        required,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, established: bool, synced: Option<u64>) -> PeerStatus {
        PeerStatus {
            name: name.into(),
            state: if established { "Established" } else { "Active" }.into(),
            established,
            generation_synced: synced,
            ..PeerStatus::default()
        }
    }

    #[test]
    fn one_peer_holding_is_ready_by_default_and_the_others_are_named() {
        let config = ReadinessConfig::default();
        let mut down = peer("edge3", false, None);
        down.last_error = Some("connect: Connection refused".into());
        let peers = vec![
            peer("edge1", true, Some(4)),
            peer("edge2", true, Some(3)),
            down,
        ];
        let state = evaluate(&config, 4, &peers);
        assert!(state.ready, "{state:?}");
        assert_eq!((state.holding, state.established, state.total), (1, 2, 3));
        assert_eq!(
            state.reason,
            "ready: 1 of 3 peers hold generation 4 (at least 1 needed); edge2: Established, \
             generation 4 not yet written; edge3: Active (connect: Connection refused)"
        );
        assert_eq!(
            state.status_line(),
            "2 of 3 peers Established, 1 hold the running generation; ready"
        );
    }

    #[test]
    fn no_peer_holding_is_not_ready_and_readiness_is_lost_and_regained() {
        let config = ReadinessConfig::default();
        let readiness = Readiness::new();
        assert!(!readiness.is_ready());
        let up = vec![peer("edge1", true, Some(2)), peer("edge2", true, Some(2))];
        assert!(readiness.set(evaluate(&config, 2, &up)));
        assert!(readiness.is_ready());
        let down = vec![peer("edge1", false, None), peer("edge2", false, None)];
        let state = evaluate(&config, 2, &down);
        assert!(
            state
                .reason
                .starts_with("not ready: 0 of 2 peers hold generation 2")
        );
        readiness.set(state);
        assert!(!readiness.is_ready());
        readiness.set(evaluate(&config, 2, &up[..1]));
        assert!(readiness.is_ready());
    }

    #[test]
    fn a_peer_whose_routes_cannot_be_encoded_does_not_hold_the_generation() {
        let mut failing = peer("edge6", true, Some(1));
        failing.routes_unencodable = 1000;
        failing.encode_error = Some("1000 routes cannot be encoded for this peer".into());
        let state = evaluate(&ReadinessConfig::default(), 1, &[failing]);
        assert!(!state.ready);
        assert!(
            state
                .reason
                .ends_with("edge6: 1000 routes cannot be encoded for this peer"),
            "{}",
            state.reason
        );
    }

    #[test]
    fn a_share_and_a_minimum_both_apply() {
        let config = ReadinessConfig {
            min_established: 1,
            min_established_share: Some(0.5),
        };
        let mut peers = vec![
            peer("a", true, Some(1)),
            peer("b", false, None),
            peer("c", false, None),
        ];
        assert!(!evaluate(&config, 1, &peers).ready);
        peers[1] = peer("b", true, Some(1));
        assert!(evaluate(&config, 1, &peers).ready);
        // No peers: nothing to wait for.
        assert!(evaluate(&config, 1, &[]).ready);
    }
}
