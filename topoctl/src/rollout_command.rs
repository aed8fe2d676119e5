//! The `topoctl rollout` command line: its subcommands and their arguments (clap), where the
//! rollout's state lives (a local state directory, or etcd with `--etcd`), and the dispatch
//! to the controller (`topoctl::rollout::commands`, `topoctl::rollout::etcd::commands`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use topoctl::rollout::commands as rollout;
use topoctl::rollout::etcd::EtcdOptions;
use topoctl::rollout::etcd::commands as etcd;
use topoctl::rollout::journal::Command as RolloutControl;

use super::IntentArguments;

#[derive(Subcommand, Debug)]
pub(crate) enum RolloutCommand {
    /// Plan fleet-wide (every location converged, guards), then apply wave by wave.
    Start {
        /// The fleet file: locations, credentials, waves, gates.
        #[arg(long)]
        fleet: PathBuf,
        #[command(flatten)]
        store: RolloutStoreArguments,
        /// The new topology's files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        intent: IntentArguments,
        /// Print every wave with its locations and their deltas; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Roll out even when the first wave (the canary) selects no location.
        #[arg(long)]
        no_canary: bool,
        #[command(flatten)]
        run: RolloutRunArguments,
    },
    /// Continue a rollout: tell the running controller, or take over its journal here.
    Resume {
        #[command(flatten)]
        store: RolloutStoreArguments,
        /// With --etcd: wait while another controller leads, and take over when its lease ends.
        #[arg(long, requires = "etcd")]
        standby: bool,
        #[command(flatten)]
        run: RolloutRunArguments,
    },
    /// Stop applying and gating until `resume` (needs a running controller).
    Pause {
        #[command(flatten)]
        store: RolloutStoreArguments,
    },
    /// Skip the rest of the current wave's bake; its gates must still pass.
    Promote {
        #[command(flatten)]
        store: RolloutStoreArguments,
    },
    /// Roll back every location already changed, at once in reverse order, and stop; again
    /// after `rollback_incomplete`, retry the locations that did not answer.
    Abort {
        #[command(flatten)]
        store: RolloutStoreArguments,
        #[command(flatten)]
        run: RolloutRunArguments,
    },
    /// The rollout's state from its journal.
    Status {
        #[command(flatten)]
        store: RolloutStoreArguments,
        #[arg(long)]
        json: bool,
    },
}

/// Where a rollout's journal, control commands and controller lock live.
#[derive(Args, Debug)]
pub(crate) struct RolloutStoreArguments {
    /// A local state directory: journal, lock and control file (the default mode).
    #[arg(long, required_unless_present = "etcd", conflicts_with = "etcd")]
    state_dir: Option<PathBuf>,
    /// The etcd mode: journal, control commands and leadership in this etcd cluster
    /// (host:port[,host:port...]); a standby controller can take over (docs/rollouts.md).
    #[arg(long)]
    etcd: Option<String>,
    /// The key prefix of the rollout in etcd (one rollout at a time per prefix).
    #[arg(long, default_value = "/topoctl/rollout")]
    etcd_prefix: String,
    /// TLS to etcd: the CA its members' certificates are checked against (PEM).
    #[arg(long, requires = "etcd")]
    etcd_ca: Option<PathBuf>,
    /// TLS to etcd: a client certificate (PEM), with --etcd-key.
    #[arg(long, requires_all = ["etcd_ca", "etcd_key"])]
    etcd_cert: Option<PathBuf>,
    /// TLS to etcd: the client certificate's private key (PEM).
    #[arg(long, requires_all = ["etcd_ca", "etcd_cert"])]
    etcd_key: Option<PathBuf>,
}

/// A rollout's store, from its arguments.
enum RolloutStore {
    Directory(PathBuf),
    Etcd(EtcdOptions),
}

