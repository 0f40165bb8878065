//! Model manifests: which provider and model answers, with what parameters and prices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::parse_yaml;
use crate::diag::{line_of, Diagnostic, Diagnostics};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Bedrock,
    Openai,
    Replay,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Openai => "openai",
            ProviderKind::Replay => "replay",
        }
    }
}

/// What is sent with the messages: the sampling parameters and the request knobs a
/// manifest adds (`seed`, `stop`, `response_format`, `extra_headers`, `tools`). They
/// are one struct because [`ModelSpec::identity`] serialises it into every content key:
/// a knob that is not set is not serialised, so keys made before it existed still match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Headers added to OpenAI-compatible requests, checked by [`forbidden_header`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
}

/// The keys a YAML `parameters:` block takes. The other knobs are written at the top of
/// a manifest (SPEC §2), so each has one place; `stop` is accepted in both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplingBlock {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<Vec<String>>,
}

/// Reads a `parameters:` block: only [`SamplingBlock`]'s keys.
pub(crate) fn sampling_block<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Parameters, D::Error> {
    let b = SamplingBlock::deserialize(d)?;
    Ok(Parameters {
        temperature: b.temperature,
        max_tokens: b.max_tokens,
        top_p: b.top_p,
        stop: b.stop,
        ..Parameters::default()
    })
}

/// OpenAI's `response_format`, sent as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    JsonObject,
    /// `json_schema` is `{name, schema, strict?, description?}`; [`ModelManifest::parse`]
    /// checks `name` and `schema`, the rest goes to the server untouched.
    JsonSchema {
        json_schema: serde_json::Value,
    },
}

/// A function the model may call: OpenAI `tools[].function`, Converse `toolSpec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

impl Tool {
    /// The arguments' schema; a tool without one takes an empty object (Converse
    /// requires an `inputSchema`).
    pub fn schema(&self) -> serde_json::Value {
        self.parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default)]
    pub input_per_1k_tokens: f64,
    #[serde(default)]
    pub output_per_1k_tokens: f64,
}

impl Pricing {
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        input_tokens as f64 / 1000.0 * self.input_per_1k_tokens
            + output_tokens as f64 / 1000.0 * self.output_per_1k_tokens
    }
}

/// A model manifest file (SPEC §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    pub provider: ProviderKind,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, deserialize_with = "sampling_block")]
    pub parameters: Parameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    // The request knobs SPEC §2 puts at the top level; [`ModelManifest::spec`] moves
    // them into the spec's `parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
}

/// What a provider needs to make a call: a manifest without its pricing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub provider: ProviderKind,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub parameters: Parameters,
}

impl ModelSpec {
    /// The part of a spec that can change a model's answer, for content keys. The
    /// endpoint (`base_url`, `region`) and the key name are left out so a recording
    /// made against one server replays against another.
    pub fn identity(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider.as_str(),
            "model": self.model,
            "parameters": self.parameters,
        })
    }
}

