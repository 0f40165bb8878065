//! Model manifests: which provider and model answers, with what parameters and prices.

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

/// Generation parameters. Unknown parameters are rejected so a typo does not silently
/// fall back to the provider default.
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
    #[serde(default)]
    pub parameters: Parameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
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
            parameters: self.parameters.clone(),
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
    }
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
}
