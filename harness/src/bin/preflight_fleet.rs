//! `preflight_fleet [LOCATIONS] [RUNS] [CONCURRENCY…]`: how long `topoctl rollout start` takes
//! to pre-flight a fleet of real `topologyd` daemons (default 100), each on its own
//! `127.a.b.c` loopback address with its mTLS control API and no BGP peer (`[readiness]
//! min_established = 0`). Every run is a `--dry-run --json` of one change (a new service and its
//! prefix): every location's status, then every location's own plan (`POST /v1/plan`) with
//! `preflight_concurrency` set to each CONCURRENCY given (default 32). Prints one JSON line per
//! concurrency: the pre-flight's own duration (its `duration_ms`, min/median/max over the runs)
//! and the whole dry run's wall time. `benches/preflight_fleet.sh` builds and runs it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topologyd, binaries, write_files,
};

const IDENTITY: &str = "rollout-controller";
const ASN: u32 = 64_512;

fn topology(names: &[String], with_time: bool) -> Vec<(&'static str, String)> {
    let mut locations = String::new();
    for name in names {
        let _ = write!(
            locations,
            "[[location]]\nname = \"{name}\"\nregion = \"bench\"\nmetro = \"BEN\"\ncountry = \"XX\"\ntags = []\nstate = \"live\"\n\n"
        );
    }
    let mut services = String::from(
        "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\n\n",
    );
    let mut prefixes = String::from(
        "[[prefix]]\ncidr = \"1.1.1.0/24\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"1.1.1.0/24\"\nservice = \"resolver\"\n\n",
    );
    if with_time {
        services += "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\n\n";
        prefixes += "[[prefix]]\ncidr = \"162.159.200.0/24\"\norigin_asn = 13335\nowner = \"time\"\nadvertise = true\n\n[[binding]]\ncidr = \"162.159.200.0/24\"\nservice = \"time\"\n\n";
    }
    vec![
        ("fleet.toml", locations),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

fn fleet_file(
    path: &Path,
    pki: &ControlPki,
    client: &topologyd_harness::topologyd::TlsIdentity,
    daemons: &[Topologyd],
    concurrency: usize,
) -> Result<(), String> {
    let mut text = format!(
        "[defaults]\nca = \"{}\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\npreflight_concurrency = {concurrency}\n",
        pki.ca.display(),
        client.certificate.display(),
        client.private_key.display()
    );
    for daemon in daemons {
        let control = daemon
            .config
            .control
            .as_ref()
            .ok_or("a daemon without a control API")?;
        let _ = write!(
            text,
            "\n[[location]]\nname = \"{}\"\ncontrol = \"{}\"\n",
            daemon.config.location, control.listen
        );
    }
    text += "\n[[wave]]\nname = \"canary\"\nselect = \"location = 'loc000'\"\n\n[[wave]]\nname = \"rest\"\n";
    std::fs::write(path, text).map_err(|error| error.to_string())
}

fn statistics(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(f64::NAN);
    json!({
        "min": values.first(),
        "median": median,
        "max": values.last(),
    })
}

/// One dry run: (the pre-flight's `duration_ms`, the whole run's wall time in ms).
fn dry_run(
    topoctl: &Path,
    fleet: &Path,
    state: &Path,
    files: &[PathBuf],
) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let output = Command::new(topoctl)
        .args(["rollout", "start", "--dry-run", "--json", "--fleet"])
        .arg(fleet)
        .arg("--state-dir")
        .arg(state)
        .args(files)
        .output()
        .map_err(|error| error.to_string())?;
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the dry run failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let document: Value = serde_json::from_str(&stdout).map_err(|error| error.to_string())?;
    if document["preflight"]["passed"] != true {
        return Err(format!(
            "the pre-flight did not pass: {}",
            document["preflight"]
        ));
    }
    let preflight = document["preflight"]["duration_ms"]
        .as_f64()
        .ok_or("no preflight duration")?;
    Ok((preflight, wall))
}

fn run() -> Result<(), String> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = arguments
        .first()
        .map_or(Ok(100), |text| text.parse())
        .map_err(|_| "LOCATIONS is a number")?;
    let runs: usize = arguments
        .get(1)
        .map_or(Ok(5), |text| text.parse())
        .map_err(|_| "RUNS is a number")?;
    let mut concurrencies: Vec<usize> = arguments
        .iter()
        .skip(2)
        .map(|text| {
            text.parse()
                .map_err(|_| "CONCURRENCY is a number".to_string())
        })
        .collect::<Result<_, _>>()?;
    if concurrencies.is_empty() {
        concurrencies.push(32);
    }
    let directory = tempfile::Builder::new()
        .prefix("topologyd-preflight-bench-")
        .tempdir()
        .map_err(|error| error.to_string())?;
    let pki = ControlPki::generate().map_err(|error| error.to_string())?;
    let client = pki.client(IDENTITY).map_err(|error| error.to_string())?;
    let names: Vec<String> = (0..count).map(|index| format!("loc{index:03}")).collect();
    let base = topology(&names, false);
    let borrowed: Vec<(&str, &str)> = base
        .iter()
        .map(|(name, text)| (*name, text.as_str()))
        .collect();
    let started = Instant::now();
    let mut daemons = Vec::with_capacity(count);
    for name in &names {
        let mut config = DaemonConfig::new(name, ASN);
        let mut control = ControlSection::new(config.local.ip(), &pki, &[(IDENTITY, "admin")]);
        control.audit_log = directory.path().join(format!("{name}-audit.jsonl"));
        config.control = Some(control);
        config.extra = "[readiness]\nmin_established = 0\n".into();
        daemons
            .push(Topologyd::start(config, &borrowed).map_err(|error| format!("{name}: {error}"))?);
    }
    for daemon in &mut daemons {
        daemon
            .wait_ready(Duration::from_secs(120))
            .map_err(|error| format!("{}: {error}", daemon.config.location))?;
    }
    eprintln!("{count} daemons ready after {:.1?}", started.elapsed());
    let change = topology(&names, true);
    let change: Vec<(&str, &str)> = change
        .iter()
        .map(|(name, text)| (*name, text.as_str()))
        .collect();
    let files = write_files(&directory.path().join("change"), &change)
        .map_err(|error| error.to_string())?;
    let topoctl = binaries()
        .map_err(|error| error.to_string())?
        .join("topoctl");
    for concurrency in concurrencies {
        let fleet = directory.path().join(format!("fleet-{concurrency}.toml"));
        fleet_file(&fleet, &pki, &client, &daemons, concurrency)?;
        let state = directory.path().join(format!("state-{concurrency}"));
        let mut preflights = Vec::with_capacity(runs);
        let mut walls = Vec::with_capacity(runs);
        for _ in 0..runs {
            let (preflight, wall) = dry_run(&topoctl, &fleet, &state, &files)?;
            preflights.push(preflight);
            walls.push(wall);
        }
        println!(
            "{}",
            json!({
                "bench": "preflight_fleet",
                "locations": count,
                "concurrency": concurrency,
                "runs": runs,
                "preflight_ms": statistics(preflights),
                "dry_run_wall_ms": statistics(walls),
            })
        );
    }
    drop(daemons);
    Ok(())
}

fn main() {
    if let Err(message) = run() {
        eprintln!("preflight_fleet: {message}");
        std::process::exit(1);
    }
}
