//! Issue 14 item 1: the Postgres backend behaves like SQLite. The two schemas have the
//! same tables and columns, and every table module (cache, runs, spend, tickets) gives
//! the same answers on both; the queue's and the audit log's own tests run on both too
//! (`src/store/queue.rs`, `tests/audit.rs`). Postgres is a real server
//! (`PROMPTGATE_TEST_POSTGRES_URL`, started by `bash scripts/test.sh`).

use std::collections::BTreeSet;
use std::time::Duration;

use promptgate::event::ForgeKind;
use promptgate::report::Tier;
use promptgate::store::queue::{Enqueued, Queue};
use promptgate::store::runs::{RunFilter, RunStatus};
use promptgate::store::spend::SpendLog;
use promptgate::store::testing::{self, TestStore};
use promptgate::store::tickets::{StoredTicket, Tickets};
use promptgate::store::{Backend, KIND_CHAT};
use serde_json::json;

/// (table, column) of every application table, sqlx's own bookkeeping left out.
async fn columns(t: &TestStore) -> BTreeSet<(String, String)> {
    let sql = match t.backend() {
        Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name != '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name != '_sqlx_migrations'"
        }
    };
    sqlx::query_as::<_, (String, String)>(sql)
        .fetch_all(t.store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn both_schemas_have_the_same_tables_and_columns_and_migrations() {
    let sqlite = testing::sqlite().await;
    let postgres = testing::postgres().await;
    let (a, b) = (columns(&sqlite).await, columns(&postgres).await);
    assert!(a.len() > 40, "{a:?}");
    assert_eq!(
        a.difference(&b).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns only SQLite has"
    );
    assert_eq!(
        b.difference(&a).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns only Postgres has"
    );
    // The same migration versions were applied, so a database moved between backends
    // (or an upgrade) is at the same point.
    let versions = |t: &TestStore| {
        let pool = t.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(versions(&sqlite).await, versions(&postgres).await);
}

#[tokio::test]
async fn the_result_cache_reads_back_what_it_stored() {
    for t in testing::each_backend().await {
        let store = &t.store;
        let kind = t.backend().as_str();
        assert_eq!(store.get("k").await.unwrap(), None, "{kind}");
        store
            .put("k", KIND_CHAT, &json!({"text": "hi"}))
            .await
            .unwrap();
        store
            .put("k", KIND_CHAT, &json!({"text": "again"}))
            .await
            .unwrap();
        let keys: Vec<String> = (0..1200).map(|i| format!("key{i}")).collect();
        let entries: Vec<_> = keys
            .iter()
            .map(|k| (k.clone(), KIND_CHAT, json!(k)))
            .collect();
        store.put_many(&entries).await.unwrap();
        let found = store.get_many(&keys).await.unwrap();
        assert_eq!(found.len(), 1200, "{kind}");
        assert_eq!(found["key1199"], json!("key1199"), "{kind}");
        assert_eq!(
            store.get("k").await.unwrap(),
            Some(json!({"text": "again"})),
            "{kind}"
        );
        assert_eq!(store.len().await.unwrap(), 1201, "{kind}");
    }
}

#[tokio::test]
async fn runs_open_once_per_commit_and_move_through_their_states() {
    for t in testing::each_backend().await {
        let kind = t.backend().as_str();
        let runs = t.store.runs();
        let first = runs
            .open("github", "acme/app", 7, "a1", "b0")
            .await
            .unwrap();
        assert_eq!(first.status, RunStatus::Queued, "{kind}");
        assert_eq!(first.public_id.len(), 32, "{kind}");
        // The same commit is the same run (redelivery, another event).
        let again = runs
            .open("github", "acme/app", 7, "a1", "b0")
            .await
            .unwrap();
        assert_eq!(again, first, "{kind}");
        runs.set_status(first.id, RunStatus::Running).await.unwrap();
        runs.set_tier(first.id, Tier::Release).await.unwrap();
        runs.approve(first.id, "lead", 42).await.unwrap();
        let state = runs
            .get("github", "acme/app", 7, "a1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.status, RunStatus::Running, "{kind}");
        assert_eq!(state.tier, Some(Tier::Release), "{kind}");
        assert_eq!(state.approved_by, Some(("lead".into(), 42)), "{kind}");
        // A push supersedes the older unfinished run; cancel ends the rest.
        let second = runs
            .open("github", "acme/app", 7, "a2", "b0")
            .await
            .unwrap();
        assert_eq!(
            runs.supersede("github", "acme/app", 7, second.id)
                .await
                .unwrap(),
            vec!["a1".to_string()],
            "{kind}"
        );
        runs.finish(second.id, RunStatus::Done, "pass", "{\"v\":1}", Some("c9"))
            .await
            .unwrap();
        assert_eq!(
            runs.cancel_pr("github", "acme/app", 7).await.unwrap(),
            0,
            "{kind}"
        );
        let page = runs.by_public_id(&second.public_id).await.unwrap().unwrap();
        assert_eq!(
            (page.status, page.verdict.as_deref()),
            (RunStatus::Done, Some("pass")),
            "{kind}"
        );
        assert_eq!(page.report_json.as_deref(), Some("{\"v\":1}"), "{kind}");
        assert_eq!(page.comment_id.as_deref(), Some("c9"), "{kind}");
        assert!(
            page.created_at.ends_with('Z'),
            "{kind}: {}",
            page.created_at
        );
        let first_state = runs
            .get("github", "acme/app", 7, "a1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first_state.status, RunStatus::Cancelled, "{kind}");
        // The index: newest first, filtered by repository and PR.
        runs.open("github", "acme/other", 1, "c1", "b0")
            .await
            .unwrap();
        let all = runs.recent(&RunFilter::default(), 10, 0).await.unwrap();
        assert_eq!(all.len(), 3, "{kind}");
        assert_eq!(all[0].repo, "acme/other", "{kind}");
        let filter = RunFilter {
            repo: Some("acme/app".into()),
            pr: Some(7),
        };
        let of_pr = runs.recent(&filter, 1, 1).await.unwrap();
        assert_eq!(of_pr.len(), 1, "{kind}");
        assert_eq!(of_pr[0].head_sha, "a1", "{kind}");
    }
}

#[tokio::test]
async fn spend_and_tickets_read_back_on_both_backends() {
    for t in testing::each_backend().await {
        let kind = t.backend().as_str();
        let spend = SpendLog::new(t.store.db());
        spend
            .record(ForgeKind::Github, "acme/app", 7, 1, 0.25)
            .await
            .unwrap();
        // A retried publish records the same run again: counted once.
        spend
            .record(ForgeKind::Github, "acme/app", 7, 1, 0.25)
            .await
            .unwrap();
        spend
            .record(ForgeKind::Github, "acme/app", 8, 2, 0.5)
            .await
            .unwrap();
        let spent = spend.spent(ForgeKind::Github, "acme/app", 7).await.unwrap();
        assert_eq!((spent.pr_usd, spent.month_usd), (0.25, 0.75), "{kind}");
        let month = spend.this_month().await.unwrap();
        assert_eq!(month.len(), 1, "{kind}");
        assert_eq!(month[0].usd, 0.75, "{kind}");

        let tickets = Tickets::new(t.store.db());
        assert_eq!(
            tickets.get(ForgeKind::Gitlab, "g/p", "k1").await.unwrap(),
            None,
            "{kind}"
        );
        let ticket = StoredTicket {
            number: 12,
            url: "https://gitlab.example/g/p/-/issues/12".into(),
            last_sha: "a1".into(),
        };
        tickets
            .put(ForgeKind::Gitlab, "g/p", "k1", &ticket)
            .await
            .unwrap();
        let moved = StoredTicket {
            last_sha: "a2".into(),
            ..ticket
        };
        tickets
            .put(ForgeKind::Gitlab, "g/p", "k1", &moved)
            .await
            .unwrap();
        assert_eq!(
            tickets.get(ForgeKind::Gitlab, "g/p", "k1").await.unwrap(),
            Some(moved),
            "{kind}"
        );
    }
}

/// Issue 14 item 2: three replicas (three pools on one Postgres database) claiming at
/// once never take the same delivery, and all of it gets taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_claiming_at_once_on_postgres_never_share_a_delivery() {
    let url = testing::new_postgres_database().await.unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = promptgate::store::Store::open_url(&url).await.unwrap();
        replicas.push(Queue::new(store.db()));
    }
    for i in 0..120 {
        let q = &replicas[i % 3];
        assert!(matches!(
            q.enqueue("github", &format!("d{i}"), "ping", b"{}")
                .await
                .unwrap(),
            Enqueued::New(_)
        ));
    }
    let mut workers = Vec::new();
    for (r, q) in replicas.iter().enumerate() {
        for w in 0..4 {
            let q = q.clone();
            workers.push(tokio::spawn(async move {
                let owner = format!("replica{r}-worker{w}");
                let mut taken = Vec::new();
                while let Some(d) = q.claim(&owner, Duration::from_secs(300)).await.unwrap() {
                    taken.push(d.delivery_id.clone());
                    q.complete(d.id).await.unwrap();
                }
                taken
            }));
        }
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 120, "claimed twice or missed");
    assert_eq!(distinct.len(), 120);
    assert_eq!(replicas[0].counts().await.unwrap().done, 120);
}

/// With `sslmode=require` the store refuses a plaintext connection, and the test server
/// (TLS on, see `scripts/test.sh`) gives it an encrypted one.
#[tokio::test]
async fn postgres_connections_can_require_tls() {
    let url = testing::new_postgres_database().await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = promptgate::store::Store::open_url(&format!("{url}{sep}sslmode=require"))
        .await
        .unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(encrypted);
}

/// Issue 12 item 1: a run's status reads back as the type, and a row holding a status
/// the code does not know is an error, not a string passed along.
#[tokio::test]
async fn run_statuses_decode_as_the_type() {
    for t in testing::each_backend().await {
        let kind = t.backend().as_str();
        let runs = t.store.runs();
        let row = runs
            .open("github", "acme/app", 1, "a1", "b0")
            .await
            .unwrap();
        let page = runs.by_public_id(&row.public_id).await.unwrap().unwrap();
        assert_eq!(page.status, RunStatus::Queued, "{kind}");
        assert_eq!(
            serde_json::to_value(&page).unwrap()["status"],
            json!("queued"),
            "{kind}"
        );
        sqlx::query("UPDATE runs SET status = 'finished'")
            .execute(t.store.pool())
            .await
            .unwrap();
        let err = runs.by_public_id(&row.public_id).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown run status \"finished\""),
            "{kind}: {err:#}"
        );
    }
}
