//! The OpenAI-compatible provider against a wiremock server: request shape, response
//! parsing, the API key, and how HTTP failures are classified and retried.

use std::time::Duration;

use promptgate::config::{ModelSpec, Parameters, ProviderKind};
use promptgate::execute::openai::OpenAiProvider;
use promptgate::execute::{
    ChatRequest, ClientOptions, EmbedRequest, Message, ModelClient, Provider, ProviderError,
};
use promptgate::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn spec(server: &MockServer, parameters: Parameters) -> ModelSpec {
    ModelSpec {
        provider: ProviderKind::Openai,
        model: "llama3.1:8b".into(),
        region: None,
        base_url: Some(format!("{}/v1", server.uri())),
        api_key_env: None,
        parameters,
    }
}

fn chat_req(spec: ModelSpec, key: &str) -> ChatRequest {
    ChatRequest {
        key: key.into(),
        spec,
        messages: vec![
            Message::new("system", "Answer in one word."),
            Message::new("user", "Capital of France?"),
        ],
        guardrail: None,
    }
}

fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23}
    })
}

fn fast_opts(max_attempts: u32) -> ClientOptions {
    ClientOptions {
        max_in_flight: 4,
        timeout: Duration::from_secs(10),
        max_attempts,
        backoff_base: Duration::from_millis(1),
        ..ClientOptions::default()
    }
}

async fn client(opts: ClientOptions) -> ModelClient {
    let store = Store::open_url("sqlite::memory:").await.unwrap();
    ModelClient::new(store, opts)
}

#[tokio::test]
async fn chat_sends_model_messages_and_parameters_and_parses_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Paris")))
        .expect(1)
        .mount(&server)
        .await;

    let params = Parameters {
        temperature: Some(0.25),
        max_tokens: Some(64),
        top_p: Some(0.5),
        stop: Some(vec!["END".into()]),
        ..Parameters::default()
    };
    let provider = OpenAiProvider::new();
    let resp = provider
        .chat(&chat_req(spec(&server, params), "k1"))
        .await
        .unwrap();
    assert_eq!(resp.text, "Paris");
    assert_eq!(resp.input_tokens, 21);
    assert_eq!(resp.output_tokens, 2);
    assert!(resp.latency_ms < 10_000, "{}", resp.latency_ms);

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(
        body,
        json!({
            "model": "llama3.1:8b",
            "messages": [
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "Capital of France?"}
            ],
            "temperature": 0.25,
            "max_tokens": 64,
            "top_p": 0.5,
            "stop": ["END"]
        })
    );
    // No key configured: no Authorization header.
    assert!(received[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn absent_parameters_are_left_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Paris")))
        .mount(&server)
        .await;
    let mut s = spec(&server, Parameters::default());
    // A trailing slash on base_url does not double the separator.
    s.base_url = Some(format!("{}/v1/", server.uri()));
    OpenAiProvider::new().chat(&chat_req(s, "k")).await.unwrap();
    let body: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["messages", "model"]);
}

#[tokio::test]
async fn api_key_env_sends_bearer_token() {
    let var = "PGTEST_OPENAI_KEY_BEARER_7F3A";
    std::env::set_var(var, "sk-test-secret");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Paris")))
        .expect(1)
        .mount(&server)
        .await;
    let mut s = spec(&server, Parameters::default());
    s.api_key_env = Some(var.into());
    let resp = OpenAiProvider::new().chat(&chat_req(s, "k")).await.unwrap();
    assert_eq!(resp.text, "Paris");
}

#[tokio::test]
async fn missing_api_key_env_is_fatal_and_names_the_variable() {
    let var = "PGTEST_OPENAI_KEY_UNSET_91C2";
    std::env::remove_var(var);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("x")))
        .expect(0)
        .mount(&server)
        .await;
    let mut s = spec(&server, Parameters::default());
    s.api_key_env = Some(var.into());
    let err = client(fast_opts(5))
        .await
        .chat(chat_req(s, "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    assert!(err.to_string().contains(var), "{err}");
}

#[tokio::test]
async fn errors_never_contain_the_api_key() {
    let var = "PGTEST_OPENAI_KEY_LEAK_44D0";
    std::env::set_var(var, "sk-do-not-print-me");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string("invalid api key"))
        .mount(&server)
        .await;
    let mut s = spec(&server, Parameters::default());
    s.api_key_env = Some(var.into());
    let err = OpenAiProvider::new()
        .chat(&chat_req(s, "k"))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("sk-do-not-print-me"), "{text}");
}

