//! The readiness verdict handle the admin server's `/ready` answers from: [`ReadinessState`]
//! (ready or not, why, and the peer counts behind it) and [`Readiness`], the shared watch
//! channel one writer publishes it on and the readers (`/ready`, the daemon's systemd STATUS=
//! task, its `topologyd_ready` metric) observe.
//!
//! The daemon decides the verdict (its `readiness::evaluate` over the peers' snapshots); the
//! rollout controller's own admin server is simply released at start.
//!
//! Must not touch: how the verdict is decided, sockets, HTTP.

use std::sync::Arc;

use tokio::sync::watch;

/// The verdict and its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessState {
    pub ready: bool,
    /// Why, in one line for `/ready` and the logs.
    pub reason: String,
    /// Peers Established, peers holding the running generation, peers configured, and how
    /// many must hold it.
    pub established: usize,
    pub holding: usize,
    pub total: usize,
    pub required: usize,
}

impl ReadinessState {
    /// The state before the engine has evaluated anything.
    pub fn starting() -> ReadinessState {
        ReadinessState {
            ready: false,
            reason: "not ready: starting, the peers are not running yet".into(),
            established: 0,
            holding: 0,
            total: 0,
            required: 0,
        }
    }

    /// The systemd STATUS= text: how many peers are up.
    pub fn status_line(&self) -> String {
        format!(
            "{} of {} peers Established, {} hold the running generation; {}",
            self.established,
            self.total,
            self.holding,
            if self.ready { "ready" } else { "not ready" }
        )
    }
}

/// The shared readiness verdict: written by the engine, read by `/ready` and the STATUS= task.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<watch::Sender<ReadinessState>>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(watch::channel(ReadinessState::starting()).0))
    }
}

impl Readiness {
    /// Not ready, starting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes a verdict (subscribers see any change); returns whether `ready` flipped.
    pub fn set(&self, state: ReadinessState) -> bool {
        let mut flipped = false;
        self.0.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            flipped = current.ready != state.ready;
            *current = state;
            true
        });
        flipped
    }

    /// Ready with no peers to wait for (a listener that has nothing else to report).
    pub fn release(&self) {
        self.set(ReadinessState {
            ready: true,
            reason: "ready".into(),
            ..ReadinessState::starting()
        });
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.borrow().ready
    }

    /// The current verdict.
    pub fn state(&self) -> ReadinessState {
        self.0.borrow().clone()
    }

    /// A receiver that sees every change of the verdict.
    pub fn subscribe(&self) -> watch::Receiver<ReadinessState> {
        self.0.subscribe()
    }
}
