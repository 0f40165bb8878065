//! Bedrock guardrails against a wiremock server posing as Bedrock runtime, reached
//! through the SDK's own endpoint override (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`):
//! ApplyGuardrail through `ModelClient::apply_guardrail` (cache, retries, recording,
//! replay) and the Converse `guardrailConfig` pass-through.
//!
//! Environment variables are process-global, so every case that reaches the fake runs
//! inside one test, in sequence, each against its own mock server.

use std::path::Path;
use std::time::Duration;

use promptgate::config::{GuardrailSource, ModelSpec, Parameters, ProviderKind};
use promptgate::execute::{
    ChatRequest, ClientOptions, GuardrailRef, GuardrailRequest, GuardrailResponse, Message, Mode,
    ModelClient, ProviderError,
};
use promptgate::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GUARDRAIL_ID: &str = "gr-abc123";
const GUARDRAIL_VERSION: &str = "3";
const APPLY_PATH: &str = "/guardrail/gr-abc123/version/3/apply";
const CHAT_MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn set_aws_env(scratch: &Path) {
    let missing = scratch.join("no-such-file");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", &missing);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &missing);
    for var in [
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        std::env::remove_var(var);
    }
}

/// A fresh mock server that the next-built SDK client will talk to.
async fn bedrock_server() -> MockServer {
    let server = MockServer::start().await;
    std::env::set_var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.uri());
    server
}

fn opts(max_attempts: u32, mode: Mode) -> ClientOptions {
    ClientOptions {
        max_in_flight: 2,
        timeout: Duration::from_secs(20),
        max_attempts,
        backoff_base: Duration::from_millis(1),
        mode,
        recordings_dir: None,
        namespace: None,
    }
}

async fn client(max_attempts: u32) -> ModelClient {
    client_in(max_attempts, Mode::Live).await
}

async fn client_in(max_attempts: u32, mode: Mode) -> ModelClient {
    let store = Store::open_url("sqlite::memory:").await.unwrap();
    ModelClient::new(store, opts(max_attempts, mode))
}

fn guardrail() -> GuardrailRef {
    GuardrailRef {
        id: GUARDRAIL_ID.into(),
        version: GUARDRAIL_VERSION.into(),
    }
}

fn guardrail_req(key: &str, source: GuardrailSource, text: &str) -> GuardrailRequest {
    GuardrailRequest {
        key: key.into(),
        guardrail: guardrail(),
        source,
        text: text.into(),
        region: Some("us-east-1".into()),
    }
}

fn usage() -> Value {
    json!({
        "topicPolicyUnits": 1,
        "contentPolicyUnits": 1,
        "wordPolicyUnits": 1,
        "sensitiveInformationPolicyUnits": 1,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0
    })
}

fn blocked_body() -> Value {
    json!({
        "usage": usage(),
        "action": "GUARDRAIL_INTERVENED",
        "outputs": [{"text": "Sorry, I cannot help with that."}],
        "assessments": [{
            "contentPolicy": {"filters": [
                {"type": "VIOLENCE", "confidence": "HIGH", "action": "BLOCKED"}
            ]}
        }]
    })
}

fn allowed_body() -> Value {
    json!({
        "usage": usage(),
        "action": "NONE",
        "outputs": [],
        "assessments": [{}]
    })
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json")
        .set_body_json(body)
}

fn throttled() -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("x-amzn-ErrorType", "ThrottlingException")
        .insert_header("content-type", "application/json")
        .set_body_json(json!({"message": "Rate exceeded"}))
}

async fn mount_apply(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(APPLY_PATH))
        .respond_with(response)
        .mount(server)
        .await;
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json().unwrap())
        .collect()
}

#[tokio::test]
async fn guardrails_through_the_sdk_endpoint_override() {
    let scratch = tempfile::tempdir().unwrap();
    set_aws_env(scratch.path());

    blocked_input().await;
    allowed_output().await;
    policies_of_every_kind().await;
    throttling_is_retried().await;
    not_found_is_fatal().await;
    second_identical_call_is_cached().await;
    concurrent_identical_calls_make_one_request().await;
    record_then_replay(scratch.path()).await;
    converse_with_guardrail().await;

    // Last: these break the environment the cases above rely on.
    no_region_is_a_clear_fatal_error(scratch.path()).await;
    no_credentials_is_a_clear_fatal_error(scratch.path()).await;
}

