//! `topoctl routes [--peer NAME]`: per peer, the routes it is sent, as a RIB table (prefix,
//! next hop, AS path as text, MED, communities, service, degraded, age: how long the peer has
//! been sent the route as it is). `--json` prints
//! [`RoutesView`] as the daemon answers it.

use std::fmt::Write as _;

use crate::control_client::ControlClient;
use topologyd_api::{EXIT_NO_CHANGE, RoutesView};

use crate::connection::show;
use crate::render::{Table, duration, now_unix};

/// Runs `topoctl routes`.
pub async fn run(client: ControlClient, peer: Option<String>, json: bool) -> i32 {
    let answer = client.routes(peer.as_deref()).await;
    show(answer, json, render, |_| EXIT_NO_CHANGE)
}

/// The routes as text: one table per peer, ages as of now.
pub fn render(view: &RoutesView) -> String {
    render_at(view, now_unix())
}

/// The routes as text, ages as of `now` (unix seconds).
pub fn render_at(view: &RoutesView, now: u64) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "generation {}", view.generation);
    for (name, peer) in &view.peers {
        let synced = match peer.generation_synced {
            Some(generation) => format!("holds generation {generation}"),
            None => "holds no generation yet".to_string(),
        };
        let _ = writeln!(
            text,
            "\npeer {name} ({}): {}, {synced}, {} routes",
            peer.families.join(", "),
            if peer.established {
                "Established"
            } else {
                "not established"
            },
            peer.routes.len()
        );
        let mut table = Table::new(&[
            "PREFIX",
            "NEXT HOP",
            "AS PATH",
            "MED",
            "COMMUNITIES",
            "SERVICE",
            "DEGRADED",
            "AGE",
        ]);
        for route in &peer.routes {
            let communities: Vec<String> = route
                .communities
                .iter()
                .chain(&route.large_communities)
                .cloned()
                .collect();
            table.row(vec![
                route.prefix.clone(),
                route
                    .next_hop
                    .clone()
                    .unwrap_or_else(|| "local address".to_string()),
                route.as_path.join(" "),
                route.med.map(|med| med.to_string()).unwrap_or_default(),
                communities.join(" "),
                route.service.clone(),
                if route.degraded {
                    "yes".into()
                } else {
                    String::new()
                },
                route
                    .announced_since
                    .map(|since| duration(now.saturating_sub(since)))
                    .unwrap_or_default(),
            ]);
        }
        if !table.is_empty() {
            text.push_str(&table.to_string());
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use topologyd_api::{PeerRoutesView, RouteView};

    use super::*;

    #[test]
    fn routes_read_like_a_rib() {
        let route = RouteView {
            prefix: "198.51.100.0/24".into(),
            service: "web".into(),
            degraded: false,
            as_path: vec!["64500 64501".into()],
            next_hop: Some("192.0.2.1".into()),
            med: Some(10),
            communities: vec!["64500:1".into()],
            large_communities: vec!["64500:1:2".into()],
            announced_since: Some(1_000),
        };
        let view = RoutesView {
            generation: 3,
            peers: BTreeMap::from([(
                "edge".to_string(),
                PeerRoutesView {
                    families: vec!["ipv4".into()],
                    established: true,
                    generation_synced: Some(3),
                    routes: vec![route],
                },
            )]),
        };
        let text = render_at(&view, 1_000 + 3_725);
        assert!(
            text.contains("peer edge (ipv4): Established, holds generation 3, 1 routes"),
            "{text}"
        );
        assert!(
            text.contains("198.51.100.0/24  192.0.2.1  64500 64501  10   64500:1 64500:1:2  web"),
            "{text}"
        );
        assert!(text.contains("AGE") && text.contains("1h02m"), "{text}");
    }
}
