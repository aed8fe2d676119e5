//! `topoctl matrix`: which service is announced where, services × locations (or regions).
//! Offline from topology files (what the topology announces at each location), or live from a
//! fleet file (`--fleet`: every daemon's `GET /v1/health`, so withdrawals by health, drains,
//! degraded announcements and the floor's holds show). `--json` prints [`MatrixView`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use topologyd_api::{EXIT_NO_CHANGE, EXIT_UNREACHABLE, HealthView, ServiceAction};
use topologyd_config::fleet::FleetLocation;
use topologyd_topology::Topology;

use crate::render::Table;

/// What a location does with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// Announced.
    Announced,
    /// Announced with the service's degrade attributes (unhealthy, `on_unhealthy = degrade`).
    Degraded,
    /// Withdrawal wanted (health or drain), kept announced by the floor.
    FloorHeld,
    /// Withdrawn because the service is unhealthy here.
    WithdrawnByHealth,
    /// Withdrawn by a drain.
    Drained,
    /// The topology does not announce it here.
    NotAnnounced,
}

impl CellState {
    fn word(self) -> &'static str {
        match self {
            CellState::Announced => "announced",
            CellState::Degraded => "degraded",
            CellState::FloorHeld => "floor-held",
            CellState::WithdrawnByHealth => "withdrawn",
            CellState::Drained => "drained",
            CellState::NotAnnounced => "-",
        }
    }
}

/// The matrix: per service, per column (location or region), how many locations are in each
/// state (1 for a location column).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatrixView {
    /// `topology` (offline) or `fleet` (live).
    pub source: String,
    /// `location` or `region`.
    pub by: String,
    /// The columns, in order.
    pub columns: Vec<String>,
    /// Service → column → state → locations.
    pub services: BTreeMap<String, BTreeMap<String, BTreeMap<CellState, u64>>>,
    /// Locations that did not answer (live), with why.
    pub unreachable: BTreeMap<String, String>,
}

/// Per service, per location, its state; and each location's region.
#[derive(Debug, Default)]
struct Cells {
    states: BTreeMap<String, BTreeMap<String, CellState>>,
    region_of: BTreeMap<String, String>,
}

/// The offline matrix of a topology: announced where it announces the service's routes.
fn from_topology(topology: &Topology) -> Cells {
    let mut cells = Cells::default();
    for location in topology.locations() {
        cells
            .region_of
            .insert(location.name.clone(), location.region.clone());
        let announced: Vec<String> = topology
            .desired(&location.name)
            .map(|routes| {
                routes
                    .iter()
                    .map(|route| route.service.to_string())
                    .collect()
            })
            .unwrap_or_default();
        for service in topology.services() {
            let state = if announced.contains(&service.name) {
                CellState::Announced
            } else {
                CellState::NotAnnounced
            };
            cells
                .states
                .entry(service.name.clone())
                .or_default()
                .insert(location.name.clone(), state);
        }
    }
    cells
}

/// One daemon's services as cells.
fn from_health(health: &HealthView) -> BTreeMap<String, CellState> {
    health
        .services
        .iter()
        .map(|(name, service)| {
            let state = match (service.action, service.floor_held, service.drained) {
                (_, true, _) => CellState::FloorHeld,
                (ServiceAction::Withdraw, _, true) => CellState::Drained,
                (ServiceAction::Withdraw, _, false) => CellState::WithdrawnByHealth,
                (ServiceAction::Degrade, _, _) => CellState::Degraded,
                (ServiceAction::Announce, _, _) => CellState::Announced,
            };
            (name.clone(), state)
        })
        .collect()
}

/// Groups the cells by `by` (`location` or `region`).
fn view(cells: Cells, source: &str, by: &str) -> MatrixView {
    let column_of = |location: &str| -> String {
        if by == "region" {
            cells.region_of.get(location).cloned().unwrap_or_default()
        } else {
            location.to_string()
        }
    };
    let mut columns: Vec<String> = cells
        .region_of
        .keys()
        .map(|location| column_of(location))
        .collect();
    columns.sort();
    columns.dedup();
    let mut services: BTreeMap<String, BTreeMap<String, BTreeMap<CellState, u64>>> =
        BTreeMap::new();
    for (service, locations) in &cells.states {
        let row = services.entry(service.clone()).or_default();
        for (location, state) in locations {
            *row.entry(column_of(location))
                .or_default()
                .entry(*state)
                .or_default() += 1;
        }
    }
    MatrixView {
        source: source.to_string(),
        by: by.to_string(),
        columns,
        services,
        unreachable: BTreeMap::new(),
    }
}

