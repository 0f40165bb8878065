//! `promptgate audit verify` and `promptgate audit export`: the clap definitions live in
//! `main.rs`, the work here.

use anyhow::Context;
use std::io::Write;
use std::path::Path;

use crate::server::open_store;
use crate::settings::Settings;
use crate::store::db::sqlite_file;
use crate::store::Db;

/// `--database`, or else the service's `PROMPTGATE_DATABASE_URL` setting (and its
/// default), so the commands read the same database the bot writes.
pub fn database_url(database: Option<&str>) -> anyhow::Result<String> {
    match database {
        Some(url) => Ok(url.to_string()),
        None => Ok(Settings::from_env(None)?.database_url),
    }
}

/// Opens the bot's database, refusing a file that does not exist: verifying a freshly
/// created empty database would report "OK" for a mistyped path.
pub async fn open(url: &str) -> anyhow::Result<Db> {
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_file(url)? {
            if !path.exists() {
                anyhow::bail!("no database at {} ({url})", path.display());
            }
        }
    }
    // The store applies the migrations, so an older database gains the audit table.
    Ok(open_store(url).await?.db())
}

/// Prints `audit log OK: N entries` (exit 0) or `audit log broken at entry N: reason`
/// (exit 1) to `out`.
pub async fn verify_command(database: Option<&str>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let db = open(&database_url(database)?).await?;
    let v = super::verify(&db).await?;
    db.close().await;
    match v.first_broken {
        None => {
            writeln!(out, "audit log OK: {} entries", v.entries)?;
            Ok(0)
        }
        Some(b) => {
            writeln!(out, "audit log broken at entry {}: {}", b.id, b.reason)?;
            Ok(1)
        }
    }
}

/// Writes the JSON Lines export to `out_file`, or to `stdout` when there is none.
pub async fn export_command(
    database: Option<&str>,
    out_file: Option<&Path>,
    stdout: &mut dyn Write,
) -> anyhow::Result<u8> {
    let db = open(&database_url(database)?).await?;
    let n = match out_file {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = super::export(&db, &mut w).await?;
            w.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "promptgate: exported {n} audit entries to {}",
                path.display()
            );
            n
        }
        None => super::export(&db, stdout).await?,
    };
    db.close().await;
    tracing::debug!("exported {n} audit entries");
    Ok(0)
}
