//! The `runs` table: one row per (forge, repository, PR, head SHA), so a redelivery or
//! a second event for the same commit makes no second run, and a restart finds the run
//! it has to finish.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use sqlx::Row;

use super::db::{millis as ttl_ms, now_text, unix_ms, Db};

use crate::report::Tier;

/// Where a run is in its life: `queued` when opened, `running` while evaluated, then
/// `done` (the forge has its answer), `cancelled` (superseded or `/promptgate cancel`)
/// or `error` (the answer could not be published).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Cancelled,
    Error,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Done,
        RunStatus::Cancelled,
        RunStatus::Error,
    ];

    /// The value stored in `runs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Error => "error",
        }
    }

    /// Finished one way or another: nothing more happens to the run unless asked.
    pub fn is_settled(self) -> bool {
        matches!(self, RunStatus::Done | RunStatus::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .with_context(|| format!("unknown run status {s:?} in the runs table"))
    }
}

/// Stored as its name (`runs.status` is TEXT on both backends); a row holding any other
/// text does not decode.
impl sqlx::Type<sqlx::Any> for RunStatus {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for RunStatus {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
        Ok(text.parse::<RunStatus>()?)
    }
}

fn status_of(row: &sqlx::any::AnyRow) -> anyhow::Result<RunStatus> {
    row.try_get::<String, _>("status")?.parse()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub status: RunStatus,
    /// The random id of the run's page (`/runs/{public_id}`).
    pub public_id: String,
}

/// Everything stored about the run of one commit.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    pub id: i64,
    pub status: RunStatus,
    pub verdict: Option<String>,
    pub tier: Option<Tier>,
    pub report_json: Option<String>,
    /// (login, numeric id) of who approved this commit.
    pub approved_by: Option<(String, i64)>,
}

#[derive(Clone, Debug)]
pub struct Runs {
    db: Db,
}

