//! `topoctl generations`: the generations the daemon keeps, newest first, with when and by whom
//! each was applied, its hash, intent and sources; the running one marked. `--json` prints
//! [`GenerationsView`] as the daemon answers it.

use std::fmt::Write as _;

use crate::control_client::ControlClient;
use topologyd_api::{EXIT_NO_CHANGE, GenerationsView};

use crate::connection::show;
use crate::render::{Table, list};
use crate::status_command::{short_hash, time_or_never};

/// Runs `topoctl generations`.
pub async fn run(client: ControlClient, json: bool) -> i32 {
    let answer = client.generations().await;
    show(answer, json, render, |_| EXIT_NO_CHANGE)
}

/// The kept generations as a table.
pub fn render(view: &GenerationsView) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "location {}: {} kept generation(s); generation {} is running; `topoctl rollback N` restores one",
        view.location,
        view.generations.len(),
        view.running
    );
    let mut table = Table::new(&["GENERATION", "APPLIED", "BY", "HASH", "SUMMARY"]);
    for generation in &view.generations {
        let mut summary = format!(
            "{} source(s): {}",
            generation.sources.len(),
            list(&generation.sources)
        );
        if !generation.intent.is_empty() {
            let _ = write!(summary, "; intent {}", generation.intent.join(" "));
        }
        let number = if generation.generation == view.running {
            format!("{} (running)", generation.generation)
        } else {
            generation.generation.to_string()
        };
        table.row(vec![
            number,
            time_or_never(generation.applied_at),
            generation.applied_by.clone(),
            short_hash(&generation.hash).to_string(),
            summary,
        ]);
    }
    text.push_str(&table.to_string());
    text
}
