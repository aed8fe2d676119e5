//! `topoctl rollback GENERATION`: make a kept generation the running one again. `--dry-run`
//! shows the daemon's plan for it and changes nothing: the kept generation's sources
//! (`GET /v1/topology?generation=N`) planned against the running ones (`POST /v1/plan`) with
//! the intent a rollback carries by itself (`rollback_intent`), as the daemon
//! would plan the rollback. `--json` prints [`topologyd_api::MutationOutcome`] (rolled back)
//! or [`topologyd_api::PlanView`] (dry run).

use crate::control_client::{ClientError, ControlClient};
use topologyd_api::{EXIT_USAGE, SourceBundle};
use topologyd_topology::{Topology, rollback_intent};

use crate::connection::report_error;
use crate::push_command::{Apply, show_outcome, show_plan};

/// Runs `topoctl rollback`.
pub async fn run(
    client: ControlClient,
    generation: u64,
    apply: Apply,
    dry_run: bool,
    json: bool,
) -> i32 {
    if dry_run {
        return dry_run_plan(&client, generation, json).await;
    }
    let answer = client
        .rollback(generation, apply.expect_generation, apply.lease.as_ref())
        .await;
    show_outcome(answer, json, "rolled back")
}

async fn dry_run_plan(client: &ControlClient, generation: u64, json: bool) -> i32 {
    let (running, target) = match fetch_both(client, generation).await {
        Ok(both) => both,
        Err(error) => return report_error(&error, json),
    };
    let intent = match (compiled(&running.bundle), compiled(&target.bundle)) {
        // The intent the daemon's rollback uses, so the dry run's verdict is the rollback's.
        (Ok(running), Ok(target)) => rollback_intent(&running, &target),
        (Err(message), _) | (_, Err(message)) => {
            eprintln!("topoctl: {message}");
            return EXIT_USAGE;
        }
    };
    show_plan(client.plan(&target.bundle, &intent).await, json)
}

async fn fetch_both(
    client: &ControlClient,
    generation: u64,
) -> Result<(topologyd_api::TopologyView, topologyd_api::TopologyView), ClientError> {
    let running = client.topology().await?;
    let target = client.topology_at(Some(generation)).await?;
    Ok((running, target))
}

/// A kept bundle compiled here (it compiled when it was applied).
fn compiled(bundle: &SourceBundle) -> Result<Topology, String> {
    topologyd_topology::compile_owned(crate::rollout::driver::sources_of(bundle), 0).map_err(
        |diagnostics| {
            format!("a kept generation does not compile with this topoctl:\n{diagnostics}")
        },
    )
}
