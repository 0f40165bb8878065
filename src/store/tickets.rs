//! The `tickets` table: which forge issue holds each finding (by its identity key).

use anyhow::Context;

use super::db::Db;

use crate::event::ForgeKind;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredTicket {
    pub number: i64,
    pub url: String,
    pub last_sha: String,
}

#[derive(Clone)]
pub struct Tickets {
    db: Db,
}

impl Tickets {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn get(
        &self,
        forge: ForgeKind,
        repo: &str,
        key: &str,
    ) -> anyhow::Result<Option<StoredTicket>> {
        sqlx::query_as(
            "SELECT number, url, last_sha FROM tickets WHERE forge = $1 AND repo = $2 AND key = $3",
        )
        .bind(forge.as_str())
        .bind(repo)
        .bind(key)
        .fetch_optional(self.db.pool())
        .await
        .context("reading a ticket")
    }

    /// Records (or moves) the issue of `key` and the head SHA it last heard about.
    pub async fn put(
        &self,
        forge: ForgeKind,
        repo: &str,
        key: &str,
        ticket: &StoredTicket,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO tickets (forge, repo, key, number, url, last_sha) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (forge, repo, key) DO UPDATE SET number = excluded.number, url = excluded.url, last_sha = excluded.last_sha",
        )
        .bind(forge.as_str())
        .bind(repo)
        .bind(key)
        .bind(ticket.number)
        .bind(&ticket.url)
        .bind(&ticket.last_sha)
        .execute(self.db.pool())
        .await
        .context("recording a ticket")?;
        Ok(())
    }
}
