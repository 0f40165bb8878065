//! The tamper-evident audit log: every run, command, approval, denial and fork allowance,
//! in one append-only table whose rows form a hash chain.
//!
//! Each entry's `hash` is `hex(sha256(prev_hash || canonical))`, where `canonical` is the
//! canonical JSON ([`crate::plan::keys::canonical`]: sorted keys, no whitespace) of
//! `{id, at, kind, actor_id, actor_login, forge, repo, pr, sha, verdict, detail}` and the
//! first entry's `prev_hash` is [`GENESIS`]. SQLite triggers refuse UPDATE and DELETE, but
//! anyone who can write the database file can drop them; [`verify`] recomputes the chain
//! and names the first entry that was edited, re-linked or deleted. What a chain alone
//! cannot show is the newest entries being cut off together with the id counter: keep
//! an [`export`] (or the last hash) elsewhere for that.

use std::str::FromStr;

use crate::store::audit::{self as store_audit, AuditRow as Row};
use crate::store::Db;
use anyhow::Context;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::plan::keys::canonical;

pub mod cli;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An evaluation ran (automatically or on command), with its verdict.
    Run,
    /// A slash command was accepted.
    Command,
    /// A release or needs_review approval was given.
    Approval,
    /// Someone without the permission tried a command; nothing ran.
    Denial,
    /// A maintainer let a fork PR be evaluated with the repository's credentials.
    ForkAllowance,
}

impl AuditKind {
    pub const ALL: [AuditKind; 5] = [
        AuditKind::Run,
        AuditKind::Command,
        AuditKind::Approval,
        AuditKind::Denial,
        AuditKind::ForkAllowance,
    ];

    /// The stored (and hashed) name, the same as the serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Run => "run",
            AuditKind::Command => "command",
            AuditKind::Approval => "approval",
            AuditKind::Denial => "denial",
            AuditKind::ForkAllowance => "fork_allowance",
        }
    }
}

impl FromStr for AuditKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown audit entry kind {s:?}"))
    }
}

/// What happened, as the caller records it; the log adds the id, time and hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub kind: AuditKind,
    /// The forge's numeric user id: logins can be renamed, ids cannot.
    pub actor_id: Option<u64>,
    pub actor_login: String,
    pub forge: String,
    pub repo: String,
    pub pr: Option<u64>,
    pub sha: Option<String>,
    pub verdict: Option<String>,
    /// What exactly: the command text, tool and model versions, the reason for a denial.
    pub detail: Value,
}

/// An entry as stored. Serialised flat (`{"id", "at", "kind", …, "prev_hash", "hash"}`),
/// so an exported line carries every field the hash covers and can be checked without
/// promptgate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub id: i64,
    /// RFC 3339, UTC, millisecond precision.
    pub at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Entries in the log.
    pub entries: usize,
    /// The first entry that does not check out; `None` when the whole chain holds.
    pub first_broken: Option<Broken>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("entry {id}: {reason}")]
pub struct Broken {
    pub id: i64,
    pub reason: String,
}

/// Appends to the audit log. Cheap to clone; clones share the in-process lock.
#[derive(Clone, Debug)]
pub struct AuditLog {
    db: Db,
    /// Serialises this process's appends before they reach SQLite (see [`AuditLog::append`]).
    turn: std::sync::Arc<Mutex<()>>,
}

