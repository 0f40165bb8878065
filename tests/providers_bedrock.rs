//! The Bedrock provider against a wiremock server posing as Bedrock runtime, reached
//! through the SDK's own endpoint override (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).
//!
//! Environment variables are process-global, so every case runs inside one test, in
//! sequence, each against its own mock server.

use std::time::Duration;

use promptgate::config::{ModelSpec, Parameters, ProviderKind};
use promptgate::execute::{
    ChatRequest, ClientOptions, EmbedRequest, Message, ModelClient, ProviderError,
};
use promptgate::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CHAT_MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const CHAT_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
const EMBED_MODEL: &str = "amazon.titan-embed-text-v2:0";

fn set_aws_env(scratch: &std::path::Path) {
    let missing = scratch.join("no-such-file");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", &missing);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &missing);
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_ENDPOINT_URL");
    std::env::remove_var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
}

/// A fresh mock server that the next-built SDK client will talk to.
async fn bedrock_server() -> MockServer {
    let server = MockServer::start().await;
    std::env::set_var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.uri());
    server
}

fn chat_spec(parameters: Parameters) -> ModelSpec {
    ModelSpec {
        provider: ProviderKind::Bedrock,
        model: CHAT_MODEL.into(),
        region: Some("us-east-1".into()),
        base_url: None,
        api_key_env: None,
        parameters,
    }
}

fn chat_req(parameters: Parameters) -> ChatRequest {
    ChatRequest {
        key: "c0ffee".into(),
        spec: chat_spec(parameters),
        messages: vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Capital of France?"),
        ],
        guardrail: None,
    }
}

fn converse_ok() -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Par"}, {"text": "is"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 123}
    })
}

fn opts(max_attempts: u32) -> ClientOptions {
    ClientOptions {
        max_in_flight: 2,
        timeout: Duration::from_secs(20),
        max_attempts,
        backoff_base: Duration::from_millis(1),
        ..ClientOptions::default()
    }
}

async fn client(max_attempts: u32) -> ModelClient {
    let store = Store::open_url("sqlite::memory:").await.unwrap();
    ModelClient::new(store, opts(max_attempts))
}

fn throttled() -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("x-amzn-ErrorType", "ThrottlingException")
        .insert_header("content-type", "application/json")
        .set_body_json(json!({"message": "Rate exceeded"}))
}

#[tokio::test]
async fn bedrock_through_the_sdk_endpoint_override() {
    let scratch = tempfile::tempdir().unwrap();
    set_aws_env(scratch.path());

    converse_request_and_response().await;
    converse_tools_and_tool_use().await;
    knobs_converse_lacks_are_refused_before_a_call().await;
    throttling_is_retried().await;
    validation_error_is_fatal().await;
    service_unavailable_gives_up_after_max_attempts().await;
    invoke_model_embeddings().await;
}

async fn converse_request_and_response() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(converse_ok()))
        .expect(1)
        .mount(&server)
        .await;
    let params = Parameters {
        temperature: Some(0.5),
        max_tokens: Some(64),
        top_p: Some(0.25),
        stop: Some(vec!["END".into()]),
        ..Parameters::default()
    };
    let c = client(3).await;
    let got = c.chat(chat_req(params)).await.unwrap();
    assert_eq!(got.value.text, "Paris");
    assert_eq!(got.value.input_tokens, 10);
    assert_eq!(got.value.output_tokens, 5);
    // The provider's own latency figure, not the wall time.
    assert_eq!(got.value.latency_ms, 123);
    assert_eq!(c.usage().input_tokens, 10);
    assert_eq!(c.usage().output_tokens, 5);

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), CHAT_PATH);
    // Signed with SigV4 from the environment's credentials.
    let auth = received[0]
        .headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(auth.starts_with("AWS4-HMAC-SHA256"), "{auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");

    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"text": "Capital of France?"}]}])
    );
    let inference = &body["inferenceConfig"];
    assert_eq!(inference["maxTokens"], json!(64));
    assert_eq!(inference["temperature"].as_f64(), Some(0.5));
    assert_eq!(inference["topP"].as_f64(), Some(0.25));
    assert_eq!(inference["stopSequences"], json!(["END"]));
}

