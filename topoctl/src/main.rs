//! `topoctl`: check, compile, plan and explain service topologies offline, and push, plan,
//! roll back and inspect a running topologyd over its mTLS control API; roll a change out to a
//! fleet in gated waves (`topoctl rollout`, docs/rollouts.md, exit codes of its own).
//!
//! Each daemon command lives in its own module of the library (`status_command.rs`, …); this
//! file parses arguments and dispatches. Human output by default, `--json` for the typed view.
//!
//! Exit codes (README, "Exit codes"; the constants in `topologyd_api`): 0 nothing to do or
//! valid, 1 usage, 2 changes made or allowed, 3 refused by a guard, 4 invalid, 5 conflict
//! (compare-and-swap, lease, deadline, a pushed file changed while read), 6 unreachable or
//! TLS; errors on stderr.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use topoctl::connection::{DaemonArguments, call};
use topoctl::control_client::ClientError;
use topoctl::drain_command::DrainArguments;
use topoctl::lease_command::{LeaseCommand, parse_claim};
use topoctl::local_bundle::{DigestCache, LocalBundle};
use topoctl::push_command::Apply;
use topoctl::text_cache::TextCache;
use topoctl::vrp_source::VrpArguments;
use topoctl::{
    drain_command, generations_command, health_command, push_command, rollback_command,
    routes_command, rpki_command, status_command, topology_command, visibility_command,
};
use topologyd_api::SourceBundle;
use topologyd_config::{LoadError, Source, load_sources};
use topologyd_topology::{
    Diagnostics, EXIT_INVALID, EXIT_NO_CHANGE, EXIT_REFUSED, EXIT_USAGE, Guard, GuardViolation,
    Intent, Topology, VrpSet, collapse_locations, compile_against, compile_owned, plan_with_vrps,
};

mod rollout_command;