impl AuditLog {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            turn: std::sync::Arc::new(Mutex::new(())),
        }
    }

    /// Appends `entry` at the end of the chain and returns its id.
    ///
    /// Reading the last hash and inserting the next row happen in one transaction that
    /// holds the log's write lock: SQLite's (`BEGIN IMMEDIATE`, see
    /// [`Db::begin_write`]), or on Postgres a transaction-scoped advisory lock, so two
    /// appenders (other tasks, other `AuditLog` values, other processes or replicas)
    /// can never both link to the same predecessor. The UNIQUE `prev_hash` column
    /// refuses a fork of the chain should anything get past that.
    /// The in-process mutex only keeps this process's appenders from queueing on SQLite's
    /// busy timeout while each holds a pool connection.
    pub async fn append(&self, entry: &AuditEntry) -> anyhow::Result<i64> {
        let _turn = self.turn.lock().await;
        let mut tx = store_audit::begin_append(&self.db).await?;
        let last = store_audit::last_entry(&mut tx).await?;
        // Follow the id counter rather than the last row, so that an entry appended
        // after the newest ones were deleted leaves a gap that `verify` reports.
        let counter = store_audit::id_counter(self.db.backend(), &mut tx).await?;
        let id = last
            .as_ref()
            .map_or(0, |(id, _)| *id)
            .max(counter.unwrap_or(0))
            + 1;
        let prev_hash = last.map_or_else(|| GENESIS.to_string(), |(_, hash)| hash);
        let at = crate::store::db::now_text();
        let actor_id = to_sql_int(entry.actor_id, "actor_id")?;
        let pr = to_sql_int(entry.pr, "pr")?;
        let content = Content {
            id,
            at: &at,
            kind: entry.kind.as_str(),
            actor_id,
            actor_login: &entry.actor_login,
            forge: &entry.forge,
            repo: &entry.repo,
            pr,
            sha: entry.sha.as_deref(),
            verdict: entry.verdict.as_deref(),
            detail: &entry.detail,
        };
        let hash = content.hash(&prev_hash);
        let mut detail = String::new();
        canonical(&entry.detail, &mut detail);
        let row = Row {
            id,
            at: at.clone(),
            kind: entry.kind.as_str().to_string(),
            actor_id,
            actor_login: entry.actor_login.clone(),
            forge: entry.forge.clone(),
            repo: entry.repo.clone(),
            pr,
            sha: entry.sha.clone(),
            verdict: entry.verdict.clone(),
            detail,
            prev_hash,
            hash,
        };
        store_audit::insert(self.db.backend(), &mut tx, &row).await?;
        tx.commit()
            .await
            .context("audit log: committing the entry")?;
        Ok(id)
    }

    /// Every entry, oldest first.
    pub async fn entries(&self) -> anyhow::Result<Vec<StoredEntry>> {
        store_audit::all(&self.db)
            .and_then(|row| async move { row.into_stored() })
            .try_collect()
            .await
    }
}

/// Recomputes every hash and link, oldest first, and names the first entry that does
/// not check out: a missing id (a deleted entry), a `prev_hash` that is not the previous
/// entry's hash, or a `hash` that does not match the entry's content.
pub async fn verify(db: &Db) -> anyhow::Result<Verification> {
    let mut rows = store_audit::all(db);
    let mut entries = 0usize;
    let mut first_broken: Option<Broken> = None;
    let mut last_id = 0i64;
    let mut prev_hash = GENESIS.to_string();
    while let Some(row) = rows.try_next().await? {
        entries += 1;
        if first_broken.is_none() {
            first_broken = check(&row, last_id, &prev_hash);
        }
        last_id = row.id;
        prev_hash = row.hash;
    }
    drop(rows);
    if first_broken.is_none() {
        if let Some(counter) = store_audit::stored_id_counter(db).await? {
            if counter > last_id {
                first_broken = Some(Broken {
                    id: last_id + 1,
                    reason: format!(
                        "deleted: the log ends at entry {last_id} but entries up to {counter} were written"
                    ),
                });
            }
        }
    }
    Ok(Verification {
        entries,
        first_broken,
    })
}

/// Writes every entry as one JSON line ([`StoredEntry`]), in id order; returns how many.
/// Exports as stored, broken or not: run [`verify`] to judge it.
pub async fn export(db: &Db, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let mut rows = store_audit::all(db);
    let mut n = 0usize;
    while let Some(row) = rows.try_next().await? {
        let stored = row.into_stored()?;
        serde_json::to_writer(&mut *out, &stored)
            .with_context(|| format!("audit log: writing entry {}", stored.id))?;
        out.write_all(b"\n")
            .with_context(|| format!("audit log: writing entry {}", stored.id))?;
        n += 1;
    }
    out.flush().context("audit log: writing the export")?;
    Ok(n)
}

/// The first problem with `row`, given the id and hash of the entry before it.
fn check(row: &Row, last_id: i64, prev_hash: &str) -> Option<Broken> {
    let expected = last_id + 1;
    let broken = |id: i64, reason: String| Some(Broken { id, reason });
    if row.id != expected {
        return if last_id == 0 {
            broken(
                expected,
                format!("deleted: the log starts at entry {}", row.id),
            )
        } else {
            broken(
                expected,
                format!(
                    "deleted: the log jumps from entry {last_id} to entry {}",
                    row.id
                ),
            )
        };
    }
    if row.prev_hash != prev_hash {
        return if last_id == 0 {
            broken(
                row.id,
                "prev_hash is not the first entry's (64 zeros)".into(),
            )
        } else {
            broken(row.id, format!("prev_hash does not match entry {last_id}"))
        };
    }
    let detail: Value = match serde_json::from_str(&row.detail) {
        Ok(v) => v,
        Err(e) => return broken(row.id, format!("detail is not valid JSON ({e})")),
    };
    if row.content(&detail).hash(&row.prev_hash) != row.hash {
        return broken(row.id, "hash does not match its content".into());
    }
    None
}