/// The matrix as a table: a location cell is its state, a region cell `announced 2/3` and
/// the other states' counts.
pub fn render(view: &MatrixView) -> String {
    let mut header = vec!["SERVICE".to_string()];
    header.extend(view.columns.iter().cloned());
    let titles: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut table = Table::new(&titles);
    for (service, row) in &view.services {
        let mut cells = vec![service.clone()];
        for column in &view.columns {
            let counts = row.get(column).cloned().unwrap_or_default();
            cells.push(cell_text(&counts, view.by == "region"));
        }
        table.row(cells);
    }
    let mut text = table.to_string();
    let _ = writeln!(
        text,
        "\n{} from the {}; announced, degraded (announced with a worse path), floor-held (kept by the floor), withdrawn (unhealthy), drained, - (not announced there)",
        if view.by == "region" {
            "locations per region"
        } else {
            "per location"
        },
        if view.source == "fleet" {
            "live fleet"
        } else {
            "topology files (health and drains not known offline)"
        }
    );
    for (location, reason) in &view.unreachable {
        let _ = writeln!(text, "{location}: unreachable ({reason})");
    }
    text
}

fn cell_text(counts: &BTreeMap<CellState, u64>, region: bool) -> String {
    if !region {
        return counts
            .keys()
            .next()
            .map_or_else(|| "?".to_string(), |state| state.word().to_string());
    }
    let total: u64 = counts.values().sum();
    let announced = counts.get(&CellState::Announced).copied().unwrap_or(0);
    let mut text = format!("{announced}/{total}");
    for (state, count) in counts {
        if !matches!(state, CellState::Announced | CellState::NotAnnounced) {
            let _ = write!(text, " {count} {}", state.word());
        }
    }
    text
}

/// `topoctl matrix FILES…`: offline.
pub fn offline(topology: &Topology, by: &str, json: bool) -> i32 {
    let view = view(from_topology(topology), "topology", by);
    print(&view, json);
    EXIT_NO_CHANGE
}

fn print(view: &MatrixView, json: bool) {
    if json {
        crate::connection::print_json(view);
    } else {
        print!("{}", crate::render::inert(&render(view)));
    }
}

/// `topoctl matrix --fleet FILE`: every daemon's health, asked at once. Exit 6 when a location
/// did not answer (its column is `?`).
pub fn live(fleet_path: &Path, by: &str, json: bool) -> i32 {
    let fleet = match topologyd_config::fleet::load_fleet(fleet_path) {
        Ok(fleet) => fleet,
        Err(error) => {
            eprintln!("topoctl: {error}");
            return topologyd_api::EXIT_INVALID;
        }
    };
    let runtime = match crate::connection::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("topoctl: {error}");
            return topologyd_api::EXIT_USAGE;
        }
    };
    let (answers, regions) = runtime.block_on(ask_all(&fleet.locations, by == "region"));
    let mut cells = Cells::default();
    let mut unreachable = BTreeMap::new();
    for (location, answer) in answers {
        let region = regions
            .get(&location)
            .cloned()
            .unwrap_or_else(|| "?".to_string());
        cells.region_of.insert(location.clone(), region);
        match answer {
            Ok(health) => {
                for (service, state) in from_health(&health) {
                    cells
                        .states
                        .entry(service)
                        .or_default()
                        .insert(location.clone(), state);
                }
            }
            Err(reason) => {
                unreachable.insert(location, reason);
            }
        }
    }
    let mut matrix = view(cells, "fleet", by);
    let code = if unreachable.is_empty() {
        EXIT_NO_CHANGE
    } else {
        EXIT_UNREACHABLE
    };
    matrix.unreachable = unreachable;
    print(&matrix, json);
    code
}

