//! Golden conformance replays of the engine core: every directory under
//! `daemon/tests/conformance/` is one case, with an `events` script (one event a line, after the
//! time in milliseconds), the `daemon.toml` and topology files it names, and the `effects` the
//! core must decide for each event, rendered one a line. The test replays each script through
//! `EngineCore::handle` and fails with a line diff when the effects differ from the recorded
//! ones; `TOPOLOGYD_UPDATE_GOLDEN=1 cargo test -p topologyd --test conformance` records them
//! again (review the diff before committing it).
//!
//! Events (`<ms> <event> <arguments>`):
//! - `start <topology.toml> generation=N [drain=SERVICE|drain=location]`: the running generation
//!   at start, and the drains persisted before it;
//! - `manage-addresses [bound=A,B] [foreign=C]`: the start-up reconciliation with the interface;
//! - `peer-started NAME`, `peer NAME established=BOOL synced=VERSION|none`;
//! - `apply ID [expect=N]`, `rollback ID [expect=N]`: a mutation reaches the engine;
//! - `compiled ID <topology.toml> [base=N] [intent=LINE;LINE] [who=NAME] [rollback_of=N]`: its
//!   compile finished (the runner prepares it against the running generation, as the shell's
//!   compile job does);
//! - `committed ID ok` or `committed ID error MESSAGE`;
//! - `health SERVICE=BOOL... [fail_static]`, `drains [location] [service=NAME...]`;
//! - `bound ADDRESS ok|foreign|error`, `unbound ADDRESS ok|error`, `listed [A,B]`;
//! - `reload <daemon.toml> [health_restart]`, `tick`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use topologyd::engine::core::{EngineCore, Event, Now, PeerSync, Running};
use topologyd::engine::prepare::{PrepareContext, location_routes, prepare};
use topologyd::engine_api::{
    EngineError, EngineErrorKind, MutationChecks, SourceBundle, SourceFile,
};
use topologyd::state_store::{DrainState, GenerationMeta, ServiceDrain};
use topologyd_config::Source;
use topologyd_config::daemon::{DaemonConfig, parse_daemon_config};
use topologyd_topology::compile_owned;

const UPDATE: &str = "TOPOLOGYD_UPDATE_GOLDEN";

/// One case being replayed.
struct Replay {
    directory: PathBuf,
    config: DaemonConfig,
    core: Option<EngineCore>,
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))
}

fn bundle(path: &Path) -> Result<SourceBundle, String> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(SourceBundle {
        sources: vec![SourceFile {
            name,
            text: read(path)?.into(),
        }],
    })
}

fn daemon_config(path: &Path) -> Result<DaemonConfig, String> {
    let source = Source::new(path.display().to_string(), read(path)?);
    parse_daemon_config(&source).map_err(|diagnostics| diagnostics.to_string())
}

/// `key=value` arguments of an event line, and its bare words.
fn arguments<'a>(words: &[&'a str]) -> (BTreeMap<&'a str, &'a str>, Vec<&'a str>) {
    let mut named = BTreeMap::new();
    let mut bare = Vec::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) => {
                named.insert(key, value);
            }
            None => bare.push(*word),
        }
    }
    (named, bare)
}

/// The compare-and-swap a script's `expect=N` asks for (no lease, no deadline).
fn expectation(named: &BTreeMap<&str, &str>) -> Result<MutationChecks, String> {
    Ok(MutationChecks {
        expected_generation: named
            .get("expect")
            .map(|_| number(named.get("expect"), "expect"))
            .transpose()?,
        ..MutationChecks::default()
    })
}

fn number(text: Option<&&str>, what: &str) -> Result<u64, String> {
    text.ok_or_else(|| format!("`{what}` is missing"))?
        .parse()
        .map_err(|error| format!("`{what}`: {error}"))
}

fn addresses(list: Option<&&str>) -> Result<BTreeSet<IpNet>, String> {
    list.map_or(Ok(BTreeSet::new()), |list| {
        list.split(',')
            .filter(|address| !address.is_empty())
            .map(|address| {
                address
                    .parse()
                    .map_err(|error| format!("`{address}`: {error}"))
            })
            .collect()
    })
}

impl Replay {
    fn core(&mut self) -> Result<&mut EngineCore, String> {
        self.core
            .as_mut()
            .ok_or_else(|| "no `start` event yet".to_owned())
    }

