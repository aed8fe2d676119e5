//! The `visibility` gate: after a wave, every route the plan announces at a location is held
//! post-policy by that location's edge routers, as the daemon's BMP station sees them
//! (`GET /v1/visibility`). No data is never a pass: no station, no router, a router not yet
//! synchronised, a view not judged against the generation the daemon runs, a route not held
//! before the station's settle time has passed since it began judging that generation, or a
//! route no router judges, is inconclusive; a route a synchronised router still does not hold
//! (or holds with other attributes) once settled fails.
//!
//! Owns: the verdict on one location's view. Must not touch: fetching the views (the driver
//! passes the view and the daemon's running generation in).

use std::collections::BTreeSet;

use topologyd_api::VisibilityView;
use topologyd_topology::AnnouncedRoute;

use super::GateVerdict;

/// How many routes a verdict names (the rest are counted).
const ROUTES_NAMED: usize = 5;
/// The oldest view a verdict is drawn from (the station refreshes it every half second): an
/// older one means a stalled station, whose routers may have changed since.
pub const VIEW_MAX_AGE_MS: u64 = 10_000;

/// What the daemon runs when its view is read (`GET /v1/status`), and what the rollout applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningGeneration<'a> {
    /// The number of the generation the daemon runs (`generation`).
    pub generation: u64,
    /// The version of the routes it publishes (`published_version`: a drain, a health change or
    /// a degrade publishes a new version within a generation).
    pub published_version: u64,
    /// The hash of the generation the daemon runs.
    pub hash: &'a str,
    /// The hash of the topology the rollout applies.
    pub new_hash: &'a str,
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

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

/// Why a view cannot be judged at all, if it cannot: the station off, stale or without
/// routers, the daemon not on the new topology, or the view not judged against it.
fn unjudgeable(
    view: &VisibilityView,
    running: &RunningGeneration<'_>,
    routers: Option<u32>,
) -> Option<GateVerdict> {
    if !view.enabled {
        return Some(GateVerdict::fail(
            "the BMP station is off at this location (no [bmp] in its configuration): what the routers hold is unknown",
        ));
    }
    match view.age_ms {
        None => {
            return Some(GateVerdict::inconclusive(
                "the daemon did not say how old its view is: a view that may be stale is never a pass",
            ));
        }
        Some(age) if age > VIEW_MAX_AGE_MS => {
            return Some(GateVerdict::inconclusive(format!(
                "the BMP station's view is {age} ms old (its station has stalled): a stale view is never a pass"
            )));
        }
        Some(_) => {}
    }
    if view.held.is_empty() {
        return Some(GateVerdict::inconclusive(
            "no router is connected to the BMP station: no data is never a pass",
        ));
    }
    let wanted = routers.unwrap_or(0) as usize;
    if view.held.len() < wanted {
        return Some(GateVerdict::inconclusive(format!(
            "{} router(s) connected to the BMP station, {wanted} expected: a router that dropped its BMP session is never a pass",
            view.held.len()
        )));
    }
    if running.hash != running.new_hash {
        return Some(GateVerdict::inconclusive(format!(
            "the daemon runs {}, not the new topology {}: what its routers hold is not of the new routes",
            short(running.hash),
            short(running.new_hash)
        )));
    }
    match view.generation {
        None => Some(GateVerdict::inconclusive(
            "the view does not say which generation it judges (a daemon without it, or a station that has not evaluated yet): it may still judge the previous routes",
        )),
        Some(judged) if judged != running.generation => Some(GateVerdict::inconclusive(format!(
            "the view judges generation {judged}, the daemon runs {}: its station has not caught up with the new routes yet",
            running.generation
        ))),
        Some(_) => match view.routes_version {
            Some(judged) if judged != running.published_version => {
                Some(GateVerdict::inconclusive(format!(
                    "the view judges version {judged} of generation {}'s routes, the daemon publishes version {}: its station has not caught up yet",
                    running.generation, running.published_version
                )))
            }
            _ => None,
        },
    }
}

