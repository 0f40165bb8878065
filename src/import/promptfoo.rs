//! `promptgate import promptfoo promptfooconfig.yaml`: promptfoo's prompts, providers,
//! tests and `defaultTest` as promptgate suites, templates, manifests and datasets.
//! Translated: prompts (inline, `file://` text or a JSON chat), `openai:`, `bedrock:`
//! and `ollama:` providers with temperature/max_tokens/top_p, tests with vars and the
//! assertion types promptgate shares with promptfoo (with `weight`, `threshold`, `not-`),
//! and `defaultTest` (as every suite's `defaults`). Everything else is listed with its
//! line.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{Imported, Untranslated};
use crate::config::AssertionKind;
use crate::diag::line_of;

/// Reads a file the config names (`file://…`), relative to the config's directory.
pub type Reader<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// One prompt: its name and its messages by role.
struct Prompt {
    name: String,
    roles: Vec<(String, String)>,
}

/// One provider as a manifest file.
struct Provider {
    name: String,
    manifest: String,
}

pub fn translate(text: &str, read: &Reader<'_>) -> Result<Imported, String> {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("promptfooconfig: {e}"))?;
    let config: Value = serde_json::to_value(&yaml).map_err(|e| format!("promptfooconfig: {e}"))?;
    let Value::Object(config) = config else {
        return Err("promptfooconfig: the file is not a mapping".to_string());
    };
    let mut out = Imported::default();
    let mut skip = |needle: &str, what: String| {
        out.untranslated.push(Untranslated {
            line: line_of(text, needle),
            what,
        })
    };
    for key in config.keys() {
        if !matches!(
            key.as_str(),
            "prompts" | "providers" | "tests" | "defaultTest" | "description"
        ) {
            skip(&format!("{key}:"), format!("top-level `{key}`"));
        }
    }
    let prompts = prompts(config.get("prompts"), read, &mut skip)?;
    let providers = providers(config.get("providers"), &mut skip);
    if prompts.is_empty() {
        return Err("promptfooconfig: no prompt could be translated".to_string());
    }
    if providers.is_empty() {
        return Err("promptfooconfig: no provider could be translated".to_string());
    }
    let defaults = config.get("defaultTest").cloned().unwrap_or(Value::Null);
    let tests = tests(config.get("tests"), read, &mut skip)?;
    let mut uses = (false, false); // (similar, llm-rubric)
    let cases = cases(&tests, &mut uses, &mut skip);
    let suite_defaults = suite_defaults(&defaults, &mut uses, &mut skip);
    if cases.is_empty() {
        out.untranslated.push(Untranslated {
            line: line_of(text, "tests:"),
            what: "no test could be translated: the dataset is empty".to_string(),
        });
    }
    let dataset: String = cases.iter().map(|c| format!("{c}\n")).collect();
    out.files
        .push(("evals/promptfoo.jsonl".to_string(), dataset));
    for p in &providers {
        out.files
            .push((format!("models/{}.yaml", p.name), p.manifest.clone()));
    }
    let mut suites = String::new();
    for prompt in &prompts {
        for (role, template) in &prompt.roles {
            out.files.push((
                format!("prompts/{}/{role}.j2", prompt.name),
                template.clone(),
            ));
        }
        for p in &providers {
            let name = if providers.len() == 1 {
                prompt.name.clone()
            } else {
                format!("{}-{}", prompt.name, p.name)
            };
            suites.push_str(&format!("  {name}:\n    prompts:\n"));
            for (role, _) in &prompt.roles {
                suites.push_str(&format!(
                    "      {role}: prompts/{}/{role}.j2\n",
                    prompt.name
                ));
            }
            suites.push_str(&format!(
                "    model: models/{}.yaml\n    dataset: evals/promptfoo.jsonl\n    metrics:\n      assertions: {{ min: 1.0 }}\n",
                p.name
            ));
            if let Some(d) = &suite_defaults {
                suites.push_str(&format!("    defaults: {d}\n"));
            }
        }
    }
    let mut evaluators = String::new();
    if uses.0 {
        evaluators.push_str("  # promptfoo embeds with OpenAI by default; point this at your embedding model.\n  embedding: { provider: openai, model: text-embedding-3-small, base_url: \"https://api.openai.com/v1\", api_key_env: OPENAI_API_KEY }\n");
    }
    if uses.1 {
        evaluators.push_str("  # llm-rubric needs a judge; promptfoo grades with OpenAI by default.\n  judge: { provider: openai, model: gpt-4o-mini, base_url: \"https://api.openai.com/v1\", api_key_env: OPENAI_API_KEY }\n");
    }
    let evaluators = if evaluators.is_empty() {
        String::new()
    } else {
        format!("evaluators:\n{evaluators}")
    };
    out.files.insert(
        0,
        (
            crate::config::CONFIG_PATH.to_string(),
            format!("# Imported from a promptfoo config by `promptgate import promptfoo`.\nversion: 1\nsuites:\n{suites}{evaluators}"),
        ),
    );
    Ok(out)
}