#[tokio::test]
async fn rate_limited_then_ok_is_retried_and_counted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).set_body_string("slow down"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Paris")))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(fast_opts(5)).await;
    let got = c
        .chat(chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap();
    assert_eq!(got.value.text, "Paris");
    assert!(!got.cached);
    let usage = c.usage();
    assert_eq!(usage.retries, 1);
    assert_eq!(usage.chat_calls, 1);
    assert_eq!(usage.input_tokens, 21);
    assert_eq!(usage.output_tokens, 2);
}

#[tokio::test]
async fn retry_after_header_is_parsed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_string("quota"),
        )
        .mount(&server)
        .await;
    let err = OpenAiProvider::new()
        .chat(&chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    // A 429 is retried like any transient error, and named a throttle, which a load
    // test counts apart from server errors.
    assert!(err.is_retryable(), "{err:?}");
    match err {
        ProviderError::Throttled {
            message,
            retry_after,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
}

#[tokio::test]
async fn server_error_forever_gives_up_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(3)
        .mount(&server)
        .await;
    let c = client(fast_opts(3)).await;
    let err = c
        .chat(chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("500"), "{text}");
    // A body that is not the OpenAI error shape goes to the operator's log, not into
    // the message a PR sees (issue 10: SSRF answers were shown in the comment).
    assert!(!text.contains("boom"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    let usage = c.usage();
    assert_eq!(usage.retries, 2);
    assert_eq!(usage.chat_calls, 1);
    assert_eq!(c.done(), 1);
}

#[tokio::test]
async fn bad_request_is_fatal_not_retried_with_a_capped_excerpt() {
    let server = MockServer::start().await;
    let long_body = format!(
        "{{\"error\":\"unknown model\",\"pad\":\"{}\"}}",
        "z".repeat(2000)
    );
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_string(long_body))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(fast_opts(5)).await;
    let err = c
        .chat(chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("400"), "{text}");
    assert!(text.contains("unknown model"), "{text}");
    assert!(text.len() < 600, "excerpt not capped: {} chars", text.len());
    assert_eq!(c.usage().retries, 0);
}

#[tokio::test]
async fn malformed_json_is_fatal() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy error</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(fast_opts(5))
        .await
        .chat(chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[tokio::test]
async fn slow_server_times_out_per_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let opts = ClientOptions {
        timeout: Duration::from_millis(100),
        ..fast_opts(2)
    };
    let err = client(opts)
        .await
        .chat(chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "timed out after 100ms (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let s = ModelSpec {
        provider: ProviderKind::Openai,
        model: "m".into(),
        region: None,
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        api_key_env: None,
        parameters: Parameters::default(),
    };
    let c = client(fast_opts(2)).await;
    let err = c.chat(chat_req(s, "k")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().contains("gave up after 2 attempts"),
        "{err}"
    );
    assert_eq!(c.usage().retries, 1);
}

#[tokio::test]
async fn embeddings_are_parsed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 1.0]}],
            "model": "nomic-embed-text",
            "usage": {"prompt_tokens": 4, "total_tokens": 4}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut s = spec(&server, Parameters::default());
    s.model = "nomic-embed-text".into();
    let c = client(fast_opts(3)).await;
    let got = c
        .embed(EmbedRequest {
            key: "e1".into(),
            spec: s,
            text: "hello world".into(),
        })
        .await
        .unwrap();
    assert_eq!(got.value.vector, vec![0.5, -0.25, 1.0]);
    assert_eq!(got.value.input_tokens, 4);
    assert_eq!(c.usage().embed_calls, 1);
    assert_eq!(c.usage().input_tokens, 4);

    let body: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert_eq!(
        body,
        json!({"model": "nomic-embed-text", "input": "hello world"})
    );
}

#[tokio::test]
async fn answer_without_choices_is_fatal() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": "nope"})))
        .mount(&server)
        .await;
    let err = OpenAiProvider::new()
        .chat(&chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    assert!(err.to_string().contains("choices[0].message"), "{err}");
}

