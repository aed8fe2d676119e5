//! `topologyd`: the per-location BGP route-advertisement daemon.
//!
//! Start-up order (nothing binds a socket before the configuration, the keys and the running
//! generation are known good): parse and validate the config → the start-up checks that need no
//! socket (`preflight.rs`: state directory, bootstrap topology and location, TLS material, audit
//! log, listener collisions, MD5 keys; `--check` runs exactly these and stops) →
//! load the running generation from the state directory (or compile the bootstrap topology) →
//! bind the BGP listeners, the admin and the control listeners → start the peers → serve.
//! SIGHUP reloads the daemon configuration (peers added, removed or changed; see
//! `PeerConfig::session_reset_needed` for which changes reset a session); SIGTERM and SIGINT
//! drain within the configured grace time. systemd notifications go to `$NOTIFY_SOCKET` when it
//! is set: READY=1 once the running generation is loaded, the listeners are bound and the peer
//! tasks are started (never gated on remote routers: `/ready` tells whether enough peers hold
//! the generation), STATUS= with how many peers are up whenever that changes, RELOADING,
//! STOPPING, and WATCHDOG only while the engine task answers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use topologyd::build_info;
use topologyd::control::{AuditLog, ControlServer, ControlSettings, Role};
use topologyd::engine::{Engine, EngineEvent, read_md5_key};
use topologyd::engine_api::EngineCommand;
use topologyd::logging::{self, LogFormat};
use topologyd::metrics::Metrics;
use topologyd::preflight;
use topologyd::readiness::Readiness;
use topologyd::sd_notify::{Notifier, watchdog_timeout};
use topologyd::sockopt;
use topologyd_config::Source;
use topologyd_config::daemon::{DaemonConfig, parse_daemon_config};
use topologyd_config::startup::locate;
use topologyd_transport::admin::AdminServer;
use topologyd_transport::tls::{TlsFiles, server_config};
use tracing::{error, info, warn};

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure to start (state, sockets).
const EXIT_START: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "topologyd",
    version = topologyd::build_info::LONG_VERSION,
    about = "Announces this location's share of the service topology to its BGP peers.",
    long_about = "Announces this location's share of the service topology to its BGP peers.\n\n\
        Reads the daemon configuration (TOML), loads the last applied topology generation from \
        the state directory (or compiles `bootstrap_topology` on first start), and keeps every \
        peer's Adj-RIB-Out equal to what the running generation says this location announces."
)]
struct Arguments {
    /// The daemon configuration file.
    #[arg(long, short, default_value = "/etc/topologyd/topologyd.toml")]
    config: PathBuf,
    /// Run every start-up check that needs no socket (configuration, state directory,
    /// bootstrap topology and location, TLS material, audit log, listener addresses, MD5 keys)
    /// and exit: 0 when start-up would get past them, 2 with the errors otherwise.
    #[arg(long)]
    check: bool,
    /// Rewrite every generation kept in the state directory in state format 1 (each source
    /// text inline), the format releases before format 2 read, and exit: run it with the
    /// daemon stopped, just before installing such a release (docs/upgrade.md, Downgrading).
    #[arg(long, conflicts_with = "check")]
    write_state_format_1: bool,
    /// Log line format: `text` (colours only on a terminal) or `json` (one object per line, for
    /// journald, Loki or ELK). Which lines are written is set by `TOPOLOGYD_LOG` (a filter such
    /// as `info` or `info,topologyd::peer=debug`; default `info`).
    #[arg(long, value_enum, env = "TOPOLOGYD_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// `--write-state-format-1`: the state directory's generations rewritten for an older release.
fn write_state_format_1(config: &PathBuf) -> ExitCode {
    let config = match load_config(config) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rewritten =
        topologyd::state_store::StateStore::open(&config.state_dir, config.retained_generations)
            .and_then(|store| store.rewrite_inline());
    match rewritten {
        Ok(generations) => {
            println!(
                "{}: {} generation file(s) rewritten in state format 1 ({generations:?}); a release before format 2 can read them now",
                config.state_dir.display(),
                generations.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "topologyd: {error}; run it again once fixed (files already in format 1 are skipped; stop the daemon first: it holds the state directory's lock)"
            );
            ExitCode::from(EXIT_START)
        }
    }
}

fn load_config(path: &PathBuf) -> Result<DaemonConfig, String> {
    load_config_source(path).map(|(config, _)| config)
}

fn load_config_source(path: &PathBuf) -> Result<(DaemonConfig, Source), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let source = Source::new(path.display().to_string(), text);
    parse_daemon_config(&source)
        .map(|config| (config, source))
        .map_err(|diagnostics| diagnostics.to_string())
}

/// Threads of the blocking pool (compiles, state and audit writes, large body parses). The
/// compile memory budget, not this, bounds concurrent compiles; systemd's `TasksMax=` is 256.
const MAX_BLOCKING_THREADS: usize = 64;

