//! Driver of the side-by-side benchmark `benches/bgp_peers.sh` (issue 3, item 9): the same routes
//! (IPv4 /24s from 11.0.0.0, IPv6 /48s from 3fff::/20, one attribute set) announced to, then
//! withdrawn from, a fresh BIRD 2 (or, with `--receiver openbgpd`, OpenBGPD) receiver on
//! loopback by each sender in turn: the blaster (`bgp_blaster`, pre-encoded bytes: the
//! receiver's ingest limit), topologyd, BIRD, FRR bgpd, GoBGP and ExaBGP. What each number
//! measures, and how each sender is loaded, is documented in the script's header; these modules
//! only implement it: `main.rs` (options, the run plan), `routes.rs` (the route set),
//! `process.rs` (process groups, commands, RSS), `receiver.rs` (the BIRD or OpenBGPD receiver
//! and how its sessions are read), `senders/` (one module per sender), `run.rs` (one measured
//! run), `report.rs` (table and JSON).
//!
//! Every daemon runs on a `127.0.0.0/8` address in its own process group; the process group ids
//! are appended to `--pids FILE` so the script's trap can kill them even if this process dies,
//! and each group is killed on drop.
//!
//! Must not touch: any non-loopback address; topologyd's crates (the senders are black boxes).

mod process;
mod receiver;
mod report;
mod routes;
mod run;
mod senders;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const ALL_SENDERS: &[&str] = &["blaster", "topologyd", "bird", "frr", "gobgp", "exabgp"];
/// The default senders: GoBGP is left out (see the script's header).
const DEFAULT_SENDERS: &[&str] = &["blaster", "topologyd", "bird", "frr", "exabgp"];
/// Senders that take minutes per run at full size; `--slow-runs` limits their repetitions.
const SLOW_SENDERS: &[&str] = &["gobgp", "exabgp"];

pub(crate) type Result<T> = std::result::Result<T, String>;

#[derive(Debug, Clone)]
pub(crate) struct Options {
    ipv4: u32,
    ipv6: u32,
    pub(crate) runs: usize,
    pub(crate) slow_runs: usize,
    pub(crate) senders: Vec<String>,
    pub(crate) multi_peers: usize,
    pub(crate) multi_routes: u32,
    pub(crate) out: PathBuf,
    pub(crate) pids: Option<PathBuf>,
    pub(crate) bin: PathBuf,
    pub(crate) timeout: Duration,
    pub(crate) receiver: receiver::ReceiverKind,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        ipv4: 1_000_000,
        ipv6: 200_000,
        runs: 1,
        senders: DEFAULT_SENDERS.iter().map(ToString::to_string).collect(),
        slow_runs: usize::MAX,
        multi_peers: 10,
        multi_routes: 100_000,
        out: PathBuf::from("target/bench/bgp_peers.json"),
        pids: None,
        bin: PathBuf::from("target/release"),
        timeout: Duration::from_secs(900),
        receiver: receiver::ReceiverKind::Bird,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |value: &str| -> Result<u64> {
            value
                .parse()
                .map_err(|error| format!("{flag} {value}: {error}"))
        };
        match flag.as_str() {
            "--ipv4" => options.ipv4 = u32::try_from(number(&value)?).map_err(|e| e.to_string())?,
            "--ipv6" => options.ipv6 = u32::try_from(number(&value)?).map_err(|e| e.to_string())?,
            "--runs" => options.runs = number(&value)? as usize,
            "--slow-runs" => options.slow_runs = number(&value)? as usize,
            "--senders" => options.senders = value.split(',').map(str::to_string).collect(),
            "--multi-peers" => options.multi_peers = number(&value)? as usize,
            "--multi-routes" => {
                options.multi_routes = u32::try_from(number(&value)?).map_err(|e| e.to_string())?;
            }
            "--out" => options.out = PathBuf::from(value),
            "--pids" => options.pids = Some(PathBuf::from(value)),
            "--bin" => options.bin = PathBuf::from(value),
            "--timeout" => options.timeout = Duration::from_secs(number(&value)?),
            "--receiver" => options.receiver = receiver::ReceiverKind::parse(&value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    for sender in &options.senders {
        if !ALL_SENDERS.contains(&sender.as_str()) {
            return Err(format!("unknown sender {sender}; known: {ALL_SENDERS:?}"));
        }
    }
    Ok(options)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("bgp_peers: {error}");
            std::process::exit(2);
        }
    };
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let into = match options.receiver {
        receiver::ReceiverKind::Bird => String::new(),
        other => format!(" to {}", other.name()),
    };
    let single = format!("1 peer × {} routes{into}", options.ipv4 + options.ipv6);
    let multi_ipv4 = options.multi_routes - options.multi_routes / 6;
    let multi_ipv6 = options.multi_routes / 6;
    let multi = format!(
        "{} peers × {} routes{into}",
        options.multi_peers, options.multi_routes
    );
    let mut plan: Vec<(String, String, usize, u32, u32)> = Vec::new();
    for run in 1..=options.runs {
        for sender in &options.senders {
            if run > options.slow_runs && SLOW_SENDERS.contains(&sender.as_str()) {
                continue;
            }
            plan.push((
                sender.clone(),
                single.clone(),
                1,
                options.ipv4,
                options.ipv6,
            ));
        }
        if options.multi_peers > 0 {
            for sender in ["blaster", "topologyd"] {
                if options.senders.iter().any(|name| name == sender) {
                    plan.push((
                        sender.to_string(),
                        multi.clone(),
                        options.multi_peers,
                        multi_ipv4,
                        multi_ipv6,
                    ));
                }
            }
        }
    }
    let mut run_numbers: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (sender, case, peers, ipv4, ipv6) in plan {
        let run = {
            let counter = run_numbers
                .entry((sender.clone(), case.clone()))
                .or_insert(0);
            *counter += 1;
            *counter
        };
        eprintln!("bgp_peers: {case}: {sender} run {run} …");
        let run_case = run::RunCase {
            sender: &sender,
            case: &case,
            run,
            peers,
            ipv4,
            ipv6,
        };
        match run::run_once(&options, &run_case) {
            Ok(result) => {
                eprintln!(
                    "bgp_peers:   announce {:.3} s, withdraw-all {:.3} s, peak RSS {:.1} MB, withdrawals seen {}, setup {:.1} s",
                    result.announce_s,
                    result.withdraw_s,
                    result.peak_rss_bytes as f64 / 1e6,
                    result.withdrawals_received,
                    result.setup_s
                );
                results.push(result);
            }
            Err(error) => failures.push(format!("{case} {sender} run {run}: {error}")),
        }
    }
    if let Err(error) = report::report(&options, &results, &failures) {
        eprintln!("bgp_peers: {error}");
        std::process::exit(1);
    }
}
