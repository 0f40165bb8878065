//! CodeBuild and S3 stand-ins: a moto_server on a free loopback port, AWS clients
//! pointed at it (or at a wiremock fake), a wiremock fake of the CodeBuild JSON API
//! that can fail, time out and throttle, and a stand-in for the builds themselves that
//! runs the worker in process and writes the shard results to S3.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_codebuild::config::{BehaviorVersion, Credentials, Region};
use promptgate::execute::ClientOptions;
use promptgate::executor::worker::{self, ShardKey, ShardPlan, ShardResult};
use serde_json::{json, Value};
use wiremock::{Request, Respond, ResponseTemplate};

pub const BUCKET: &str = "pg-runs";
pub const PROJECT: &str = "pg-eval";

/// A moto_server child process, killed on drop.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    /// Starts moto_server on a free port and waits until it answers.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from);
        // `pip install --user` may leave the script off PATH; the module still runs.
        let child = Command::new("moto_server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("python3")
                    .args(["-m", "moto.server"])
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}); these tests need it: pip install 'moto[server]'"
                )
            });
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited ({status}) before listening; these tests need it: pip install 'moto[server]'"
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on port {port} within 30 s (pip install 'moto[server]')"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn creds() -> Credentials {
    Credentials::new("testing", "testing", None, None, "promptgate-tests")
}

fn retry() -> aws_sdk_codebuild::config::retry::RetryConfig {
    aws_sdk_codebuild::config::retry::RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(Duration::from_millis(5))
}

pub fn codebuild_client(endpoint: &str) -> aws_sdk_codebuild::Client {
    let conf = aws_sdk_codebuild::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(creds())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .retry_config(retry())
        .build();
    aws_sdk_codebuild::Client::from_conf(conf)
}

pub fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "promptgate-tests",
        ))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Creates the bucket, and (on moto) the project.
pub async fn provision(s3: &aws_sdk_s3::Client, codebuild: Option<&aws_sdk_codebuild::Client>) {
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    if let Some(cb) = codebuild {
        use aws_sdk_codebuild::types::*;
        cb.create_project()
            .name(PROJECT)
            .source(
                ProjectSource::builder()
                    .r#type(SourceType::Github)
                    .location("https://github.com/acme/prompts.git")
                    .build()
                    .unwrap(),
            )
            .artifacts(
                ProjectArtifacts::builder()
                    .r#type(ArtifactsType::NoArtifacts)
                    .build()
                    .unwrap(),
            )
            .environment(
                ProjectEnvironment::builder()
                    .r#type(EnvironmentType::LinuxContainer)
                    .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/promptgate:latest")
                    .compute_type(ComputeType::BuildGeneral1Small)
                    .build()
                    .unwrap(),
            )
            .service_role("arn:aws:iam::123456789012:role/promptgate-build")
            .send()
            .await
            .expect("create project");
    }
}

/// Keys under `prefix` in the bucket.
pub async fn list_keys(s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let out = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .expect("list objects");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// How a stand-in build finds the key of the run whose result it writes (its S3 key):
/// the StartBuild's environment override in the wiremock fake, the executor's fixed
/// key with moto (which keeps no overrides).
pub type KeyFor = Arc<dyn Fn(&str) -> Option<ShardKey> + Send + Sync>;

/// What a stand-in build does to its honest result.
#[derive(Clone, Copy)]
pub enum Tamper {
    None,
    /// Someone who can write to the bucket, not holding the key, changes the result
    /// after the build signed it.
    AfterSigning(fn(&mut ShardResult)),
    /// A build that holds the key (compromised) signs a changed result.
    BeforeSigning(fn(&mut ShardResult)),
}

/// Stands in for the builds (moto runs nothing): every plan.json without a
/// result.json is run by the worker code in process, against whatever model its units
/// name, and its result is written, signed with the run's key, where the build would
/// write it. Returns the task handle; abort it when done.
pub fn stand_in_builds(
    s3: aws_sdk_s3::Client,
    finished: Finished,
    key_for: KeyFor,
    tamper: Tamper,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let keys = list_keys(&s3, "").await;
            for plan_key in keys.iter().filter(|k| k.ends_with("/plan.json")) {
                let result_key = plan_key.replace("/plan.json", "/result.json");
                if keys.contains(&result_key) {
                    continue;
                }
                let bytes = worker::s3_get(&s3, BUCKET, plan_key)
                    .await
                    .expect("get plan");
                let plan: ShardPlan = serde_json::from_slice(&bytes).expect("plan json");
                let opts = ClientOptions {
                    backoff_base: Duration::from_millis(1),
                    ..ClientOptions::default()
                };
                let Some(key) = key_for(&result_key) else {
                    // Its StartBuild has not been answered yet.
                    continue;
                };
                let mut result = worker::run_plan(&plan, &worker::plan_digest(&bytes), opts)
                    .await
                    .expect("run plan");
                if let Tamper::BeforeSigning(change) = tamper {
                    change(&mut result);
                }
                let mut body = serde_json::to_vec(&result).expect("result json");
                let signature = key.sign(&body);
                if let Tamper::AfterSigning(change) = tamper {
                    change(&mut result);
                    body = serde_json::to_vec(&result).expect("result json");
                }
                worker::s3_put(
                    &s3,
                    BUCKET,
                    &worker::signature_location(&result_key),
                    signature.into_bytes(),
                )
                .await
                .expect("put signature");
                worker::s3_put(&s3, BUCKET, &result_key, body)
                    .await
                    .expect("put result");
                finished.lock().unwrap().insert(result_key);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The S3 keys of the shard results the stand-in builds have written.
pub type Finished = Arc<Mutex<HashSet<String>>>;

/// A fake CodeBuild (JSON 1.1 over POST /): each started build ends with the next
/// status in `outcomes` (then `SUCCEEDED`), reported on its first BatchGetBuilds;
/// `IN_PROGRESS` stays so. A `SUCCEEDED` build reads as `IN_PROGRESS` until the
/// stand-in has written its result, as a real build only succeeds after its worker
/// has uploaded `result.json` (on two loaded cores the stand-in can be slower than
/// the first poll, and the bot would retry a shard that is merely late). The first `throttle_starts` StartBuild calls and the first
/// `throttle_polls` BatchGetBuilds calls are throttled.
#[derive(Clone, Default)]
pub struct FakeCodeBuild {
    pub state: Arc<Mutex<FakeState>>,
    pub finished: Finished,
}

#[derive(Default)]
pub struct FakeState {
    pub outcomes: Vec<&'static str>,
    pub throttle_starts: usize,
    pub throttle_polls: usize,
    /// Every StartBuild body received (throttled ones too).
    pub starts: Vec<Value>,
    /// (build id, final status).
    pub builds: Vec<(String, &'static str)>,
    /// Build id → the S3 key of the result its env override names.
    pub results: Vec<(String, String)>,
    /// Result S3 key → the shard key its StartBuild handed the build.
    pub keys: Vec<(String, ShardKey)>,
    pub stopped: Vec<String>,
    pub polls: usize,
    /// How long a StartBuild takes to answer, after the build exists.
    pub start_delay: std::time::Duration,
}

impl FakeCodeBuild {
    /// The stand-in builds' view of this fake: each result's key, as its StartBuild
    /// handed it over.
    pub fn key_for(&self) -> KeyFor {
        let state = Arc::clone(&self.state);
        Arc::new(move |result_key: &str| {
            state
                .lock()
                .unwrap()
                .keys
                .iter()
                .find(|(k, _)| k == result_key)
                .map(|(_, key)| key.clone())
        })
    }

    pub fn new(outcomes: Vec<&'static str>, throttle_starts: usize, throttle_polls: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(FakeState {
                outcomes,
                throttle_starts,
                throttle_polls,
                ..FakeState::default()
            })),
            finished: Finished::default(),
        }
    }
}