impl Runs {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The run for this commit, created (status `queued`) if there is none.
    pub async fn open(
        &self,
        forge: &str,
        repo: &str,
        pr: u64,
        head_sha: &str,
        base_sha: &str,
    ) -> anyhow::Result<RunRow> {
        sqlx::query(
            "INSERT INTO runs (forge, repo, pr, head_sha, base_sha, public_id) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (forge, repo, pr, head_sha) DO UPDATE SET base_sha = excluded.base_sha",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(head_sha)
        .bind(base_sha)
        .bind(crate::server::links::new_public_id())
        .execute(self.db.pool())
        .await
        .context("recording the run")?;
        let row = sqlx::query(
            "SELECT id, status, public_id FROM runs WHERE forge = $1 AND repo = $2 AND pr = $3 AND head_sha = $4",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(head_sha)
        .fetch_one(self.db.pool())
        .await
        .context("reading the run")?;
        Ok(RunRow {
            id: row.try_get("id")?,
            status: status_of(&row)?,
            public_id: row
                .try_get::<Option<String>, _>("public_id")?
                .unwrap_or_default(),
        })
    }

    /// The random id of a run's page.
    pub async fn public_id(&self, id: i64) -> anyhow::Result<String> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT public_id FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await
                .context("reading the run's public id")?;
        found
            .flatten()
            .with_context(|| format!("run {id} has no public id"))
    }

    /// Claims the run for `owner` (one evaluation, `{instance}#{random}`) until `ttl`
    /// from now, unless another evaluation holds a live claim. A claim is free when it
    /// is empty, expired, or held by an earlier incarnation of this replica (starts with
    /// `replica` but not with `instance`: that process is gone); with `force` (a re-run
    /// was asked for) this process's own claims give way too. False when another
    /// evaluation has it.
    pub async fn claim(
        &self,
        id: i64,
        owner: &str,
        replica: &str,
        instance: &str,
        force: bool,
        ttl: std::time::Duration,
    ) -> anyhow::Result<bool> {
        let now = unix_ms();
        let done = sqlx::query(
            "UPDATE runs SET claimed_by = $2, claimed_until = $3 \
             WHERE id = $1 AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until < $4 \
                OR (substr(claimed_by, 1, length($5)) = $5 AND substr(claimed_by, 1, length($6)) != $6) \
                OR ($7 AND substr(claimed_by, 1, length($6)) = $6))",
        )
        .bind(id)
        .bind(owner)
        .bind(now.saturating_add(ttl_ms(ttl)))
        .bind(now)
        .bind(replica)
        .bind(instance)
        .bind(force)
        .execute(self.db.pool())
        .await
        .context("claiming the run")?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `owner` still holds the run's claim.
    pub async fn holds_claim(&self, id: i64, owner: &str) -> anyhow::Result<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE id = $1 AND claimed_by = $2")
                .bind(id)
                .bind(owner)
                .fetch_one(self.db.pool())
                .await
                .context("reading the run's claim")?;
        Ok(n == 1)
    }

    /// Extends `owner`'s claim and reads the run's status in one statement; `None` when
    /// the claim was lost (it expired and someone took it over) or the run is gone.
    pub async fn extend_claim(
        &self,
        id: i64,
        owner: &str,
        ttl: std::time::Duration,
    ) -> anyhow::Result<Option<RunStatus>> {
        let found: Option<String> = sqlx::query_scalar(
            "UPDATE runs SET claimed_until = $3 WHERE id = $1 AND claimed_by = $2 RETURNING status",
        )
        .bind(id)
        .bind(owner)
        .bind(unix_ms().saturating_add(ttl_ms(ttl)))
        .fetch_optional(self.db.pool())
        .await
        .context("extending the run's claim")?;
        found.map(|s| s.parse()).transpose()
    }

    /// Gives up `owner`'s claim (the evaluation ended, however it ended).
    pub async fn release_claim(&self, id: i64, owner: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE runs SET claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND claimed_by = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(self.db.pool())
        .await
        .context("releasing the run's claim")?;
        Ok(())
    }

    pub async fn set_status(&self, id: i64, status: RunStatus) -> anyhow::Result<()> {
        sqlx::query("UPDATE runs SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .bind(now_text())
            .execute(self.db.pool())
            .await
            .context("updating the run")?;
        Ok(())
    }

    /// Stores the report and verdict; the status says whether the forge got its answer.
    pub async fn finish(
        &self,
        id: i64,
        status: RunStatus,
        verdict: &str,
        report_json: &str,
        comment_id: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE runs SET status = $2, verdict = $3, report_json = $4, comment_id = COALESCE($5, comment_id), \
             updated_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(verdict)
        .bind(report_json)
        .bind(comment_id)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("storing the run's report")?;
        Ok(())
    }

    /// The run of this exact commit, if there is one.
    pub async fn get(
        &self,
        forge: &str,
        repo: &str,
        pr: u64,
        head_sha: &str,
    ) -> anyhow::Result<Option<RunState>> {
        let row = sqlx::query(
            "SELECT id, status, verdict, tier, report_json, approved_by, approved_by_id FROM runs \
             WHERE forge = $1 AND repo = $2 AND pr = $3 AND head_sha = $4",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(head_sha)
        .fetch_optional(self.db.pool())
        .await
        .context("reading the run")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let approved_by: Option<String> = row.try_get("approved_by")?;
        let approved_by_id: Option<i64> = row.try_get("approved_by_id")?;
        Ok(Some(RunState {
            id: row.try_get("id")?,
            status: status_of(&row)?,
            verdict: row.try_get("verdict")?,
            tier: row
                .try_get::<Option<String>, _>("tier")?
                .map(|t| t.parse())
                .transpose()?,
            report_json: row.try_get("report_json")?,
            approved_by: approved_by.zip(approved_by_id),
        }))
    }

    /// Records the tier the run evaluates at.
    pub async fn set_tier(&self, id: i64, tier: Tier) -> anyhow::Result<()> {
        sqlx::query("UPDATE runs SET tier = $2 WHERE id = $1")
            .bind(id)
            .bind(tier.as_str())
            .execute(self.db.pool())
            .await
            .context("updating the run's tier")?;
        Ok(())
    }

    /// Records who approved the run's commit.
    pub async fn approve(&self, id: i64, login: &str, user_id: u64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE runs SET approved_by = $2, approved_by_id = $3, \
             approved_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(login)
        .bind(user_id as i64)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("recording the approval")?;
        Ok(())
    }

    /// Marks the unfinished runs of a PR cancelled; returns how many there were.
    pub async fn cancel_pr(&self, forge: &str, repo: &str, pr: u64) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE runs SET status = 'cancelled', updated_at = $4 \
             WHERE forge = $1 AND repo = $2 AND pr = $3 AND status IN ('queued', 'running')",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("cancelling the PR's runs")?;
        Ok(done.rows_affected())
    }

    /// Marks the other unfinished runs of a PR cancelled: a push supersedes them.
    /// Returns the head SHAs of the runs it ended, whose statuses must now say so.
    pub async fn supersede(
        &self,
        forge: &str,
        repo: &str,
        pr: u64,
        keep_id: i64,
    ) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE runs SET status = 'cancelled', updated_at = $5 \
             WHERE forge = $1 AND repo = $2 AND pr = $3 AND id != $4 AND status IN ('queued', 'running') \
             RETURNING head_sha",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(keep_id)
        .bind(now_text())
        .fetch_all(self.db.pool())
        .await
        .context("superseding older runs")
    }
}

/// A run as its page shows it (`GET /runs/{id}`, `GET /runs/{id}.json`).
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow)]
pub struct RunPage {
    pub id: i64,
    pub forge: String,
    pub repo: String,
    pub pr: i64,
    pub head_sha: String,
    pub base_sha: Option<String>,
    pub status: RunStatus,
    pub verdict: Option<String>,
    /// The SPEC §5 report exactly as stored; the JSON endpoint serves these bytes.
    pub report_json: Option<String>,
    pub comment_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One line of the run index (`GET /runs`): no report, so a page of them stays small.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow)]
