//! The senders, one module each, behind one trait: how each loads the routes, brings its
//! session(s) up and withdraws every route.

mod bird;
mod blaster;
mod exabgp;
mod frr;
mod gobgp;
mod topologyd;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use std::process::Command;

use crate::Result;
use crate::process::Process;

/// What every sender is told.
#[derive(Debug, Clone)]
pub(crate) struct SenderSetup {
    pub(crate) address: Ipv4Addr,
    /// The source address of each session (the first is `address`).
    pub(crate) sources: Vec<Ipv4Addr>,
    pub(crate) receivers: Vec<SocketAddr>,
    pub(crate) ipv4: u32,
    pub(crate) ipv6: u32,
    pub(crate) directory: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) pids: Option<PathBuf>,
}

impl SenderSetup {
    /// Starts a sender daemon with its stdout and stderr in `log` in the run's directory.
    fn spawn(&self, name: &str, command: Command, log: &str) -> Result<Process> {
        Process::spawn(
            name,
            command,
            &self.directory.join(log),
            self.pids.as_deref(),
        )
    }
}

pub(crate) trait Sender {
    /// Starts the session(s); routes are loaded before this returns where the daemon allows.
    fn connect(&mut self) -> Result<()>;
    /// Triggers the withdrawal of every route (UPDATE withdrawals, session kept up where the
    /// daemon allows).
    fn withdraw_all(&mut self) -> Result<()>;
    /// Process group ids whose peak RSS is the sender's.
    fn groups(&self) -> Vec<u32>;
    /// How the routes were loaded, for the report.
    fn method(&self) -> String;
}

/// Starts the sender called `name` (one of `ALL_SENDERS`) with its routes loaded.
pub(crate) fn start_sender(name: &str, setup: &SenderSetup) -> Result<Box<dyn Sender>> {
    Ok(match name {
        "blaster" => Box::new(blaster::Blaster::start(setup)?),
        "topologyd" => Box::new(topologyd::Topologyd::start(setup)?),
        "bird" => Box::new(bird::BirdSender::start(setup)?),
        "frr" => Box::new(frr::Frr::start(setup)?),
        "gobgp" => Box::new(gobgp::Gobgp::start(setup)?),
        "exabgp" => Box::new(exabgp::Exabgp::start(setup)?),
        other => return Err(format!("unknown sender {other}")),
    })
}
