//! `daemon_bench`: the daemon's benchmarks (the daemon issue, item 10), with real BIRD peers on
//! loopback, printed as JSON lines.
//!
//! - `push`: topologyd for location `loc0000` of the synthetic 300,000-binding topology
//!   (`synth::SynthSpec::ISSUE_SCALE`), four BIRD peers. The files are pushed from one directory
//!   changed in place; two warm-up pushes (the change and back) make the daemon name its files
//!   as the pusher does. Then a change touching 1% of the bindings is pushed with `topoctl push`
//!   as a delta (the default: the changed file as edits of the text `topoctl` kept of it), back
//!   as a whole bundle (`--full-bundle`), and again as a delta whose changed file travels whole
//!   (`--no-digest-cache`); for each, from topologyd's log: the time from the request reaching
//!   the daemon (its head read) to the first UPDATE on the wire, the files sent as edits, the
//!   compile, plan, apply (request in the engine → committed and published) and persist times
//!   and the files reused, with the `topoctl` wall time. The baseline, measured in the same
//!   run, is a push of the unchanged topology (compile + plan + no-op).
//! - `memory ROUTES`: one location announcing ROUTES IPv4 /24s to four BIRD peers; topologyd's
//!   resident memory once every peer holds every route, as bytes per route and per route per
//!   peer. The baseline is the same daemon with the same topology and no peer.
//!
//! - `toggle [PAIRS]`: the same topology plus one customer's file (one prefix and its binding),
//!   whose `advertise` is toggled by `topoctl push`, alternately as a delta (the default: only
//!   the customer's file travels) and with `--full-bundle` (every file), PAIRS times each:
//!   2 × PAIRS times each (both directions equally often), four BIRD peers: the time from the
//!   request reaching the daemon to the first UPDATE on the wire (the issue's measure, from the
//!   daemon's log), the wall time of each push (`topoctl` included) and the engine's compile
//!   time, as medians and as the delta's ratio to the whole bundle measured in the same run.
//!
//! - `sustain [SECONDS]`: the same toggle as a delta, pushed for SECONDS (default 60) at up to
//!   20 per second (each push starts 50 ms after the previous one started, or at once when that
//!   one took longer), every guard evaluated, four BIRD peers: the rate reached, the time from
//!   each request to its first UPDATE on the wire and the wall time of each push (`topoctl
//!   push` → applied) as median, p99 and maximum, and the daemon's resident memory after the
//!   first ten pushes and at the end.
//!
//! Run: `cargo run --release -p topologyd-harness --bin daemon_bench -- push` (or `memory 1000000`,
//! `toggle 5`, `sustain 60`).
//! The debug daemon binary is used (the one the tests build) unless `TOPOLOGYD_BIN_DIR` names
//! another directory: for figures, point it at `target/release` after
//! `cargo build --release -p topologyd --bins`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use topologyd_harness::peers::{BgpPeer, BirdPeer, Family, GracefulRestart, PeerSpec};
use topologyd_harness::synth::{SynthSpec, flat_topology, generate, generate_with_changes};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, NeighborConfig, Topoctl, Topologyd, write_files,
};

const LOCAL_ASN: u32 = 13335;
const BIRD_ASN: u32 = 64512;
const PEERS: usize = 4;
const WAIT: Duration = Duration::from_secs(600);

fn start_birds(daemon: &mut DaemonConfig) -> Result<Vec<BirdPeer>, String> {
    let mut birds = Vec::new();
    for index in 0..PEERS {
        let address = topologyd_harness::peers::alloc::loopback_v4();
        let endpoint = std::net::SocketAddr::new(
            address.into(),
            topologyd_harness::peers::alloc::free_port(address.into()),
        );
        let spec = PeerSpec::new(BIRD_ASN, endpoint, LOCAL_ASN, daemon.local)
            .families(vec![Family::Ipv4Unicast, Family::Ipv6Unicast])
            .passive(true)
            .hold_time(90)
            .graceful_restart(Some(GracefulRestart::default()));
        birds.push(BirdPeer::start(spec).map_err(|error| error.to_string())?);
        let mut neighbor = NeighborConfig::new(&format!("edge{index}"), endpoint, BIRD_ASN);
        neighbor.hold_time_seconds = 90;
        daemon.neighbors.push(neighbor);
    }
    Ok(birds)
}

