//! A chat model that echoes: the answer is the request's last user message, so an
//! `icontains` assertion follows the prompt. It can be made slow, to hold a run open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A chat model that answers with the user message, so the `icontains "invoice"`
/// assertion passes at base and fails when the prompt drops the word. While `slow` is
/// set it takes a minute to answer (a run that is still going).
#[derive(Clone, Default)]
pub struct Echo {
    pub slow: Arc<AtomicBool>,
    /// When not zero, every answer takes this many milliseconds (a run that is going,
    /// but ends soon).
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Respond for Echo {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let user = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let response = ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": user}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5}
        }));
        let delay_ms = self.delay_ms.load(Ordering::SeqCst);
        if self.slow.load(Ordering::SeqCst) {
            response.set_delay(Duration::from_secs(60))
        } else if delay_ms > 0 {
            response.set_delay(Duration::from_millis(delay_ms))
        } else {
            response
        }
    }
}

pub async fn model(echo: Echo) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(echo)
        .mount(&server)
        .await;
    server
}