pub struct RunListing {
    pub public_id: String,
    pub forge: String,
    pub repo: String,
    pub pr: i64,
    pub head_sha: String,
    pub status: RunStatus,
    pub verdict: Option<String>,
    pub tier: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Which runs the index lists: all, or those of one repository, or of one PR of it.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub repo: Option<String>,
    pub pr: Option<i64>,
}

impl Runs {
    /// The run whose page id is `public_id`.
    pub async fn by_public_id(&self, public_id: &str) -> anyhow::Result<Option<RunPage>> {
        sqlx::query_as::<_, RunPage>(
            "SELECT id, forge, repo, pr, head_sha, base_sha, status, verdict, report_json, \
             comment_id, created_at, updated_at FROM runs WHERE public_id = $1",
        )
        .bind(public_id)
        .fetch_optional(self.db.pool())
        .await
        .context("reading the run")
    }

    /// Up to `limit` runs matching `filter` after skipping `offset`, newest first (the
    /// row id breaks ties between runs opened in the same millisecond).
    pub async fn recent(
        &self,
        filter: &RunFilter,
        limit: u32,
        offset: u64,
    ) -> anyhow::Result<Vec<RunListing>> {
        sqlx::query_as::<_, RunListing>(
            "SELECT public_id, forge, repo, pr, head_sha, status, verdict, tier, created_at, updated_at \
             FROM runs WHERE public_id IS NOT NULL AND ($1 IS NULL OR repo = $1) AND ($2 IS NULL OR pr = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
        )
        .bind(filter.repo.as_deref())
        .bind(filter.pr)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(self.db.pool())
        .await
        .context("listing runs")
    }
}

#[cfg(test)]
mod status_tests {
    use super::RunStatus;

    #[test]
    fn every_status_reads_back_and_an_unknown_one_is_an_error() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        let err = "finished".parse::<RunStatus>().unwrap_err().to_string();
        assert!(err.contains("unknown run status \"finished\""), "{err}");
    }
}