/// How long the station had judged the view's routes when it took the view, and its settle
/// time (milliseconds); `None` when the view does not say.
fn judged_for(view: &VisibilityView) -> Option<(u64, u64)> {
    let since = view.judged_since_unix_ms?;
    Some((view.time_unix_ms.saturating_sub(since), view.settle_ms?))
}

/// The gate at one location: `expected` are the routes the plan announces there, `routers` the
/// fewest routers that must be connected (the gate's `routers` key), `running` what the daemon
/// ran when the view was read.
pub fn check_visibility(
    view: &VisibilityView,
    running: &RunningGeneration<'_>,
    expected: &[AnnouncedRoute],
    routers: Option<u32>,
) -> GateVerdict {
    if let Some(verdict) = unjudgeable(view, running, routers) {
        return verdict;
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
        return match judged_for(view) {
            Some((judged_ms, settle_ms)) if judged_ms >= settle_ms => GateVerdict::fail(format!(
                "{} route(s) not held post-policy as we send them {judged_ms} ms after the station began judging them (settle time {settle_ms} ms): {}",
                missing.len(),
                named(&missing)
            )),
            Some((judged_ms, settle_ms)) => GateVerdict::inconclusive(format!(
                "not settled yet: {} route(s) not held post-policy as we send them {judged_ms} ms after the station began judging them, of its {settle_ms} ms settle time: {}",
                missing.len(),
                named(&missing)
            )),
            None => GateVerdict::inconclusive(format!(
                "not settled yet: the view does not say since when its station judges the new routes, and {} route(s) are not held: {}",
                missing.len(),
                named(&missing)
            )),
        };
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

    const NEW_HASH: &str = "87d2f83fd7088e8ef67e1e3abdffcebb";
    /// The new generation, number 7.
    const RUNNING: RunningGeneration<'static> = RunningGeneration {
        generation: 7,
        published_version: 3,
        hash: NEW_HASH,
        new_hash: NEW_HASH,
    };
    const TAKEN_MS: u64 = 1_700_000_003_000;
    const SETTLE_MS: u64 = 60_000;
    /// The station began judging generation 7 long enough before the views to have settled.
    const JUDGED_SINCE_MS: u64 = TAKEN_MS - SETTLE_MS - 30_000;

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
            time_unix_ms: TAKEN_MS,
            age_ms: Some(500),
            generation: Some(7),
            routes_version: Some(3),
            judged_since_unix_ms: Some(JUDGED_SINCE_MS),
            settle_ms: Some(SETTLE_MS),
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
            check_visibility(&all, &RUNNING, &expected, None).result,
            GateResultKind::Pass
        );
        let filtered = view(vec![
            router("edge1", true, &["1.1.1.0/24", "198.51.100.0/24"], &[]),
            router("edge2", true, &["1.1.1.0/24"], &["198.51.100.0/24"]),
        ]);
        let verdict = check_visibility(&filtered, &RUNNING, &expected, None);
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
            check_visibility(&off, &RUNNING, &expected, None).result,
            GateResultKind::Fail
        );
        assert_eq!(
            check_visibility(&view(vec![]), &RUNNING, &expected, None).result,
            GateResultKind::Inconclusive
        );
        let syncing = view(vec![router("edge1", false, &["1.1.1.0/24"], &[])]);
        assert_eq!(
            check_visibility(&syncing, &RUNNING, &expected, None).result,
            GateResultKind::Inconclusive
        );
        let unjudged = view(vec![router("edge1", true, &[], &[])]);
        assert_eq!(
            check_visibility(&unjudged, &RUNNING, &expected, None).result,
            GateResultKind::Inconclusive
        );
    }

    #[test]
    fn a_stale_view_is_never_a_pass() {
        let expected = vec![route("1.1.1.0/24")];
        let fresh = view(vec![router("edge1", true, &["1.1.1.0/24"], &[])]);
        assert_eq!(
            check_visibility(&fresh, &RUNNING, &expected, None).result,
            GateResultKind::Pass
        );
        for age_ms in [None, Some(VIEW_MAX_AGE_MS + 1), Some(u64::MAX)] {
            let stale = VisibilityView {
                age_ms,
                ..fresh.clone()
            };
            assert_eq!(
                check_visibility(&stale, &RUNNING, &expected, None).result,
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
            check_visibility(&one, &RUNNING, &expected, Some(1)).result,
            GateResultKind::Pass
        );
        let verdict = check_visibility(&one, &RUNNING, &expected, Some(2));
        assert_eq!(verdict.result, GateResultKind::Inconclusive);
        assert!(verdict.detail.contains("2 expected"), "{}", verdict.detail);
    }

    #[test]
    fn a_view_of_an_earlier_version_of_the_routes_is_never_a_pass() {
        let expected: Vec<AnnouncedRoute> = PREFIXES[..3].iter().map(|p| route(p)).collect();
        let all = view(vec![router("edge1", true, &PREFIXES[..3], &[])]);
        assert_eq!(
            check_visibility(&all, &RUNNING, &expected, None).result,
            GateResultKind::Pass
        );
        let republished = RunningGeneration {
            published_version: 4,
            ..RUNNING
        };
        let verdict = check_visibility(&all, &republished, &expected, None);
        assert_eq!(verdict.result, GateResultKind::Inconclusive);
        assert!(verdict.detail.contains("version 3"), "{}", verdict.detail);
    }

    #[test]
    fn a_view_not_of_the_new_generation_is_never_a_pass() {
        let expected = vec![route("1.1.1.0/24")];
        let all = view(vec![router("edge1", true, &["1.1.1.0/24"], &[])]);
        assert_eq!(
            check_visibility(&all, &RUNNING, &expected, None).result,
            GateResultKind::Pass
        );
        // Still on the previous topology (the route held is as the previous one sends it).
        let previous = RunningGeneration {
            generation: 6,
            hash: "df2fcdb430e75452b9a4cc4c477ebb2e",
            ..RUNNING
        };
        let verdict = check_visibility(&all, &previous, &expected, None);
        assert_eq!(verdict.result, GateResultKind::Inconclusive);
        assert!(
            verdict.detail.contains("not the new topology 87d2f83fd708"),
            "{}",
            verdict.detail
        );
        // The daemon runs the new generation but its station (behind, at low priority) still
        // judges the previous one: however late the view and however long it judged it, the
        // route that looks held is held as the previous generation sends it.
        for judged in [None, Some(6), Some(8)] {
            let behind = VisibilityView {
                generation: judged,
                time_unix_ms: TAKEN_MS + 3_600_000,
                ..all.clone()
            };
            let verdict = check_visibility(&behind, &RUNNING, &expected, None);
            assert_eq!(verdict.result, GateResultKind::Inconclusive, "{judged:?}");
            assert!(verdict.detail.contains("generation"), "{}", verdict.detail);
        }
        // Nor is a route missing from such a view a failure.
        let filtered = VisibilityView {
            generation: Some(6),
            ..view(vec![router("edge1", true, &[], &["1.1.1.0/24"])])
        };
        assert_eq!(
            check_visibility(&filtered, &RUNNING, &expected, None).result,
            GateResultKind::Inconclusive
        );
    }

    #[test]
    fn a_missing_route_fails_only_once_the_station_has_judged_it_for_the_settle_time() {
        let expected = vec![route("1.1.1.0/24"), route("198.51.100.0/24")];
        let partial = view(vec![router(
            "edge1",
            true,
            &["1.1.1.0/24"],
            &["198.51.100.0/24"],
        )]);
        let taken_after = |judged_ms: u64| VisibilityView {
            time_unix_ms: JUDGED_SINCE_MS + judged_ms,
            ..partial.clone()
        };
        for judged_ms in [0, 1_000, SETTLE_MS - 1] {
            let verdict = check_visibility(&taken_after(judged_ms), &RUNNING, &expected, None);
            assert_eq!(verdict.result, GateResultKind::Inconclusive, "{judged_ms}");
            assert!(
                verdict.detail.contains("not settled yet"),
                "{}",
                verdict.detail
            );
            assert!(
                verdict.detail.contains("198.51.100.0/24"),
                "{}",
                verdict.detail
            );
        }
        for judged_ms in [SETTLE_MS, SETTLE_MS + 1, 10 * SETTLE_MS] {
            let verdict = check_visibility(&taken_after(judged_ms), &RUNNING, &expected, None);
            assert_eq!(verdict.result, GateResultKind::Fail, "{judged_ms}");
            assert!(
                verdict
                    .detail
                    .contains("198.51.100.0/24 (not held by edge1)"),
                "{}",
                verdict.detail
            );
        }
        // A view that does not say since when, or its settle time, never fails on it.
        for (since, settle) in [(None, Some(SETTLE_MS)), (Some(JUDGED_SINCE_MS), None)] {
            let unsaid = VisibilityView {
                judged_since_unix_ms: since,
                settle_ms: settle,
                ..taken_after(10 * SETTLE_MS)
            };
            assert_eq!(
                check_visibility(&unsaid, &RUNNING, &expected, None).result,
                GateResultKind::Inconclusive
            );
        }
    }

    #[test]
    fn every_route_held_passes_without_waiting_for_the_settle_time() {
        let expected = vec![route("1.1.1.0/24"), route("198.51.100.0/24")];
        let all = view(vec![
            router("edge1", true, &["1.1.1.0/24", "198.51.100.0/24"], &[]),
            router("edge2", true, &["1.1.1.0/24", "198.51.100.0/24"], &[]),
        ]);
        for judged_ms in [0, 500, SETTLE_MS] {
            let taken = VisibilityView {
                time_unix_ms: JUDGED_SINCE_MS + judged_ms,
                ..all.clone()
            };
            let verdict = check_visibility(&taken, &RUNNING, &expected, None);
            assert_eq!(verdict.result, GateResultKind::Pass, "{judged_ms}");
            assert!(
                verdict.detail.contains("edge1, edge2"),
                "{}",
                verdict.detail
            );
        }
    }

    fn holdings() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
        // Per router: synchronised, and per prefix 0 unknown, 1 held, 2 missing.
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(0u8..3, PREFIXES.len())),
            0..4,
        )
    }

    proptest! {
        /// A pass means: a view of the running new generation, some router, every router
        /// synchronised, every planned route held by some router and missing at none; a fail
        /// on a view of the new generation means a route missing once settled.
        #[test]
        fn a_pass_is_always_backed_by_every_router(routers in holdings(), planned in prop::collection::vec(any::<bool>(), PREFIXES.len()), judged_ms in 0u64..2 * SETTLE_MS, on_new in any::<bool>(), judged in prop::option::of(5u64..9)) {
            let expected: Vec<AnnouncedRoute> = PREFIXES.iter().zip(&planned).filter(|(_, wanted)| **wanted).map(|(prefix, _)| route(prefix)).collect();
            let held: Vec<RouterHoldsView> = routers.iter().enumerate().map(|(index, (synchronised, states))| {
                let pick = |state: u8| PREFIXES.iter().zip(states).filter(|(_, s)| **s == state).map(|(p, _)| *p).collect::<Vec<_>>();
                router(&format!("edge{index}"), *synchronised, &pick(1), &pick(2))
            }).collect();
            let running = RunningGeneration { hash: if on_new { NEW_HASH } else { "df2fcdb430e7" }, ..RUNNING };
            let taken = VisibilityView { time_unix_ms: JUDGED_SINCE_MS + judged_ms, generation: judged, ..view(held.clone()) };
            let verdict = check_visibility(&taken, &running, &expected, None);
            if verdict.result == GateResultKind::Pass {
                prop_assert!(on_new);
                prop_assert_eq!(judged, Some(RUNNING.generation));
                prop_assert!(!held.is_empty());
                prop_assert!(held.iter().all(|router| router.synchronised));
                for route in &expected {
                    let prefix = route.prefix.to_string();
                    prop_assert!(held.iter().any(|router| router.held.contains(&prefix)));
                    prop_assert!(held.iter().all(|router| !router.missing.contains(&prefix)));
                }
            }
            if verdict.result == GateResultKind::Fail {
                prop_assert!(on_new && judged == Some(RUNNING.generation) && judged_ms >= SETTLE_MS);
            }
        }
    }
}
