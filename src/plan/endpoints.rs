//! Which model endpoints a run may call, and which key variables may go to which of
//! them. A model manifest is read from the PR under test, so without this a PR could
//! point `base_url` at its own server and name `api_key_env: OPENAI_API_KEY`: the
//! bot would send it every prompt with the operator's key.
//!
//! The operator's lists (`PROMPTGATE_MODEL_ENDPOINTS`, globs of base URLs, and
//! `PROMPTGATE_MODEL_KEYS`, `ENV_NAME=endpoint-glob` pairs) replace the defaults, which
//! are what the base branch's manifests and evaluators name (reviewed and merged, so
//! trusted). The CLI can widen either with flags for local use.

use globset::{Glob, GlobMatcher};

use crate::config::{ModelSpec, ProviderKind};
use crate::settings::split_list;

/// One allowed endpoint: the glob as written (for messages) and its matcher.
#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    fn glob(text: &str) -> Result<Self, String> {
        let text = normalize(text);
        let matcher = Glob::new(&text)
            .map_err(|e| format!("endpoint glob {text:?}: {e}"))?
            .compile_matcher();
        Ok(Self { text, matcher })
    }

    /// Exactly this URL (its glob metacharacters escaped, so an escaped literal
    /// always compiles; `None` is not expected).
    fn exact(url: &str) -> Option<Self> {
        let text = normalize(url);
        let matcher = Glob::new(&globset::escape(&text)).ok()?.compile_matcher();
        Some(Self { text, matcher })
    }

    fn matches(&self, url: &str) -> bool {
        self.matcher.is_match(normalize(url))
    }
}

fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// The operator's lists and the CLI's widening flags, before the base is known.
#[derive(Clone, Debug, Default)]
pub struct EndpointRules {
    /// `PROMPTGATE_MODEL_ENDPOINTS`: replaces the base-derived endpoints when set.
    pub endpoints: Option<Vec<String>>,
    /// `PROMPTGATE_MODEL_KEYS` (`ENV=glob`): replaces the base-derived pairs when set.
    pub keys: Option<Vec<String>>,
    /// CLI `--allow-endpoint`: added to whichever endpoints are in force.
    pub extra_endpoints: Vec<String>,
    /// CLI `--allow-key`: added to whichever pairs are in force.
    pub extra_keys: Vec<String>,
    /// Refuse `provider: replay` (the bot: recordings are files a PR can write, so
    /// their answers would be the PR author's choice).
    pub refuse_replay: bool,
}

impl EndpointRules {
    /// Reads the operator's lists from the process environment (the CLI; the bot
    /// reads them from its settings).
    pub fn from_env() -> Self {
        let list = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| split_list(&v))
        };
        Self {
            endpoints: list("PROMPTGATE_MODEL_ENDPOINTS"),
            keys: list("PROMPTGATE_MODEL_KEYS"),
            ..Self::default()
        }
    }
}

/// The rules in force for one run.
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    endpoints: Vec<Pattern>,
    keys: Vec<(String, Pattern)>,
    /// Where the endpoints came from, for messages.
    origin: &'static str,
    refuse_replay: bool,
}

impl EndpointPolicy {
    /// The policy for a run whose base branch names `base` (its manifests and
    /// evaluators).
    pub fn resolve<'a>(
        rules: &EndpointRules,
        base: impl IntoIterator<Item = &'a ModelSpec>,
    ) -> Result<Self, String> {
        let base: Vec<&ModelSpec> = base.into_iter().collect();
        let (mut endpoints, origin) = match &rules.endpoints {
            Some(globs) => (
                globs
                    .iter()
                    .map(|g| Pattern::glob(g))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("PROMPTGATE_MODEL_ENDPOINTS: {e}"))?,
                "PROMPTGATE_MODEL_ENDPOINTS",
            ),
            None => (
                base.iter()
                    .filter_map(|s| s.base_url.as_deref())
                    .filter_map(Pattern::exact)
                    .collect(),
                "the base branch's manifests",
            ),
        };
        for g in &rules.extra_endpoints {
            endpoints.push(Pattern::glob(g).map_err(|e| format!("--allow-endpoint: {e}"))?);
        }
        let mut keys = match &rules.keys {
            Some(pairs) => pairs
                .iter()
                .map(|p| key_pair(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("PROMPTGATE_MODEL_KEYS: {e}"))?,
            None => base
                .iter()
                .filter_map(|s| {
                    Some((
                        s.api_key_env.clone()?,
                        Pattern::exact(s.base_url.as_deref()?)?,
                    ))
                })
                .collect(),
        };
        for p in &rules.extra_keys {
            keys.push(key_pair(p).map_err(|e| format!("--allow-key: {e}"))?);
        }
        Ok(Self {
            endpoints,
            keys,
            origin,
            refuse_replay: rules.refuse_replay,
        })
    }

    /// Why `spec` may not be called, if it may not. Only OpenAI-compatible specs name
    /// an endpoint of their own; Bedrock goes to AWS through the operator's SDK
    /// configuration, and replay makes no network call.
    pub fn refusal(&self, spec: &ModelSpec) -> Option<Refusal> {
        if spec.provider == ProviderKind::Replay && self.refuse_replay {
            return Some(Refusal {
                field: "provider",
                message: "provider: replay answers from recorded files, which a pull request can write; the bot calls live models only (replay with `promptgate check --replay`)".to_string(),
            });
        }
        if spec.provider != ProviderKind::Openai {
            return None;
        }
        let url = normalize(spec.base_url.as_deref()?);
        if !self.endpoints.iter().any(|p| p.matches(&url)) {
            let allowed: Vec<&str> = self.endpoints.iter().map(|p| p.text.as_str()).collect();
            return Some(Refusal {
                field: "base_url",
                message: format!(
                    "base_url {url} is not an allowed model endpoint (allowed by {}: {}); the operator can add it to PROMPTGATE_MODEL_ENDPOINTS",
                    self.origin,
                    if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
                ),
            });
        }
        let var = spec.api_key_env.as_deref()?;
        if !self
            .keys
            .iter()
            .any(|(name, p)| name == var && p.matches(&url))
        {
            return Some(Refusal {
                field: "api_key_env",
                message: format!(
                    "api_key_env {var} may not be sent to {url}: a key goes only to the endpoints it is paired with (PROMPTGATE_MODEL_KEYS, else the base branch's manifests)"
                ),
            });
        }
        None
    }
}

