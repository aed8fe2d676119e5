//! The control API's views of the daemon's own state types: an overlay decision
//! ([`ServiceDecision`]) and the health board's state of a service ([`ServiceView`]) as
//! `topologyd_api` writes them. The engine builds its answers from these.

use topologyd_api::view::{
    CheckResult as CheckResultView, CheckView as CheckLineView, HealthStateView, ProbeStateView,
    RoundCounts as RoundCountsView, UnhealthyActionView,
};
use topologyd_api::{ServiceDecisionView, ServiceHealthView};
use topologyd_config::health::UnhealthyAction;

use crate::health::{CheckResult, HealthState, ServiceView};
use crate::overlay::ServiceDecision;

/// One service's decision, as the drain answer lists it.
pub fn decision_view(decision: &ServiceDecision) -> ServiceDecisionView {
    ServiceDecisionView {
        action: decision.action,
        healthy: decision.healthy,
        drained: decision.drained,
        floor_held: decision.floor_held,
        other_live_locations: decision.other_live_locations as u64,
    }
}

/// One service in `GET /v1/health`: the decision (whose verdict is the one acted on), and the
/// health board's state of it when it is checked here.
pub fn service_health_view(
    decision: &ServiceDecision,
    routes_announced: u64,
    board: Option<&ServiceView>,
) -> ServiceHealthView {
    let checked = decision.healthy.is_some();
    let state = match board {
        Some(board) => state_view(board.state),
        None if checked => HealthStateView::Unknown,
        None => HealthStateView::Unchecked,
    };
    ServiceHealthView {
        checked,
        healthy: decision.healthy.unwrap_or(true),
        action: decision.action,
        drained: decision.drained,
        floor_held: decision.floor_held,
        other_live_locations: decision.other_live_locations as u64,
        routes_announced,
        state,
        probes: board.map(probe_state_view).unwrap_or_default(),
    }
}

fn state_view(state: HealthState) -> HealthStateView {
    match state {
        HealthState::Unknown => HealthStateView::Unknown,
        HealthState::Healthy => HealthStateView::Healthy,
        HealthState::Unhealthy => HealthStateView::Unhealthy,
        HealthState::HeldDown => HealthStateView::HeldDown,
    }
}

fn probe_state_view(board: &ServiceView) -> ProbeStateView {
    ProbeStateView {
        observed_healthy: Some(board.observed_healthy),
        withdrawal_pending: Some(board.withdrawal_pending),
        transitions: Some(board.transitions),
        consecutive_passes: Some(board.consecutive_passes),
        consecutive_failures: Some(board.consecutive_failures),
        rounds: Some(board.rounds),
        rounds_by_result: Some(RoundCountsView {
            passed: board.rounds_by_result.passed,
            failed: board.rounds_by_result.failed,
            errored: board.rounds_by_result.errored,
        }),
        hold_down_ms: Some(board.hold_down_ms),
        hold_down_remaining_ms: Some(board.hold_down_remaining_ms),
        last_round: Some(
            board
                .last_round
                .iter()
                .map(|check| CheckLineView {
                    check: check.check.clone(),
                    result: match check.result {
                        CheckResult::Pass => CheckResultView::Pass,
                        CheckResult::Fail => CheckResultView::Fail,
                        CheckResult::Error => CheckResultView::Error,
                    },
                    detail: check.detail.clone(),
                })
                .collect(),
        ),
        on_unhealthy: Some(match &board.on_unhealthy {
            UnhealthyAction::Withdraw => UnhealthyActionView::Withdraw,
            UnhealthyAction::Degrade(degrade) => UnhealthyActionView::Degrade {
                as_path_prepend: degrade.as_path_prepend,
                med: degrade.med,
                communities: degrade
                    .communities
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use topologyd_config::Community;
    use topologyd_config::health::DegradeAttributes;

    use super::*;
    use crate::health::{CheckView, RoundCounts};
    use crate::overlay::ServiceAction;

    fn decision(healthy: Option<bool>) -> ServiceDecision {
        ServiceDecision {
            action: ServiceAction::Degrade,
            healthy,
            drained: false,
            floor_held: true,
            other_live_locations: 2,
        }
    }

    /// The view writes what the engine wrote before it was typed: the decision's keys, the
    /// board's keys where the decision has none, and the board's `state`.
    #[test]
    fn a_checked_service_is_its_decision_merged_with_the_board_state() {
        let board = ServiceView {
            checked: true,
            healthy: true,
            state: HealthState::HeldDown,
            observed_healthy: true,
            withdrawal_pending: false,
            transitions: 2,
            consecutive_passes: 3,
            consecutive_failures: 0,
            rounds: 12,
            rounds_by_result: RoundCounts {
                passed: 9,
                failed: 3,
                errored: 0,
            },
            hold_down_ms: 10_000,
            hold_down_remaining_ms: 4_000,
            last_round: vec![CheckView {
                check: "tcp 127.0.0.1:53".into(),
                result: CheckResult::Pass,
                detail: String::new(),
            }],
            on_unhealthy: UnhealthyAction::Degrade(DegradeAttributes {
                as_path_prepend: 3,
                med: Some(1000),
                communities: vec![Community(13335, 666)],
            }),
        };
        let view = service_health_view(&decision(Some(false)), 4, Some(&board));
        let written = serde_json::to_value(&view).unwrap();
        // What the untyped engine produced: the board's keys, then the decision's over them.
        let mut expected = serde_json::to_value(&board).unwrap();
        let merged = serde_json::json!({
            "checked": true, "healthy": false, "action": "degrade", "drained": false,
            "floor_held": true, "other_live_locations": 2, "routes_announced": 4,
            "state": "held_down",
        });
        for (key, value) in merged.as_object().unwrap() {
            expected[key] = value.clone();
        }
        assert_eq!(written, expected);
    }

    #[test]
    fn a_service_without_checks_has_no_board_state() {
        let view = service_health_view(&decision(None), 0, None);
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            serde_json::json!({
                "checked": false, "healthy": true, "action": "degrade", "drained": false,
                "floor_held": true, "other_live_locations": 2, "routes_announced": 0,
                "state": "unchecked",
            })
        );
        let pending = service_health_view(&decision(Some(true)), 0, None);
        assert_eq!(pending.state, HealthStateView::Unknown);
    }
}
