//! The audit log: one JSON record per line, appended and fsync'd ([`AuditLog`]); the record
//! ([`AuditRecord`]); and the write-ahead half of a mutation's audit ([`WriteAhead`]), which the
//! control API fills in with who asked what and the engine completes and writes before the
//! change takes effect.
//!
//! Owns: the audit file and its format. Must not touch: HTTP (the control server decides which
//! requests are audited), the engine's state (it hands in what to record).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a client identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Plan, apply, roll back, read.
    Admin,
    /// Plan (dry run) and read only.
    Reader,
}

/// `phase` of the record written before a mutation takes effect.
pub const PHASE_INTENT: &str = "intent";
/// `phase` of the record written once the answer is decided.
pub const PHASE_OUTCOME: &str = "outcome";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds when the record was written.
    pub time: u64,
    /// Ties a mutation's `intent` record to its `outcome` record.
    #[serde(default)]
    pub id: Option<String>,
    /// `intent` (written and fsync'd before a mutation takes effect) or `outcome`; absent on
    /// the engine's own records (health transitions).
    #[serde(default)]
    pub phase: Option<String>,
    /// The client certificate's identity.
    pub who: String,
    /// Its role, if it has one.
    pub role: Option<Role>,
    /// Client address.
    pub remote: String,
    /// `POST /v1/apply`, …
    pub endpoint: String,
    /// What was asked: for an apply the bundle's SHA-256, size, file names, intent and
    /// expected generation; for a rollback the generation; for a drain its arguments.
    #[serde(default)]
    pub request: Option<Value>,
    /// Running generation before, when known.
    pub generation_before: Option<u64>,
    /// Running generation after, when known.
    pub generation_after: Option<u64>,
    /// Hash of the plan applied or refused, when one was computed.
    pub plan_hash: Option<String>,
    /// On an `intent` record: the plan's verdict the change goes ahead on
    /// (`changes_allowed`, `drain`, `undrain`).
    #[serde(default)]
    pub intended_verdict: Option<String>,
    /// `intent` on an intent record; otherwise `applied`, `invalid`, `refused`, `conflict`,
    /// `not_found`, `internal`, `no_space`, `forbidden`, `rejected` (unreadable request or
    /// too large), `method_not_allowed`, `handshake_refused`, `unavailable` (engine not running),
    /// `base_changed` and `base_unavailable` (a delta push made against another generation, or
    /// whose base cannot be read).
    pub verdict: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The error message, if any.
    pub message: Option<String>,
}

/// The audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("control API: audit log {}: {source}", path.display())]
pub struct AuditError {
    /// The audit log file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl AuditError {
    /// True when the audit log's file system is full (a mutation is answered 507).
    pub fn is_no_space(&self) -> bool {
        crate::state_store::is_storage_full(&self.source)
    }
}

/// The write-ahead half of a mutation's audit: what the control API knows (identity, request),
/// completed by the engine with the plan hash and intended verdict and written, fsync'd, before
/// the change takes effect.
#[derive(Debug, Clone)]
pub struct WriteAhead {
    log: AuditLog,
    record: AuditRecord,
}

impl WriteAhead {
    /// The write-ahead of a mutation `record` describes (who, what was asked), for `log`.
    pub fn new(log: AuditLog, record: AuditRecord) -> Self {
        WriteAhead { log, record }
    }

    /// Appends and fsyncs the `intent` record. An `Err` means the mutation must not happen.
    pub async fn record(
        &self,
        generation_before: u64,
        generation_after: u64,
        plan_hash: Option<String>,
        intended_verdict: &str,
    ) -> Result<(), AuditError> {
        let mut record = self.record.clone();
        record.time = unix_now();
        record.phase = Some(PHASE_INTENT.to_owned());
        record.generation_before = Some(generation_before);
        record.generation_after = Some(generation_after);
        record.plan_hash = plan_hash;
        record.intended_verdict = Some(intended_verdict.to_owned());
        record.verdict = PHASE_INTENT.to_owned();
        self.log.append(&record).await
    }
}

/// The append-only audit log: one JSON object per line, fsync'd after each.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the audit log for appending.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let path = path.into();
        let audit_error = |source| AuditError {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(audit_error)?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(audit_error)?;
        }
        Ok(AuditLog {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs (on a blocking thread).
    pub async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|error| AuditError {
            path: self.path.clone(),
            source: std::io::Error::other(error),
        })?;
        line.push(b'\n');
        let file = Arc::clone(&self.file);
        let written = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another append panicked; the file is still usable.
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .unwrap_or_else(|join_error| Err(std::io::Error::other(join_error)));
        written.map_err(|source| AuditError {
            path: self.path.clone(),
            source,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
