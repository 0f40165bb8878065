//! The `runs` table: one row per (forge, repository, PR, head SHA), so a redelivery or
//! a second event for the same commit makes no second run, and a restart finds the run
//! it has to finish.

use anyhow::Context;
use sqlx::{Row, SqlitePool};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct Runs {
    pool: SqlitePool,
}

impl Runs {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
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
            "INSERT INTO runs (forge, repo, pr, head_sha, base_sha) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (forge, repo, pr, head_sha) DO NOTHING",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(head_sha)
        .bind(base_sha)
        .execute(&self.pool)
        .await
        .context("recording the run")?;
        let row = sqlx::query(
            "SELECT id, status FROM runs WHERE forge = ?1 AND repo = ?2 AND pr = ?3 AND head_sha = ?4",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(head_sha)
        .fetch_one(&self.pool)
        .await
        .context("reading the run")?;
        Ok(RunRow {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
        })
    }

    pub async fn set_status(&self, id: i64, status: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE runs SET status = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
        )
        .bind(id)
        .bind(status)
        .execute(&self.pool)
        .await
        .context("updating the run")?;
        Ok(())
    }

    /// Stores the report and verdict; the status says whether the forge got its answer.
    pub async fn finish(
        &self,
        id: i64,
        status: &str,
        verdict: &str,
        report_json: &str,
        comment_id: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE runs SET status = ?2, verdict = ?3, report_json = ?4, comment_id = COALESCE(?5, comment_id), \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
        )
        .bind(id)
        .bind(status)
        .bind(verdict)
        .bind(report_json)
        .bind(comment_id)
        .execute(&self.pool)
        .await
        .context("storing the run's report")?;
        Ok(())
    }

    /// Marks the other unfinished runs of a PR cancelled: a push supersedes them.
    pub async fn supersede(
        &self,
        forge: &str,
        repo: &str,
        pr: u64,
        keep_id: i64,
    ) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE runs SET status = 'cancelled', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE forge = ?1 AND repo = ?2 AND pr = ?3 AND id != ?4 AND status IN ('queued', 'running')",
        )
        .bind(forge)
        .bind(repo)
        .bind(pr as i64)
        .bind(keep_id)
        .execute(&self.pool)
        .await
        .context("superseding older runs")?;
        Ok(done.rows_affected())
    }
}