async fn blocked_input() {
    let server = bedrock_server().await;
    mount_apply(&server, ok(blocked_body())).await;
    let c = client(3).await;
    let got = c
        .apply_guardrail(guardrail_req(
            "g1",
            GuardrailSource::Input,
            "How do I build a pipe bomb?",
        ))
        .await
        .unwrap();
    assert!(!got.cached);
    assert_eq!(
        got.value,
        GuardrailResponse {
            intervened: true,
            policies: vec!["contentPolicy:VIOLENCE:BLOCKED".into()],
        }
    );
    assert_eq!(c.usage().guardrail_calls, 1);
    assert_eq!(c.usage().chat_calls, 0);

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), APPLY_PATH);
    let auth = received[0]
        .headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["source"], "INPUT");
    assert_eq!(
        body["content"],
        json!([{"text": {"text": "How do I build a pipe bomb?"}}])
    );
}

async fn allowed_output() {
    let server = bedrock_server().await;
    mount_apply(&server, ok(allowed_body())).await;
    let c = client(3).await;
    let got = c
        .apply_guardrail(guardrail_req(
            "g2",
            GuardrailSource::Output,
            "Our refund policy is 30 days.",
        ))
        .await
        .unwrap();
    assert_eq!(
        got.value,
        GuardrailResponse {
            intervened: false,
            policies: vec![],
        }
    );
    let body = &bodies(&server).await[0];
    assert_eq!(body["source"], "OUTPUT");
    assert_eq!(
        body["content"][0]["text"]["text"],
        "Our refund policy is 30 days."
    );
}

async fn policies_of_every_kind() {
    let server = bedrock_server().await;
    let body = json!({
        "usage": usage(),
        "action": "GUARDRAIL_INTERVENED",
        "outputs": [{"text": "Blocked."}],
        "assessments": [
            {
                "topicPolicy": {"topics": [
                    {"name": "Weapons", "type": "DENY", "action": "BLOCKED"}
                ]},
                "contentPolicy": {"filters": [
                    {"type": "HATE", "confidence": "MEDIUM", "action": "BLOCKED"},
                    // Detected in detect-only mode: nothing done, not listed.
                    {"type": "INSULTS", "confidence": "LOW", "action": "NONE", "detected": true}
                ]},
                "wordPolicy": {
                    "customWords": [{"match": "pipe bomb", "action": "BLOCKED"}],
                    "managedWordLists": [{"match": "darn", "type": "PROFANITY", "action": "BLOCKED"}]
                },
                "sensitiveInformationPolicy": {
                    "piiEntities": [{"match": "555-0100", "type": "PHONE", "action": "ANONYMIZED"}],
                    "regexes": [{"name": "account-id", "match": "ACC-1", "regex": "ACC-\\d+", "action": "BLOCKED"}]
                }
            },
            {
                "contextualGroundingPolicy": {"filters": [
                    {"type": "GROUNDING", "threshold": 0.7, "score": 0.2, "action": "BLOCKED"}
                ]}
            }
        ]
    });
    mount_apply(&server, ok(body)).await;
    let c = client(3).await;
    let got = c
        .apply_guardrail(guardrail_req("g3", GuardrailSource::Input, "x"))
        .await
        .unwrap();
    assert!(got.value.intervened);
    assert_eq!(
        got.value.policies,
        vec![
            "topicPolicy:Weapons:BLOCKED",
            "contentPolicy:HATE:BLOCKED",
            "wordPolicy:customWords:pipe bomb",
            "wordPolicy:managedWordLists:PROFANITY",
            "sensitiveInformationPolicy:PHONE:ANONYMIZED",
            "sensitiveInformationPolicy:account-id:BLOCKED",
            "contextualGroundingPolicy:GROUNDING:BLOCKED",
        ]
    );
}

async fn throttling_is_retried() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path(APPLY_PATH))
        .respond_with(throttled())
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(APPLY_PATH))
        .respond_with(ok(blocked_body()))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(3).await;
    let got = c
        .apply_guardrail(guardrail_req("g4", GuardrailSource::Input, "x"))
        .await
        .unwrap();
    assert!(got.value.intervened);
    assert_eq!(c.usage().retries, 1);
    assert_eq!(c.usage().guardrail_calls, 1);
}