async fn converse_tools_and_tool_use() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Looking it up."},
                {"toolUse": {"toolUseId": "t1", "name": "lookup_order", "input": {"order_id": "A17", "qty": 2, "rush": false}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 40, "outputTokens": 9, "totalTokens": 49},
            "metrics": {"latencyMs": 80}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let tools = vec![
        serde_json::from_value(json!({
            "name": "lookup_order",
            "description": "Look an order up.",
            "parameters": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}
        }))
        .unwrap(),
        serde_json::from_value(json!({"name": "escalate"})).unwrap(),
    ];
    let params = Parameters {
        stop: Some(vec!["END".into()]),
        tools,
        ..Parameters::default()
    };
    let got = client(1).await.chat(chat_req(params)).await.unwrap();
    assert_eq!(got.value.text, "Looking it up.");
    assert_eq!(got.value.tool_calls.len(), 1);
    assert_eq!(got.value.tool_calls[0].name, "lookup_order");
    assert_eq!(
        got.value.tool_calls[0].arguments,
        json!({"order_id": "A17", "qty": 2, "rush": false})
    );

    let body: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [
            {"toolSpec": {
                "name": "lookup_order",
                "description": "Look an order up.",
                "inputSchema": {"json": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}}
            }},
            // A tool without `parameters` takes an empty object.
            {"toolSpec": {"name": "escalate", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
        ]})
    );
    assert_eq!(body["inferenceConfig"]["stopSequences"], json!(["END"]));
}

async fn knobs_converse_lacks_are_refused_before_a_call() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(converse_ok()))
        .expect(0)
        .mount(&server)
        .await;
    let params = Parameters {
        seed: Some(1),
        ..Parameters::default()
    };
    let err = client(3).await.chat(chat_req(params)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("Bedrock Converse does not take `seed`"),
        "{err}"
    );
}

async fn throttling_is_retried() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(throttled())
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(converse_ok()))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(3).await;
    let got = c.chat(chat_req(Parameters::default())).await.unwrap();
    assert_eq!(got.value.text, "Paris");
    assert_eq!(c.usage().retries, 1);
    assert_eq!(c.usage().chat_calls, 1);

    // Without parameters there is no inferenceConfig at all.
    let received = server.received_requests().await.unwrap();
    let body: Value = received[1].body_json().unwrap();
    assert!(body.get("inferenceConfig").is_none(), "{body}");
}

async fn validation_error_is_fatal() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-amzn-ErrorType", "ValidationException")
                .insert_header("content-type", "application/json")
                .set_body_json(json!({"message": "The provided model identifier is invalid."})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(5).await;
    let err = c.chat(chat_req(Parameters::default())).await.unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("ValidationException"), "{text}");
    assert!(text.contains("model identifier is invalid"), "{text}");
    assert_eq!(c.usage().retries, 0);
}

async fn service_unavailable_gives_up_after_max_attempts() {
    let server = bedrock_server().await;
    // Exactly max_attempts requests: the SDK's own retries are off.
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/converse$"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("x-amzn-ErrorType", "ServiceUnavailableException")
                .insert_header("content-type", "application/json")
                .set_body_json(json!({"message": "Service unavailable"})),
        )
        .expect(3)
        .mount(&server)
        .await;
    let c = client(3).await;
    let err = c.chat(chat_req(Parameters::default())).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("ServiceUnavailableException"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert_eq!(c.usage().retries, 2);
}

async fn invoke_model_embeddings() {
    let server = bedrock_server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/[^/]+/invoke$"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_json(json!({"embedding": [0.1, 0.2], "inputTextTokenCount": 3})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(3).await;
    let got = c
        .embed(EmbedRequest {
            key: "e1".into(),
            spec: ModelSpec {
                model: EMBED_MODEL.into(),
                ..chat_spec(Parameters::default())
            },
            text: "hello".into(),
        })
        .await
        .unwrap();
    assert_eq!(got.value.vector, vec![0.1f32, 0.2f32]);
    assert_eq!(got.value.input_tokens, 3);
    assert_eq!(c.usage().embed_calls, 1);

    let received = server.received_requests().await.unwrap();
    assert_eq!(
        received[0].url.path(),
        "/model/amazon.titan-embed-text-v2%3A0/invoke"
    );
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body, json!({"inputText": "hello"}));
}