fn main() -> ExitCode {
    topologyd::memory::configure_allocator();
    if let Some(code) = topologyd_packaging::generate_if_asked(Arguments::command) {
        return code;
    }
    let arguments = Arguments::parse();
    if let Err(error) = logging::install(arguments.log_format) {
        eprintln!("topologyd: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if arguments.write_state_format_1 {
        return write_state_format_1(&arguments.config);
    }
    let config = match load_config_source(&arguments.config) {
        Ok((config, source)) => {
            let mode = if arguments.check {
                preflight::Mode::Check
            } else {
                preflight::Mode::Start
            };
            let findings = preflight::check(&config, mode);
            if !findings.is_empty() {
                eprintln!("{}", locate(&source, &findings));
                return ExitCode::from(EXIT_CONFIG);
            }
            config
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if arguments.check {
        println!("{}: valid", arguments.config.display());
        return ExitCode::SUCCESS;
    }
    info!(
        version = build_info::VERSION,
        commit = build_info::COMMIT,
        config = %arguments.config.display(),
        location = %config.location,
        "topologyd {} (commit {}) starting",
        build_info::VERSION,
        build_info::COMMIT
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Compiles, file writes and large body parses; well below the unit's TasksMax.
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    match runtime.block_on(serve(arguments.config, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::from(EXIT_START)
        }
    }
}

async fn serve(config_path: PathBuf, config: DaemonConfig) -> Result<(), String> {
    let notifier = Notifier::from_env().map_err(|error| error.to_string())?;
    let readiness = Readiness::new();
    let metrics = Metrics::with_readiness(readiness.clone());
    let control_tls = match &config.control {
        Some(control) => Some(
            server_config(&TlsFiles {
                certificate: control.certificate.clone(),
                private_key: control.private_key.clone(),
                ca: control.client_ca.clone(),
            })
            .map_err(|error| format!("control API {error}"))?,
        ),
        None => None,
    };
    let engine_config = config.clone();
    let engine_metrics = metrics.clone();
    let engine_readiness = readiness.clone();
    let mut engine = tokio::task::spawn_blocking(move || {
        Engine::start(engine_config, engine_metrics, engine_readiness)
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| error.to_string())?;

    let (shutdown_sender, shutdown) = watch::channel(false);
    let (event_sender, events) = mpsc::channel::<EngineEvent>(64);
    let (command_sender, commands) = mpsc::channel(16);

    bind_bgp_listeners(&config, &event_sender, &shutdown)?;
    if let Some(admin) = &config.admin {
        let server = AdminServer::bind(admin.listen, metrics.registry(), readiness.clone())
            .await
            .map_err(|error| error.to_string())?;
        info!(address = %server.local_addr(), "admin listener bound");
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = server.run(wait_for(stop)).await {
                error!(%error, "admin listener failed");
            }
        });
    }
    let visibility = start_bmp_station(&config, &engine, &metrics, &shutdown)?;
    if let (Some(control), Some(tls)) = (&config.control, control_tls) {
        start_control(
            control,
            tls,
            &mut engine,
            &command_sender,
            &shutdown,
            visibility,
        )
        .await?;
    }
    engine
        .start_addresses()
        .await
        .map_err(|error| error.to_string())?;
    engine.start_peers().map_err(|error| error.to_string())?;
    let generation = engine.generation();
    let mut engine_task = tokio::spawn(engine.run(commands, events));

    let notifier = notifier.map(Arc::new);
    if let Some(notifier) = notifier.clone() {
        // Started: systemd's start job is done whatever the routers do.
        let _ = notifier.ready(&format!(
            "generation {generation} loaded, {} peers starting",
            config.peers.len()
        ));
        tokio::spawn(report_status(notifier.clone(), readiness.subscribe()));
        if let Some(timeout) = watchdog_timeout() {
            tokio::spawn(watchdog(notifier.clone(), command_sender.clone(), timeout));
        }
    }

    let mut hangup = signal(SignalKind::hangup()).map_err(|error| error.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|error| error.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|error| error.to_string())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if let Some(notifier) = &notifier {
                    let _ = notifier.reloading("reloading the daemon configuration");
                }
                match load_config(&config_path) {
                    Ok(new_config) => {
                        let (done, result) = oneshot::channel();
                        if event_sender.send(EngineEvent::Reload { config: Box::new(new_config), done }).await.is_ok() {
                            match result.await {
                                Ok(Ok(report)) => info!(%report, "configuration reloaded"),
                                Ok(Err(message)) => error!(%message, "reload refused; the running configuration stays"),
                                Err(_) => error!("engine stopped during reload"),
                            }
                        }
                    }
                    Err(message) => error!("reload refused; the running configuration stays:\n{message}"),
                }
                if let Some(notifier) = &notifier {
                    let _ = notifier.ready(&format!("reloaded; {}", readiness.state().reason));
                }
            }
            // The engine only returns after a Shutdown event; anything else (a panic) leaves
            // a daemon that can no longer apply, reload or drain: exit, so that systemd
            // restarts it and the peers keep the routes through graceful restart.
            ended = &mut engine_task => {
                let _ = shutdown_sender.send(true);
                return Err(match ended {
                    Ok(()) => "the engine task ended unexpectedly".to_string(),
                    Err(error) => format!("the engine task failed: {error}"),
                });
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    info!("stopping");
    if let Some(notifier) = &notifier {
        let _ = notifier.stopping("draining BGP sessions");
    }
    let (done, drained) = oneshot::channel();
    if event_sender
        .send(EngineEvent::Shutdown { done })
        .await
        .is_ok()
    {
        let _ = drained.await;
    }
    let _ = shutdown_sender.send(true);
    let _ = engine_task.await;
    info!("stopped");
    Ok(())
}

/// Binds the BGP listeners, with the MD5 keys of every peer of the family installed before
/// listen(); each hands its accepted connections to the engine until `shutdown`.
fn bind_bgp_listeners(
    config: &DaemonConfig,
    event_sender: &mpsc::Sender<EngineEvent>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), String> {
    for address in &config.bgp_listen {
        let keys: Vec<_> = config
            .peers
            .iter()
            .filter(|peer| peer.address.is_ipv4() == address.is_ipv4())
            .filter_map(|peer| {
                read_md5_key(peer)
                    .ok()
                    .flatten()
                    .map(|key| (peer.address, key))
            })
            .collect();
        let gtsm = config
            .peers
            .iter()
            .filter_map(|peer| peer.ttl_security_hops)
            .max();
        let listener = sockopt::bind_listener(*address, &keys, gtsm)
            .map_err(|error| format!("BGP listener {address}: {error}"))?;
        info!(%address, "BGP listener bound");
        let events = event_sender.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, remote)) => {
                            if events.send(EngineEvent::Inbound { stream, remote }).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            warn!(%error, "BGP accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
        });
    }
    Ok(())
}

/// Opens the audit log and binds the control API (mTLS), serving until `shutdown`.
/// Starts the BMP station when `[bmp]` is configured; its view for the control API.
fn start_bmp_station(
    config: &DaemonConfig,
    engine: &Engine,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<watch::Receiver<Arc<topologyd_api::VisibilityView>>>, String> {
    let Some(bmp) = &config.bmp else {
        return Ok(None);
    };
    let (routes, engine_inputs) = engine.visibility_inputs();
    let station = topologyd::bmp::listener::start(
        bmp,
        topologyd::bmp::listener::StationInputs {
            local_asn: config.local_asn,
            router_id: config.router_id,
            routes,
            engine: engine_inputs,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        },
    )
    .map_err(|error| error.to_string())?;
    Ok(Some(station.view))
}

async fn start_control(
    control: &topologyd_config::daemon::ControlConfig,
    tls: Arc<rustls::ServerConfig>,
    engine: &mut Engine,
    command_sender: &mpsc::Sender<EngineCommand>,
    shutdown: &watch::Receiver<bool>,
    visibility: Option<watch::Receiver<Arc<topologyd_api::VisibilityView>>>,
) -> Result<(), String> {
    let roles = control
        .roles
        .iter()
        .map(|(identity, role)| {
            let role = match role {
                topologyd_config::daemon::Role::Admin => Role::Admin,
                topologyd_config::daemon::Role::Reader => Role::Reader,
            };
            (identity.clone(), role)
        })
        .collect();
    let audit_log = AuditLog::open(&control.audit_log).map_err(|error| error.to_string())?;
    engine.set_audit_log(audit_log.clone());
    let server = ControlServer::bind(
        control.listen,
        tls,
        ControlSettings {
            roles,
            body_limit: control.max_body_bytes as u64,
            reader_body_limit: control.max_reader_body_bytes as u64,
            audit_log: audit_log.clone(),
        },
        command_sender.clone(),
    )
    .await
    .map_err(|error| error.to_string())?;
    let server = match visibility {
        Some(view) => server.with_visibility(view),
        None => server,
    };
    info!(address = %control.listen, "control API bound");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = server.run(wait_for(stop)).await {
            error!(%error, "control API failed");
        }
    });
    Ok(())
}