/// Every location's health, asked at once; with `regions`, also each location's region, from
/// the topology the first location that answers runs.
async fn ask_all(
    locations: &[FleetLocation],
    regions: bool,
) -> (
    Vec<(String, Result<HealthView, String>)>,
    BTreeMap<String, String>,
) {
    let clients = match crate::rollout::driver::clients_for(locations, Duration::from_secs(10)) {
        Ok(clients) => clients,
        Err(error) => {
            let answers = locations
                .iter()
                .map(|location| (location.name.clone(), Err(error.clone())))
                .collect();
            return (answers, BTreeMap::new());
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (name, client) in clients.clone() {
        tasks.spawn(async move {
            let health = client
                .health()
                .await
                .map_err(|error| crate::error_chain(&error));
            (name, health)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut region_of = BTreeMap::new();
    let first = answers.iter().find(|(_, answer)| answer.is_ok());
    if let (true, Some((name, _))) = (regions, first)
        && let Some(client) = clients.get(name)
        && let Ok(running) = client.topology().await
        && let Ok(topology) = topologyd_topology::compile_owned(
            crate::rollout::driver::sources_of(&running.bundle),
            0,
        )
    {
        for location in topology.locations() {
            region_of.insert(location.name.clone(), location.region.clone());
        }
    }
    (answers, region_of)
}

#[cfg(test)]
mod tests {
    use topologyd_api::ServiceHealthView;
    use topologyd_api::view::{HealthStateView, ProbeStateView};

    use super::*;

    fn service(action: ServiceAction, drained: bool, floor_held: bool) -> ServiceHealthView {
        ServiceHealthView {
            checked: true,
            healthy: action == ServiceAction::Announce,
            action,
            drained,
            floor_held,
            other_live_locations: 1,
            routes_announced: 1,
            state: HealthStateView::Healthy,
            probes: ProbeStateView::default(),
        }
    }

    #[test]
    fn a_daemons_decisions_become_cells_and_regions_count_locations() {
        let mut cells = Cells::default();
        let decisions = [
            ("ams01", "eu", ServiceAction::Announce, false, false),
            ("fra01", "eu", ServiceAction::Withdraw, true, false),
            ("lhr01", "eu", ServiceAction::Withdraw, false, false),
            ("iad01", "us", ServiceAction::Degrade, false, false),
            ("sjc01", "us", ServiceAction::Announce, true, true),
        ];
        for (location, region, action, drained, floor_held) in decisions {
            cells.region_of.insert(location.into(), region.into());
            let health = HealthView {
                location: location.into(),
                generation: 1,
                enabled: true,
                fail_static: false,
                fail_static_reason: None,
                location_drained: false,
                drains: Default::default(),
                min_other_locations: 1,
                address_interface: None,
                addresses_bound: vec![],
                addresses_foreign: vec![],
                addresses_pending_unbind: vec![],
                address_errors: BTreeMap::new(),
                services: BTreeMap::from([(
                    "web".to_string(),
                    service(action, drained, floor_held),
                )]),
            };
            for (name, state) in from_health(&health) {
                cells
                    .states
                    .entry(name)
                    .or_default()
                    .insert(location.into(), state);
            }
        }
        let by_location = view(
            Cells {
                states: cells.states.clone(),
                region_of: cells.region_of.clone(),
            },
            "fleet",
            "location",
        );
        let text = render(&by_location);
        let row = text
            .lines()
            .find(|line| line.starts_with("web"))
            .unwrap_or_default();
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "web",
                "announced",
                "drained",
                "degraded",
                "withdrawn",
                "floor-held"
            ],
            "{text}"
        );
        let by_region = view(cells, "fleet", "region");
        assert_eq!(by_region.columns, ["eu", "us"]);
        let text = render(&by_region);
        let row = text
            .lines()
            .find(|line| line.starts_with("web"))
            .unwrap_or_default();
        assert!(row.contains("1/3 1 withdrawn 1 drained"), "{text}");
        assert!(row.contains("0/2 1 degraded 1 floor-held"), "{text}");
    }
}
