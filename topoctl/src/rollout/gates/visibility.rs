//! The `visibility` gate: after a wave, every route the plan announces at a location is held
//! post-policy by that location's edge routers, as the daemon's BMP station sees them
//! (`GET /v1/visibility`). No data is never a pass: no station, no router, a router not yet
//! synchronised, or a route no router judges, is inconclusive; a route a synchronised router
//! does not hold (or holds with other attributes) fails.

use std::collections::BTreeSet;

use topologyd_api::VisibilityView;
use topologyd_topology::AnnouncedRoute;

use super::GateVerdict;

/// How many routes a verdict names (the rest are counted).
const ROUTES_NAMED: usize = 5;
/// The oldest view a verdict is drawn from (the station refreshes it every half second): an
/// older one means a stalled station, whose routers may have changed since.
pub const VIEW_MAX_AGE_MS: u64 = 10_000;

fn named(routes: &[String]) -> String {
    let mut text = routes
        .iter()
        .take(ROUTES_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if routes.len() > ROUTES_NAMED {
        text.push_str(&format!(" and {} more", routes.len() - ROUTES_NAMED));
    }
    text
}

/// The gate at one location: `expected` are the routes the plan announces there, `routers` the
/// fewest routers that must be connected (the gate's `routers` key).
pub fn check_visibility(
    view: &VisibilityView,
    expected: &[AnnouncedRoute],
    routers: Option<u32>,
) -> GateVerdict {
    if !view.enabled {
        return GateVerdict::fail(
            "the BMP station is off at this location (no [bmp] in its configuration): what the routers hold is unknown",
        );
    }
    match view.age_ms {
        None => {
            return GateVerdict::inconclusive(
                "the daemon did not say how old its view is: a view that may be stale is never a pass",
            );
        }
        Some(age) if age > VIEW_MAX_AGE_MS => {
            return GateVerdict::inconclusive(format!(
                "the BMP station's view is {age} ms old (its station has stalled): a stale view is never a pass"
            ));
        }
        Some(_) => {}
    }
    if view.held.is_empty() {
        return GateVerdict::inconclusive(
            "no router is connected to the BMP station: no data is never a pass",
        );
    }
    let wanted = routers.unwrap_or(0) as usize;
    if view.held.len() < wanted {
        return GateVerdict::inconclusive(format!(
            "{} router(s) connected to the BMP station, {wanted} expected: a router that dropped its BMP session is never a pass",
            view.held.len()
        ));
    }
    let unsynchronised: Vec<String> = view
        .held
        .iter()
        .filter(|router| !router.synchronised)
        .map(|router| router.router.clone())
        .collect();
    if !unsynchronised.is_empty() {
        return GateVerdict::inconclusive(format!(
            "router(s) not synchronised with us yet: {}",
            named(&unsynchronised)
        ));
    }
    let mut missing = Vec::new();
    let mut unjudged = Vec::new();
    for route in expected {
        let prefix = route.prefix.to_string();
        let lacking: Vec<&str> = view
            .held
            .iter()
            .filter(|router| router.missing.contains(&prefix))
            .map(|router| router.router.as_str())
            .collect();
        if !lacking.is_empty() {
            missing.push(format!("{prefix} (not held by {})", lacking.join(", ")));
        } else if !view.held.iter().any(|router| router.held.contains(&prefix)) {
            unjudged.push(prefix);
        }
    }
    if !missing.is_empty() {
        return GateVerdict::fail(format!(
            "{} route(s) not held post-policy as we send them: {}",
            missing.len(),
            named(&missing)
        ));
    }
    if !unjudged.is_empty() {
        return GateVerdict::inconclusive(format!(
            "{} route(s) no router judges yet (not announced here now, or a family no router monitors): {}",
            unjudged.len(),
            named(&unjudged)
        ));
    }
    let routers: BTreeSet<&str> = view
        .held
        .iter()
        .map(|router| router.router.as_str())
        .collect();
    GateVerdict::pass(format!(
        "{} route(s) held post-policy by {}",
        expected.len(),
        routers.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use topologyd_api::view::RouterHoldsView;
    use topologyd_topology::RouteAttributes;

    use super::*;
    use crate::rollout::journal::GateResultKind;

    const PREFIXES: [&str; 4] = [
        "1.1.1.0/24",
        "198.51.100.0/24",
        "198.51.101.0/24",
        "2001:db8::/48",
    ];

    fn route(prefix: &str) -> AnnouncedRoute {
        AnnouncedRoute {
            prefix: prefix.parse().unwrap(),
            origin_asn: 13_335,
            attributes: RouteAttributes::default(),
            binding: prefix.parse().unwrap(),
            service: "resolver".into(),
        }
    }

    fn view(held: Vec<RouterHoldsView>) -> VisibilityView {
        VisibilityView {
            enabled: true,
            routers: Vec::new(),
            findings: Vec::new(),
            held,
            time_unix_ms: 0,
            age_ms: Some(500),
        }
    }

    fn router(name: &str, synchronised: bool, held: &[&str], missing: &[&str]) -> RouterHoldsView {
        RouterHoldsView {
            router: name.into(),
            synchronised,
            held: held.iter().map(|text| (*text).to_string()).collect(),
            missing: missing.iter().map(|text| (*text).to_string()).collect(),
        }
    }

    #[test]
    fn passes_only_when_every_planned_route_is_held() {
        let expected = vec![route("1.1.1.0/24"), route("198.51.100.0/24")];
        let all = view(vec![router(
            "edge1",
            true,
            &["1.1.1.0/24", "198.51.100.0/24"],
            &[],
        )]);
        assert_eq!(
            check_visibility(&all, &expected, None).result,
            GateResultKind::Pass
        );
        let filtered = view(vec![
            router("edge1", true, &["1.1.1.0/24", "198.51.100.0/24"], &[]),
            router("edge2", true, &["1.1.1.0/24"], &["198.51.100.0/24"]),
        ]);
        let verdict = check_visibility(&filtered, &expected, None);
        assert_eq!(verdict.result, GateResultKind::Fail);
        assert!(
            verdict
                .detail
                .contains("198.51.100.0/24 (not held by edge2)"),
            "{}",
            verdict.detail
        );
    }

    #[test]
    fn no_data_is_never_a_pass() {
        let expected = vec![route("1.1.1.0/24")];
        let off = VisibilityView {
            enabled: false,
            ..view(vec![])
        };
        assert_eq!(
            check_visibility(&off, &expected, None).result,
            GateResultKind::Fail
        );
        assert_eq!(
            check_visibility(&view(vec![]), &expected, None).result,
            GateResultKind::Inconclusive
        );
        let syncing = view(vec![router("edge1", false, &["1.1.1.0/24"], &[])]);
        assert_eq!(
            check_visibility(&syncing, &expected, None).result,
            GateResultKind::Inconclusive
        );
        let unjudged = view(vec![router("edge1", true, &[], &[])]);
        assert_eq!(
            check_visibility(&unjudged, &expected, None).result,
            GateResultKind::Inconclusive
        );
    }

    #[test]
    fn a_stale_view_is_never_a_pass() {
        let expected = vec![route("1.1.1.0/24")];
        let fresh = view(vec![router("edge1", true, &["1.1.1.0/24"], &[])]);
        assert_eq!(
            check_visibility(&fresh, &expected, None).result,
            GateResultKind::Pass
        );
        for age_ms in [None, Some(VIEW_MAX_AGE_MS + 1), Some(u64::MAX)] {
            let stale = VisibilityView {
                age_ms,
                ..fresh.clone()
            };
            assert_eq!(
                check_visibility(&stale, &expected, None).result,
                GateResultKind::Inconclusive,
                "{age_ms:?}"
            );
        }
    }

    #[test]
    fn fewer_routers_than_the_gate_expects_is_never_a_pass() {
        let expected = vec![route("1.1.1.0/24")];
        let one = view(vec![router("edge1", true, &["1.1.1.0/24"], &[])]);
        assert_eq!(
            check_visibility(&one, &expected, Some(1)).result,
            GateResultKind::Pass
        );
        let verdict = check_visibility(&one, &expected, Some(2));
        assert_eq!(verdict.result, GateResultKind::Inconclusive);
        assert!(verdict.detail.contains("2 expected"), "{}", verdict.detail);
    }

    fn holdings() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
        // Per router: synchronised, and per prefix 0 unknown, 1 held, 2 missing.
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(0u8..3, PREFIXES.len())),
            0..4,
        )
    }

    proptest! {
        /// A pass means: some router, every router synchronised, every planned route held by
        /// some router and missing at none.
        #[test]
        fn a_pass_is_always_backed_by_every_router(routers in holdings(), planned in prop::collection::vec(any::<bool>(), PREFIXES.len())) {
            let expected: Vec<AnnouncedRoute> = PREFIXES.iter().zip(&planned).filter(|(_, wanted)| **wanted).map(|(prefix, _)| route(prefix)).collect();
            let held: Vec<RouterHoldsView> = routers.iter().enumerate().map(|(index, (synchronised, states))| {
                let pick = |state: u8| PREFIXES.iter().zip(states).filter(|(_, s)| **s == state).map(|(p, _)| *p).collect::<Vec<_>>();
                router(&format!("edge{index}"), *synchronised, &pick(1), &pick(2))
            }).collect();
            let verdict = check_visibility(&view(held.clone()), &expected, None);
            if verdict.result == GateResultKind::Pass {
                prop_assert!(!held.is_empty());
                prop_assert!(held.iter().all(|router| router.synchronised));
                for route in &expected {
                    let prefix = route.prefix.to_string();
                    prop_assert!(held.iter().any(|router| router.held.contains(&prefix)));
                    prop_assert!(held.iter().all(|router| !router.missing.contains(&prefix)));
                }
            }
        }
    }
}