/// Pings the systemd watchdog every half `timeout`, but only when the engine task answers a
/// status request: a wedged engine (nothing can be applied, reloaded or drained) stops the
/// pings, and systemd restarts the daemon, which comes back on its stored generation as a
/// graceful-restart speaker. A slow command (a large apply) only delays a ping; systemd acts
/// when no ping came for the whole `timeout`.
async fn watchdog(notifier: Arc<Notifier>, engine: mpsc::Sender<EngineCommand>, timeout: Duration) {
    let mut ticker = tokio::time::interval(timeout / 2);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (reply, answer) = oneshot::channel();
        if engine.send(EngineCommand::Status { reply }).await.is_err() {
            return;
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(_)) => {
                let _ = notifier.watchdog();
            }
            Ok(Err(_)) => return,
            Err(_) => warn!(
                ?timeout,
                "the engine did not answer within the watchdog time"
            ),
        }
    }
}

/// Sends STATUS= (how many peers are up, ready or not) whenever it changes.
async fn report_status(
    notifier: Arc<Notifier>,
    mut readiness: watch::Receiver<topologyd::readiness::ReadinessState>,
) {
    let mut last = String::new();
    loop {
        let line = readiness.borrow_and_update().status_line();
        if line != last {
            let _ = notifier.status(&line);
            last = line;
        }
        if readiness.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
