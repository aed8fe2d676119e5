//! `topoctl rollout status`: a rollout's state replayed from its journal (local state
//! directory or etcd) — the per-wave view, the state, the controller (or etcd leader), the
//! fleet lock and each gate's last result; `--json` as one document.
//!
//! Must not touch: the journal format (`journal.rs`), rollout decisions (`machine.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::EXIT_COMPLETED;
use super::commands::{controller_running, fail};
use super::journal::{JournalError, Line, Record, Started, read_journal};
use super::lease;
use super::machine::{LocationState, Machine, Phase};

/// `topoctl rollout status`.
pub fn status(dir: &Path, json: bool) -> i32 {
    let (started, lines) = match read_journal(dir) {
        Ok(read) => read,
        Err(JournalError::Io { source, path }) => {
            return fail(json, &format!("{}: {source}", path.display()));
        }
        Err(error) => return fail(json, &error.to_string()),
    };
    let running = controller_running(dir);
    report_status(
        &started,
        &lines,
        running,
        None,
        Some(lease::LOCAL_TOKEN),
        json,
    )
}

/// Prints a rollout's state from its journal lines; `leader` describes the controller when
/// the journal is elsewhere than in a state directory.
pub fn report_status(
    started: &Started,
    lines: &[Line],
    running: bool,
    leader: Option<&str>,
    lease_token: Option<u64>,
    json: bool,
) -> i32 {
    let plan = super::machine::MachinePlan {
        waves: started.waves.clone(),
        gates: started.gates.clone(),
        before: started
            .before
            .iter()
            .map(|(location, before)| (location.clone(), before.generation))
            .collect(),
    };
    let machine = Machine::restore(plan, lines);
    let state = match (machine.phase(), machine.paused()) {
        (Phase::Finished(outcome), _) => outcome.as_str().to_string(),
        (_, Some(_)) => "paused".to_string(),
        (Phase::Planned, None) => "planned".into(),
        (Phase::Applying, None) => "applying".into(),
        (Phase::Baking, None) => "baking".into(),
        (Phase::RollingBack, None) => "rolling_back".into(),
    };
    let mut last_gates: BTreeMap<String, Value> = BTreeMap::new();
    for line in lines {
        if let Record::GateResult {
            wave,
            gate,
            result,
            detail,
            passes,
            failures,
            inconclusive,
        } = &line.record
        {
            last_gates.insert(
                gate.clone(),
                json!({
                    "wave": started.waves.get(*wave).map(|wave| wave.name.clone()),
                    "result": result.as_str(),
                    "detail": detail,
                    "passes": passes,
                    "failures": failures,
                    "inconclusive": inconclusive,
                    "time": line.time,
                }),
            );
        }
    }
    let locations: BTreeMap<String, Value> = started
        .before
        .iter()
        .map(|(location, before)| {
            let state = machine.location(location).unwrap_or(LocationState::Pending);
            (
                location.clone(),
                json!({
                    "before": before.generation,
                    "state": state,
                    // Its last call got no answer within the stall bound (in doubt).
                    "stalled": machine.stalled().contains(location),
                }),
            )
        })
        .collect();
    let wave = started
        .waves
        .get(machine.wave())
        .map(|wave| wave.name.clone());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "rollout": started.rollout,
                "old_hash": started.old_hash,
                "new_hash": started.new_hash,
                "state": state,
                "paused": machine.paused(),
                "rollback_reason": machine.rollback_reason(),
                "wave": wave,
                "wave_index": machine.wave(),
                "controller_running": running,
                "leader": leader,
                "fleet_lock": {
                    "holder": started.rollout,
                    "token": lease_token,
                    "ttl_seconds": started.lease_seconds,
                    "held": running && !matches!(machine.phase(), Phase::Finished(_)),
                },
                "waves": started.waves.iter().map(|wave| json!({"name": wave.name, "locations": wave.locations, "bake_seconds": wave.bake_seconds})).collect::<Vec<_>>(),
                "locations": locations,
                "gates": last_gates,
                "records": lines.len(),
            }))
            .unwrap_or_default()
        );
    } else {
        let gates: Vec<String> = started.gates.iter().map(|gate| gate.name.clone()).collect();
        // The live view's rendering, without the recent events.
        print!(
            "{}",
            super::progress::render_view(&started.rollout, &machine, 0, &gates, &[])
        );
        println!("state: {state}");
        if let Some(reason) = machine.paused() {
            println!("paused: {reason}");
        }
        println!(
            "controller: {}",
            match (running, leader) {
                (_, Some(leader)) => leader,
                (true, None) => "running",
                (false, None) => "not running",
            }
        );
        println!(
            "fleet lock: holder `{}` token {}, lease {} s{}",
            started.rollout,
            lease_token.map_or_else(|| "?".to_string(), |token| token.to_string()),
            started.lease_seconds,
            if running {
                ", renewed by the running controller"
            } else {
                " (not renewed: no controller runs; it expires unless `resume` takes it again)"
            }
        );
        if let Some(reason) = machine.rollback_reason() {
            println!("rollback: {reason}");
        }
        for (gate, last) in &last_gates {
            println!(
                "last {gate}: {} — {}",
                last["result"].as_str().unwrap_or(""),
                last["detail"].as_str().unwrap_or("")
            );
        }
    }
    EXIT_COMPLETED
}
