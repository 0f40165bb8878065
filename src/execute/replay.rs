//! Recorded responses: one pretty-printed JSON file per request key under
//! `<dir>/<key[0..2]>/<key>.json`, meant to be committed to the evaluated repository so
//! CI can run without reaching a model.
//!
//! ```json
//! {
//!   "key": "…",
//!   "kind": "chat",
//!   "request": { "model": "…", "parameters": {…}, "provider": "…", "messages": […] },
//!   "response": { "text": "…", "input_tokens": 10, "output_tokens": 5, "latency_ms": 120 }
//! }
//! ```
//!
//! `kind` is `chat`, `embedding` or `guardrail`; a guardrail recording's request is
//! `{ "guardrail_id", "guardrail_version", "source", "text" }` and its response
//! `{ "intervened": true, "policies": ["contentPolicy:VIOLENCE:BLOCKED"] }`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GuardrailRequest, GuardrailResponse,
    Provider, ProviderError,
};
use crate::store::{KIND_CHAT, KIND_EMBEDDING, KIND_GUARDRAIL};

/// Where recordings live when neither `--record` nor `--replay` names a directory.
pub const DEFAULT_RECORDINGS_DIR: &str = ".promptgate/recordings";

/// Serves recorded responses; never reaches a model.
#[derive(Clone, Debug)]
pub struct ReplayProvider {
    pub dir: PathBuf,
}

impl ReplayProvider {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    async fn read<T: DeserializeOwned>(&self, key: &str, kind: &str) -> Result<T, ProviderError> {
        let path = recording_path(&self.dir, key);
        let shown = path.display().to_string();
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProviderError::MissingRecording {
                    key: key.to_string(),
                    path: shown,
                })
            }
            Err(e) => {
                return Err(ProviderError::Fatal(format!(
                    "cannot read recording {shown}: {e}"
                )))
            }
        };
        let mut recording: Value = serde_json::from_str(&text).map_err(|e| {
            ProviderError::Fatal(format!("recording {shown} is not valid JSON: {e}"))
        })?;
        if let Some(recorded_kind) = recording.get("kind").and_then(Value::as_str) {
            if recorded_kind != kind {
                return Err(ProviderError::Fatal(format!(
                    "recording {shown} holds a {recorded_kind} response, not a {kind} response"
                )));
            }
        }
        if let Some(recorded_key) = recording.get("key").and_then(Value::as_str) {
            if recorded_key != key {
                return Err(ProviderError::Fatal(format!(
                    "recording {shown} is for key {recorded_key}, not {key}"
                )));
            }
        }
        let response = recording
            .get_mut("response")
            .map(Value::take)
            .ok_or_else(|| ProviderError::Fatal(format!("recording {shown} has no `response`")))?;
        serde_json::from_value(response).map_err(|e| {
            ProviderError::Fatal(format!(
                "recording {shown} does not hold a valid {kind} response: {e}"
            ))
        })
    }
}

#[async_trait]
impl Provider for ReplayProvider {
    fn describe(&self) -> String {
        format!("replay {}", self.dir.display())
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.read(&req.key, KIND_CHAT).await
    }

    async fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
        self.read(&req.key, KIND_EMBEDDING).await
    }

    async fn apply_guardrail(
        &self,
        req: &GuardrailRequest,
    ) -> Result<GuardrailResponse, ProviderError> {
        self.read(&req.key, KIND_GUARDRAIL).await
    }
}

/// A file-name-safe form of a key (content keys are hex, so this is normally the key).
fn safe_key(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "_".to_string()
    } else {
        safe
    }
}

/// `<dir>/<key[0..2]>/<key>.json`.
pub fn recording_path(dir: &Path, key: &str) -> PathBuf {
    let name = safe_key(key);
    let shard: String = name.chars().take(2).collect();
    dir.join(shard).join(format!("{name}.json"))
}

/// Writes one recording, atomically: a temporary file in the same directory, synced,
/// then renamed over the final name, so a crash never leaves half a file.
pub fn write_recording(
    dir: &Path,
    key: &str,
    kind: &str,
    request_summary: Value,
    response: Value,
) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let path = recording_path(dir, key);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let recording = json!({
        "key": key,
        "kind": kind,
        "request": request_summary,
        "response": response,
    });
    let mut text = serde_json::to_string_pretty(&recording).map_err(std::io::Error::other)?;
    text.push('\n');

    let tmp = parent.join(format!(
        ".{}.tmp-{}-{}",
        safe_key(key),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_sharded_by_key_prefix() {
        assert_eq!(
            recording_path(Path::new("r"), "abcdef"),
            Path::new("r/ab/abcdef.json")
        );
        assert_eq!(
            recording_path(Path::new("r"), "../x"),
            Path::new("r/__/___x.json")
        );
    }

    #[tokio::test]
    async fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let resp = ChatResponse {
            text: "hi".into(),
            input_tokens: 3,
            output_tokens: 1,
            latency_ms: 9,
            guardrail_intervened: false,
            tool_calls: Vec::new(),
        };
        write_recording(
            dir.path(),
            "abc123",
            KIND_CHAT,
            json!({"model": "m"}),
            serde_json::to_value(&resp).unwrap(),
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("ab/abc123.json")).unwrap();
        assert!(text.ends_with("}\n"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("ab")).unwrap().count(), 1);
        let replay = ReplayProvider::new(dir.path());
        let back: ChatResponse = replay.read("abc123", KIND_CHAT).await.unwrap();
        assert_eq!(back, resp);
        let wrong = replay.read::<EmbedResponse>("abc123", KIND_EMBEDDING).await;
        assert!(matches!(wrong, Err(ProviderError::Fatal(_))));
        let missing = replay.read::<ChatResponse>("ffff", KIND_CHAT).await;
        assert!(matches!(
            missing,
            Err(ProviderError::MissingRecording { .. })
        ));
    }
}