impl RolloutStoreArguments {
    fn store(&self) -> Result<RolloutStore, String> {
        match (&self.etcd, &self.state_dir) {
            (Some(endpoints), _) => EtcdOptions::parse(endpoints, &self.etcd_prefix)
                .and_then(|options| {
                    options.with_tls(
                        self.etcd_ca.clone(),
                        self.etcd_cert.clone(),
                        self.etcd_key.clone(),
                    )
                })
                .map(RolloutStore::Etcd)
                .map_err(|error| error.to_string()),
            (None, Some(dir)) => Ok(RolloutStore::Directory(dir.clone())),
            (None, None) => Err("give --state-dir or --etcd".into()),
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct RolloutRunArguments {
    /// One JSON event per line on stdout.
    #[arg(long)]
    json: bool,
    /// Exit with code 8 as soon as the rollout pauses (a call in flight stays in doubt in the
    /// journal; `resume` settles it) instead of waiting for `resume`.
    #[arg(long)]
    exit_on_pause: bool,
    /// Serve the rollout's metrics (GET /metrics) on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

impl RolloutRunArguments {
    fn flags(&self) -> rollout::RunFlags {
        rollout::RunFlags {
            json: self.json,
            exit_on_pause: self.exit_on_pause,
            metrics_listen: self.metrics_listen,
        }
    }
}

pub(crate) fn run_rollout(command: RolloutCommand) -> i32 {
    let store = match &command {
        RolloutCommand::Start { store, .. }
        | RolloutCommand::Resume { store, .. }
        | RolloutCommand::Pause { store }
        | RolloutCommand::Promote { store }
        | RolloutCommand::Abort { store, .. }
        | RolloutCommand::Status { store, .. } => store.store(),
    };
    let store = match store {
        Ok(store) => store,
        Err(message) => {
            eprintln!("topoctl: {message}");
            return 1;
        }
    };
    match (command, store) {
        (
            RolloutCommand::Start {
                fleet,
                files,
                intent,
                dry_run,
                no_canary,
                run,
                ..
            },
            store,
        ) => {
            let (state_dir, etcd) = match store {
                RolloutStore::Directory(dir) => (dir, None),
                RolloutStore::Etcd(options) => (PathBuf::new(), Some(options)),
            };
            rollout::start(rollout::StartOptions {
                fleet,
                state_dir,
                files,
                intents: intent.intents,
                overrides: intent.overrides,
                dry_run,
                no_canary,
                json: run.json,
                exit_on_pause: run.exit_on_pause,
                metrics_listen: run.metrics_listen,
                etcd,
            })
        }
        (RolloutCommand::Resume { run, .. }, RolloutStore::Directory(dir)) => {
            rollout::resume(&dir, &run.flags())
        }
        (RolloutCommand::Resume { run, standby, .. }, RolloutStore::Etcd(options)) => {
            etcd::resume(&options, standby, &run.flags())
        }
        (RolloutCommand::Pause { .. }, RolloutStore::Directory(dir)) => {
            rollout::control(&dir, RolloutControl::Pause)
        }
        (RolloutCommand::Pause { .. }, RolloutStore::Etcd(options)) => {
            etcd::control(&options, RolloutControl::Pause)
        }
        (RolloutCommand::Promote { .. }, RolloutStore::Directory(dir)) => {
            rollout::control(&dir, RolloutControl::Promote)
        }
        (RolloutCommand::Promote { .. }, RolloutStore::Etcd(options)) => {
            etcd::control(&options, RolloutControl::Promote)
        }
        (RolloutCommand::Abort { run, .. }, RolloutStore::Directory(dir)) => {
            rollout::abort(&dir, &run.flags())
        }
        (RolloutCommand::Abort { run, .. }, RolloutStore::Etcd(options)) => {
            etcd::abort(&options, &run.flags())
        }
        (RolloutCommand::Status { json, .. }, RolloutStore::Directory(dir)) => {
            rollout::status(&dir, json)
        }
        (RolloutCommand::Status { json, .. }, RolloutStore::Etcd(options)) => {
            etcd::status(&options, json)
        }
    }
}
