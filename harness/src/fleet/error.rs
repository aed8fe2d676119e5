//! The fleet harness's error: what failed, and what the harness was doing.

use crate::topologyd::{LaunchError, PkiError};

/// A failure of the fleet harness, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{location}: {source}")]
    Launch {
        location: String,
        source: LaunchError,
    },
    #[error("{context}: {source}")]
    Peer {
        context: String,
        source: crate::peers::Error,
    },
    #[error("TLS material: {0}")]
    Pki(#[from] PkiError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("no location `{0}` in the fleet")]
    UnknownLocation(String),
    #[error("{0}")]
    Failed(String),
}

pub(super) fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FleetError {
    let context = context.into();
    move |source| FleetError::Io { context, source }
}

pub(super) fn peer_error(
    context: impl Into<String>,
) -> impl FnOnce(crate::peers::Error) -> FleetError {
    let context = context.into();
    move |source| FleetError::Peer { context, source }
}