/// The number of routes BIRD holds from its one BGP session (cheap: no route dump).
fn route_count(bird: &BirdPeer) -> u64 {
    bird.birdc(&["show", "route", "count"])
        .ok()
        .and_then(|output| {
            output
                .lines()
                .find(|line| line.contains("of") && line.contains("routes"))
                .and_then(|line| line.split_whitespace().next().map(str::to_string))
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

fn process_memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

/// The value of `key=` on the last log line containing `message` (and `peer=PEER` if given).
fn log_field(log: &str, message: &str, peer: Option<&str>, key: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter(|line| line.contains(message))
        .find(|line| peer.is_none_or(|peer| line.contains(&format!("peer={peer} "))))
        .and_then(|line| line_field(line, key))
}

/// The number logged as `key=` in `line`.
fn line_field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
}

/// Microseconds since midnight (UTC) of a daemon log line's timestamp
/// (`2026-12-06T14:47:24.522582Z  INFO …`).
fn log_time_us(line: &str) -> Option<i64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let mut parts = time.strip_suffix('Z')?.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some((hours * 3600 + minutes * 60) * 1_000_000 + (seconds * 1e6).round() as i64)
}

/// Per generation a push made, the time in ms from its request reaching the control API
/// (`apply request received`, less the `body_us` it logs reading the body) to the first
/// UPDATE of that generation written to any peer (what the issue's targets measure), read from
/// the daemon's log. Pushes are sequential:
/// a generation's request is the last one received before it was applied. A generation
/// whose first UPDATE was not logged (the next one was published before it was written) has
/// no figure: the benches print how many they have.
fn request_to_wire_ms(log: &str) -> Vec<(u64, f64)> {
    let mut requested = std::collections::BTreeMap::new();
    let mut first_write = std::collections::BTreeMap::new();
    let mut last_request = None;
    for line in log.lines() {
        let Some(time) = log_time_us(line) else {
            continue;
        };
        if line.contains("apply request received") {
            // The request's head was read `body_us` before this line: its body's reading and
            // parsing are part of the push's latency.
            last_request = Some(time - line_field(line, "body_us").map_or(0, |us| us as i64));
        } else if line.contains("generation applied") {
            if let (Some(generation), Some(request)) =
                (line_field(line, "generation"), last_request.take())
            {
                requested.insert(generation, request);
            }
        } else if line.contains("first UPDATE of the generation written")
            && let Some(generation) = line_field(line, "generation")
        {
            first_write.entry(generation).or_insert(time);
        }
    }
    requested
        .into_iter()
        .filter_map(|(generation, request)| {
            let written = *first_write.get(&generation)?;
            // Past midnight between the two lines.
            let micros = (written - request).rem_euclid(86_400 * 1_000_000);
            Some((generation, micros as f64 / 1000.0))
        })
        .collect()
}

/// Waits until the first UPDATE of `generation` is written to a peer (the route toggled is
/// announced at this location, so every push sends one).
fn wait_for_wire(topologyd: &Topologyd, generation: u64) -> Result<(), String> {
    wait_until("the first UPDATE of the new generation", || {
        topologyd.log().lines().any(|line| {
            line.contains("first UPDATE of the generation written")
                && line_field(line, "generation") == Some(generation)
        })
    })
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The wall time of a push that changed the running generation (`topoctl push` exits 2).
fn expect_applied((wall_ms, code): (f64, Option<i32>), what: &str) -> Result<f64, String> {
    if code == Some(2) {
        Ok(wall_ms)
    } else {
        Err(format!("{what} was not applied (exit {code:?})"))
    }
}

/// Writes `files` into `directory` (over the files of the same names) and runs `topoctl push`
/// on them: the wall time and the exit code.
fn push_from(
    topoctl: &Topoctl,
    directory: &Path,
    files: &[(&str, &str)],
    intents: &[String],
) -> Result<(f64, Option<i32>), String> {
    let paths = write_files(directory, files).map_err(|error| error.to_string())?;
    let mut arguments: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    arguments.extend(intents.iter().cloned());
    let started = Instant::now();
    let output = topoctl
        .run("push", &arguments)
        .map_err(|error| error.to_string())?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, output.code))
}

