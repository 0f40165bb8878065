//! The audit log: the hash chain, concurrent appends, the export, and `promptgate audit`
//! through the built binary against tampered databases.

use std::path::{Path, PathBuf};
use std::process::Output;

use promptgate::store::Db;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use promptgate::audit::{
    self, AuditEntry, AuditKind, AuditLog, Broken, StoredEntry, Verification, GENESIS,
};
use promptgate::plan::keys::canonical;
use promptgate::store::Store;

fn entry(kind: AuditKind, n: u64) -> AuditEntry {
    AuditEntry {
        kind,
        actor_id: Some(1000 + n),
        actor_login: format!("user{n}"),
        forge: "github".into(),
        repo: "acme/app".into(),
        pr: Some(7),
        sha: Some(format!("{n:040x}")),
        verdict: (kind == AuditKind::Run).then(|| "pass".to_string()),
        detail: json!({"command": format!("/promptgate run s{n}"), "n": n, "nested": {"b": [1, 2.5], "a": null}}),
    }
}

fn kinds() -> [AuditKind; 5] {
    AuditKind::ALL
}

async fn open(path: &Path) -> Db {
    Store::open_sqlite(path).await.unwrap().db()
}

/// A database at `dir/audit.db` holding `n` entries; the pool is closed on return so the
/// binary is the only one with the file open.
async fn database_with(dir: &Path, n: u64) -> (PathBuf, String) {
    let path = dir.join("audit.db");
    let pool = open(&path).await;
    let log = AuditLog::new(pool.clone());
    for i in 0..n {
        log.append(&entry(kinds()[i as usize % 5], i))
            .await
            .unwrap();
    }
    pool.close().await;
    let url = format!("sqlite://{}", path.display());
    (path, url)
}

