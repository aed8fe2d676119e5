//! Tests of the engine core's decisions, one event at a time in virtual time (the longer
//! scenarios are the golden replays in `daemon/tests/conformance/`).

use std::collections::BTreeSet;

use topologyd_config::Source;
use topologyd_topology::compile_owned;

use super::*;
use crate::engine::prepare::location_routes;

/// The conformance cases' topology: web (withdraw when unhealthy, local address
/// 198.18.0.10/32) and dns everywhere, `local` only at ams01.
const TOPOLOGY: &str = include_str!("../../../tests/conformance/push/v1.toml");
const WEB_ADDRESS: &str = "198.18.0.10/32";

fn at(milliseconds: u64) -> Now {
    Now {
        monotonic: Duration::from_millis(milliseconds),
        unix_seconds: 1_700_000_000,
        unix_ms: 1_700_000_000_000 + milliseconds,
    }
}

fn core() -> EngineCore {
    core_with(|_| {})
}

/// A started core; `setup` runs before the start (as the shell enables RPKI).
fn core_with(setup: impl FnOnce(&mut EngineCore)) -> EngineCore {
    let topology = compile_owned(vec![Source::new("v1.toml", TOPOLOGY)], 1)
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let routes = location_routes(&topology, "ams01").expect("ams01 is in the fleet");
    let running = Running {
        meta: GenerationMeta {
            generation: 1,
            hash: topology.hash_hex(),
            applied_at: 0,
            who: "bootstrap".into(),
            intent: Vec::new(),
        },
        topology: Arc::new(topology),
        routes: Arc::new(routes),
    };
    let mut core = EngineCore::new("ams01".into(), 1, running, DrainState::default());
    setup(&mut core);
    let _ = core.start(at(0));
    core
}

fn rendered(effects: &[Effect]) -> Vec<String> {
    effects.iter().map(ToString::to_string).collect()
}

fn web_address() -> IpNet {
    WEB_ADDRESS.parse().expect("an address")
}

fn unhealthy_web() -> Event {
    Event::HealthVerdicts {
        verdicts: [("web".to_owned(), false)].into_iter().collect(),
        fail_static: false,
    }
}

fn compiled_error(request: RequestId, base_generation: u64, expected: Option<u64>) -> Event {
    Event::Compiled {
        request,
        base_generation,
        checks: MutationChecks {
            expected_generation: expected,
            ..MutationChecks::default()
        },
        result: Box::new(Err(EngineError {
            kind: EngineErrorKind::Invalid,
            message: "does not compile".into(),
            detail: None,
            generation: Some(base_generation),
            plan_hash: None,
        })),
        who: "alice".into(),
        rollback_of: None,
    }
}

#[test]
fn a_mutation_with_the_running_generation_is_compiled_off_the_engine_task() {
    let mut core = core();
    let effects = core.handle(
        Event::MutationRequested {
            request: 4,
            checks: MutationChecks {
                expected_generation: Some(1),
                ..MutationChecks::default()
            },
        },
        at(1),
    );
    assert_eq!(rendered(&effects), ["compile request=4 base=1"]);
}

/// The fleet lock's claim is decided in the same step as the compare-and-swap: refused
/// before any compile while another holder's lease is live, and again when the compile
/// comes back if the lease changed meanwhile — never committed.
#[test]
fn a_mutation_is_checked_against_the_lease_with_its_compare_and_swap() {
    use topologyd_api::{LeaseAction, LeaseClaim, LeaseRequest};
    let mut core = core();
    let claim = |holder: &str| LeaseClaim {
        holder: holder.to_owned(),
        token: 1,
    };
    let acquire = |core: &mut EngineCore, holder: &str, now: Now| {
        let request = LeaseRequest {
            holder: holder.to_owned(),
            token: 1,
            ttl_seconds: 10,
            action: LeaseAction::Acquire,
        };
        core.lease = core.lease.decide(&request, now.unix_ms).expect("granted").0;
    };
    acquire(&mut core, "r-1", at(0));
    let requested = |lease: Option<LeaseClaim>| Event::MutationRequested {
        request: 4,
        checks: MutationChecks {
            expected_generation: Some(1),
            lease,
            deadline_unix_ms: None,
        },
    };
    for (lease, kind) in [(None, "LeaseHeld"), (Some(claim("r-2")), "LeaseHeld")] {
        let effects = rendered(&core.handle(requested(lease), at(1)));
        assert_eq!(effects.len(), 1, "{effects:?}");
        assert!(
            effects[0].starts_with(&format!("reply request=4 error {kind}")),
            "{effects:?}"
        );
        assert!(effects[0].contains("`r-1`"), "{effects:?}");
    }
    let effects = rendered(&core.handle(requested(Some(claim("r-1"))), at(2)));
    assert_eq!(effects, ["compile request=4 base=1"]);
    // While it compiled the lease expired and r-2 took it: the commit is refused.
    acquire(&mut core, "r-2", at(20_000));
    let mut compiled = compiled_error(4, 1, Some(1));
    if let Event::Compiled { checks, .. } = &mut compiled {
        checks.lease = Some(claim("r-1"));
    }
    let effects = rendered(&core.handle(compiled, at(20_001)));
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert!(
        effects[0].starts_with("reply request=4 error LeaseHeld"),
        "{effects:?}"
    );
    // Expired with no one holding it: the claim must be acquired again.
    let effects = rendered(&core.handle(requested(Some(claim("r-2"))), at(40_000)));
    assert!(
        effects[0].starts_with("reply request=4 error LeaseNotHeld"),
        "{effects:?}"
    );
    // No lease, no claim: a plain apply is compiled.
    let effects = rendered(&core.handle(requested(None), at(40_001)));
    assert_eq!(effects, ["compile request=4 base=1"]);
}

