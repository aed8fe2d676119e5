//! The peer-set diff of a reload: which peer tasks stop (and whether they withdraw our routes
//! first), which start, and which take their new configuration in place. Pure.
//!
//! The rule: a removed peer, or one that becomes another router (address, ASN), has our routes
//! withdrawn; a session reset for the same router closes without a NOTIFICATION, so the router
//! keeps the routes through graceful restart meanwhile; what `PeerConfig::session_reset_needed`
//! does not name applies in place.
//!
//! Must not touch: peer tasks, key files (the shell validates keys before stopping anything).

use std::collections::BTreeMap;

use topologyd_config::daemon::PeerConfig;

/// What a reload does to the peer tasks, by peer name, and a report of it for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSetDiff {
    /// (peer, withdraw our routes first).
    pub stop: Vec<(String, bool)>,
    pub start: Vec<String>,
    pub update: Vec<String>,
    /// "removed a", "reset b", "updated c in place", "added d", in that order.
    pub report: Vec<String>,
}

/// Compares the peers of the running configuration with those of the new one.
pub fn peer_set_diff(before: &[PeerConfig], after: &[PeerConfig]) -> PeerSetDiff {
    let old: BTreeMap<&str, &PeerConfig> = before
        .iter()
        .map(|peer| (peer.name.as_str(), peer))
        .collect();
    let new: BTreeMap<&str, &PeerConfig> = after
        .iter()
        .map(|peer| (peer.name.as_str(), peer))
        .collect();
    let mut diff = PeerSetDiff::default();
    for (name, old_peer) in &old {
        match new.get(name) {
            None => {
                diff.stop.push(((*name).to_owned(), true));
                diff.report.push(format!("removed {name}"));
            }
            Some(new_peer) if old_peer.session_reset_needed(new_peer) => {
                let other_router =
                    old_peer.address != new_peer.address || old_peer.asn != new_peer.asn;
                diff.stop.push(((*name).to_owned(), other_router));
                diff.start.push((*name).to_owned());
                diff.report.push(format!("reset {name}"));
            }
            Some(new_peer) if old_peer != new_peer => {
                diff.update.push((*name).to_owned());
                diff.report.push(format!("updated {name} in place"));
            }
            Some(_) => {}
        }
    }
    for name in new.keys() {
        if !old.contains_key(name) {
            diff.start.push((*name).to_owned());
            diff.report.push(format!("added {name}"));
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, address: &str, hold_time_seconds: u16) -> PeerConfig {
        let text = format!(
            "location = \"ams01\"\nlocal_asn = 64512\nrouter_id = \"192.0.2.1\"\nstate_dir = \"/tmp/x\"\n\n[[peer]]\nname = \"{name}\"\naddress = \"{address}\"\nasn = 64513\nlocal_address = \"127.0.0.1\"\nfamilies = [\"ipv4\"]\nhold_time_seconds = {hold_time_seconds}\n"
        );
        let source = topologyd_config::Source::new("daemon.toml", text);
        let mut config = topologyd_config::daemon::parse_daemon_config(&source)
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
        config.peers.remove(0)
    }

    #[test]
    fn an_unchanged_peer_set_does_nothing() {
        let peers = [peer("edge1", "127.0.0.2", 90)];
        assert_eq!(peer_set_diff(&peers, &peers), PeerSetDiff::default());
    }

    #[test]
    fn removed_peers_withdraw_first_and_added_peers_start() {
        let diff = peer_set_diff(
            &[peer("edge1", "127.0.0.2", 90)],
            &[peer("edge2", "127.0.0.3", 90)],
        );
        assert_eq!(diff.stop, [("edge1".to_owned(), true)]);
        assert_eq!(diff.start, ["edge2"]);
        assert_eq!(diff.report, ["removed edge1", "added edge2"]);
    }

    #[test]
    fn another_router_is_reset_withdrawing_first_and_a_timer_resets_without() {
        let moved = peer_set_diff(
            &[peer("edge1", "127.0.0.2", 90)],
            &[peer("edge1", "127.0.0.9", 90)],
        );
        assert_eq!(moved.stop, [("edge1".to_owned(), true)]);
        assert_eq!(moved.start, ["edge1"]);
        let retimed = peer_set_diff(
            &[peer("edge1", "127.0.0.2", 90)],
            &[peer("edge1", "127.0.0.2", 30)],
        );
        assert_eq!(retimed.stop, [("edge1".to_owned(), false)]);
        assert_eq!(retimed.report, ["reset edge1"]);
    }
}