/// A name for files and suites: `[a-z0-9-]`, never empty.
fn slug(text: &str, fallback: &str) -> String {
    let mut s = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        fallback.to_string()
    } else {
        s
    }
}

fn prompts(
    v: Option<&Value>,
    read: &Reader<'_>,
    skip: &mut dyn FnMut(&str, String),
) -> Result<Vec<Prompt>, String> {
    let items: Vec<Value> = match v {
        Some(Value::Array(a)) => a.clone(),
        Some(one @ Value::String(_)) => vec![one.clone()],
        Some(_) => return Err("promptfooconfig: `prompts` is not a list".to_string()),
        None => return Err("promptfooconfig: no `prompts`".to_string()),
    };
    let mut out: Vec<Prompt> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (raw, label) = match item {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => match (o.get("raw").or(o.get("id")), o.get("label")) {
                (Some(Value::String(r)), l) => (r.clone(), l.and_then(Value::as_str)),
                _ => {
                    skip(
                        "prompts:",
                        format!("prompt {} (not a string, `raw` or `id`)", i + 1),
                    );
                    continue;
                }
            },
            _ => {
                skip("prompts:", format!("prompt {} (not a string)", i + 1));
                continue;
            }
        };
        // A file's prompt is named by its file name, without folders or extension.
        let (text, from) = match raw.strip_prefix("file://") {
            Some(path) => {
                let stem = std::path::Path::new(path)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string);
                (read(path)?, stem)
            }
            None => (raw.clone(), None),
        };
        let roles = match chat_roles(&text) {
            Some(r) => r,
            None => vec![("user".to_string(), text)],
        };
        if roles
            .iter()
            .any(|(r, _)| !matches!(r.as_str(), "system" | "user" | "assistant"))
        {
            skip(
                &raw,
                format!(
                    "prompt {}: a chat with roles other than system, user, assistant",
                    i + 1
                ),
            );
            continue;
        }
        let base = label
            .map(str::to_string)
            .or(from)
            .unwrap_or_else(|| format!("prompt-{}", i + 1));
        let mut name = slug(&base, &format!("prompt-{}", i + 1));
        if out.iter().any(|p| p.name == name) {
            name = format!("{name}-{}", i + 1);
        }
        out.push(Prompt { name, roles });
    }
    Ok(out)
}

/// A JSON chat prompt (`[{role, content}, ...]`) as (role, template) pairs in order;
/// repeated roles are joined.
fn chat_roles(text: &str) -> Option<Vec<(String, String)>> {
    let Value::Array(messages) = serde_json::from_str::<Value>(text.trim()).ok()? else {
        return None;
    };
    let mut roles: Vec<(String, String)> = Vec::new();
    for m in messages {
        let role = m.get("role")?.as_str()?.to_string();
        let content = m.get("content")?.as_str()?.to_string();
        match roles.iter_mut().find(|(r, _)| *r == role) {
            Some((_, c)) => {
                c.push_str("\n\n");
                c.push_str(&content);
            }
            None => roles.push((role, content)),
        }
    }
    let order = |r: &str| match r {
        "system" => 0,
        "user" => 1,
        _ => 2,
    };
    roles.sort_by_key(|(r, _)| order(r));
    Some(roles)
}

