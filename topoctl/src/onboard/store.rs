//! The onboarding store: every prefix's onboarding, the tokens already used, and the revoked
//! evidence, in one redb file.
//!
//! Why redb: it is pure Rust (no C build, unlike SQLite), embedded (nothing to run beside
//! topoctl), and ACID with crash safety by default — copy-on-write B-trees and a checksummed
//! commit, so a crash mid-write leaves the last committed state. Every state change here is one
//! write transaction: a verification records its checks, consumes its token and attaches its
//! evidence together or not at all.
//!
//! Tables: `onboardings` (truncated CIDR → the JSON of an [`Onboarding`]), `used_tokens` (token
//! SHA-256 → CIDR: a token is accepted once, ever), `revoked` (token SHA-256 → the JSON of a
//! [`Revocation`]: what plan time consults).
//!
//! Owns: the file and its transactions. Must not touch: the checks, the signing key.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};
use topologyd_ownership::onboarding::TransitionError;
use topologyd_ownership::{CheckEvidence, Onboarding, OnboardingState, SignedEvidence};

const ONBOARDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("onboardings");
const USED_TOKENS: TableDefinition<&str, &str> = TableDefinition::new("used_tokens");
const REVOKED: TableDefinition<&str, &[u8]> = TableDefinition::new("revoked");

/// A revoked onboarding, as plan time sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub prefix: IpNet,
    pub owner: String,
    pub token_sha256: String,
    pub revoked_at_unix: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("onboarding store: {0}")]
    Database(#[from] redb::Error),
    #[error("onboarding store: a record does not decode: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0} has no onboarding: run `topoctl prefix onboard {0}` first")]
    NotOnboarded(IpNet),
    #[error("{0} is already onboarded and valid: revoke it before onboarding it again")]
    AlreadyValid(IpNet),
    #[error("the token of {0} was already used once: onboard again for a new token")]
    TokenReused(IpNet),
    #[error(
        "{prefix} overlaps {other}, which owner `{other_owner}` already has a {state} onboarding for: one prefix (or a covering or more-specific one) cannot be onboarded by two owners; revoke {other} first (`topoctl prefix revoke {other}`) if it no longer belongs to `{other_owner}`"
    )]
    OverlapsOtherOwner {
        prefix: IpNet,
        other: IpNet,
        other_owner: String,
        state: &'static str,
    },
    #[error(
        "the onboarding of {0} changed while it was being verified (another onboard, verify or revoke ran meanwhile): nothing was signed; run `topoctl prefix status {0}` and verify again"
    )]
    ChangedDuringVerification(IpNet),
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

/// Refuses `new` when `other` belongs to another owner, is valid or pending (with a token not
/// yet expired when `new` was issued), and its prefix is equal to, covers or is covered by
/// `new`'s.
fn refuse_other_owner(new: &Onboarding, other: &Onboarding) -> Result<(), StoreError> {
    let (prefix, other_prefix) = (new.token.prefix.trunc(), other.token.prefix.trunc());
    let overlaps = prefix.contains(&other_prefix) || other_prefix.contains(&prefix);
    let live = match other.state {
        OnboardingState::Valid => true,
        OnboardingState::Pending => !other.token.is_expired(new.token.issued_at_unix),
        _ => false,
    };
    if overlaps && live && other.token.owner != new.token.owner {
        return Err(StoreError::OverlapsOtherOwner {
            prefix,
            other: other_prefix,
            other_owner: other.token.owner.clone(),
            state: other.state.as_str(),
        });
    }
    Ok(())
}

/// Whether `stored` is still the onboarding `checked` was: the same token, owner, origin ASN
/// and announced length.
fn same_request(stored: &Onboarding, checked: &Onboarding) -> bool {
    stored.token.digest() == checked.token.digest()
        && stored.token.owner == checked.token.owner
        && stored.token.origin_asn == checked.token.origin_asn
        && stored.longest_announced == checked.longest_announced
}

fn database_error(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(error.into())
}

/// The open store.
#[derive(Debug)]
pub struct OnboardingStore {
    database: Database,
}