    /// Replays one event line; returns the effects rendered one a line.
    fn replay(&mut self, line: &str) -> Result<Vec<String>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [time, name, rest @ ..] = words.as_slice() else {
            return Err("an event is `<ms> <event> <arguments>`".into());
        };
        let milliseconds: u64 = time.parse().map_err(|error| format!("time: {error}"))?;
        let now = Now {
            monotonic: Duration::from_millis(milliseconds),
            unix_seconds: 1_700_000_000 + milliseconds / 1000,
            unix_ms: 1_700_000_000_000 + milliseconds,
        };
        let (named, bare) = arguments(rest);
        let event = match *name {
            "start" => return self.start(&named, &bare, now),
            "manage-addresses" => {
                let bound = addresses(named.get("bound"))?;
                let foreign = addresses(named.get("foreign"))?;
                self.core()?.manage_addresses(bound, foreign, now);
                return Ok(Vec::new());
            }
            "peer-started" => {
                let peer = bare.first().ok_or("peer-started NAME")?;
                self.core()?.peer_started(peer);
                return Ok(Vec::new());
            }
            "peer" => Event::PeerReported {
                peer: (*bare.first().ok_or("peer NAME")?).to_owned(),
                sync: PeerSync {
                    established: named.get("established") == Some(&"true"),
                    version_synced: match named.get("synced") {
                        None | Some(&"none") => None,
                        synced => Some(number(synced, "synced")?),
                    },
                },
            },
            "apply" | "rollback" => Event::MutationRequested {
                request: number(bare.first(), "request id")?,
                checks: expectation(&named)?,
            },
            "compiled" => self.compiled(&named, &bare)?,
            "committed" => Event::Committed {
                request: number(bare.first(), "request id")?,
                result: match bare.get(1) {
                    Some(&"ok") => Ok(()),
                    _ => Err(EngineError {
                        kind: EngineErrorKind::NoSpace,
                        message: bare.get(2..).unwrap_or_default().join(" "),
                        detail: None,
                        generation: None,
                        plan_hash: None,
                    }),
                },
            },
            "health" => Event::HealthVerdicts {
                verdicts: named
                    .iter()
                    .map(|(service, healthy)| ((*service).to_owned(), *healthy == "true"))
                    .collect(),
                fail_static: bare.contains(&"fail_static"),
            },
            "drains" => Event::DrainsPersisted {
                drains: drains(&named, &bare),
            },
            "bound" => Event::AddressBound {
                address: addresses(bare.first())?
                    .pop_first()
                    .ok_or("bound ADDRESS")?,
                result: match bare.get(1) {
                    Some(&"ok") => Ok(false),
                    Some(&"foreign") => Ok(true),
                    _ => Err("netlink error".into()),
                },
            },
            "unbound" => Event::AddressUnbound {
                address: addresses(bare.first())?
                    .pop_first()
                    .ok_or("unbound ADDRESS")?,
                result: match bare.get(1) {
                    Some(&"ok") => Ok(()),
                    _ => Err("netlink error".into()),
                },
            },
            "listed" => Event::AddressesListed {
                present: addresses(bare.first())?,
            },
            "reload" => {
                let path = self.directory.join(bare.first().ok_or("reload FILE")?);
                let config = daemon_config(&path)?;
                let before = std::mem::replace(&mut self.config, config);
                Event::Reload {
                    request: 0,
                    before: before.peers,
                    after: self.config.peers.clone(),
                    min_other_locations: self.config.health.min_other_locations,
                    health_restart_needed: bare.contains(&"health_restart"),
                }
            }
            "tick" => Event::Tick,
            other => return Err(format!("unknown event `{other}`")),
        };
        let effects = self.core()?.handle(event, now);
        Ok(effects.iter().map(ToString::to_string).collect())
    }

    fn start(
        &mut self,
        named: &BTreeMap<&str, &str>,
        bare: &[&str],
        now: Now,
    ) -> Result<Vec<String>, String> {
        let file = bare.first().ok_or("start TOPOLOGY")?;
        let generation = number(named.get("generation"), "generation")?;
        let bundle = bundle(&self.directory.join(file))?;
        let sources = bundle
            .sources
            .iter()
            .map(|file| Source::new(file.name.clone(), file.text.clone()))
            .collect();
        let topology =
            compile_owned(sources, generation).map_err(|diagnostics| diagnostics.to_string())?;
        let routes = location_routes(&topology, &self.config.location)?;
        let meta = GenerationMeta {
            generation,
            hash: topology.hash_hex(),
            applied_at: 0,
            who: "bootstrap".into(),
            intent: Vec::new(),
        };
        let running = Running {
            topology: Arc::new(topology),
            meta,
            routes: Arc::new(routes),
        };
        let mut core = EngineCore::new(
            self.config.location.clone(),
            self.config.health.min_other_locations,
            running,
            drains(named, bare),
        );
        let effects = core.start(now);
        self.core = Some(core);
        Ok(effects.iter().map(ToString::to_string).collect())
    }

    /// Prepares a mutation's topology against the running generation, as the compile job does.
    fn compiled(&mut self, named: &BTreeMap<&str, &str>, bare: &[&str]) -> Result<Event, String> {
        let request = number(bare.first(), "request id")?;
        let path = self
            .directory
            .join(bare.get(1).ok_or("compiled ID TOPOLOGY")?);
        let bundle = bundle(&path)?;
        let intent: Vec<String> = named
            .get("intent")
            .map(|lines| lines.split(';').map(str::to_owned).collect())
            .unwrap_or_default();
        let rollback_of = named
            .get("rollback_of")
            .map(|_| number(named.get("rollback_of"), "rollback_of"))
            .transpose()?;
        let config = self.config.clone();
        let core = self.core()?;
        let running = core.running.clone();
        let base_generation = match named.get("base") {
            Some(_) => number(named.get("base"), "base")?,
            None => running.meta.generation,
        };
        let context = PrepareContext {
            old: &running.topology,
            old_routes: &running.routes,
            base_generation,
            next_generation: running.meta.generation + 1,
            location: &config.location,
            config: &config,
            rpki: &Default::default(),
        };
        let intent = topologyd_topology::Intent::from_lines(&intent)
            .map_err(|error| format!("intent: {error}"))?;
        let result = prepare(&context, bundle, None, intent, rollback_of);
        Ok(Event::Compiled {
            request,
            base_generation,
            checks: expectation(named)?,
            result: Box::new(result),
            who: named.get("who").map_or("alice", |who| *who).to_owned(),
            rollback_of,
        })
    }
}