fn promptgate(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(args)
        .env_remove("PROMPTGATE_DATABASE_URL")
        .env("PROMPTGATE_LOG", "error")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs raw SQL on the file as a tamperer would, without the store or its migrations.
async fn tamper(path: &Path, statements: &[&str]) {
    let pool = SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for s in statements {
        sqlx::query(s).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// The hash of an exported line, recomputed from the documented construction only: the
/// export must carry everything needed to check it without promptgate.
fn recompute(line: &Value) -> String {
    let mut content = line.as_object().unwrap().clone();
    let prev = content.remove("prev_hash").unwrap();
    content.remove("hash").unwrap();
    let mut text = String::new();
    canonical(&Value::Object(content), &mut text);
    let mut h = Sha256::new();
    h.update(prev.as_str().unwrap().as_bytes());
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

#[tokio::test]
async fn appended_entries_form_a_chain_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open(&dir.path().join("audit.db")).await;
    assert_eq!(
        audit::verify(&pool).await.unwrap(),
        Verification {
            entries: 0,
            first_broken: None
        }
    );
    let log = AuditLog::new(pool.clone());
    let written: Vec<AuditEntry> = (0..6).map(|i| entry(kinds()[i % 5], i as u64)).collect();
    for (i, e) in written.iter().enumerate() {
        assert_eq!(log.append(e).await.unwrap(), i as i64 + 1);
    }
    let stored = log.entries().await.unwrap();
    assert_eq!(stored.len(), 6);
    let mut prev = GENESIS.to_string();
    for (i, s) in stored.iter().enumerate() {
        assert_eq!(s.id, i as i64 + 1);
        assert_eq!(s.entry, written[i]);
        assert_eq!(s.prev_hash, prev);
        assert_eq!(s.hash.len(), 64);
        assert!(s.at.ends_with('Z') && s.at.contains('T'), "{}", s.at);
        prev = s.hash.clone();
    }
    assert_eq!(
        audit::verify(&pool).await.unwrap(),
        Verification {
            entries: 6,
            first_broken: None
        }
    );
}

#[tokio::test]
async fn the_table_refuses_update_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open(&dir.path().join("audit.db")).await;
    AuditLog::new(pool.clone())
        .append(&entry(AuditKind::Approval, 1))
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET verdict = 'fail'",
        "DELETE FROM audit_log",
    ] {
        let err = sqlx::query(sql).execute(pool.pool()).await.unwrap_err();
        assert!(
            err.to_string().contains("audit_log is append-only"),
            "{err}"
        );
    }
    assert!(audit::verify(&pool).await.unwrap().first_broken.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_the_chain_linear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // Two pools on one file stand in for two processes: only SQLite's lock orders them.
    let pool_a = open(&path).await;
    let pool_b = open(&path).await;
    let shared = AuditLog::new(pool_a.clone());
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let log = match i % 3 {
            0 => shared.clone(),
            1 => AuditLog::new(pool_a.clone()),
            _ => AuditLog::new(pool_b.clone()),
        };
        tasks.push(tokio::spawn(async move {
            log.append(&entry(AuditKind::Command, i)).await.unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
    assert_eq!(
        audit::verify(&pool_b).await.unwrap(),
        Verification {
            entries: 20,
            first_broken: None
        }
    );
    let mut actors: Vec<u64> = shared
        .entries()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.entry.actor_id)
        .collect();
    actors.sort();
    assert_eq!(actors, (1000..1020).collect::<Vec<u64>>());
}

#[tokio::test]
async fn export_writes_one_checkable_json_line_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open(&dir.path().join("audit.db")).await;
    let log = AuditLog::new(pool.clone());
    for i in 0..5 {
        log.append(&entry(kinds()[i], i as u64)).await.unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(audit::export(&pool, &mut out).await.unwrap(), 5);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(text.ends_with('\n'));
    let stored = log.entries().await.unwrap();
    for (line, s) in lines.iter().zip(&stored) {
        let parsed: StoredEntry = serde_json::from_str(line).unwrap();
        assert_eq!(&parsed, s);
        let value: Value = serde_json::from_str(line).unwrap();
        // Flat: the entry's fields sit beside id, at and the hashes.
        assert_eq!(value["kind"], json!(s.entry.kind.as_str()));
        assert_eq!(recompute(&value), s.hash, "{line}");
    }
    assert_eq!(stored[4].entry.kind, AuditKind::ForkAllowance);
    assert!(lines[4].contains(r#""kind":"fork_allowance""#));
}

#[tokio::test]
async fn cli_verify_passes_on_a_clean_log_and_names_an_edited_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = database_with(dir.path(), 5).await;

    let o = promptgate(&["audit", "verify", "--database", &url]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "audit log OK: 5 entries\n");

    tamper(
        &path,
        &[
            "DROP TRIGGER audit_log_no_update",
            "UPDATE audit_log SET verdict = 'pass' WHERE id = 3",
        ],
    )
    .await;
    let o = promptgate(&["audit", "verify", "--database", &url]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        stdout(&o),
        "audit log broken at entry 3: hash does not match its content\n"
    );
}

#[tokio::test]
async fn a_rehashed_edit_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = database_with(dir.path(), 5).await;
    // A careful tamperer edits entry 2 and recomputes its hash: entry 3 still points at
    // the old one.
    let pool = open(&path).await;
    let mut out = Vec::new();
    audit::export(&pool, &mut out).await.unwrap();
    pool.close().await;
    let line = String::from_utf8(out)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let mut value: Value = serde_json::from_str(&line).unwrap();
    value["actor_login"] = json!("mallory");
    let hash = recompute(&value);
    tamper(
        &path,
        &[
            "DROP TRIGGER audit_log_no_update",
            &format!("UPDATE audit_log SET actor_login = 'mallory', hash = '{hash}' WHERE id = 2"),
        ],
    )
    .await;
    let o = promptgate(&["audit", "verify", "--database", &url]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        stdout(&o),
        "audit log broken at entry 3: prev_hash does not match entry 2\n"
    );
}

#[tokio::test]
async fn a_deleted_entry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = database_with(dir.path(), 5).await;
    tamper(
        &path,
        &[
            "DROP TRIGGER audit_log_no_delete",
            "DELETE FROM audit_log WHERE id = 3",
        ],
    )
    .await;
    let o = promptgate(&["audit", "verify", "--database", &url]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        stdout(&o),
        "audit log broken at entry 3: deleted: the log jumps from entry 2 to entry 4\n"
    );

    let pool = open(&path).await;
    let v = audit::verify(&pool).await.unwrap();
    assert_eq!(v.entries, 4);
    assert_eq!(
        v.first_broken.map(|b| b.to_string()).as_deref(),
        Some("entry 3: deleted: the log jumps from entry 2 to entry 4")
    );
}

#[tokio::test]
async fn deleted_first_and_last_entries_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = database_with(dir.path(), 4).await;
    tamper(
        &path,
        &[
            "DROP TRIGGER audit_log_no_delete",
            "DELETE FROM audit_log WHERE id = 4",
        ],
    )
    .await;
    let pool = open(&path).await;
    assert_eq!(
        audit::verify(&pool).await.unwrap().first_broken,
        Some(Broken {
            id: 4,
            reason: "deleted: the log ends at entry 3 but entries up to 4 were written".into()
        })
    );
    // Appending after a cut-off tail leaves a gap instead of hiding it.
    AuditLog::new(pool.clone())
        .append(&entry(AuditKind::Run, 9))
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&pool).await.unwrap().first_broken,
        Some(Broken {
            id: 4,
            reason: "deleted: the log jumps from entry 3 to entry 5".into()
        })
    );
    sqlx::query("DELETE FROM audit_log WHERE id = 1")
        .execute(pool.pool())
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&pool).await.unwrap().first_broken,
        Some(Broken {
            id: 1,
            reason: "deleted: the log starts at entry 2".into()
        })
    );
}

