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
        /// Print the lease document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clear whatever lease the daemon holds (audited): the emergency hatch for a dead
    /// controller whose lease has not expired yet.
    Break {
        #[command(flatten)]
        daemon: D,
        /// Print the lease document as JSON.
        #[arg(long)]
        json: bool,
        /// Really break it.
        #[arg(long)]
        yes: bool,
    },
    /// Take (or renew) the lease by hand, e.g. to hold rollouts off during manual work.
    Acquire {
        #[command(flatten)]
        daemon: D,
        /// Print the lease document as JSON.
        #[arg(long)]
        json: bool,
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
        /// Print the lease document as JSON.
        #[arg(long)]
        json: bool,
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
            LeaseCommand::Show { daemon, .. }
            | LeaseCommand::Break { daemon, .. }
            | LeaseCommand::Acquire { daemon, .. }
            | LeaseCommand::Release { daemon, .. } => daemon,
        }
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match self {
            LeaseCommand::Show { json, .. }
            | LeaseCommand::Break { json, .. }
            | LeaseCommand::Acquire { json, .. }
            | LeaseCommand::Release { json, .. } => *json,
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

/// What `topoctl lease` answers: the lease a daemon holds (show), or what an action left.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseAnswer {
    /// `lease show`: the daemon's location and its lease.
    Shown {
        location: String,
        lease: Option<LeaseView>,
    },
    /// `break`, `acquire`, `release`: the action and the lease after it.
    Acted {
        action: &'static str,
        lease: Option<LeaseView>,
    },
}

impl LeaseAnswer {
    /// The `--json` document: `{"location", "lease"}` or `{"action", "lease"}`.
    pub fn document(&self) -> serde_json::Value {
        match self {
            LeaseAnswer::Shown { location, lease } => lease_document(location, lease.as_ref()),
            LeaseAnswer::Acted { action, lease } => json!({ "action": action, "lease": lease }),
        }
    }

    /// The answer for people: who holds the lease, its token and time left.
    pub fn text(&self) -> String {
        let (what, lease) = match self {
            LeaseAnswer::Shown { location, lease } => (format!("location {location}"), lease),
            LeaseAnswer::Acted { action, lease } => (format!("after {action}"), lease),
        };
        match lease {
            None => format!("{what}: no lease held\n"),
            Some(lease) => format!(
                "{what}: lease held by {} (token {}), expires {} (in {}; granted for {})\n",
                lease.holder,
                lease.token,
                crate::render::rfc3339(lease.expires_unix_ms / 1_000),
                crate::render::duration(lease.remaining_ms / 1_000),
                crate::render::duration(lease.ttl_seconds)
            ),
        }
    }
}

/// `--json` prints [`LeaseAnswer::document`].
impl serde::Serialize for LeaseAnswer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document().serialize(serializer)
    }
}

/// Runs a `topoctl lease` request (`None`: show).
pub async fn run(
    client: &ControlClient,
    request: Option<LeaseRequest>,
) -> Result<LeaseAnswer, ClientError> {
    match request {
        None => {
            let status = client.status().await?;
            Ok(LeaseAnswer::Shown {
                location: status.location,
                lease: status.lease,
            })
        }
        Some(request) => {
            let lease = client.lease(&request).await?;
            Ok(LeaseAnswer::Acted {
                action: request.action.as_str(),
                lease,
            })
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

/// Why `lease break` needs `--yes`.
pub const BREAK_NEEDS_YES: &str = "breaking the lease lets another rollout act on this daemon while its holder may still be running (its next renewal would take the lease again if it is still free); check `topoctl lease show` and `topoctl rollout status`, then add --yes";

#[cfg(test)]
mod tests {
    use super::{LeaseAnswer, LeaseView, parse_claim};

    #[test]
    fn the_lease_reads_as_a_sentence_and_as_the_json_document() {
        let lease = LeaseView {
            holder: "r-1".into(),
            token: 4,
            ttl_seconds: 60,
            expires_unix_ms: 1_764_921_541_000,
            remaining_ms: 42_500,
        };
        let shown = LeaseAnswer::Shown {
            location: "ams01".into(),
            lease: Some(lease),
        };
        assert_eq!(
            shown.text(),
            "location ams01: lease held by r-1 (token 4), expires 2025-12-05T07:59:01Z (in 42s; granted for 1m00s)\n"
        );
        assert_eq!(shown.document()["lease"]["holder"], "r-1");
        assert_eq!(shown.document()["location"], "ams01");
        let released = LeaseAnswer::Acted {
            action: "release",
            lease: None,
        };
        assert_eq!(released.text(), "after release: no lease held\n");
        assert_eq!(
            serde_json::to_value(&released).ok(),
            Some(serde_json::json!({"action": "release", "lease": null}))
        );
    }

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