/// The drains of a `start` or `drains` event.
fn drains(named: &BTreeMap<&str, &str>, bare: &[&str]) -> DrainState {
    let mut drains = DrainState {
        drained: bare.contains(&"location"),
        who: "operator".into(),
        ..DrainState::default()
    };
    for (key, value) in named {
        if *key == "service" || *key == "drain" {
            for service in value.split(',') {
                drains.services.insert(
                    service.to_owned(),
                    ServiceDrain {
                        who: "operator".into(),
                        ..ServiceDrain::default()
                    },
                );
            }
        }
    }
    drains
}

/// Replays one case: every event line, then its effects indented under it.
fn replay_case(directory: &Path) -> Result<String, String> {
    let config = daemon_config(&directory.join("daemon.toml"))?;
    let mut replay = Replay {
        directory: directory.to_owned(),
        config,
        core: None,
    };
    let mut rendered = String::new();
    for (number, line) in read(&directory.join("events"))?.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let effects = replay
            .replay(line)
            .map_err(|error| format!("{}/events:{}: {error}", directory.display(), number + 1))?;
        rendered.push_str(&format!("> {line}\n"));
        for effect in effects {
            rendered.push_str(&format!("  {effect}\n"));
        }
    }
    Ok(rendered)
}

/// The lines of `expected` and `actual` that differ, marked `-` and `+`, with their numbers.
fn line_diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let mut diff = String::new();
    for index in 0..expected.len().max(actual.len()) {
        let (before, after) = (expected.get(index), actual.get(index));
        if before != after {
            if let Some(before) = before {
                diff.push_str(&format!("{:>4} - {before}\n", index + 1));
            }
            if let Some(after) = after {
                diff.push_str(&format!("{:>4} + {after}\n", index + 1));
            }
        }
    }
    diff
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("{}: {error}", root.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("events").is_file())
        .collect();
    cases.sort();
    cases
}

#[test]
fn golden_replays_match_the_recorded_effects() {
    let update = std::env::var_os(UPDATE).is_some_and(|value| value == "1");
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        cases.len() >= 8,
        "the conformance cases are missing: {cases:?}"
    );
    for case in &cases {
        let actual = match replay_case(case) {
            Ok(actual) => actual,
            Err(error) => {
                failures.push(error);
                continue;
            }
        };
        let golden = case.join("effects");
        if update {
            fs::write(&golden, &actual)
                .unwrap_or_else(|error| panic!("{}: {error}", golden.display()));
            continue;
        }
        let expected = fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}: the effects differ from the recorded ones (re-record with {UPDATE}=1 if the change is intended):\n{}",
                golden.display(),
                line_diff(&expected, &actual)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_changed_effect_fails_with_a_readable_diff() {
    let diff = line_diff("> 0 tick\n  unbind 192.0.2.1/32\n", "> 0 tick\n");
    assert_eq!(diff, "   2 -   unbind 192.0.2.1/32\n");
    let diff = line_diff("  publish version=2\n", "  publish version=3\n");
    assert!(diff.contains("- ") && diff.contains("+ "), "{diff}");
}