#[derive(Parser, Debug)]
#[command(
    name = "topoctl",
    version,
    about = "Check, compile, plan and explain service topologies; push them to topologyd.",
    after_help = "Exit codes: 0 nothing to do (or valid), 1 usage, 2 changes made or allowed, \
                  3 refused by a guard, 4 invalid (topology, request, unknown generation), \
                  5 conflict (compare-and-swap, lease, deadline), 6 the daemon unreachable, \
                  TLS refused, busy or its disk full (rollout also: 7 rolled back, 8 paused or \
                  aborted). Errors go to stderr, results to stdout.\n\
                  Topology files may be given in any order; together they form one topology."
)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate topology files: every error with file:line:column and how to fix it.
    Check {
        /// The topology files (fleet, services, prefixes, bindings).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        vrps: VrpArguments,
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The routes a location announces, with the binding and service each comes from.
    Compile {
        /// The location (a [[location]] name).
        #[arg(long, short)]
        location: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// What changes between two topologies, per route and location, and the guards' verdict.
    Plan {
        /// The running topology's files.
        #[arg(long, num_args = 1.., required = true)]
        old: Vec<PathBuf>,
        /// The proposed topology's files.
        #[arg(long, num_args = 1.., required = true)]
        new: Vec<PathBuf>,
        #[command(flatten)]
        intent: IntentArguments,
        #[command(flatten)]
        vrps: VrpArguments,
        #[arg(long)]
        json: bool,
    },
    /// Which binding and service handle an address, where it is announced, and why.
    Explain {
        address: IpAddr,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Push topology files to a running daemon (plan first with --dry-run).
    Push {
        #[command(flatten)]
        daemon: DaemonArguments,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        intent: IntentArguments,
        #[command(flatten)]
        mutation: MutationArguments,
        /// Send every file, not only those that differ from the running generation's (the
        /// daemon plans and applies the same files either way).
        #[arg(long)]
        full_bundle: bool,
        /// Read and hash every file, not trusting the digests remembered for files whose size
        /// and times have not changed, and send a large changed file whole, not as edits of
        /// its last version pushed (both kept in $TOPOCTL_CACHE_DIR, else
        /// $XDG_CACHE_HOME/topoctl, else ~/.cache/topoctl).
        #[arg(long)]
        no_digest_cache: bool,
    },
    /// Make a kept previous generation the running one again.
    Rollback {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// The generation whose topology to restore.
        generation: u64,
        #[command(flatten)]
        mutation: MutationArguments,
    },
    /// The daemon's generation, readiness, health summary and a table of its peers.
    Status {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// Print the status view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The routes the daemon announces, per peer (prefix, next hop, AS path, communities).
    Routes {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// Only this peer (name or address).
        #[arg(long)]
        peer: Option<String>,
        /// Print the routes view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's RPKI: VRP sync, caches, policy, and the invalid and not-found routes.
    Rpki {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// List every route, not only the invalid and not-found ones.
        #[arg(long)]
        all: bool,
        /// Print the daemon's view as it is.
        #[arg(long)]
        json: bool,
    },
    /// What the edge routers hold (BMP): hijack, sub-prefix hijack and visibility findings.
    Visibility {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// Print the daemon's view as it is.
        #[arg(long)]
        json: bool,
    },
    /// Per-service health checks, drains and what the location does with each service.
    Health {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// Print the health view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a service (or the whole location, confirmed with --location) here by hand;
    /// persisted across restarts until `--undrain`. The floor still holds unless --force.
    Drain {
        #[command(flatten)]
        daemon: DaemonArguments,
        #[command(flatten)]
        arguments: DrainArguments,
        /// Print the drain view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The generations the daemon keeps (time, author, hash, summary): what rollback can restore.
    Generations {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// Print the generations view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The topology the daemon runs (or keeps).
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Which service is announced where: services × locations (or regions), offline from
    /// topology files or live from a fleet file.
    Matrix {
        /// The topology files (without --fleet).
        #[arg(required_unless_present = "fleet", conflicts_with = "fleet")]
        files: Vec<PathBuf>,
        /// Ask every daemon of this fleet file (health, drains) instead.
        #[arg(long, value_name = "FLEET_FILE")]
        fleet: Option<PathBuf>,
        /// Columns: locations, or regions (counts of locations).
        #[arg(long, default_value = "location", value_parser = ["location", "region"])]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// The topology as a graph: prefixes → bindings → services → regions and locations.
    Graph {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `dot` (Graphviz source) or `svg` (runs Graphviz's `dot`).
        #[arg(long, value_enum, default_value = "dot")]
        format: topoctl::graph_command::Format,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// BYOIP onboarding: tokens, ownership and ROA checks, signed evidence, the LOA document.
    Prefix(topoctl::onboard::command::PrefixArguments),
    /// A certificate authority for the control API: init, server, issue.
    #[command(subcommand)]
    Pki(topoctl::pki_command::PkiCommand),
    /// The fleet lock's lease at a daemon: who holds it; break it (docs/rollouts.md).
    #[command(subcommand)]
    Lease(LeaseCommand<DaemonArguments>),
    /// Deploy a topology change to a fleet in gated canary waves (docs/rollouts.md).
    #[command(
        subcommand,
        after_help = "Exit codes: 0 completed, 1 error, 3 refused before anything was applied \
                      (plan guards, wave selectors, no canary, a daemon's own plan), 6 a \
                      location unreachable in the pre-flight (nothing applied), 7 a gate failed \
                      and everything was rolled back, 8 paused or aborted."
    )]
    Rollout(rollout_command::RolloutCommand),
}

#[derive(Subcommand, Debug)]
enum TopologyCommand {
    /// Print the running generation's sources (or a kept one's), or write them into a directory.
    Get {
        #[command(flatten)]
        daemon: DaemonArguments,
        /// A kept generation instead of the running one (`topoctl generations`).
        #[arg(long)]
        generation: Option<u64>,
        /// Write the files into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overwrite files that exist in --out.
        #[arg(long)]
        force: bool,
        /// Print the topology view as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn run_lease(command: LeaseCommand<DaemonArguments>) -> Result<i32, Stop> {
    let daemon = command.daemon().clone();
    let json = command.json();
    let request = command.request().map_err(Stop::Usage)?;
    Ok(call(&daemon, |client| async move {
        let answer = topoctl::lease_command::run(&client, request).await;
        topoctl::connection::show(
            answer,
            json,
            topoctl::lease_command::LeaseAnswer::text,
            |_| EXIT_NO_CHANGE,
        )
    }))
}

#[derive(Args, Debug)]
struct IntentArguments {
    /// A service the change deliberately affects (G2): `service:NAME`. Repeatable.
    #[arg(long = "intent", value_name = "service:NAME")]
    intents: Vec<String>,
    /// A guard exception: `global-withdrawal:CIDR` (G3) or `blast-radius` (G4). Repeatable.
    #[arg(long = "override", value_name = "OVERRIDE")]
    overrides: Vec<String>,
}

/// What `push` and `rollback` are conditioned on, and how they answer.
#[derive(Args, Debug)]
struct MutationArguments {
    /// Act only if the daemon runs this generation (compare-and-swap).
    #[arg(long)]
    expect_generation: Option<u64>,
    /// Act under the fleet lock's lease of HOLDER with fencing TOKEN.
    #[arg(long, value_name = "HOLDER:TOKEN")]
    lease: Option<String>,
    /// Ask the daemon for the plan and verdict; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the outcome (or the dry run's plan) as JSON.
    #[arg(long)]
    json: bool,
}

impl MutationArguments {
    /// The compare-and-swap and the lease claim (parsed).
    fn apply(&self) -> Result<Apply, String> {
        Ok(Apply {
            expect_generation: self.expect_generation,
            lease: self.lease.as_deref().map(parse_claim).transpose()?,
        })
    }
}

impl IntentArguments {
    fn intent(&self) -> Result<Intent, String> {
        Intent::from_arguments(&self.intents, &self.overrides).map_err(|error| error.to_string())
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The exit status of a program ended by SIGPIPE (128 + 13), what shells expect of a reader
/// that went away (`topoctl plan --json | head`).
const EXIT_BROKEN_PIPE: i32 = 141;

/// `print!` panics when stdout is a pipe whose reader has gone (Rust ignores SIGPIPE, and
/// restoring it needs `unsafe`): end quietly with [`EXIT_BROKEN_PIPE`] instead of a panic
/// message and exit 101. Any other panic goes to the default hook.
fn exit_quietly_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    // Man pages and completions for the Debian package (packaging/build-deb.sh).
    if let Some(code) =
        topologyd_packaging::generate_if_asked(<Arguments as clap::CommandFactory>::command)
    {
        return code;
    }
    let arguments = match Arguments::try_parse() {
        Ok(arguments) => arguments,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                exit(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(arguments.command) {
        Ok(code) | Err(Stop::Exit(code)) => exit(code),
        Err(Stop::Usage(message)) => {
            eprintln!("topoctl: {message}");
            exit(EXIT_USAGE)
        }
    }
}

/// Why a command stopped early: a usage or connection error (exit 1, message printed by
/// `main`), or an exit code whose report is already printed.
#[derive(Debug)]
enum Stop {
    Usage(String),
    Exit(i32),
}

impl From<String> for Stop {
    fn from(message: String) -> Stop {
        Stop::Usage(message)
    }
}

/// Reads topology files. A file that cannot be read is a usage error (exit 1); a file that is
/// not UTF-8 is an invalid topology, reported at `file:line:column` of its first bad byte
/// (exit 4), as the daemon reports it for a pushed bundle.
fn read(files: &[PathBuf], json: bool) -> Result<Vec<Source>, Stop> {
    load_sources(files).map_err(|error| load_failure(error, json))
}

/// A file that cannot be read stops the command: an invalid one (not UTF-8, too large) with
/// its diagnostic, anything else as a usage error.
fn load_failure(error: LoadError, json: bool) -> Stop {
    match error.invalid {
        Some(diagnostic) => {
            report_diagnostics(
                &Diagnostics {
                    items: vec![diagnostic],
                },
                json,
            );
            Stop::Exit(EXIT_INVALID)
        }
        None => Stop::Usage(error.to_string()),
    }
}

/// Compiles, printing diagnostics; `Err(code)` when it does not compile.
fn compile_or_report(sources: Vec<Source>, generation: u64, json: bool) -> Result<Topology, i32> {
    match compile_owned(sources, generation) {
        Ok(topology) => {
            if !json {
                for warning in topology.warnings() {
                    eprintln!("{warning}");
                }
            }
            Ok(topology)
        }
        Err(diagnostics) => {
            report_diagnostics(&diagnostics, json);
            Err(EXIT_INVALID)
        }
    }
}

fn report_diagnostics(diagnostics: &Diagnostics, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "valid": false, "diagnostics": diagnostics }))
                .unwrap_or_default()
        );
    } else {
        eprint!("{diagnostics}");
        if !diagnostics.to_string().ends_with('\n') {
            eprintln!();
        }
    }
}

fn run(command: Command) -> Result<i32, Stop> {
    match command {
        Command::Rollout(command) => Ok(rollout_command::run_rollout(command)),
        Command::Pki(command) => Ok(topoctl::pki_command::run(&command)),
        Command::Prefix(arguments) => Ok(topoctl::onboard::command::run(arguments)),
        Command::Matrix {
            files,
            fleet: Some(fleet),
            by,
            json,
        } if files.is_empty() => Ok(topoctl::matrix_command::live(&fleet, &by, json)),
        Command::Matrix {
            files, by, json, ..
        } => Ok(match read_and_compile(&files, json)? {
            Ok(topology) => topoctl::matrix_command::offline(&topology, &by, json),
            Err(code) => code,
        }),
        Command::Graph {
            files,
            format,
            output,
        } => Ok(match read_and_compile(&files, false)? {
            Ok(topology) => topoctl::graph_command::run(&topology, format, output.as_deref()),
            Err(code) => code,
        }),
        Command::Lease(command) => run_lease(command),
        Command::Check { files, vrps, json } => check(&files, &vrps, json),
        Command::Compile {
            location,
            files,
            json,
        } => compile(&location, &files, json),
        Command::Plan {
            old,
            new,
            intent,
            vrps,
            json,
        } => plan(&old, &new, &intent, &vrps, json),
        Command::Explain {
            address,
            files,
            json,
        } => explain(address, &files, json),
        Command::Push {
            daemon,
            files,
            intent,
            mutation,
            full_bundle,
            no_digest_cache,
        } => {
            let apply = mutation.apply()?;
            let intent = intent.intent()?;
            let MutationArguments { dry_run, json, .. } = mutation;
            if full_bundle {
                // Every file travels: read them all, hash none.
                let bundle = SourceBundle::from_files(read(&files, json)?);
                refuse_revoked(|| Ok(bundle.sources.clone()), json)?;
                return Ok(call(&daemon, |client| {
                    let client = client.with_full_bundles(true);
                    push_command::run(client, bundle, intent, apply, dry_run, json)
                }));
            }
            let bundle = local_bundle_of(&files, !no_digest_cache, json)?;
            refuse_revoked(|| bundle.sources(), json)?;
            let texts = (!no_digest_cache)
                .then(DigestCache::default_directory)
                .flatten()
                .and_then(|directory| TextCache::open(&directory));
            Ok(call(&daemon, |client| {
                let client = client.with_text_cache(texts);
                push_command::run(client, bundle, intent, apply, dry_run, json)
            }))
        }
        Command::Rollback {
            daemon,
            generation,
            mutation,
        } => {
            let apply = mutation.apply()?;
            let MutationArguments { dry_run, json, .. } = mutation;
            Ok(call(&daemon, |client| {
                rollback_command::run(client, generation, apply, dry_run, json)
            }))
        }
        command => Ok(run_read_or_drain(command)),
    }
}

/// The daemon commands without local input: status, routes, health, drain, generations,
/// topology get.
fn run_read_or_drain(command: Command) -> i32 {
    match command {
        Command::Status { daemon, json } => {
            call(&daemon, |client| status_command::run(client, json))
        }
        Command::Routes { daemon, peer, json } => {
            call(&daemon, |client| routes_command::run(client, peer, json))
        }
        Command::Health { daemon, json } => {
            call(&daemon, |client| health_command::run(client, json))
        }
        Command::Generations { daemon, json } => {
            call(&daemon, |client| generations_command::run(client, json))
        }
        Command::Topology(TopologyCommand::Get {
            daemon,
            generation,
            out,
            force,
            json,
        }) => call(&daemon, |client| {
            topology_command::run(client, generation, out, force, json)
        }),
        Command::Visibility { daemon, json } => {
            call(&daemon, |client| visibility_command::run(client, json))
        }
        Command::Rpki { daemon, all, json } => {
            call(&daemon, |client| rpki_command::run(client, all, json))
        }
        Command::Drain {
            daemon,
            arguments,
            json,
        } => call(&daemon, |client| {
            drain_command::run(client, arguments, json)
        }),
        _ => EXIT_USAGE,
    }
}

/// Reads and compiles topology files, printing diagnostics; `Err(code)` when they do not
/// compile.
fn read_and_compile(files: &[PathBuf], json: bool) -> Result<Result<Topology, i32>, Stop> {
    Ok(compile_or_report(read(files, json)?, 0, json))
}

/// `topoctl check`: validate, and with `--vrps` judge every announced route's origin.
fn check(files: &[PathBuf], vrps: &VrpArguments, json: bool) -> Result<i32, Stop> {
    let sources = read(files, json)?;
    let vrps = vrps.load()?;
    match (compile_or_report(sources, 0, json), vrps) {
        (Ok(topology), Some(vrps)) => check_rpki(&topology, &vrps, json),
        (Ok(topology), None) => {
            report_valid(&topology, json);
            Ok(EXIT_NO_CHANGE)
        }
        (Err(code), _) => Ok(code),
    }
}

/// A valid topology's summary: its hash, warnings and sizes.
fn report_valid(topology: &Topology, json: bool) {
    if json {
        print_valid_json(
            topology,
            json!({
                "locations": topology.locations().len(),
                "services": topology.services().len(),
                "prefixes": topology.prefixes().len(),
                "routes": topology.route_count(),
            }),
        );
    } else {
        println!("valid: {}", sizes(topology));
    }
}

/// `N locations, N services, N prefixes, N routes; hash H`.
fn sizes(topology: &Topology) -> String {
    format!(
        "{} locations, {} services, {} prefixes, {} routes; hash {}",
        topology.locations().len(),
        topology.services().len(),
        topology.prefixes().len(),
        topology.route_count(),
        topology.hash_hex()
    )
}

/// `{"valid": true, "hash", "warnings"}` and `fields`, pretty-printed.
fn print_valid_json(topology: &Topology, fields: Value) {
    let mut value = json!({
        "valid": true,
        "hash": topology.hash_hex(),
        "warnings": topology.warnings(),
    });
    if let (Some(object), Value::Object(fields)) = (value.as_object_mut(), fields) {
        object.extend(fields);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

/// `topoctl check --vrps`: every announced route is judged as if newly announced (a plan from
/// an empty topology), so G5 names each RPKI-invalid one; any such route exits 3.
fn check_rpki(topology: &Topology, vrps: &VrpSet, json: bool) -> Result<i32, Stop> {
    let empty = compile_owned(Vec::new(), 0).map_err(|error| error.to_string())?;
    let judged = plan_with_vrps(&empty, topology, &Intent::default(), Some(vrps));
    let invalid: Vec<&GuardViolation> = judged.violations_of(Guard::G5).collect();
    if json {
        print_valid_json(
            topology,
            json!({
                "rpki": judged.rpki,
                "rpki_invalid": invalid,
                "callouts": judged.callouts,
            }),
        );
    } else {
        let text = judged.render_text();
        for line in text.lines().filter(|line| {
            line.starts_with("rpki:")
                || line.contains("G5 route")
                || line.contains("declares roa")
                || line.contains("not found in the RPKI")
        }) {
            println!("{}", line.trim_start());
        }
        let verdict = if invalid.is_empty() {
            "valid".to_string()
        } else {
            format!(
                "compiles, but {} route(s) would be announced RPKI-invalid",
                invalid.len()
            )
        };
        println!("{verdict}: {}", sizes(topology));
    }
    Ok(if invalid.is_empty() {
        EXIT_NO_CHANGE
    } else {
        EXIT_REFUSED
    })
}

/// `topoctl compile`: the routes a location announces.
fn compile(location: &str, files: &[PathBuf], json: bool) -> Result<i32, Stop> {
    let topology = match read_and_compile(files, json)? {
        Ok(topology) => topology,
        Err(code) => return Ok(code),
    };
    let desired = topology
        .desired(location)
        .map_err(|error| error.to_string())?;
    if json {
        let routes: Vec<_> = desired.iter().map(|route| route.to_announced()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "location": location,
                "hash": topology.hash_hex(),
                "routes": routes,
            }))
            .unwrap_or_default()
        );
    } else {
        println!("{} routes announced at {location}:", desired.len());
        for route in &desired {
            let communities: Vec<String> = route
                .attributes
                .communities
                .iter()
                .map(ToString::to_string)
                .chain(
                    route
                        .attributes
                        .large_communities
                        .iter()
                        .map(ToString::to_string),
                )
                .collect();
            println!(
                "  {:<22} service {:<14} binding {:<22} origin AS{} prepend {} med {} communities [{}]",
                route.prefix.to_string(),
                route.service,
                route.binding.to_string(),
                route.origin_asn,
                route.attributes.as_path_prepend,
                route
                    .attributes
                    .med
                    .map_or_else(|| "-".to_string(), |med| med.to_string()),
                communities.join(" ")
            );
        }
    }
    Ok(EXIT_NO_CHANGE)
}

/// `topoctl plan`: what changes between two topologies and the guards' verdict.
fn plan(
    old: &[PathBuf],
    new: &[PathBuf],
    intent: &IntentArguments,
    vrps: &VrpArguments,
    json: bool,
) -> Result<i32, Stop> {
    let intent = intent.intent()?;
    let vrps = vrps.load()?;
    // The old topology's warnings are today's; the plan carries the new one's.
    let old = match compile_owned(read(old, json)?, 0) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            report_diagnostics(&diagnostics, json);
            return Ok(EXIT_INVALID);
        }
    };
    // Compiled against the old topology, so that a finding involving two places is
    // reported at the one the change added. Its warnings are part of the plan.
    let new = read(new, json)?;
    refuse_revoked(|| Ok(new.clone()), json)?;
    let new = match compile_against(new, 1, &old) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            report_diagnostics(&diagnostics, json);
            return Ok(EXIT_INVALID);
        }
    };
    let plan = plan_with_vrps(&old, &new, &intent, vrps.as_ref());
    if json {
        println!("{}", plan.to_json());
    } else {
        print!("{}", plan.render_text());
    }
    Ok(plan.exit_code())
}

/// `topoctl explain`: which binding and service handle an address, and where it is announced.
fn explain(address: IpAddr, files: &[PathBuf], json: bool) -> Result<i32, Stop> {
    let topology = match read_and_compile(files, json)? {
        Ok(topology) => topology,
        Err(code) => return Ok(code),
    };
    let explanation = topology.explain(address);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).unwrap_or_default()
        );
    } else {
        println!("{address}:");
        for reason in &explanation.reasons {
            println!("  - {reason}");
        }
        if !explanation.announced_at.is_empty() {
            println!(
                "  announced at {} location(s): {}",
                explanation.announced_at.len(),
                collapse_locations(&explanation.announced_at)
            );
        }
    }
    Ok(EXIT_NO_CHANGE)
}