/// [`push_from`] a directory of its own named after `label` (the customer's file keeps its
/// name).
fn push_in(
    topologyd: &Topologyd,
    topoctl: &Topoctl,
    files: &[(&str, &str)],
    intents: &[String],
    label: &str,
) -> Result<(f64, Option<i32>), String> {
    static PUSHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let directory = topologyd.directory().join(format!(
        "{label}-{}",
        PUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    push_from(topoctl, &directory, files, intents)
}

/// topologyd for `loc0000` with a control API (the admin `bench`), ready, and the `topoctl`
/// that talks to it; with four BIRD peers when `with_birds`.
struct Controlled {
    topologyd: Topologyd,
    topoctl: Topoctl,
    birds: Vec<BirdPeer>,
    /// Holds the certificate files `topoctl` reads.
    _pki: ControlPki,
}

fn start_controlled(files: &[(&str, &str)], with_birds: bool) -> Result<Controlled, String> {
    let pki = ControlPki::generate().map_err(|error| error.to_string())?;
    let mut daemon = DaemonConfig::new("loc0000", LOCAL_ASN);
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[("bench", "admin")],
    ));
    let birds = if with_birds {
        start_birds(&mut daemon)?
    } else {
        Vec::new()
    };
    let control_address = daemon
        .control
        .as_ref()
        .map(|control| control.listen)
        .ok_or("no control section")?;
    let mut topologyd = Topologyd::start(daemon, files).map_err(|error| error.to_string())?;
    topologyd
        .wait_ready(WAIT)
        .map_err(|error| error.to_string())?;
    let identity = pki.client("bench").map_err(|error| error.to_string())?;
    let topoctl = Topoctl::new(control_address, &pki.ca, identity);
    Ok(Controlled {
        topologyd,
        topoctl,
        birds,
        _pki: pki,
    })
}