fn amz_json(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_string(body.to_string())
}

fn throttled() -> ResponseTemplate {
    amz_json(
        400,
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
    )
}

impl Respond for FakeCodeBuild {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let target = req
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut s = self.state.lock().unwrap();
        match target.rsplit('.').next().unwrap_or_default() {
            "StartBuild" => {
                s.starts.push(body.clone());
                if s.throttle_starts > 0 {
                    s.throttle_starts -= 1;
                    return throttled();
                }
                let n = s.builds.len();
                let status = s.outcomes.get(n).copied().unwrap_or("SUCCEEDED");
                let id = format!("{PROJECT}:build-{n}");
                s.builds.push((id.clone(), status));
                let var = |name: &str| {
                    body["environmentVariablesOverride"]
                        .as_array()
                        .and_then(|vars| vars.iter().find(|v| v["name"] == name))
                        .and_then(|v| v["value"].as_str())
                        .map(str::to_string)
                };
                let result = var(promptgate::executor::codebuild::ENV_RESULT)
                    .and_then(|uri| {
                        uri.strip_prefix(&format!("s3://{BUCKET}/"))
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                if let Some(key) = var(promptgate::executor::worker::ENV_SHARD_KEY)
                    .and_then(|hex| ShardKey::from_hex(&hex).ok())
                {
                    s.keys.push((result.clone(), key));
                }
                s.results.push((id.clone(), result));
                amz_json(
                    200,
                    json!({"build": {"id": id, "buildStatus": "IN_PROGRESS", "currentPhase": "QUEUED",
                        "projectName": body["projectName"], "sourceVersion": body["sourceVersion"]}}),
                )
                .set_delay(s.start_delay)
            }
            "BatchGetBuilds" => {
                s.polls += 1;
                if s.throttle_polls > 0 {
                    s.throttle_polls -= 1;
                    return throttled();
                }
                let ids: Vec<String> = body["ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let finished = self.finished.lock().unwrap();
                let builds: Vec<Value> = ids
                    .iter()
                    .filter_map(|id| {
                        let (_, status) = s.builds.iter().find(|(b, _)| b == id)?;
                        let written = s
                            .results
                            .iter()
                            .any(|(b, key)| b == id && finished.contains(key));
                        let status = if s.stopped.contains(id) {
                            "STOPPED"
                        } else if *status == "SUCCEEDED" && !written {
                            "IN_PROGRESS"
                        } else {
                            status
                        };
                        let phase = if status == "IN_PROGRESS" {
                            "BUILD"
                        } else {
                            "COMPLETED"
                        };
                        Some(json!({"id": id, "buildStatus": status, "currentPhase": phase}))
                    })
                    .collect();
                amz_json(200, json!({"builds": builds, "buildsNotFound": []}))
            }
            "StopBuild" => {
                let id = body["id"].as_str().unwrap_or_default().to_string();
                s.stopped.push(id.clone());
                amz_json(200, json!({"build": {"id": id, "buildStatus": "STOPPED"}}))
            }
            other => amz_json(
                400,
                json!({"__type": "InvalidInputException", "message": format!("fake: no {other}")}),
            ),
        }
    }
}