/// A request's deadline is checked by the daemon's clock when it arrives and again in the
/// step that decides its commit: past it, refused (`DeadlinePassed`), never committed.
#[test]
fn a_mutation_past_its_deadline_is_refused_on_arrival_and_at_commit() {
    let mut core = core();
    let deadline = at(100).unix_ms;
    let requested = Event::MutationRequested {
        request: 5,
        checks: MutationChecks {
            expected_generation: Some(1),
            lease: None,
            deadline_unix_ms: Some(deadline),
        },
    };
    let effects = rendered(&core.handle(requested, at(100)));
    assert_eq!(effects, ["compile request=5 base=1"]);
    let late = Event::MutationRequested {
        request: 6,
        checks: MutationChecks {
            expected_generation: Some(1),
            lease: None,
            deadline_unix_ms: Some(deadline),
        },
    };
    let effects = rendered(&core.handle(late, at(101)));
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert!(
        effects[0].starts_with("reply request=6 error DeadlinePassed"),
        "{effects:?}"
    );
    // Compiled in time, but the commit is decided after the deadline: refused.
    let mut compiled = compiled_error(5, 1, Some(1));
    if let Event::Compiled { checks, .. } = &mut compiled {
        checks.deadline_unix_ms = Some(deadline);
    }
    let effects = rendered(&core.handle(compiled, at(150)));
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert!(
        effects[0].starts_with("reply request=5 error DeadlinePassed"),
        "{effects:?}"
    );
    assert_eq!(core.running.meta.generation, 1);
    // No commit in flight: a snapshot is valid at the time it is taken.
    assert_eq!(core.snapshot_time_ms(at(150).unix_ms), at(150).unix_ms);
}

#[test]
fn a_compile_planned_against_an_older_generation_is_checked_again() {
    let mut core = core();
    core.running.meta.generation = 2;
    // With a compare-and-swap on the old generation: a conflict, never a commit.
    let effects = core.handle(compiled_error(1, 1, Some(1)), at(1));
    assert_eq!(
        rendered(&effects),
        [
            "reply request=1 error Conflict: the running generation is 2, not 1: plan again against it"
        ]
    );
    // Without one: planned again against the running generation.
    let effects = core.handle(compiled_error(2, 1, None), at(2));
    assert_eq!(rendered(&effects), ["compile request=2 base=2"]);
    // Against the running generation, a compile error is the answer.
    let effects = core.handle(compiled_error(3, 2, None), at(3));
    assert_eq!(
        rendered(&effects),
        ["reply request=3 error Invalid: does not compile"]
    );
}

#[test]
fn a_commit_result_for_no_commit_in_flight_changes_nothing() {
    let mut core = core();
    let effects = core.handle(
        Event::Committed {
            request: 9,
            result: Ok(()),
        },
        at(1),
    );
    assert!(effects.is_empty());
    assert_eq!(core.running.meta.generation, 1);
}

#[test]
fn an_unchanged_health_view_publishes_nothing() {
    let mut core = core();
    let first = core.handle(unhealthy_web(), at(1));
    assert!(
        rendered(&first)
            .iter()
            .any(|line| line.starts_with("publish version=1"))
    );
    let again = core.handle(unhealthy_web(), at(2));
    assert!(again.is_empty(), "{:?}", rendered(&again));
    assert_eq!(core.publish_version, 1);
}

#[test]
fn an_address_is_bound_before_its_routes_are_announced() {
    let mut core = core();
    core.manage_addresses(BTreeSet::new(), BTreeSet::new(), at(0));
    let _ = core.handle(unhealthy_web(), at(1));
    let effects = rendered(&core.handle(
        Event::HealthVerdicts {
            verdicts: [("web".to_owned(), true)].into_iter().collect(),
            fail_static: false,
        },
        at(2),
    ));
    let bind = effects.iter().position(|line| line.starts_with("bind "));
    let publish = effects.iter().position(|line| line.starts_with("publish "));
    assert!(bind.is_some() && bind < publish, "{effects:?}");
}

