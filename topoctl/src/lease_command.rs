//! `topoctl lease`: the fleet lock's lease at one daemon, for operators — show who holds it,
//! break it (the emergency hatch, behind `--yes`), or take and give it back by hand (to hold
//! rollouts off a daemon during manual work) — and `--lease HOLDER:TOKEN` claims for `push`
//! and `rollback`.
//!
//! Must not touch: the rules (the daemon decides), the rollout controller's lock
//! (`rollout/lease.rs`).

use crate::control_client::{ClientError, ControlClient};
use clap::{Args, Subcommand};
use serde_json::json;
use topologyd_api::{LeaseAction, LeaseClaim, LeaseRequest, LeaseView};

/// `topoctl lease …`; `D` is how the daemon is named (the binary's `--daemon` arguments).
#[derive(Subcommand, Debug)]
pub enum LeaseCommand<D: Args> {
    /// The lease the daemon holds (holder, token, time left), or `null`.
    Show {
        #[command(flatten)]
        daemon: D,
    },
    /// Clear whatever lease the daemon holds (audited): the emergency hatch for a dead
    /// controller whose lease has not expired yet.
    Break {
        #[command(flatten)]
        daemon: D,
        /// Really break it.
        #[arg(long)]
        yes: bool,
    },
    /// Take (or renew) the lease by hand, e.g. to hold rollouts off during manual work.
    Acquire {
        #[command(flatten)]
        daemon: D,
        #[command(flatten)]
        holder: HolderArgs,
        /// Seconds (1 to 3600).
        #[arg(long, default_value_t = topologyd_config::fleet::DEFAULT_LEASE_SECONDS)]
        ttl: u64,
    },
    /// Give a lease taken by hand back.
    Release {
        #[command(flatten)]
        daemon: D,
        #[command(flatten)]
        holder: HolderArgs,
    },
}

/// Who takes or gives back a lease by hand.
#[derive(Args, Debug)]
pub struct HolderArgs {
    #[arg(long)]
    holder: String,
    #[arg(long, default_value_t = 1)]
    token: u64,
}

impl<D: Args> LeaseCommand<D> {
    /// The daemon asked.
    pub fn daemon(&self) -> &D {
        match self {
            LeaseCommand::Show { daemon }
            | LeaseCommand::Break { daemon, .. }
            | LeaseCommand::Acquire { daemon, .. }
            | LeaseCommand::Release { daemon, .. } => daemon,
        }
    }

    /// The request to send (`None`: show), or why not (`break` without `--yes`).
    pub fn request(&self) -> Result<Option<LeaseRequest>, String> {
        let request = |holder: &str, token, ttl_seconds, action| LeaseRequest {
            holder: holder.to_owned(),
            token,
            ttl_seconds,
            action,
        };
        let by = |holder: &HolderArgs, ttl_seconds, action| {
            request(&holder.holder, holder.token, ttl_seconds, action)
        };
        match self {
            LeaseCommand::Show { .. } => Ok(None),
            LeaseCommand::Break { yes: false, .. } => Err(BREAK_NEEDS_YES.to_owned()),
            LeaseCommand::Break { yes: true, .. } => Ok(Some(request(
                "topoctl lease break",
                0,
                0,
                LeaseAction::Break,
            ))),
            LeaseCommand::Acquire { holder, ttl, .. } => {
                Ok(Some(by(holder, *ttl, LeaseAction::Acquire)))
            }
            LeaseCommand::Release { holder, .. } => Ok(Some(by(holder, 0, LeaseAction::Release))),
        }
    }
}

/// Runs a `topoctl lease` request (`None`: show) and answers the document to print.
pub async fn run(
    client: &ControlClient,
    request: Option<LeaseRequest>,
) -> Result<serde_json::Value, ClientError> {
    match request {
        None => show(client).await,
        Some(request) => {
            let lease = client.lease(&request).await?;
            Ok(json!({ "action": request.action.as_str(), "lease": lease }))
        }
    }
}

/// Parses a `--lease HOLDER:TOKEN` claim.
pub fn parse_claim(text: &str) -> Result<LeaseClaim, String> {
    let (holder, token) = text.rsplit_once(':').ok_or_else(|| {
        format!("--lease `{text}`: expected HOLDER:TOKEN (the rollout id and its fencing token)")
    })?;
    let token = token
        .parse()
        .map_err(|_| format!("--lease `{text}`: the token `{token}` is not a whole number"))?;
    if holder.is_empty() {
        return Err(format!("--lease `{text}`: the holder is empty"));
    }
    Ok(LeaseClaim {
        holder: holder.to_owned(),
        token,
    })
}

/// The lease document `topoctl lease` prints: the daemon's location and its lease (`null`
/// when none is held).
pub fn lease_document(location: &str, lease: Option<&LeaseView>) -> serde_json::Value {
    json!({ "location": location, "lease": lease })
}

/// `topoctl lease show`: the daemon's status, reduced to its lease.
pub async fn show(client: &ControlClient) -> Result<serde_json::Value, ClientError> {
    let status = client.status().await?;
    Ok(lease_document(&status.location, status.lease.as_ref()))
}

/// Why `lease break` needs `--yes`.
pub const BREAK_NEEDS_YES: &str = "breaking the lease lets another rollout act on this daemon while its holder may still be running (its next renewal would take the lease again if it is still free); check `topoctl lease show` and `topoctl rollout status`, then add --yes";

#[cfg(test)]
mod tests {
    use super::parse_claim;

    #[test]
    fn claims_parse_or_say_what_is_wrong() {
        let claim = parse_claim("1700000000-abcd:3").ok();
        assert_eq!(
            claim.map(|claim| (claim.holder, claim.token)),
            Some(("1700000000-abcd".to_owned(), 3))
        );
        for (text, expected) in [
            ("nocolon", "expected HOLDER:TOKEN"),
            ("r:x", "not a whole number"),
            (":1", "holder is empty"),
        ] {
            let error = parse_claim(text).err().unwrap_or_default();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
