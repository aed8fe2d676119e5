//! The etcd mode of `topoctl rollout`: the journal, the control commands and the
//! controller's leadership live in an etcd cluster instead of a local state directory, so a
//! controller on another machine can take over a rollout within the leadership lease's TTL.
//!
//! ```text
//! PREFIX/leader            the leader's identity, created only if absent, under its etcd lease;
//!                          its create_revision is the leader's fencing token
//! PREFIX/journal/<seq>     one journal line (the same JSON as journal.jsonl), seq zero-padded;
//!                          written only by a txn that compares the leader key with our token
//!                          and lease (a failed compare is leadership lost: stop)
//! PREFIX/control/<id>      a control command (pause, resume, abort, promote) from another
//!                          topoctl run; the leader journals its acknowledgement
//! ```
//!
//! Owns: the key layout, the record encoding, the fence (which compares guard every journal
//! write), and the options of the mode. `session.rs` talks to etcd (leadership, journal,
//! control commands); `commands.rs` is the CLI side.
//!
//! Must not touch: rollout decisions (`machine.rs`), effects (`driver.rs`).

pub mod commands;
pub mod session;

use super::journal::Line;

/// The leadership lease's TTL: a controller that cannot confirm its lease for this long stops,
/// and a standby takes over at most this long after the leader died.
pub const LEASE_TTL_SECONDS: i64 = 5;
/// How many digits a journal sequence number is padded to (keys sort in record order).
pub const SEQUENCE_DIGITS: usize = 12;

/// Where the etcd mode keeps its state: the cluster's endpoints and the key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// The key prefix (one rollout at a time per prefix), without a trailing slash.
    pub prefix: String,
    /// TLS to the members (`--etcd-ca`, and a client certificate when they ask for one).
    pub tls: Option<EtcdTls>,
}

/// TLS material for talking to etcd (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA the members' certificates are checked against.
    pub ca: std::path::PathBuf,
    /// A client certificate and its key (`--client-cert-auth` members ask for one).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Options that do not name a usable cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("--etcd names no endpoint; give host:port[,host:port...]")]
    NoEndpoint,
    #[error("--etcd endpoint `{0}` is not host:port")]
    Endpoint(String),
    #[error("--etcd-prefix must not be empty or `/`")]
    Prefix,
    #[error("--etcd-cert and --etcd-key go together, and with --etcd-ca")]
    Identity,
}

impl EtcdOptions {
    /// Parses `--etcd host:port,host:port` and `--etcd-prefix`.
    pub fn parse(endpoints: &str, prefix: &str) -> Result<EtcdOptions, OptionsError> {
        let mut parsed = Vec::new();
        for endpoint in endpoints.split(',').map(str::trim) {
            if endpoint.is_empty() {
                continue;
            }
            let bare = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"))
                .unwrap_or(endpoint)
                .trim_end_matches('/');
            let port = bare
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(_))) if !host.is_empty() => parsed.push(bare.to_string()),
                _ => return Err(OptionsError::Endpoint(endpoint.to_string())),
            }
        }
        if parsed.is_empty() {
            return Err(OptionsError::NoEndpoint);
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(OptionsError::Prefix);
        }
        Ok(EtcdOptions {
            endpoints: parsed,
            prefix: prefix.to_string(),
            tls: None,
        })
    }

    /// Adds TLS (`--etcd-ca`, `--etcd-cert`, `--etcd-key`); none of them: plain HTTP/2.
    pub fn with_tls(
        mut self,
        ca: Option<std::path::PathBuf>,
        certificate: Option<std::path::PathBuf>,
        private_key: Option<std::path::PathBuf>,
    ) -> Result<EtcdOptions, OptionsError> {
        self.tls = match (ca, certificate, private_key) {
            (None, None, None) => None,
            (Some(ca), None, None) => Some(EtcdTls { ca, identity: None }),
            (Some(ca), Some(certificate), Some(key)) => Some(EtcdTls {
                ca,
                identity: Some((certificate, key)),
            }),
            _ => return Err(OptionsError::Identity),
        };
        Ok(self)
    }

    /// The key layout under this prefix.
    pub fn keys(&self) -> Keys {
        Keys {
            prefix: self.prefix.clone(),
        }
    }
}