/// A manifest field that breaks the policy, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `base_url` or `api_key_env`: the line to point at.
    pub field: &'static str,
    pub message: String,
}

fn key_pair(entry: &str) -> Result<(String, Pattern), String> {
    let (name, glob) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?}: expected ENV_NAME=endpoint-glob"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{entry:?}: the variable name is empty"));
    }
    Ok((name.to_string(), Pattern::glob(glob)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Parameters;

    fn spec(url: &str, key: Option<&str>) -> ModelSpec {
        ModelSpec {
            provider: ProviderKind::Openai,
            model: "m".into(),
            region: None,
            base_url: Some(url.into()),
            api_key_env: key.map(String::from),
            parameters: Parameters::default(),
        }
    }

    #[test]
    fn defaults_come_from_the_base() {
        let base = spec("https://api.openai.com/v1/", Some("OPENAI_API_KEY"));
        let p = EndpointPolicy::resolve(&EndpointRules::default(), [&base]).unwrap();
        assert_eq!(
            p.refusal(&spec("https://api.openai.com/v1", Some("OPENAI_API_KEY"))),
            None
        );
        let evil = p
            .refusal(&spec("https://attacker.example/v1", Some("OPENAI_API_KEY")))
            .unwrap();
        assert_eq!(evil.field, "base_url");
        assert!(
            evil.message.contains("https://api.openai.com/v1"),
            "{}",
            evil.message
        );
        // The right endpoint with another variable: the key is not paired with it.
        let other = p
            .refusal(&spec("https://api.openai.com/v1", Some("GH_TOKEN")))
            .unwrap();
        assert_eq!(other.field, "api_key_env");
        // A glob metacharacter in a base URL is literal.
        let base = spec("http://127.0.0.1:8000/v1*", None);
        let p = EndpointPolicy::resolve(&EndpointRules::default(), [&base]).unwrap();
        assert!(p
            .refusal(&spec("http://127.0.0.1:8000/v1-evil", None))
            .is_some());
    }

    #[test]
    fn operator_lists_replace_the_defaults_and_flags_widen() {
        let base = spec("https://api.openai.com/v1", Some("OPENAI_API_KEY"));
        let rules = EndpointRules {
            endpoints: Some(split_list("https://*.openai.azure.com/*")),
            keys: Some(split_list("AZURE_KEY=https://*.openai.azure.com/*")),
            extra_endpoints: vec!["http://127.0.0.1:*".into()],
            extra_keys: vec![],
            refuse_replay: false,
        };
        let p = EndpointPolicy::resolve(&rules, [&base]).unwrap();
        assert!(p.refusal(&base).is_some(), "the base default is replaced");
        let azure = spec("https://acme.openai.azure.com/openai/v1", Some("AZURE_KEY"));
        assert_eq!(p.refusal(&azure), None);
        assert_eq!(p.refusal(&spec("http://127.0.0.1:11434", None)), None);
        let wrong_key = spec("http://127.0.0.1:11434", Some("AZURE_KEY"));
        assert_eq!(p.refusal(&wrong_key).unwrap().field, "api_key_env");
        assert!(EndpointPolicy::resolve(
            &EndpointRules {
                keys: Some(vec!["NOEQUALS".into()]),
                ..EndpointRules::default()
            },
            [&base]
        )
        .is_err());
    }
}