#[test]
fn an_address_is_unbound_only_when_every_peer_sent_the_withdrawal_or_after_the_timeout() {
    let mut core = core();
    core.manage_addresses([web_address()].into(), BTreeSet::new(), at(0));
    core.peer_started("edge1");
    core.peer_started("edge2");
    let _ = core.handle(unhealthy_web(), at(10));
    let synced = |version| PeerSync {
        established: true,
        version_synced: Some(version),
    };
    for (peer, sync) in [("edge1", synced(1)), ("edge2", synced(0))] {
        let _ = core.handle(
            Event::PeerReported {
                peer: peer.into(),
                sync,
            },
            at(20),
        );
    }
    // edge2 has not sent publication 1 yet.
    assert!(core.handle(Event::Tick, at(100)).is_empty());
    // The timeout unbinds anyway; a failed unbind is retried at the next tick.
    let due = at(10).monotonic + UNBIND_AFTER_WITHDRAWAL_TIMEOUT;
    let now = Now {
        monotonic: due,
        unix_seconds: 0,
        unix_ms: 0,
    };
    let effects = rendered(&core.handle(Event::Tick, now));
    assert!(
        effects.contains(&format!("unbind {WEB_ADDRESS}")),
        "{effects:?}"
    );
    let _ = core.handle(
        Event::AddressUnbound {
            address: web_address(),
            result: Err("busy".into()),
        },
        now,
    );
    assert!(core.address_errors.contains_key(&web_address()));
    let retry = rendered(&core.handle(Event::Tick, now));
    assert!(
        retry.contains(&format!("unbind {WEB_ADDRESS}")),
        "{retry:?}"
    );
    let _ = core.handle(
        Event::AddressUnbound {
            address: web_address(),
            result: Ok(()),
        },
        now,
    );
    assert!(core.bound_addresses.is_empty() && core.pending_unbind.is_empty());
    assert!(core.address_errors.is_empty());
}

#[test]
fn an_address_wanted_again_before_its_unbind_is_kept() {
    let mut core = core();
    core.manage_addresses([web_address()].into(), BTreeSet::new(), at(0));
    let _ = core.handle(unhealthy_web(), at(10));
    assert_eq!(core.pending_unbind.len(), 1);
    let effects = rendered(&core.handle(
        Event::HealthVerdicts {
            verdicts: [("web".to_owned(), true)].into_iter().collect(),
            fail_static: false,
        },
        at(20),
    ));
    assert!(core.pending_unbind.is_empty());
    assert!(
        !effects.iter().any(|line| line.starts_with("bind ")),
        "{effects:?}"
    );
}

#[test]
fn an_address_removed_from_outside_is_bound_again() {
    let mut core = core();
    core.manage_addresses([web_address()].into(), BTreeSet::new(), at(0));
    let effects = rendered(&core.handle(Event::Tick, at(2_000)));
    assert_eq!(effects, ["list-addresses"]);
    let effects = rendered(&core.handle(
        Event::AddressesListed {
            present: BTreeSet::new(),
        },
        at(2_001),
    ));
    assert_eq!(
        effects,
        [
            format!("address-vanished {WEB_ADDRESS}"),
            format!("bind {WEB_ADDRESS}")
        ]
    );
}

fn vrp_update(asn: u32) -> Event {
    let mut vrps = topologyd_rpki::VrpSet::new();
    vrps.insert(topologyd_rpki::Vrp {
        prefix: "198.18.0.0/24".parse().expect("a prefix"),
        max_length: 24,
        asn,
    });
    Event::RpkiUpdated(Box::new(RpkiUpdate {
        vrps: Arc::new(vrps),
        ..RpkiUpdate::initial(topologyd_api::RpkiSyncState::InSync)
    }))
}

fn published_prefixes(core: &EngineCore) -> Vec<String> {
    core.published
        .routes
        .iter()
        .map(|(prefix, _)| prefix.to_string())
        .collect()
}

#[test]
fn under_withdraw_an_invalid_route_is_published_away_and_back() {
    let mut core =
        core_with(|core| core.enable_rpki(topologyd_config::daemon::InvalidPolicy::Withdraw));
    let announced = published_prefixes(&core);
    assert!(announced.contains(&"198.18.0.0/24".to_owned()));
    let effects = rendered(&core.handle(vrp_update(64999), at(10)));
    assert!(
        effects.iter().any(|line| line
            == "route-rpki 198.18.0.0/24 AS13335 Some(NotFound) -> InvalidOrigin held false -> true"),
        "{effects:?}"
    );
    assert!(effects.iter().any(|line| line.starts_with("publish ")));
    assert!(!published_prefixes(&core).contains(&"198.18.0.0/24".to_owned()));
    let effects = rendered(&core.handle(vrp_update(13335), at(20)));
    assert!(
        effects.iter().any(|line| line.starts_with("publish ")),
        "{effects:?}"
    );
    assert_eq!(published_prefixes(&core), announced);
}

#[test]
fn under_keep_an_invalid_route_stays_published() {
    let mut core =
        core_with(|core| core.enable_rpki(topologyd_config::daemon::InvalidPolicy::Keep));
    let announced = published_prefixes(&core);
    let effects = rendered(&core.handle(vrp_update(64999), at(10)));
    assert!(
        effects
            .iter()
            .any(|line| line.starts_with("route-rpki 198.18.0.0/24")),
        "{effects:?}"
    );
    assert!(!effects.iter().any(|line| line.starts_with("publish ")));
    assert_eq!(published_prefixes(&core), announced);
}