/// Refuses (exit 3) a topology that still advertises a prefix whose onboarding was revoked.
/// `sources` is called only when there are revocations; a file it finds changed since it was
/// hashed stops the command as the push would (exit 5).
fn refuse_revoked(
    sources: impl FnOnce() -> Result<Vec<Source>, ClientError>,
    json: bool,
) -> Result<(), Stop> {
    let mut failure = None;
    let refused = topoctl::onboard::revocation::check_sources_with(|| {
        sources().map_err(|error| {
            let message = error.to_string();
            failure = Some(error);
            message
        })
    });
    if let Some(error) = failure {
        return Err(Stop::Exit(topoctl::connection::report_error(&error, json)));
    }
    let refused = refused?;
    if refused.is_empty() {
        return Ok(());
    }
    if json {
        println!("{}", json!({"refused": refused}));
    } else {
        eprint!("{}", topoctl::onboard::revocation::render_refusal(&refused));
    }
    Err(Stop::Exit(EXIT_REFUSED))
}

/// The files of a push, each file's digest remembered from an earlier push when `cached` and
/// its size and times have not moved; errors as [`read`] reports them.
fn local_bundle_of(files: &[PathBuf], cached: bool, json: bool) -> Result<LocalBundle, Stop> {
    let mut cache = cached
        .then(DigestCache::default_directory)
        .flatten()
        .map(|directory| DigestCache::open(&directory));
    let bundle =
        LocalBundle::load(files, cache.as_mut()).map_err(|error| load_failure(error, json))?;
    if let Some(cache) = &mut cache
        && let Err(error) = cache.save(bundle.stamps())
    {
        eprintln!(
            "topoctl: the digests of the files pushed are not remembered in {} ({error}): the next push hashes them again; set TOPOCTL_CACHE_DIR to a directory of yours, or push with --no-digest-cache",
            cache.path().display()
        );
    }
    Ok(bundle)
}