impl ModelManifest {
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            provider: self.provider,
            model: self.model.clone(),
            region: self.region.clone(),
            base_url: self.base_url.clone(),
            api_key_env: self.api_key_env.clone(),
            parameters: Parameters {
                // `check` refuses `stop` in both places.
                stop: self.stop.clone().or_else(|| self.parameters.stop.clone()),
                seed: self.seed,
                response_format: self.response_format.clone(),
                extra_headers: self.extra_headers.clone(),
                tools: self.tools.clone(),
                ..self.parameters.clone()
            },
        }
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostics> {
        let m: ModelManifest = parse_yaml(file, text)?;
        let mut diags = Diagnostics::default();
        m.check(file, text, &mut diags);
        if diags.is_empty() {
            Ok(m)
        } else {
            Err(diags)
        }
    }

    fn check(&self, file: &str, text: &str, diags: &mut Diagnostics) {
        if self.model.trim().is_empty() {
            diags.push(Diagnostic::new(
                file,
                line_of(text, "model:"),
                "`model` is empty",
            ));
        }
        if self.provider == ProviderKind::Openai && self.base_url.is_none() {
            diags.push(Diagnostic::new(
                file,
                line_of(text, "provider:"),
                "provider `openai` needs `base_url` (for example http://127.0.0.1:11434/v1)",
            ));
        }
        if let Some(reason) = self.base_url.as_deref().and_then(bad_base_url) {
            diags.push(Diagnostic::new(file, line_of(text, "base_url"), reason));
        }
        if let Some(reason) = self.api_key_env.as_deref().and_then(forbidden_key_env) {
            diags.push(Diagnostic::new(file, line_of(text, "api_key_env"), reason));
        }
        if let Some(t) = self.parameters.temperature {
            if !(0.0..=2.0).contains(&t) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "temperature"),
                    format!("temperature {t} is outside 0..2"),
                ));
            }
        }
        if let Some(p) = self.parameters.top_p {
            if !(0.0..=1.0).contains(&p) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "top_p"),
                    format!("top_p {p} is outside 0..1"),
                ));
            }
        }
        self.check_request_knobs(file, text, diags);
    }

    /// The knobs SPEC §2 lets a manifest add: where each may be written, which
    /// provider takes it, and the headers and tools a pull request may not send.
    fn check_request_knobs(&self, file: &str, text: &str, diags: &mut Diagnostics) {
        // The first line holding `needle` from the top-level `section:` key on, so a
        // header or tool name is found in its own block.
        let within = |section: &str, needle: &str| {
            let key = format!("{section}:");
            let start = text.lines().position(|l| l.starts_with(&key))?;
            let found = text.lines().skip(start).position(|l| l.contains(needle));
            Some(start + found.unwrap_or(0) + 1)
        };
        let mut push = |line: Option<usize>, message: String| {
            diags.push(Diagnostic::new(file, line, message));
        };
        if self.stop.is_some() && self.parameters.stop.is_some() {
            push(
                line_of(text, "stop"),
                "`stop` is set both at the top level and under `parameters`; keep one".into(),
            );
        }
        if self.provider == ProviderKind::Bedrock {
            let unsupported = [
                ("seed", self.seed.is_some(), "Converse has no seed"),
                (
                    "response_format",
                    self.response_format.is_some(),
                    "Converse has no response format; ask for JSON in the prompt, or give a tool whose `parameters` schema shapes the answer and check it with `tool-args-schema`",
                ),
                (
                    "extra_headers",
                    !self.extra_headers.is_empty(),
                    "they are sent to OpenAI-compatible servers only; Bedrock requests are signed by the AWS SDK",
                ),
            ];
            for (key, _, why) in unsupported.iter().filter(|(_, set, _)| *set) {
                push(
                    within(key, key),
                    format!("provider `bedrock` does not take `{key}`: {why}"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in &self.extra_headers {
            let line = within("extra_headers", name);
            if let Some(reason) = forbidden_header(name, value) {
                push(line, reason);
            } else if !seen.insert(name.to_ascii_lowercase()) {
                push(
                    line,
                    format!("extra_headers: `{name}` is given twice (header names ignore case)"),
                );
            }
        }
        if let Some(ResponseFormat::JsonSchema { json_schema }) = &self.response_format {
            let named = json_schema
                .get("name")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|n| !n.is_empty());
            match json_schema.get("schema") {
                Some(schema) if named && schema.is_object() => {
                    if let Err(e) = jsonschema::validator_for(schema) {
                        push(
                            within("response_format", "json_schema"),
                            format!("response_format: `json_schema.schema` is not a JSON Schema: {e}"),
                        );
                    }
                }
                _ => push(
                    within("response_format", "json_schema"),
                    "response_format `json_schema` needs `name` (a string) and `schema` (a JSON Schema object)".into(),
                ),
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for tool in &self.tools {
            let name = tool.name.as_str();
            let line = within("tools", name);
            if let Some(reason) = bad_tool(tool) {
                push(line, reason);
            } else if !names.insert(name) {
                push(line, format!("tools: `{name}` is given twice"));
            }
        }
    }
}

/// Why a tool cannot be sent: both APIs want a name of 1 to 64 letters, digits, `_` or
/// `-`, and an argument schema that is an object schema.
fn bad_tool(tool: &Tool) -> Option<String> {
    let name = &tool.name;
    let good_name = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !good_name {
        return Some(format!(
            "tools: name `{name}` must be 1 to 64 letters, digits, `_` or `-`"
        ));
    }
    let schema = tool.parameters.as_ref()?;
    if !schema.is_object() {
        return Some(format!(
            "tools: `{name}`: `parameters` must be a JSON Schema object"
        ));
    }
    jsonschema::validator_for(schema)
        .err()
        .map(|e| format!("tools: `{name}`: `parameters` is not a JSON Schema: {e}"))
}

/// Why a manifest may not send this header, if it may not. Manifests come from the PR
/// under test: a credential header (`Authorization`, `Cookie`, `Proxy-*`, API-key
/// headers) would replace or sidestep the key promptgate pairs with the endpoint
/// (`PROMPTGATE_MODEL_KEYS`); a routing or framing header (`Host`, `Content-Length`,
/// `Transfer-Encoding`, hop-by-hop ones) would change where or how the request goes;
/// a CR or LF in a value would start a header of its own.
pub fn forbidden_header(name: &str, value: &str) -> Option<String> {
    const CREDENTIALS: &[&str] = &["authorization", "cookie", "api-key", "x-api-key"];
    const TRANSPORT: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    ];
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(format!(
            "extra_headers: `{name}` is not a valid header name"
        ));
    }
    if value.contains(['\r', '\n']) {
        return Some(format!(
            "extra_headers: the value of `{name}` contains a line break"
        ));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Some(format!(
            "extra_headers: the value of `{name}` contains a control character"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("proxy-") || CREDENTIALS.contains(&lower.as_str()) {
        return Some(format!(
            "extra_headers: `{name}` is not allowed: it carries credentials, and the key comes only from `api_key_env`, paired with the endpoint"
        ));
    }
    if TRANSPORT.contains(&lower.as_str()) {
        return Some(format!(
            "extra_headers: `{name}` is not allowed: promptgate sets the request's routing and framing headers itself"
        ));
    }
    None
}

/// Why `api_key_env` may not name this variable, if it may not. A manifest is read from
/// the PR under test, and the key goes to the manifest's `base_url`: naming the bot's own
/// settings (`PROMPTGATE_*`: forge tokens, webhook secrets) or AWS credentials would let
/// a PR send them to a server of its choosing.
/// Why a `base_url` cannot be called: it needs an http(s) scheme and a host
/// (`127.0.0.1:42603/v1` would otherwise fail only at the first call).
pub fn bad_base_url(url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => None,
        _ => Some(format!(
            "base_url `{url}` is not an http(s) URL; write it with its scheme, e.g. http://{}",
            url.split("://").last().unwrap_or(url)
        )),
    }
}

pub fn forbidden_key_env(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    ["PROMPTGATE_", "AWS_", "GITHUB_", "GITLAB_", "CI_JOB_"]
        .iter()
        .find(|prefix| upper.starts_with(*prefix))
        .map(|prefix| {
            format!(
                "api_key_env `{name}` is not allowed: variables starting with {prefix} hold promptgate's or the platform's own credentials"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let text = "provider: bedrock\nmodel: anthropic.claude-3-5-sonnet-20240620-v1:0\nregion: us-east-1\nparameters: { temperature: 0.2, max_tokens: 512, top_p: 0.9 }\npricing: { input_per_1k_tokens: 0.003, output_per_1k_tokens: 0.015 }\n";
        let m = ModelManifest::parse("models/a.yaml", text).unwrap();
        assert_eq!(m.provider, ProviderKind::Bedrock);
        assert_eq!(m.parameters.max_tokens, Some(512));
        let cost = m.pricing.unwrap().cost(1000, 2000);
        assert!((cost - 0.033).abs() < 1e-9);
    }

    #[test]
    fn unknown_parameter_names_line() {
        let text =
            "provider: openai\nmodel: m\nbase_url: http://x/v1\nparameters:\n  temprature: 0.2\n";
        let err = ModelManifest::parse("models/a.yaml", text).unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("models/a.yaml:5:"), "{s}");
        assert!(s.contains("temprature"), "{s}");
    }

    #[test]
    fn api_key_env_cannot_name_the_bots_own_credentials() {
        let err = ModelManifest::parse(
            "m.yaml",
            "provider: openai\nmodel: m\nbase_url: https://evil.example/v1\napi_key_env: PROMPTGATE_GITHUB_TOKEN\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("m.yaml:4: api_key_env `PROMPTGATE_GITHUB_TOKEN` is not allowed"),
            "{err}"
        );
        for name in ["aws_secret_access_key", "GITHUB_TOKEN", "GITLAB_TOKEN"] {
            assert!(forbidden_key_env(name).is_some(), "{name}");
        }
        assert_eq!(forbidden_key_env("OPENAI_API_KEY"), None);
    }

    #[test]
    fn openai_without_base_url_is_an_error() {
        let err = ModelManifest::parse("m.yaml", "provider: openai\nmodel: m\n").unwrap_err();
        assert!(err
            .to_string()
            .contains("m.yaml:1: provider `openai` needs `base_url`"));
    }

    fn key_of(text: &str) -> String {
        let m = ModelManifest::parse("m.yaml", text).unwrap();
        let msgs = [crate::execute::Message::new("user", "hi")];
        crate::plan::input_key(&m.spec(), &msgs, 0, None)
    }

    const PLAIN: &str = "provider: openai\nmodel: m\nbase_url: http://x/v1\nparameters: { temperature: 0.2, stop: [END] }\n";

    #[test]
    fn a_manifest_without_the_new_knobs_keeps_its_input_key() {
        // SHA-256 of the v1 input key encoding, computed apart from this code: cached
        // results and recordings made before the knobs existed must still be found.
        assert_eq!(
            key_of(PLAIN),
            "0a2204822ffe0317f811448b268e8724930866c703efbfe48ba1d299c5fd245f"
        );
        // `stop` at the top level is the same request, so the same key.
        assert_eq!(
            key_of("provider: openai\nmodel: m\nbase_url: http://x/v1\nstop: [END]\nparameters: { temperature: 0.2 }\n"),
            key_of(PLAIN)
        );
    }

    #[test]
    fn every_request_knob_changes_the_input_key() {
        let base = key_of(PLAIN);
        let variants = [
            "seed: 7\n",
            "response_format: { type: json_object }\n",
            "response_format: { type: json_schema, json_schema: { name: a, schema: { type: object } } }\n",
            "extra_headers: { X-Route: blue }\n",
            "tools:\n  - { name: lookup, description: Find an order }\n",
            "tools:\n  - { name: lookup, parameters: { type: object, properties: { id: { type: string } } } }\n",
        ];
        let mut seen = std::collections::BTreeSet::from([base]);
        for extra in variants {
            let key = key_of(&format!("{PLAIN}{extra}"));
            assert!(seen.insert(key), "{extra} did not change the key");
        }
        assert_ne!(
            key_of(&format!("{PLAIN}seed: 8\n")),
            key_of(&format!("{PLAIN}seed: 7\n"))
        );
    }

    #[test]
    fn top_level_knobs_reach_the_spec() {
        let m = ModelManifest::parse(
            "m.yaml",
            "provider: openai\nmodel: m\nbase_url: http://x/v1\nseed: 42\nstop: [\"\\n\\n\"]\nresponse_format: { type: json_object }\nextra_headers:\n  X-Tenant: acme\ntools:\n  - name: lookup_order\n    description: Look an order up\n    parameters: { type: object, required: [id], properties: { id: { type: string } } }\n",
        )
        .unwrap();
        let p = m.spec().parameters;
        assert_eq!(p.seed, Some(42));
        assert_eq!(p.stop, Some(vec!["\n\n".to_string()]));
        assert_eq!(p.response_format, Some(ResponseFormat::JsonObject));
        assert_eq!(
            p.extra_headers.get("X-Tenant").map(String::as_str),
            Some("acme")
        );
        assert_eq!(p.tools[0].name, "lookup_order");
        assert_eq!(p.tools[0].schema()["required"], serde_json::json!(["id"]));
    }

    #[test]
    fn knobs_have_one_place() {
        let err = ModelManifest::parse(
            "m.yaml",
            "provider: openai\nmodel: m\nbase_url: http://x/v1\nparameters:\n  seed: 3\n",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("m.yaml:5:"), "{err}");
        let err = ModelManifest::parse(
            "m.yaml",
            "provider: openai\nmodel: m\nbase_url: http://x/v1\nstop: [a]\nparameters: { stop: [b] }\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("m.yaml:4: `stop` is set both"),
            "{err}"
        );
    }

    #[test]
    fn bedrock_refuses_what_converse_cannot_send() {
        let err = ModelManifest::parse(
            "models/b.yaml",
            "provider: bedrock\nmodel: m\nseed: 1\nresponse_format: { type: json_object }\nextra_headers: { X-A: b }\ntools: [{ name: ok }]\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "models/b.yaml:3: provider `bedrock` does not take `seed`",
            "models/b.yaml:4: provider `bedrock` does not take `response_format`",
            "models/b.yaml:5: provider `bedrock` does not take `extra_headers`",
        ] {
            assert!(err.contains(want), "{want} in {err}");
        }
        assert!(!err.contains("tools"), "{err}");
    }

    #[test]
    fn credential_and_transport_headers_are_refused_with_their_line() {
        for name in [
            "Authorization",
            "authorization",
            "Host",
            "Content-Length",
            "Cookie",
            "Proxy-Authorization",
            "proxy-connection",
            "Transfer-Encoding",
            "Connection",
            "X-Api-Key",
        ] {
            let text = format!(
                "provider: openai\nmodel: m\nbase_url: http://x/v1\nextra_headers:\n  X-Ok: fine\n  {name}: v\n"
            );
            let err = ModelManifest::parse("m.yaml", &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("m.yaml:6: extra_headers: `{name}` is not allowed")),
                "{name}: {err}"
            );
        }
        let text = "provider: openai\nmodel: m\nbase_url: http://x/v1\nextra_headers:\n  X-Evil: \"a\\r\\nAuthorization: Bearer stolen\"\n";
        let err = ModelManifest::parse("m.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.yaml:5: extra_headers: the value of `X-Evil` contains a line break"),
            "{err}"
        );
        assert!(forbidden_header("bad name", "v").is_some());
        assert!(forbidden_header("X-Ok", "a\u{7}").is_some());
        assert_eq!(forbidden_header("X-Request-Source", "promptgate"), None);
    }

    #[test]
    fn tools_and_response_formats_are_checked() {
        let bad = [
            (
                "tools: [{ name: \"has space\" }]\n",
                "must be 1 to 64 letters",
            ),
            (
                "tools: [{ name: a, parameters: 3 }]\n",
                "must be a JSON Schema object",
            ),
            (
                "tools: [{ name: a, parameters: { type: 3 } }]\n",
                "is not a JSON Schema",
            ),
            ("tools: [{ name: a }, { name: a }]\n", "`a` is given twice"),
            (
                "tools: [{ name: a, strict: true }]\n",
                "unknown field `strict`",
            ),
            (
                "response_format: { type: json_schema, json_schema: { schema: {} } }\n",
                "needs `name`",
            ),
            (
                "response_format: { type: text }\n",
                "unknown variant `text`",
            ),
        ];
        for (extra, want) in bad {
            let text = format!("provider: openai\nmodel: m\nbase_url: http://x/v1\n{extra}");
            let err = ModelManifest::parse("m.yaml", &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("m.yaml:4:") && err.contains(want),
                "{extra}: {err}"
            );
        }
    }
}