/// The key layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The leader key.
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// The prefix of every journal record (ends with `/`).
    pub fn journal_prefix(&self) -> String {
        format!("{}/journal/", self.prefix)
    }

    /// The key of journal record `sequence` (0 is `started`).
    pub fn journal(&self, sequence: u64) -> String {
        format!(
            "{}{sequence:0width$}",
            self.journal_prefix(),
            width = SEQUENCE_DIGITS
        )
    }

    /// The sequence number of a journal key, if it is one.
    pub fn sequence_of(&self, key: &str) -> Option<u64> {
        let digits = key.strip_prefix(&self.journal_prefix())?;
        if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// The prefix of every control command (ends with `/`).
    pub fn control_prefix(&self) -> String {
        format!("{}/control/", self.prefix)
    }

    /// The key of control command `id`.
    pub fn control(&self, id: &str) -> String {
        format!("{}{id}", self.control_prefix())
    }

    /// Where this prefix is, for messages (`etcd:PREFIX`).
    pub fn describe(&self) -> String {
        format!("etcd:{}", self.prefix)
    }
}

/// Encodes a journal line as stored in etcd (the JSON of a journal.jsonl line).
pub fn encode_line(line: &Line) -> Result<Vec<u8>, String> {
    serde_json::to_vec(line).map_err(|error| error.to_string())
}

/// Decodes the journal lines of a range read, in key order; every value must be a record and
/// the sequence numbers must run 0, 1, 2… without a gap.
pub fn decode_lines(keys: &Keys, entries: &[(String, Vec<u8>)]) -> Result<Vec<Line>, String> {
    let mut sorted: Vec<(u64, &[u8], &str)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let sequence = keys
            .sequence_of(key)
            .ok_or_else(|| format!("{key}: not a journal key"))?;
        sorted.push((sequence, value, key));
    }
    sorted.sort_by_key(|entry| entry.0);
    let mut lines = Vec::with_capacity(sorted.len());
    for (expected, (sequence, value, key)) in sorted.into_iter().enumerate() {
        if sequence != expected as u64 {
            return Err(format!(
                "{key}: journal record {expected} is missing (found {sequence})"
            ));
        }
        let line: Line = serde_json::from_slice(value)
            .map_err(|error| format!("{key}: not a journal record: {error}"))?;
        lines.push(line);
    }
    Ok(lines)
}

/// What the leader key says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderValue {
    /// `host/pid` of the controller process.
    pub holder: String,
}

/// One condition of the fence every leader write is guarded by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key's create_revision equals this (0: the key does not exist).
    CreateRevision { key: String, revision: i64 },
    /// The key is attached to this lease.
    Lease { key: String, lease: i64 },
}

/// A leader's fence: its token (the leader key's create_revision) and its etcd lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub token: i64,
    pub lease: i64,
}

impl Fence {
    /// The conditions under which journal record `sequence` may be written: the leader key is
    /// still ours (same creation, same lease) and the record is not written yet.
    pub fn journal_conditions(&self, keys: &Keys, sequence: u64) -> Vec<Condition> {
        vec![
            Condition::CreateRevision {
                key: keys.leader(),
                revision: self.token,
            },
            Condition::Lease {
                key: keys.leader(),
                lease: self.lease,
            },
            Condition::CreateRevision {
                key: keys.journal(sequence),
                revision: 0,
            },
        ]
    }
}

/// The condition under which a campaign creates the leader key: it does not exist.
pub fn campaign_conditions(keys: &Keys) -> Vec<Condition> {
    vec![Condition::CreateRevision {
        key: keys.leader(),
        revision: 0,
    }]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