fn bench_push() -> Result<(), String> {
    let spec = SynthSpec::ISSUE_SCALE;
    let old = generate(&spec);
    let new = generate_with_changes(&spec, 10);
    let old_files: Vec<(&str, &str)> = old
        .iter()
        .map(|file| (file.name.as_str(), file.text.as_str()))
        .collect();
    let new_files: Vec<(&str, &str)> = new
        .iter()
        .map(|file| (file.name.as_str(), file.text.as_str()))
        .collect();
    let Controlled {
        topologyd,
        topoctl,
        birds,
        _pki,
    } = start_controlled(&old_files, true)?;
    let routes = birds.first().map(route_count).unwrap_or(0);
    let mut intents: Vec<String> = (0..spec.services)
        .flat_map(|index| ["--intent".to_string(), format!("service:svc{index:04}")])
        .collect();
    intents.extend(["--override".to_string(), "blast-radius".to_string()]);

    // The pushes come from one directory, changed in place as an operator's checkout is. The
    // bootstrap named its files by path, a pusher names them by file name: a first change
    // travels whole and lands, so that the running generation names its files as the pusher
    // does; the change back is a delta. Then the 1 % change is measured as `topoctl push` sends
    // it by default (the changed file alone) and, the other way, as a whole bundle.
    let directory = topologyd.directory().join("checkout");
    expect_applied(
        push_from(&topoctl, &directory, &new_files, &intents)?,
        "warm-up",
    )?;
    expect_applied(
        push_from(&topoctl, &directory, &old_files, &intents)?,
        "warm-up back",
    )?;
    // Baseline: the unchanged topology (compile and plan, nothing to send).
    let (baseline_wall_ms, baseline_code) = push_from(&topoctl, &directory, &old_files, &intents)?;
    let log = topologyd.log();
    let baseline_compile = log_field(&log, "push compiled and planned", None, "compile_ms");

    let mut measured = String::new();
    // The delta as `topoctl push` sends it (its changed file as edits of the text it pushed
    // before), the change back as a whole bundle, and the change again as a delta whose
    // changed file travels whole (`--no-digest-cache`: nothing remembered between pushes).
    for (label, extra, files) in [
        ("delta", None, &new_files),
        ("whole", Some("--full-bundle"), &old_files),
        ("delta_whole_files", Some("--no-digest-cache"), &new_files),
    ] {
        let arguments: Vec<String> = intents
            .iter()
            .cloned()
            .chain(extra.map(str::to_string))
            .collect();
        let wall_ms = expect_applied(
            push_from(&topoctl, &directory, files, &arguments)?,
            "the 1% push",
        )?;
        let log = topologyd.log();
        let generation = log_field(&log, "generation applied", None, "generation")
            .ok_or("no generation applied")?;
        wait_until("every peer to write the new generation", || {
            let log = topologyd.log();
            (0..PEERS).all(|index| {
                log_field(
                    &log,
                    "first UPDATE of the generation written",
                    Some(&format!("edge{index}")),
                    "generation",
                ) == Some(generation)
            })
        })?;
        let log = topologyd.log();
        // A figure the log does not give is `null`, not a measurement of 0.
        let field = |message, key| {
            log_field(&log, message, None, key)
                .map_or("null".to_string(), |value| value.to_string())
        };
        let request_to_wire = request_to_wire_ms(&log)
            .into_iter()
            .find(|(applied, _)| *applied == generation)
            .map_or("null".to_string(), |(_, ms)| format!("{ms:.1}"));
        let _ = write!(
            measured,
            "\"{label}\":{{\"wall_ms\":{wall_ms:.0},\"request_to_wire_ms\":{request_to_wire},\"files_patched\":{},\"compile_ms\":{},\"files_reused\":{},\"plan_ms\":{},\"apply_ms\":{},\"persist_ms\":{}}},",
            field("apply request received", "patched"),
            field("push compiled and planned", "compile_ms"),
            field("push compiled and planned", "files_reused"),
            field("push compiled and planned", "plan_ms"),
            field("generation applied", "apply_ms"),
            field("generation applied", "persist_ms"),
        );
    }
    measured.pop();
    let pid = topologyd.pid().unwrap_or(0);
    println!(
        "{{\"bench\":\"push_1_percent\",\"bindings\":{},\"routes_at_location\":{routes},\"peers\":{PEERS},\"baseline_unchanged_push_wall_ms\":{baseline_wall_ms:.0},\"baseline_exit\":{},\"baseline_compile_ms\":{},{measured},\"daemon_rss_mib\":{},\"daemon_peak_rss_mib\":{}}}",
        spec.bindings,
        baseline_code.unwrap_or(-1),
        baseline_compile.unwrap_or(0),
        process_memory_kib(pid, "VmRSS:") / 1024,
        process_memory_kib(pid, "VmHWM:") / 1024,
    );
    Ok(())
}