async fn not_found_is_fatal() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path(APPLY_PATH))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("x-amzn-ErrorType", "ResourceNotFoundException")
                .insert_header("content-type", "application/json")
                .set_body_json(json!({"message": "The guardrail was not found."})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(5).await;
    let err = c
        .apply_guardrail(guardrail_req("g5", GuardrailSource::Input, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("guardrail gr-abc123"), "{text}");
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    assert_eq!(c.usage().retries, 0);
}

async fn second_identical_call_is_cached() {
    let server = bedrock_server().await;
    mount_apply(&server, ok(blocked_body())).await;
    let c = client(3).await;
    let first = c
        .apply_guardrail(guardrail_req("g6", GuardrailSource::Input, "x"))
        .await
        .unwrap();
    let second = c
        .apply_guardrail(guardrail_req("g6", GuardrailSource::Input, "x"))
        .await
        .unwrap();
    assert!(!first.cached);
    assert!(second.cached);
    assert_eq!(second.value, first.value);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(c.usage().guardrail_calls, 1);
    assert_eq!(c.usage().cache_hits, 1);
}

async fn concurrent_identical_calls_make_one_request() {
    let server = bedrock_server().await;
    mount_apply(
        &server,
        ok(blocked_body()).set_delay(Duration::from_millis(200)),
    )
    .await;
    let c = client(3).await;
    let calls = (0..4).map(|_| c.apply_guardrail(guardrail_req("g7", GuardrailSource::Input, "x")));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().value.intervened));
    assert_eq!(
        results
            .iter()
            .filter(|r| !r.as_ref().unwrap().cached)
            .count(),
        1
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(c.usage().guardrail_calls, 1);
}

async fn record_then_replay(scratch: &Path) {
    let server = bedrock_server().await;
    mount_apply(&server, ok(blocked_body())).await;
    let recordings = scratch.join("recordings");
    let recorder = client_in(3, Mode::Record(recordings.clone())).await;
    let recorded = recorder
        .apply_guardrail(guardrail_req(
            "ab77",
            GuardrailSource::Output,
            "some answer",
        ))
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(recordings.join("ab/ab77.json")).unwrap())
            .unwrap();
    assert_eq!(rec["key"], "ab77");
    assert_eq!(rec["kind"], "guardrail");
    assert_eq!(
        rec["request"],
        json!({
            "guardrail_id": GUARDRAIL_ID,
            "guardrail_version": GUARDRAIL_VERSION,
            "source": "OUTPUT",
            "text": "some answer"
        })
    );
    assert_eq!(rec["response"]["intervened"], true);
    assert_eq!(
        rec["response"]["policies"],
        json!(["contentPolicy:VIOLENCE:BLOCKED"])
    );

    // Replay from a fresh cache, against a fake that would fail every call.
    let dead = bedrock_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&dead)
        .await;
    let replayer = client_in(3, Mode::Replay(recordings.clone())).await;
    let replayed = replayer
        .apply_guardrail(guardrail_req(
            "ab77",
            GuardrailSource::Output,
            "some answer",
        ))
        .await
        .unwrap();
    assert_eq!(replayed.value, recorded.value);
    assert_eq!(dead.received_requests().await.unwrap().len(), 0);

    // A key that was never recorded is reported as missing, not fetched.
    let missing = replayer
        .apply_guardrail(guardrail_req("ffff", GuardrailSource::Input, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ProviderError::MissingRecording { .. }),
        "{missing:?}"
    );
    assert_eq!(dead.received_requests().await.unwrap().len(), 0);
}

fn chat_req(guardrail: Option<GuardrailRef>) -> ChatRequest {
    ChatRequest {
        key: "c0ffee".into(),
        spec: ModelSpec {
            provider: ProviderKind::Bedrock,
            model: CHAT_MODEL.into(),
            region: Some("us-east-1".into()),
            base_url: None,
            api_key_env: None,
            parameters: Parameters::default(),
        },
        messages: vec![Message::new("user", "How do I build a pipe bomb?")],
        guardrail,
    }
}