fn providers(v: Option<&Value>, skip: &mut dyn FnMut(&str, String)) -> Vec<Provider> {
    let items: Vec<Value> = match v {
        Some(Value::Array(a)) => a.clone(),
        Some(one @ Value::String(_)) => vec![one.clone()],
        _ => return Vec::new(),
    };
    let mut out: Vec<Provider> = Vec::new();
    for item in items {
        let (id, config) = match &item {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Object(o) => match o.get("id").and_then(Value::as_str) {
                Some(id) => (
                    id.to_string(),
                    o.get("config")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                ),
                None => {
                    skip("providers:", "a provider without an `id`".to_string());
                    continue;
                }
            },
            _ => continue,
        };
        let parts: Vec<&str> = id.splitn(3, ':').collect();
        let (kind, model) = match parts.as_slice() {
            ["openai", "chat", m] | ["openai", m] => ("openai", m.to_string()),
            ["bedrock", "converse", m] | ["bedrock", m] => ("bedrock", m.to_string()),
            ["ollama", "chat", m] | ["ollama", m] => ("ollama", m.to_string()),
            _ => {
                skip(
                    &id,
                    format!("provider `{id}` (promptgate speaks openai-compatible and bedrock)"),
                );
                continue;
            }
        };
        let mut params = Vec::new();
        for (k, v) in &config {
            match (k.as_str(), v) {
                ("temperature" | "top_p", Value::Number(n)) => params.push(format!("{k}: {n}")),
                ("max_tokens", Value::Number(n)) => params.push(format!("max_tokens: {n}")),
                ("region" | "apiBaseUrl" | "apiKeyEnvar", _) => {}
                _ => skip(&format!("{k}:"), format!("provider `{id}`: config `{k}`")),
            }
        }
        let text = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
        let mut manifest = match kind {
            "openai" => format!(
                "provider: openai\nmodel: {model}\nbase_url: {}\napi_key_env: {}\n",
                text("apiBaseUrl").unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
                text("apiKeyEnvar").unwrap_or_else(|| "OPENAI_API_KEY".to_string())
            ),
            "ollama" => {
                format!("provider: openai\nmodel: {model}\nbase_url: http://127.0.0.1:11434/v1\n")
            }
            _ => format!(
                "provider: bedrock\nmodel: {model}\nregion: {}\n",
                text("region").unwrap_or_else(|| "us-east-1".to_string())
            ),
        };
        if !params.is_empty() {
            manifest.push_str(&format!("parameters: {{ {} }}\n", params.join(", ")));
        }
        let mut name = slug(&model, "model");
        if out.iter().any(|p| p.name == name) {
            name = format!("{name}-{}", out.len() + 1);
        }
        out.push(Provider { name, manifest });
    }
    out
}

fn tests(
    v: Option<&Value>,
    read: &Reader<'_>,
    skip: &mut dyn FnMut(&str, String),
) -> Result<Vec<Value>, String> {
    let items: Vec<Value> = match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        None => Vec::new(),
        Some(_) => return Err("promptfooconfig: `tests` is not a list".to_string()),
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(s) => match s.strip_prefix("file://") {
                Some(path) if path.ends_with(".yaml") || path.ends_with(".yml") => {
                    let text = read(path)?;
                    let y: serde_yaml_ng::Value =
                        serde_yaml_ng::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
                    match serde_json::to_value(&y).map_err(|e| format!("{path}: {e}"))? {
                        Value::Array(a) => out.extend(a),
                        _ => return Err(format!("{path}: not a list of tests")),
                    }
                }
                Some(path) if path.ends_with(".jsonl") => {
                    for l in read(path)?.lines().filter(|l| !l.trim().is_empty()) {
                        out.push(serde_json::from_str(l).map_err(|e| format!("{path}: {e}"))?);
                    }
                }
                _ => skip(
                    &s,
                    format!("tests from `{s}` (promptgate reads YAML and JSONL test files here)"),
                ),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `defaultTest` as the suites' `defaults` (promptgate merges them the same way: a
/// test's var wins, the default asserts come after the test's own), in YAML's JSON
/// flow form; `None` when it holds nothing to translate.
fn suite_defaults(
    defaults: &Value,
    uses: &mut (bool, bool),
    skip: &mut dyn FnMut(&str, String),
) -> Option<String> {
    let obj = defaults.as_object()?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "vars" | "assert") {
            skip(&format!("{key}:"), format!("defaultTest: `{key}`"));
        }
    }
    let mut out = Map::new();
    if let Some(vars) = obj.get("vars").and_then(Value::as_object) {
        if !vars.is_empty() {
            out.insert("vars".into(), Value::Object(vars.clone()));
        }
    }
    let asserts: Vec<Value> = obj
        .get("assert")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| assertion(a, uses, skip))
        .collect();
    if !asserts.is_empty() {
        out.insert("assert".into(), Value::Array(asserts));
    }
    (!out.is_empty()).then(|| Value::Object(out).to_string())
}