#[tokio::test]
async fn a_key_env_naming_the_bots_own_settings_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let mut s = spec(&server, Parameters::default());
    s.api_key_env = Some("PROMPTGATE_GITHUB_TOKEN".into());
    let err = OpenAiProvider::new()
        .chat(&chat_req(s, "k"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not allowed"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// A base_url that redirects to an internal host (the SSRF of issue 10): the redirect is
/// not followed, and nothing of the internal answer reaches the error the PR sees.
#[tokio::test]
async fn redirects_are_not_followed_and_foreign_bodies_are_not_shown() {
    let internal = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("AKIAINTERNALSECRET"))
        .expect(0)
        .mount(&internal)
        .await;
    let server = MockServer::start().await;
    let location = format!(
        "{}/latest/meta-data/iam/security-credentials/role",
        internal.uri()
    );
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", location.as_str()))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(fast_opts(5)).await;
    let err = c
        .chat(chat_req(spec(&server, Parameters::default()), "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("HTTP 302"), "{text}");
    assert!(text.contains("redirects are not followed"), "{text}");
    assert!(!text.contains(&internal.uri()), "{text}");
    internal.verify().await;

    // An error body that is not the OpenAI error shape is left out of the message.
    let other = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string("{\"Code\":\"Success\",\"AccessKeyId\":\"AKIAINTERNALSECRET\"}"),
        )
        .mount(&other)
        .await;
    let err = client(fast_opts(5))
        .await
        .chat(chat_req(spec(&other, Parameters::default()), "k"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(!text.contains("AKIAINTERNALSECRET"), "{text}");
}

/// Issue 10 item 2: a metadata address is refused before any connection, literal or
/// resolved (the resolver's own rules are unit-tested in src/execute/address.rs).
#[tokio::test]
async fn metadata_addresses_are_never_called() {
    let c = client(fast_opts(2)).await;
    for url in [
        "http://169.254.169.254/latest/v1",
        "http://[fe80::1]:8080/v1",
        "http://[fd00:ec2::254]/v1",
    ] {
        let mut s = spec(&MockServer::start().await, Parameters::default());
        s.base_url = Some(url.to_string());
        let err = c.chat(chat_req(s, url)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Fatal(_)), "{url}: {err:?}");
        assert!(err.to_string().contains("metadata"), "{err}");
    }
    assert_eq!(c.usage().retries, 0);
}

fn lookup_tool() -> promptgate::config::manifest::Tool {
    serde_json::from_value(json!({
        "name": "lookup_order",
        "description": "Look an order up.",
        "parameters": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn request_knobs_are_sent_and_tool_calls_parsed_and_cached() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("x-tenant", "acme"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_id\": \"A17\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "lookup_order", "arguments": "{not json"}}
                ]
            }}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let params = Parameters {
        stop: Some(vec!["END".into()]),
        seed: Some(7),
        response_format: Some(
            serde_json::from_value(json!({"type": "json_schema", "json_schema": {"name": "order", "schema": {"type": "object"}, "strict": true}}))
                .unwrap(),
        ),
        extra_headers: [("X-Tenant".to_string(), "acme".to_string())].into(),
        tools: vec![lookup_tool()],
        ..Parameters::default()
    };
    let c = client(fast_opts(1)).await;
    let req = chat_req(spec(&server, params), "tools-1");
    let first = c.chat(req.clone()).await.unwrap();
    assert_eq!(first.value.text, "");
    let calls: Vec<(String, Value)> = first
        .value
        .tool_calls
        .iter()
        .map(|t| (t.name.clone(), t.arguments.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("lookup_order".to_string(), json!({"order_id": "A17"})),
            // Arguments that are not JSON are kept as the raw string.
            ("lookup_order".to_string(), json!("{not json")),
        ]
    );
    // The cached value carries the tool calls: no second request.
    let again = c.chat(req).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.value.tool_calls, first.value.tool_calls);

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["seed"], json!(7));
    assert_eq!(body["stop"], json!(["END"]));
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "order", "schema": {"type": "object"}, "strict": true}})
    );
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "lookup_order",
            "description": "Look an order up.",
            "parameters": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}
        }}])
    );
}

#[tokio::test]
async fn a_credential_header_is_never_sent() {
    // A spec built without the manifest check (the check itself is in
    // src/config/manifest.rs) still cannot carry an Authorization header out.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("x")))
        .expect(0)
        .mount(&server)
        .await;
    let params = Parameters {
        extra_headers: [("Authorization".to_string(), "Bearer pr-key".to_string())].into(),
        ..Parameters::default()
    };
    let err = OpenAiProvider::new()
        .chat(&chat_req(spec(&server, params), "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    assert!(
        err.to_string().contains("`Authorization` is not allowed"),
        "{err}"
    );
}
