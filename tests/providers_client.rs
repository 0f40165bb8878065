//! `ModelClient` end to end against a wiremock OpenAI-compatible fake: the result
//! cache, the in-flight limit, in-flight de-duplication, and record → replay.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promptgate::config::{ModelSpec, Parameters, ProviderKind};
use promptgate::execute::{
    ChatRequest, ClientOptions, EmbedRequest, Message, Mode, ModelClient, ProviderError,
};
use promptgate::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn spec(base_url: String) -> ModelSpec {
    ModelSpec {
        provider: ProviderKind::Openai,
        model: "llama3.1:8b".into(),
        region: None,
        base_url: Some(base_url),
        api_key_env: None,
        parameters: Parameters {
            temperature: Some(0.0),
            ..Parameters::default()
        },
    }
}

fn chat_req(server: &MockServer, key: &str, question: &str) -> ChatRequest {
    ChatRequest {
        key: key.into(),
        spec: spec(format!("{}/v1", server.uri())),
        messages: vec![Message::new("user", question)],
        guardrail: None,
    }
}

fn embed_req(server: &MockServer, key: &str, text: &str) -> EmbedRequest {
    EmbedRequest {
        key: key.into(),
        spec: spec(format!("{}/v1", server.uri())),
        text: text.into(),
    }
}

fn completion(text: &str) -> Value {
    json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}
    })
}

fn opts(max_in_flight: usize, mode: Mode) -> ClientOptions {
    ClientOptions {
        max_in_flight,
        timeout: Duration::from_secs(10),
        max_attempts: 3,
        backoff_base: Duration::from_millis(1),
        mode,
        recordings_dir: None,
        namespace: None,
    }
}

async fn memory_store() -> Store {
    Store::open_url("sqlite::memory:").await.unwrap()
}

async fn mount_chat(server: &MockServer, text: &str, delay: Duration) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(text))
                .set_delay(delay),
        )
        .mount(server)
        .await;
}

async fn mount_embeddings(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"embedding": [0.25, 0.5]}],
            "usage": {"prompt_tokens": 2}
        })))
        .mount(server)
        .await;
}

async fn request_count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[test]
fn model_client_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ModelClient>();
}

/// Issue 14 item 5: the bot's client (`write_through`) stores each answer as it arrives,
/// so a crash before the run ends repeats no finished call; the CLI's batches them.
#[tokio::test]
async fn a_write_through_client_stores_each_answer_at_once() {
    let server = MockServer::start().await;
    mount_chat(&server, "Paris", Duration::ZERO).await;
    let store = memory_store().await;
    let batched = ModelClient::new(store.clone(), opts(4, Mode::Live));
    batched
        .chat(chat_req(&server, "k1", "Capital?"))
        .await
        .unwrap();
    assert_eq!(
        store.len().await.unwrap(),
        0,
        "batched until the run flushes"
    );
    let through = ModelClient::new(store.clone(), opts(4, Mode::Live)).write_through();
    through
        .chat(chat_req(&server, "k2", "Capital of Italy?"))
        .await
        .unwrap();
    assert_eq!(store.len().await.unwrap(), 1, "stored as it arrived");
    batched.flush().await;
    assert_eq!(store.len().await.unwrap(), 2);
}