/// One customer's file: a prefix outside the synthetic ones and its default binding.
fn customer_file(advertise: bool) -> String {
    format!(
        "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"customer-0001\"\nadvertise = {advertise}\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"svc0000\"\n"
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The intents every toggle push carries: the customer's route may move, and its withdrawal
/// from every location is intended.
fn toggle_intents() -> Vec<String> {
    [
        "--intent",
        "service:svc0000",
        "--override",
        "global-withdrawal:192.0.2.0/24",
    ]
    .map(str::to_string)
    .to_vec()
}

/// The value at `share` (0–1) of sorted `values`.
fn percentile(values: &[f64], share: f64) -> f64 {
    let index = ((values.len() as f64 - 1.0) * share).round() as usize;
    values.get(index).copied().unwrap_or(0.0)
}

fn bench_sustain(seconds: u64) -> Result<(), String> {
    const INTERVAL: Duration = Duration::from_millis(50);
    let synthetic = generate(&SynthSpec::ISSUE_SCALE);
    let customer = [customer_file(true), customer_file(false)];
    let files: Vec<(&str, &str)> = synthetic
        .iter()
        .map(|file| (file.name.as_str(), file.text.as_str()))
        .chain([("customer-0001.toml", customer[0].as_str())])
        .collect();
    let Controlled {
        topologyd,
        topoctl,
        _pki,
        birds: _birds,
    } = start_controlled(&files, true)?;
    let intents = toggle_intents();
    push_in(&topologyd, &topoctl, &files, &intents, "same")?;
    // The files are written once; the customer's is rewritten in place before each push.
    let paths = write_files(&topologyd.directory().join("sustain"), &files)
        .map_err(|error| error.to_string())?;
    let customer_path = paths.last().cloned().ok_or("no files written")?;
    let mut arguments: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    arguments.extend(intents);
    let pid = topologyd.pid().unwrap_or(0);
    let mut warm_rss = 0;
    let mut walls: Vec<f64> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let slot = started + INTERVAL * u32::try_from(walls.len()).unwrap_or(u32::MAX);
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        std::fs::write(&customer_path, &customer[(walls.len() + 1) % 2])
            .map_err(|error| error.to_string())?;
        let pushed = Instant::now();
        let output = topoctl
            .run("push", &arguments)
            .map_err(|error| error.to_string())?;
        walls.push(pushed.elapsed().as_secs_f64() * 1000.0);
        if output.code != Some(2) {
            return Err(format!(
                "push {} was not applied (exit {:?}): {output}\n{}",
                walls.len(),
                output.code,
                topologyd.log_tail()
            ));
        }
        if walls.len() == 10 {
            warm_rss = process_memory_kib(pid, "VmRSS:");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let end_rss = process_memory_kib(pid, "VmRSS:");
    let count = walls.len();
    walls.sort_by(f64::total_cmp);
    let last = log_field(&topologyd.log(), "generation applied", None, "generation").unwrap_or(0);
    wait_for_wire(&topologyd, last)?;
    // The first, whole push changes no route: it sends nothing and is not counted.
    let mut wires: Vec<f64> = request_to_wire_ms(&topologyd.log())
        .into_iter()
        .map(|(_, ms)| ms)
        .collect();
    wires.sort_by(f64::total_cmp);
    if wires.len() < count {
        eprintln!(
            "{} of {count} pushes have no request → wire figure (a later generation was published before their first UPDATE was written)",
            count - wires.len()
        );
    }
    println!(
        "{{\"bench\":\"sustain\",\"bindings\":{},\"seconds\":{elapsed:.1},\"pushes\":{count},\"target_per_s\":20,\"reached_per_s\":{:.2},\"wire_samples\":{},\"request_to_wire_p50_ms\":{:.1},\"request_to_wire_p99_ms\":{:.1},\"request_to_wire_max_ms\":{:.1},\"wall_p50_ms\":{:.0},\"wall_p99_ms\":{:.0},\"wall_max_ms\":{:.0},\"rss_after_10_mib\":{},\"rss_end_mib\":{},\"rss_growth_mib\":{}}}",
        SynthSpec::ISSUE_SCALE.bindings,
        count as f64 / elapsed,
        wires.len(),
        percentile(&wires, 0.5),
        percentile(&wires, 0.99),
        wires.last().copied().unwrap_or(0.0),
        percentile(&walls, 0.5),
        percentile(&walls, 0.99),
        walls.last().copied().unwrap_or(0.0),
        warm_rss / 1024,
        end_rss / 1024,
        (end_rss as i64 - warm_rss as i64) / 1024,
    );
    Ok(())
}

fn bench_toggle(pairs: usize) -> Result<(), String> {
    let spec = SynthSpec::ISSUE_SCALE;
    let synthetic = generate(&spec);
    let customer = [customer_file(true), customer_file(false)];
    let files = |advertise: usize| -> Vec<(&str, &str)> {
        synthetic
            .iter()
            .map(|file| (file.name.as_str(), file.text.as_str()))
            .chain([("customer-0001.toml", customer[advertise].as_str())])
            .collect()
    };
    // The peers live as long as the bench (the route toggled is sent to them).
    let Controlled {
        topologyd,
        topoctl,
        _pki,
        birds: _birds,
    } = start_controlled(&files(0), true)?;
    let intents = toggle_intents();
    // The bootstrap names its files by path: one whole push first, so that the running
    // generation's files are named as a pusher names them.
    push_in(&topologyd, &topoctl, &files(0), &intents, "same")?;
    let whole_bytes: usize = files(0).iter().map(|(_, text)| text.len()).sum();
    let mut walls = [Vec::new(), Vec::new()];
    let mut compiles = [Vec::new(), Vec::new()];
    // Files the daemon took from the running generation instead of parsing them (the last
    // push of each mode): the incremental compile works alike for deltas and whole bundles.
    let mut reused = [0_u64; 2];
    // The generations each mode made, for the request → wire times the log gives.
    let mut generations: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    // Rounds withdraw and announce in turn; each mode takes two rounds in a row, so both
    // modes see both directions equally often.
    for round in 0..pairs * 4 {
        let full = (round / 2) % 2 == 1;
        let mut intents = intents.clone();
        if full {
            intents.push("--full-bundle".to_string());
        }
        let (wall_ms, code) = push_in(
            &topologyd,
            &topoctl,
            &files((round + 1) % 2),
            &intents,
            "same",
        )?;
        if code != Some(2) {
            return Err(format!(
                "toggle {round} was not applied (exit {code:?}):\n{}",
                topologyd.log_tail()
            ));
        }
        let log = topologyd.log();
        let compile_ms = log_field(&log, "push compiled and planned", None, "compile_ms");
        reused[usize::from(full)] =
            log_field(&log, "push compiled and planned", None, "files_reused").unwrap_or(0);
        walls[usize::from(full)].push(wall_ms);
        compiles[usize::from(full)].push(compile_ms.unwrap_or(0) as f64);
        let generation = log_field(&log, "generation applied", None, "generation").unwrap_or(0);
        wait_for_wire(&topologyd, generation)?;
        generations[usize::from(full)].push(generation);
    }
    let on_wire = request_to_wire_ms(&topologyd.log());
    let mut wires = generations.each_ref().map(|generations| {
        on_wire
            .iter()
            .filter(|(generation, _)| generations.contains(generation))
            .map(|(_, ms)| *ms)
            .collect::<Vec<f64>>()
    });
    // Where the time of the last push went, as the daemon logged it (compile, plan, persist,
    // apply), on stderr beside the figures.
    let log = topologyd.log();
    let accounted: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("push compiled and planned") || line.contains("generation applied")
        })
        .collect();
    eprintln!(
        "the last push as the daemon logged it:\n{}",
        accounted[accounted.len().saturating_sub(2)..].join("\n")
    );
    let [delta_wall, full_wall] = walls.each_mut().map(|values| median(values));
    let [delta_compile, full_compile] = compiles.each_mut().map(|values| median(values));
    let [delta_wire, full_wire] = wires.each_mut().map(|values| median(values));
    println!(
        "{{\"bench\":\"toggle\",\"bindings\":{},\"pairs\":{pairs},\"whole_bundle_bytes\":{whole_bytes},\"delta_bytes\":{},\"delta_request_to_wire_ms\":{delta_wire:.1},\"full_request_to_wire_ms\":{full_wire:.1},\"delta_wall_ms\":{delta_wall:.0},\"full_wall_ms\":{full_wall:.0},\"delta_over_full_wall\":{:.2},\"delta_compile_ms\":{delta_compile:.0},\"full_compile_ms\":{full_compile:.0},\"delta_files_reused\":{},\"full_files_reused\":{},\"delta_walls_ms\":{:?},\"full_walls_ms\":{:?}}}",
        spec.bindings,
        customer[0].len(),
        delta_wall / full_wall.max(1.0),
        reused[0],
        reused[1],
        walls[0].iter().map(|wall| wall.round()).collect::<Vec<_>>(),
        walls[1].iter().map(|wall| wall.round()).collect::<Vec<_>>(),
    );
    Ok(())
}

fn bench_memory(routes: usize) -> Result<(), String> {
    let files = flat_topology(routes);
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();

    // Baseline: the same daemon and topology with no peer.
    let baseline_config = DaemonConfig::new("loc0000", LOCAL_ASN);
    let baseline =
        Topologyd::start(baseline_config, &borrowed).map_err(|error| error.to_string())?;
    let baseline_pid = baseline.pid().unwrap_or(0);
    wait_until("the baseline daemon to load its generation", || {
        baseline.log().contains("running generation loaded")
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let baseline_rss = process_memory_kib(baseline_pid, "VmRSS:");
    drop(baseline);

    let mut daemon = DaemonConfig::new("loc0000", LOCAL_ASN);
    let birds = start_birds(&mut daemon)?;
    let started = Instant::now();
    let topologyd = Topologyd::start(daemon, &borrowed).map_err(|error| error.to_string())?;
    wait_until("every peer to hold every route", || {
        birds.iter().all(|bird| route_count(bird) >= routes as u64)
    })?;
    let converged = started.elapsed().as_secs_f64();
    let pid = topologyd.pid().unwrap_or(0);
    let rss = process_memory_kib(pid, "VmRSS:");
    let peak = process_memory_kib(pid, "VmHWM:");
    let per_route_per_peer =
        (rss.saturating_sub(baseline_rss) * 1024) as f64 / (routes * PEERS) as f64;
    println!(
        "{{\"bench\":\"memory\",\"routes\":{routes},\"peers\":{PEERS},\"start_to_all_peers_converged_s\":{converged:.2},\"baseline_rss_no_peers_mib\":{},\"rss_mib\":{},\"peak_rss_mib\":{},\"bytes_per_route_total\":{:.0},\"bytes_per_route_per_peer_above_baseline\":{per_route_per_peer:.0}}}",
        baseline_rss / 1024,
        rss / 1024,
        peak / 1024,
        (rss * 1024) as f64 / routes as f64,
    );
    for bird in &birds {
        let _ = bird.session_state();
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let mut arguments = std::env::args().skip(1);
    match arguments.next().as_deref() {
        Some("push") => bench_push(),
        Some("memory") => {
            let routes = arguments
                .next()
                .and_then(|value| value.parse().ok())
                .unwrap_or(1_000_000);
            bench_memory(routes)
        }
        Some("toggle") => bench_toggle(
            arguments
                .next()
                .and_then(|value| value.parse().ok())
                .unwrap_or(5),
        ),
        Some("sustain") => bench_sustain(
            arguments
                .next()
                .and_then(|value| value.parse().ok())
                .unwrap_or(60),
        ),
        _ => Err(
            "usage: daemon_bench push | memory [ROUTES] | toggle [PAIRS] | sustain [SECONDS]"
                .into(),
        ),
    }
}
