//! Manifest tools through the real binary: the model's tool calls are what
//! `tool-called` and `tool-args-schema` check, and a header a pull request may not send
//! makes the run an error before any call.

mod common;

use common::{check_json, metric_of, suite_of, TestRepo};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers `ORDER <id>` by calling `lookup_order` with that id when the request offers
/// tools; anything else with text only.
struct ToolModel;

impl Respond for ToolModel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let question = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let message = match question.strip_prefix("ORDER ") {
            Some(id) if body.get("tools").is_some() => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "lookup_order",
                    "arguments": json!({"order_id": id}).to_string()
                }}]
            }),
            _ => json!({"role": "assistant", "content": "We open at 9."}),
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}
        }))
    }
}

async fn tool_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ToolModel)
        .mount(&server)
        .await;
    server
}

const TOOLS: &str = "tools:\n  - name: lookup_order\n    description: Look an order up by its id.\n    parameters:\n      type: object\n      required: [order_id]\n      properties: { order_id: { type: string, pattern: \"^[A-Z][0-9]+$\" } }\n";

fn setup(url: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  s:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: { min: 0.4 }\n",
    );
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\n"),
    );
    let schema = json!({"name": "lookup_order", "schema": {
        "type": "object", "required": ["order_id"],
        "properties": {"order_id": {"type": "string", "pattern": "^[A-Z][0-9]+$"}}
    }});
    let cases = [
        json!({"id": "good-args", "vars": {"q": "ORDER A17"}, "assert": [
            {"type": "tool-called", "value": "lookup_order"},
            {"type": "tool-args-schema", "value": schema}
        ]}),
        json!({"id": "bad-args", "vars": {"q": "ORDER 17"}, "assert": [
            {"type": "tool-called", "value": "lookup_order"},
            {"type": "tool-args-schema", "value": schema}
        ]}),
        json!({"id": "no-call-wanted", "vars": {"q": "Opening hours?"}, "assert": [
            {"type": "not-tool-called", "value": "lookup_order"},
            {"type": "contains", "value": "9"}
        ]}),
        json!({"id": "call-missing", "vars": {"q": "Opening hours?"}, "assert": [
            {"type": "tool-called", "value": "lookup_order"}
        ]}),
    ];
    let lines: Vec<String> = cases.iter().map(|c| c.to_string()).collect();
    repo.write("evals/s.jsonl", &(lines.join("\n") + "\n"));
    let base = repo.commit("base");
    (repo, base)
}

#[tokio::test]
async fn tool_calls_are_asserted_through_the_binary() {
    let server = tool_server().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    // Adding tools changes every input key: every case runs again with them.
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\nseed: 3\n{TOOLS}"),
    );
    let head = repo.commit("tools");
    let (code, report) = check_json(&repo, &base, &head, &["--max-concurrency", "1"]);
    assert_eq!(code, 0, "{report}");
    let suite = suite_of(&report, "s");
    assert_eq!(suite["cases"]["evaluated"], 4, "{suite}");
    assert_eq!(metric_of(suite, "assertions")["head"], 0.5, "{suite}");
    let failures: Vec<(&str, &str)> = suite["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["metric"] == "assertions")
        .map(|f| (f["case"].as_str().unwrap(), f["detail"].as_str().unwrap()))
        .collect();
    let detail = |case: &str| {
        failures
            .iter()
            .find(|(c, _)| *c == case)
            .map(|(_, d)| *d)
            .unwrap_or_else(|| panic!("{case} did not fail: {failures:?}"))
    };
    assert_eq!(failures.len(), 2, "{failures:?}");
    let bad = detail("bad-args");
    assert!(
        bad.contains("tool-args-schema \"lookup_order\": call 1 of `lookup_order`"),
        "{bad}"
    );
    assert!(!bad.contains("tool-called"), "{bad}");
    assert!(
        detail("call-missing").contains("tool-called \"lookup_order\": no tool was called"),
        "{failures:?}"
    );

    // What the head sent: the tool as an OpenAI function, and the seed.
    let received = server.received_requests().await.unwrap();
    let sent: Vec<Value> = received
        .iter()
        .map(|r| r.body_json::<Value>().unwrap())
        .filter(|b| b.get("tools").is_some())
        .collect();
    // One head generation per distinct input: the two "Opening hours?" cases share one.
    assert_eq!(sent.len(), 3);
    for body in &sent {
        assert_eq!(body["seed"], 3);
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "lookup_order");
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["required"],
            json!(["order_id"])
        );
    }
}

/// SPEC §2 security: a head manifest that sends the bot's auth header (or smuggles one
/// in through a line break) is an error naming its line, and nothing is called with it.
#[tokio::test]
async fn a_manifest_cannot_send_credential_or_smuggled_headers() {
    let server = tool_server().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    for (headers, line, why) in [
        (
            "extra_headers:\n  X-Team: support\n  Authorization: Bearer pr-key\n",
            "models/m.yaml:7: extra_headers: `Authorization` is not allowed",
            "carries credentials",
        ),
        (
            "extra_headers:\n  Proxy-Authorization: Basic eA==\n",
            "models/m.yaml:6: extra_headers: `Proxy-Authorization` is not allowed",
            "carries credentials",
        ),
        (
            "extra_headers:\n  Host: metadata.internal\n",
            "models/m.yaml:6: extra_headers: `Host` is not allowed",
            "routing and framing",
        ),
        (
            "extra_headers:\n  X-Team: \"a\\r\\nAuthorization: Bearer pr-key\"\n",
            "models/m.yaml:6: extra_headers: the value of `X-Team` contains a line break",
            "line break",
        ),
    ] {
        repo.write(
            "models/m.yaml",
            &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\nseed: 1\n{headers}"),
        );
        let head = repo.commit("headers");
        let (code, report) = check_json(&repo, &base, &head, &[]);
        assert_eq!(code, 2, "{report}");
        let suite = suite_of(&report, "s");
        assert_eq!(suite["verdict"], "error", "{suite}");
        let errors = suite["errors"].to_string();
        assert!(errors.contains(line) && errors.contains(why), "{errors}");
    }
    let received = server.received_requests().await.unwrap_or_default();
    for r in &received {
        assert!(r.headers.get("authorization").is_none(), "{r:?}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("\"seed\""),
            "a head generation was sent"
        );
    }
}