#[tokio::test]
async fn second_identical_call_is_a_cache_hit_without_http() {
    let server = MockServer::start().await;
    mount_chat(&server, "Paris", Duration::ZERO).await;
    mount_embeddings(&server).await;
    let c = ModelClient::new(memory_store().await, opts(4, Mode::Live));

    let first = c.chat(chat_req(&server, "k1", "Capital?")).await.unwrap();
    assert!(!first.cached);
    let second = c.chat(chat_req(&server, "k1", "Capital?")).await.unwrap();
    assert!(second.cached);
    assert_eq!(second.value, first.value);
    assert_eq!(request_count(&server).await, 1);

    let e1 = c.embed(embed_req(&server, "e1", "hello")).await.unwrap();
    let e2 = c.embed(embed_req(&server, "e1", "hello")).await.unwrap();
    assert!(!e1.cached && e2.cached);
    assert_eq!(e2.value.vector, vec![0.25, 0.5]);
    assert_eq!(request_count(&server).await, 2);

    let usage = c.usage();
    assert_eq!(usage.chat_calls, 1);
    assert_eq!(usage.embed_calls, 1);
    assert_eq!(usage.cache_hits, 2);
    // Tokens of fetched results only.
    assert_eq!(usage.input_tokens, 7 + 2);
    assert_eq!(usage.output_tokens, 3);
    assert_eq!(usage.retries, 0);
    assert_eq!(c.done(), 4);
}

/// Records when each request arrived; the response is delayed by `delay`.
struct ArrivalRecorder {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    delay: Duration,
}

impl Respond for ArrivalRecorder {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        self.arrivals.lock().unwrap().push(Instant::now());
        ResponseTemplate::new(200)
            .set_body_json(completion("ok"))
            .set_delay(self.delay)
    }
}

/// The largest number of requests whose `[arrival, arrival + window)` overlap.
fn max_overlap(arrivals: &[Instant], window: Duration) -> usize {
    arrivals
        .iter()
        .map(|&t| {
            arrivals
                .iter()
                .filter(|&&s| s <= t && t < s + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn never_more_than_max_in_flight_calls() {
    let server = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let delay = Duration::from_millis(100);
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ArrivalRecorder {
            arrivals: arrivals.clone(),
            delay,
        })
        .expect(20)
        .mount(&server)
        .await;
    let c = Arc::new(ModelClient::new(memory_store().await, opts(4, Mode::Live)));

    let start = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            let req = chat_req(&server, &format!("key{i:02}"), &format!("q{i}"));
            tokio::spawn(async move { c.chat(req).await })
        })
        .collect();
    for t in tasks {
        assert!(!t.await.unwrap().unwrap().cached);
    }
    let elapsed = start.elapsed();

    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 20);
    // A response takes 100ms, so a request that arrived less than 90ms after another
    // was in flight at the same time.
    let overlap = max_overlap(&arrivals, Duration::from_millis(90));
    assert!(overlap <= 4, "{overlap} calls in flight at once");
    assert!(overlap >= 2, "calls were not concurrent at all ({overlap})");
    // 20 calls, 4 at a time, 100ms each: at least 5 rounds, well under 20.
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
    assert_eq!(c.usage().chat_calls, 20);
    assert_eq!(c.done(), 20);
}

#[tokio::test]
async fn concurrent_calls_for_one_key_make_one_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("Paris"))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = Arc::new(ModelClient::new(memory_store().await, opts(8, Mode::Live)));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            let req = chat_req(&server, "same-key", "Capital?");
            tokio::spawn(async move { c.chat(req).await })
        })
        .collect();
    let mut fetched = 0;
    for t in tasks {
        let got = t.await.unwrap().unwrap();
        assert_eq!(got.value.text, "Paris");
        if !got.cached {
            fetched += 1;
        }
    }
    assert_eq!(fetched, 1);
    assert_eq!(request_count(&server).await, 1);
    let usage = c.usage();
    assert_eq!(usage.chat_calls, 1);
    assert_eq!(usage.cache_hits, 9);
    assert_eq!(c.done(), 10);
}