/// SQLite integers are signed; ids beyond `i64::MAX` do not exist on either forge.
fn to_sql_int(value: Option<u64>, field: &str) -> anyhow::Result<Option<i64>> {
    value
        .map(i64::try_from)
        .transpose()
        .with_context(|| format!("audit log: {field} is too large to store"))
}

/// Everything the hash covers, in the form it is hashed: integers as stored (signed),
/// `kind` by name, `detail` as JSON.
struct Content<'a> {
    id: i64,
    at: &'a str,
    kind: &'a str,
    actor_id: Option<i64>,
    actor_login: &'a str,
    forge: &'a str,
    repo: &'a str,
    pr: Option<i64>,
    sha: Option<&'a str>,
    verdict: Option<&'a str>,
    detail: &'a Value,
}

impl Content<'_> {
    /// `hex(sha256(prev_hash || canonical JSON of the content))`.
    fn hash(&self, prev_hash: &str) -> String {
        let value = json!({
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "actor_id": self.actor_id,
            "actor_login": self.actor_login,
            "forge": self.forge,
            "repo": self.repo,
            "pr": self.pr,
            "sha": self.sha,
            "verdict": self.verdict,
            "detail": self.detail,
        });
        let mut text = String::new();
        canonical(&value, &mut text);
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(text.as_bytes());
        hex::encode(h.finalize())
    }
}

impl Row {
    fn content<'a>(&'a self, detail: &'a Value) -> Content<'a> {
        Content {
            id: self.id,
            at: &self.at,
            kind: &self.kind,
            actor_id: self.actor_id,
            actor_login: &self.actor_login,
            forge: &self.forge,
            repo: &self.repo,
            pr: self.pr,
            sha: self.sha.as_deref(),
            verdict: self.verdict.as_deref(),
            detail,
        }
    }

    fn into_stored(self) -> anyhow::Result<StoredEntry> {
        let id = self.id;
        let context = || format!("audit log: entry {id}");
        let unsigned = |v: Option<i64>, field: &str| {
            v.map(u64::try_from)
                .transpose()
                .with_context(|| format!("audit log: entry {id}: negative {field}"))
        };
        Ok(StoredEntry {
            id,
            at: self.at,
            entry: AuditEntry {
                kind: self.kind.parse().with_context(context)?,
                actor_id: unsigned(self.actor_id, "actor_id")?,
                actor_login: self.actor_login,
                forge: self.forge,
                repo: self.repo,
                pr: unsigned(self.pr, "pr")?,
                sha: self.sha,
                verdict: self.verdict,
                detail: serde_json::from_str(&self.detail)
                    .with_context(|| format!("audit log: entry {id}: detail is not JSON"))?,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_match_serde() {
        for kind in AuditKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                Value::String(kind.as_str().to_string())
            );
            assert_eq!(kind.as_str().parse::<AuditKind>().unwrap(), kind);
        }
        assert!("bogus".parse::<AuditKind>().is_err());
    }

    /// Pins the hash construction, so that a change to it (which would make every
    /// existing log fail verification) cannot go unnoticed.
    #[test]
    fn hash_is_sha256_of_prev_and_canonical_content() {
        let detail = json!({"z": 1, "a": "x"});
        let content = Content {
            id: 1,
            at: "2026-01-01T00:00:00.000Z",
            kind: "command",
            actor_id: Some(42),
            actor_login: "alice",
            forge: "github",
            repo: "acme/app",
            pr: Some(7),
            sha: None,
            verdict: None,
            detail: &detail,
        };
        let text = r#"{"actor_id":42,"actor_login":"alice","at":"2026-01-01T00:00:00.000Z","detail":{"a":"x","z":1},"forge":"github","id":1,"kind":"command","pr":7,"repo":"acme/app","sha":null,"verdict":null}"#;
        let expected = hex::encode(Sha256::digest(format!("{GENESIS}{text}").as_bytes()));
        assert_eq!(content.hash(GENESIS), expected);
    }
}