impl OnboardingStore {
    /// Opens the store at `path`, creating it (and its tables) when absent.
    pub fn open(path: &Path) -> Result<OnboardingStore, StoreError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| database_error(redb::StorageError::Io(error)))?;
        }
        let database = Database::create(path).map_err(database_error)?;
        let transaction = database.begin_write().map_err(database_error)?;
        transaction
            .open_table(ONBOARDINGS)
            .map_err(database_error)?;
        transaction
            .open_table(USED_TOKENS)
            .map_err(database_error)?;
        transaction.open_table(REVOKED).map_err(database_error)?;
        transaction.commit().map_err(database_error)?;
        Ok(OnboardingStore { database })
    }

    /// Stores a new onboarding (a fresh token), replacing any earlier one for the prefix unless
    /// that one is valid. A prefix that is equal to, covers or is covered by a valid or still
    /// pending onboarding of another owner is refused: two owners never hold evidence for the
    /// same addresses.
    pub fn insert_new(&self, onboarding: &Onboarding) -> Result<(), StoreError> {
        let prefix = onboarding.token.prefix;
        let key = prefix.to_string();
        let transaction = self.database.begin_write().map_err(database_error)?;
        {
            let mut table = transaction
                .open_table(ONBOARDINGS)
                .map_err(database_error)?;
            for entry in table.iter().map_err(database_error)? {
                let (_, value) = entry.map_err(database_error)?;
                let other: Onboarding = serde_json::from_slice(value.value())?;
                refuse_other_owner(onboarding, &other)?;
            }
            let existing = match table.get(key.as_str()).map_err(database_error)? {
                Some(value) => Some(serde_json::from_slice::<Onboarding>(value.value())?),
                None => None,
            };
            if existing.is_some_and(|existing| existing.state == OnboardingState::Valid) {
                return Err(StoreError::AlreadyValid(prefix));
            }
            let value = serde_json::to_vec(onboarding)?;
            table
                .insert(key.as_str(), value.as_slice())
                .map_err(database_error)?;
        }
        transaction.commit().map_err(database_error)
    }

    /// The onboarding of `prefix`, if any.
    pub fn get(&self, prefix: IpNet) -> Result<Option<Onboarding>, StoreError> {
        let transaction = self.database.begin_read().map_err(database_error)?;
        let table = transaction
            .open_table(ONBOARDINGS)
            .map_err(database_error)?;
        let key = prefix.trunc().to_string();
        match table.get(key.as_str()).map_err(database_error)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    /// Every onboarding, in CIDR text order.
    pub fn list(&self) -> Result<Vec<Onboarding>, StoreError> {
        let transaction = self.database.begin_read().map_err(database_error)?;
        let table = transaction
            .open_table(ONBOARDINGS)
            .map_err(database_error)?;
        let mut onboardings = Vec::new();
        for entry in table.iter().map_err(database_error)? {
            let (_, value) = entry.map_err(database_error)?;
            onboardings.push(serde_json::from_slice(value.value())?);
        }
        Ok(onboardings)
    }

    /// Records a verification's checks at `now_unix` in one transaction. `checked` is the
    /// onboarding the checks ran for: when the stored one no longer has its token, owner,
    /// origin ASN and announced length (it was replaced meanwhile), nothing is recorded or
    /// signed. When the checks make the onboarding valid, its token is consumed (a token
    /// already used refuses the whole verification) and `sign` makes the evidence attached to
    /// it.
    pub fn record_verification(
        &self,
        checked: &Onboarding,
        checks: Vec<CheckEvidence>,
        now_unix: u64,
        sign: impl FnOnce(&Onboarding) -> SignedEvidence,
    ) -> Result<Onboarding, StoreError> {
        let prefix = checked.token.prefix.trunc();
        self.update(prefix, |transaction, onboarding| {
            if !same_request(onboarding, checked) {
                return Err(StoreError::ChangedDuringVerification(prefix));
            }
            let state = onboarding.record_checks(checks, now_unix)?;
            if state == OnboardingState::Valid {
                let digest = onboarding.token.digest();
                let mut used = transaction
                    .open_table(USED_TOKENS)
                    .map_err(database_error)?;
                if used.get(digest.as_str()).map_err(database_error)?.is_some() {
                    return Err(StoreError::TokenReused(prefix));
                }
                used.insert(digest.as_str(), prefix.to_string().as_str())
                    .map_err(database_error)?;
                let evidence = sign(onboarding);
                onboarding.attach_evidence(evidence);
            }
            Ok(())
        })
    }

    /// Revokes the onboarding of `prefix` at `now_unix`: its state becomes revoked and its
    /// token's digest enters the revocation list plan time consults.
    pub fn revoke(&self, prefix: IpNet, now_unix: u64) -> Result<Onboarding, StoreError> {
        let prefix = prefix.trunc();
        self.update(prefix, |transaction, onboarding| {
            onboarding.revoke(now_unix);
            let revocation = Revocation {
                prefix,
                owner: onboarding.token.owner.clone(),
                token_sha256: onboarding.token.digest(),
                revoked_at_unix: now_unix,
            };
            let mut revoked = transaction.open_table(REVOKED).map_err(database_error)?;
            let revocation_value = serde_json::to_vec(&revocation)?;
            revoked
                .insert(
                    revocation.token_sha256.as_str(),
                    revocation_value.as_slice(),
                )
                .map_err(database_error)?;
            Ok(())
        })
    }

    /// Reads the onboarding of `prefix`, lets `change` modify it (and other tables of the same
    /// transaction), and writes it back: all of it commits, or nothing does.
    fn update(
        &self,
        prefix: IpNet,
        change: impl FnOnce(&redb::WriteTransaction, &mut Onboarding) -> Result<(), StoreError>,
    ) -> Result<Onboarding, StoreError> {
        let key = prefix.to_string();
        let transaction = self.database.begin_write().map_err(database_error)?;
        let onboarding = {
            let mut table = transaction
                .open_table(ONBOARDINGS)
                .map_err(database_error)?;
            let mut onboarding: Onboarding =
                match table.get(key.as_str()).map_err(database_error)? {
                    Some(value) => serde_json::from_slice(value.value())?,
                    None => return Err(StoreError::NotOnboarded(prefix)),
                };
            change(&transaction, &mut onboarding)?;
            let value = serde_json::to_vec(&onboarding)?;
            table
                .insert(key.as_str(), value.as_slice())
                .map_err(database_error)?;
            onboarding
        };
        transaction.commit().map_err(database_error)?;
        Ok(onboarding)
    }

    /// The revocation list, by token digest.
    pub fn revocations(&self) -> Result<BTreeMap<String, Revocation>, StoreError> {
        let transaction = self.database.begin_read().map_err(database_error)?;
        let table = transaction.open_table(REVOKED).map_err(database_error)?;
        let mut revocations = BTreeMap::new();
        for entry in table.iter().map_err(database_error)? {
            let (digest, value) = entry.map_err(database_error)?;
            revocations.insert(
                digest.value().to_string(),
                serde_json::from_slice(value.value())?,
            );
        }
        Ok(revocations)
    }
}

#[cfg(test)]
mod tests;