#[tokio::test]
async fn cli_export_writes_json_lines_to_stdout_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, url) = database_with(dir.path(), 3).await;

    let o = promptgate(&["audit", "export", "--database", &url]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 3, "{text}");
    for (i, line) in text.lines().enumerate() {
        let s: StoredEntry = serde_json::from_str(line).unwrap();
        assert_eq!(s.id, i as i64 + 1);
    }

    let file = dir.path().join("export.jsonl");
    let o = promptgate(&[
        "audit",
        "export",
        "--database",
        &url,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[tokio::test]
async fn cli_reads_the_database_setting_and_refuses_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, url) = database_with(dir.path(), 2).await;
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["audit", "verify"])
        .env("PROMPTGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "audit log OK: 2 entries\n");

    let missing = format!("sqlite://{}", dir.path().join("nope.db").display());
    let o = promptgate(&["audit", "verify", "--database", &missing]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no database at"),
        "{o:?}"
    );
    assert!(!dir.path().join("nope.db").exists());
}

/// Issue 14 item 4: two replicas (two pools, two stores) appending at once on one
/// Postgres database build one unbroken chain; the table refuses edits there too, and
/// a deleted tail is reported as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_appending_at_once_keep_one_chain() {
    let url = promptgate::store::testing::new_postgres_database()
        .await
        .unwrap();
    let a = Store::open_url(&url).await.unwrap().db();
    let b = Store::open_url(&url).await.unwrap().db();
    let mut tasks = Vec::new();
    for i in 0..30u64 {
        let log = AuditLog::new(if i % 2 == 0 { a.clone() } else { b.clone() });
        tasks.push(tokio::spawn(async move {
            log.append(&entry(kinds()[i as usize % 5], i))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1..=30).collect::<Vec<i64>>());
    assert_eq!(
        audit::verify(&b).await.unwrap(),
        Verification {
            entries: 30,
            first_broken: None
        }
    );
    for sql in [
        "UPDATE audit_log SET verdict = 'fail'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(a.pool()).await.unwrap_err();
        assert!(
            err.to_string().contains("audit_log is append-only"),
            "{sql}: {err}"
        );
    }
    // A tamperer who owns the table drops the trigger and cuts the tail off.
    for sql in [
        "DROP TRIGGER audit_log_no_delete ON audit_log",
        "DELETE FROM audit_log WHERE id > 28",
    ] {
        sqlx::query(sql).execute(a.pool()).await.unwrap();
    }
    assert_eq!(
        audit::verify(&a).await.unwrap().first_broken,
        Some(Broken {
            id: 29,
            reason: "deleted: the log ends at entry 28 but entries up to 30 were written".into()
        })
    );
    // The export reads the same rows on Postgres.
    let mut out = Vec::new();
    assert_eq!(audit::export(&a, &mut out).await.unwrap(), 28);
}
