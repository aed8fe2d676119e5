//! `topoctl visibility`: a daemon's `GET /v1/visibility` for people — the routers connected to
//! its BMP station, what each holds of the routes this location announces, and a table of the
//! findings raised now (kind, prefix, router, peer, path, first and last seen).
//!
//! Owns: the call and rendering the typed [`VisibilityView`] as text. Must not touch: reaching
//! the daemon and exit codes of failures (`connection.rs`), the JSON form (`--json` prints the
//! view as the daemon sends it).

use std::fmt::Write as _;

use topologyd_api::VisibilityView;
use topologyd_api::view::FindingKindView;

use crate::connection::show;
use crate::control_client::ControlClient;
use crate::render::{Table, inert, rfc3339_millis};

/// Runs `topoctl visibility`: a view is information only, so it exits 0.
pub async fn run(client: ControlClient, json: bool) -> i32 {
    let answer = client.visibility().await;
    show(answer, json, render, |_| topologyd_api::EXIT_NO_CHANGE)
}

/// The name of a finding kind, as the JSON spells it.
pub fn kind_name(kind: FindingKindView) -> &'static str {
    match kind {
        FindingKindView::ExactHijack => "exact_hijack",
        FindingKindView::SubprefixHijack => "subprefix_hijack",
        FindingKindView::NotVisible => "not_visible",
        FindingKindView::RpkiInvalid => "rpki_invalid",
        FindingKindView::UnexpectedPath => "unexpected_path",
    }
}

/// The human form of a `/v1/visibility` answer.
pub fn render(view: &VisibilityView) -> String {
    let mut text = String::new();
    if !view.enabled {
        text.push_str("BMP station: off (the daemon's configuration has no [bmp] section)\n");
        return text;
    }
    let _ = writeln!(text, "routers: {}", view.routers.len());
    if !view.routers.is_empty() {
        let mut routers = Table::new(&[
            "ROUTER",
            "ADDRESS",
            "PEERS",
            "ROUTES",
            "SYNCED",
            "HOLDS OURS",
        ]);
        for router in &view.routers {
            let holds = view.held.iter().find(|held| held.router == router.name);
            routers.row(vec![
                router.name.clone(),
                router.address.clone(),
                router.peers.to_string(),
                router.routes.to_string(),
                holds
                    .map_or("no", |held| if held.synchronised { "yes" } else { "no" })
                    .to_string(),
                holds.map_or_else(String::new, |held| {
                    format!(
                        "{}/{}",
                        held.held.len(),
                        held.held.len() + held.missing.len()
                    )
                }),
            ]);
        }
        let _ = write!(text, "{routers}");
    }
    if view.findings.is_empty() {
        text.push_str("findings: none\n");
        return text;
    }
    let _ = writeln!(text, "findings: {}", view.findings.len());
    let mut findings = Table::new(&[
        "KIND",
        "PREFIX",
        "ROUTER",
        "PEER",
        "RIB",
        "AS PATH",
        "FIRST SEEN",
        "LAST SEEN",
        "DETAIL",
    ]);
    for finding in &view.findings {
        findings.row(vec![
            kind_name(finding.kind).to_string(),
            finding.prefix.clone(),
            finding.router.clone(),
            format!("{} AS{}", finding.peer_address, finding.peer_asn),
            finding.rib.clone(),
            finding
                .as_path
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            rfc3339_millis(finding.first_seen_unix_ms),
            rfc3339_millis(finding.last_seen_unix_ms),
            inert(&finding.detail),
        ]);
    }
    let _ = write!(text, "{findings}");
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use topologyd_api::view::{BmpRouterView, FindingView, RouterHoldsView};

    use super::*;

    #[test]
    fn findings_and_routers_are_tabulated() {
        let view = VisibilityView {
            enabled: true,
            routers: vec![BmpRouterView {
                name: "edge1".into(),
                address: "127.0.0.2".into(),
                peers: 2,
                routes: 10,
                messages: 40,
            }],
            findings: vec![FindingView {
                kind: FindingKindView::SubprefixHijack,
                prefix: "198.51.100.0/25".into(),
                router: "edge1".into(),
                peer_address: "127.0.0.9".into(),
                peer_asn: 64_666,
                rib: "adj_rib_in_pre".into(),
                as_path: vec![64_666],
                origin_asn: Some(64_666),
                expected_origin_asn: 13_335,
                detail: "more-specific of 198.51.100.0/23 originated by AS64666".into(),
                first_seen_unix_ms: 0,
                last_seen_unix_ms: 1_000,
            }],
            held: vec![RouterHoldsView {
                router: "edge1".into(),
                synchronised: true,
                held: vec!["198.51.100.0/24".into()],
                missing: vec!["198.51.101.0/24".into()],
            }],
            time_unix_ms: 1_000,
            age_ms: None,
            generation: Some(4),
            routes_version: Some(9),
            judged_since_unix_ms: Some(500),
            settle_ms: Some(60_000),
        };
        let text = render(&view);
        assert!(text.contains("edge1"), "{text}");
        assert!(text.contains("1/2"), "{text}");
        assert!(text.contains("subprefix_hijack  198.51.100.0/25"), "{text}");
        assert!(text.contains("127.0.0.9 AS64666"), "{text}");
        let off = render(&VisibilityView {
            enabled: false,
            ..view
        });
        assert!(off.contains("off"), "{off}");
    }
}