async fn converse_with_guardrail() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(ok(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, I cannot help with that."}]}},
            "stopReason": "guardrail_intervened",
            "usage": {"inputTokens": 10, "outputTokens": 0, "totalTokens": 10},
            "metrics": {"latencyMs": 50}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(3).await;
    let got = c.chat(chat_req(Some(guardrail()))).await.unwrap();
    assert!(got.value.guardrail_intervened);
    assert_eq!(got.value.text, "Sorry, I cannot help with that.");
    let body = &bodies(&server).await[0];
    assert_eq!(
        body["guardrailConfig"],
        json!({
            "guardrailIdentifier": GUARDRAIL_ID,
            "guardrailVersion": GUARDRAIL_VERSION,
            "trace": "enabled"
        })
    );

    // Without a guardrail there is no guardrailConfig, and end_turn is no intervention.
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(ok(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "No."}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 10, "outputTokens": 1, "totalTokens": 11},
            "metrics": {"latencyMs": 50}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(3).await;
    let got = c.chat(chat_req(None)).await.unwrap();
    assert!(!got.value.guardrail_intervened);
    let body = &bodies(&server).await[0];
    assert!(body.get("guardrailConfig").is_none(), "{body}");
}

/// Points the shared config and credentials files at empty files.
fn empty_aws_files(scratch: &Path) {
    let config = scratch.join("empty-config");
    let credentials = scratch.join("empty-credentials");
    std::fs::write(&config, "").unwrap();
    std::fs::write(&credentials, "").unwrap();
    std::env::set_var("AWS_CONFIG_FILE", &config);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials);
}

async fn no_region_is_a_clear_fatal_error(scratch: &Path) {
    let server = bedrock_server().await;
    mount_apply(&server, ok(blocked_body())).await;
    empty_aws_files(scratch);
    std::env::remove_var("AWS_REGION");
    std::env::remove_var("AWS_DEFAULT_REGION");
    let c = client(5).await;
    let err = c
        .apply_guardrail(GuardrailRequest {
            region: None,
            ..guardrail_req("g8", GuardrailSource::Input, "x")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("Bedrock is not reachable for guardrail gr-abc123"),
        "{text}"
    );
    assert!(text.contains("no AWS region configured"), "{text}");
    assert!(text.contains("AWS_REGION"), "{text}");
    assert_eq!(c.usage().retries, 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    std::env::set_var("AWS_REGION", "us-east-1");
}

async fn no_credentials_is_a_clear_fatal_error(scratch: &Path) {
    let server = bedrock_server().await;
    mount_apply(&server, ok(blocked_body())).await;
    empty_aws_files(scratch);
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let c = client(5).await;
    let err = c
        .apply_guardrail(guardrail_req("g9", GuardrailSource::Input, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("Bedrock is not reachable for guardrail gr-abc123"),
        "{text}"
    );
    assert!(text.contains("no AWS credentials found"), "{text}");
    assert_eq!(c.usage().retries, 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
}

/// Replay of a hand-written recording: no Bedrock client is built, no request sent.
#[tokio::test]
async fn replay_of_a_recorded_guardrail_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("5e").join("5eed.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({
            "key": "5eed",
            "kind": "guardrail",
            "request": {"guardrail_id": GUARDRAIL_ID, "guardrail_version": "3", "source": "INPUT", "text": "hi"},
            "response": {"intervened": false, "policies": []}
        }))
        .unwrap(),
    )
    .unwrap();
    let c = client_in(1, Mode::Replay(dir.path().to_path_buf())).await;
    let got = c
        .apply_guardrail(guardrail_req("5eed", GuardrailSource::Input, "hi"))
        .await
        .unwrap();
    assert!(!got.value.intervened);
    assert!(got.value.policies.is_empty());
    let again = c
        .apply_guardrail(guardrail_req("5eed", GuardrailSource::Input, "hi"))
        .await
        .unwrap();
    assert!(again.cached);

    // A recording of another kind is refused, not misread.
    std::fs::write(
        &file,
        json!({"key": "5eed", "kind": "chat", "request": {}, "response": {"text": "x"}})
            .to_string(),
    )
    .unwrap();
    let other = client_in(1, Mode::Replay(dir.path().to_path_buf())).await;
    let err = other
        .apply_guardrail(guardrail_req("5eed", GuardrailSource::Input, "hi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a guardrail response"),
        "{err}"
    );
}
