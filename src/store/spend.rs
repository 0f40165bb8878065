//! The `spend` table: what each finished run paid, for budgets and `/metrics`.

use anyhow::Context;

use super::db::{this_month, Db};

use crate::config::budget::Spent;
use crate::event::ForgeKind;

#[derive(Clone)]
pub struct SpendLog {
    db: Db,
}

/// A repository's spend this month, for `/metrics`.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct MonthSpend {
    pub forge: String,
    pub repo: String,
    pub usd: f64,
}

impl SpendLog {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records what run `run_id` paid (once: a retried publish does not count twice).
    pub async fn record(
        &self,
        forge: ForgeKind,
        repo: &str,
        pr: u64,
        run_id: i64,
        usd: f64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO spend (forge, repo, pr, run_id, usd, month) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (forge, repo, run_id) DO UPDATE SET usd = excluded.usd",
        )
        .bind(forge.as_str())
        .bind(repo)
        .bind(pr as i64)
        .bind(run_id)
        .bind(usd)
        .bind(this_month())
        .execute(self.db.pool())
        .await
        .context("recording a run's spend")?;
        Ok(())
    }

    /// The PR's spend over all its runs, and the repository's this UTC month.
    pub async fn spent(&self, forge: ForgeKind, repo: &str, pr: u64) -> anyhow::Result<Spent> {
        let (pr_usd, month_usd): (f64, f64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN pr = $3 THEN usd END), 0.0),
                    COALESCE(SUM(CASE WHEN month = $4 THEN usd END), 0.0)
             FROM spend WHERE forge = $1 AND repo = $2",
        )
        .bind(forge.as_str())
        .bind(repo)
        .bind(pr as i64)
        .bind(this_month())
        .fetch_one(self.db.pool())
        .await
        .context("reading the spend so far")?;
        Ok(Spent { pr_usd, month_usd })
    }

    /// Every repository's spend this UTC month.
    pub async fn this_month(&self) -> anyhow::Result<Vec<MonthSpend>> {
        sqlx::query_as(
            "SELECT forge, repo, SUM(usd) AS usd FROM spend
             WHERE month = $1 GROUP BY forge, repo ORDER BY forge, repo",
        )
        .bind(this_month())
        .fetch_all(self.db.pool())
        .await
        .context("reading this month's spend")
    }
}