#[tokio::test]
async fn record_then_replay_without_http() {
    let server = MockServer::start().await;
    mount_chat(&server, "Paris", Duration::ZERO).await;
    mount_embeddings(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recordings");

    let recorder = ModelClient::new(
        memory_store().await,
        opts(4, Mode::Record(recordings.clone())),
    );
    let chat = recorder
        .chat(chat_req(&server, "ab12cd", "Capital of France?"))
        .await
        .unwrap();
    let embed = recorder
        .embed(embed_req(&server, "ef34", "hello"))
        .await
        .unwrap();
    assert_eq!(request_count(&server).await, 2);

    let file = recordings.join("ab").join("ab12cd.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\n  \"key\": \"ab12cd\""),
        "not pretty: {text}"
    );
    let rec: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rec["key"], "ab12cd");
    assert_eq!(rec["kind"], "chat");
    assert_eq!(rec["request"]["model"], "llama3.1:8b");
    assert_eq!(
        rec["request"]["messages"],
        json!([{"role": "user", "content": "Capital of France?"}])
    );
    assert_eq!(rec["response"]["text"], "Paris");
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(recordings.join("ef/ef34.json")).unwrap())
            .unwrap();
    assert_eq!(rec["kind"], "embedding");
    assert_eq!(rec["request"]["text"], "hello");

    // Replay from a fresh cache, against a server that would fail every call.
    let dead = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&dead)
        .await;
    let replayer = ModelClient::new(
        memory_store().await,
        opts(4, Mode::Replay(recordings.clone())),
    );
    let chat2 = replayer
        .chat(chat_req(&dead, "ab12cd", "Capital of France?"))
        .await
        .unwrap();
    assert_eq!(chat2.value, chat.value);
    let embed2 = replayer
        .embed(embed_req(&dead, "ef34", "hello"))
        .await
        .unwrap();
    assert_eq!(embed2.value, embed.value);
    assert_eq!(request_count(&server).await, 2);
    assert_eq!(request_count(&dead).await, 0);
    // Replayed answers are not calls: counted apart (issue [2/9]).
    assert_eq!(replayer.usage().chat_calls, 0);
    assert_eq!(replayer.usage().embed_calls, 0);
    assert_eq!(replayer.usage().replayed, 2);

    // Replayed results go into the cache like any other.
    let again = replayer
        .chat(chat_req(&dead, "ab12cd", "Capital of France?"))
        .await
        .unwrap();
    assert!(again.cached);
}

#[tokio::test]
async fn record_mode_writes_recordings_for_cache_hits_too() {
    let server = MockServer::start().await;
    mount_chat(&server, "Paris", Duration::ZERO).await;
    let store = memory_store().await;
    let live = ModelClient::new(store.clone(), opts(4, Mode::Live));
    live.chat(chat_req(&server, "77aa", "Capital?"))
        .await
        .unwrap();
    assert_eq!(request_count(&server).await, 1);
    // Results are written to the store in batches; a client hands them on by flushing.
    live.flush().await;

    let dir = tempfile::tempdir().unwrap();
    let recorder = ModelClient::new(store, opts(4, Mode::Record(dir.path().to_path_buf())));
    let got = recorder
        .chat(chat_req(&server, "77aa", "Capital?"))
        .await
        .unwrap();
    assert!(got.cached);
    assert_eq!(request_count(&server).await, 1);
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("77").join("77aa.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["response"]["text"], "Paris");
    assert_eq!(rec["request"]["messages"][0]["content"], "Capital?");
}

#[tokio::test]
async fn replay_of_a_missing_key_names_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("x")))
        .expect(0)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let c = ModelClient::new(
        memory_store().await,
        opts(4, Mode::Replay(dir.path().to_path_buf())),
    );
    let err = c
        .chat(chat_req(&server, "deadbeef01", "Capital?"))
        .await
        .unwrap_err();
    match &err {
        ProviderError::MissingRecording { key, path } => {
            assert_eq!(key, "deadbeef01");
            assert!(path.ends_with("deadbeef01.json"), "{path}");
        }
        other => panic!("expected MissingRecording, got {other:?}"),
    }
    assert!(err.to_string().contains("deadbeef01"));
    // Not retried.
    assert_eq!(c.usage().retries, 0);
    assert_eq!(c.done(), 1);
}