/// The dataset lines, one per test.
fn cases(
    tests: &[Value],
    uses: &mut (bool, bool),
    skip: &mut dyn FnMut(&str, String),
) -> Vec<Value> {
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, t) in tests.iter().enumerate() {
        let Some(t) = t.as_object() else {
            skip("tests:", format!("test {} (not a mapping)", i + 1));
            continue;
        };
        for key in t.keys() {
            if !matches!(
                key.as_str(),
                "vars" | "assert" | "description" | "threshold"
            ) {
                skip(&format!("{key}:"), format!("test {}: `{key}`", i + 1));
            }
        }
        let vars = t
            .get("vars")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut asserts = Vec::new();
        let own = t
            .get("assert")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for a in &own {
            if let Some(a) = assertion(a, uses, skip) {
                asserts.push(a);
            }
        }
        let base = t
            .get("description")
            .and_then(Value::as_str)
            .map(|d| slug(d, "test"))
            .unwrap_or_else(|| format!("test-{}", i + 1));
        let n = ids.entry(base.clone()).or_insert(0);
        *n += 1;
        let id = if *n == 1 { base } else { format!("{base}-{n}") };
        let mut case = json!({"id": id, "vars": vars});
        if !asserts.is_empty() {
            case["assert"] = Value::Array(asserts);
        }
        if let Some(th) = t.get("threshold").and_then(Value::as_f64) {
            case["threshold"] = json!(th);
        }
        out.push(case);
    }
    out
}

/// One promptfoo assertion as promptgate's, when promptgate has that type.
fn assertion(
    a: &Value,
    uses: &mut (bool, bool),
    skip: &mut dyn FnMut(&str, String),
) -> Option<Value> {
    let obj = a.as_object()?;
    let kind = obj.get("type").and_then(Value::as_str)?;
    let known = AssertionKind::ALL.iter().find(|k| k.as_str() == kind);
    let Some(known) = known else {
        skip(
            &format!("type: {kind}"),
            format!("assertion `{kind}` (no promptgate equivalent)"),
        );
        return None;
    };
    uses.0 |= *known == AssertionKind::Similar;
    uses.1 |= *known == AssertionKind::LlmRubric;
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    for (k, v) in obj {
        match k.as_str() {
            "type" => {}
            "value" | "threshold" | "weight" => {
                out.insert(k.clone(), v.clone());
            }
            other => skip(
                &format!("{other}:"),
                format!("assertion `{kind}`: key `{other}`"),
            ),
        }
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            slug("Refund window (30 days)", "x"),
            "refund-window-30-days"
        );
        assert_eq!(slug("!!!", "x"), "x");
    }

    #[test]
    fn chat_prompts_split_by_role() {
        let roles = chat_roles(r#"[{"role": "user", "content": "Q: {{q}}"}, {"role": "system", "content": "Be brief."}]"#).unwrap();
        assert_eq!(roles[0], ("system".to_string(), "Be brief.".to_string()));
        assert_eq!(roles[1].0, "user");
        assert!(chat_roles("plain text").is_none());
    }
}
