//! `file://PATH` variable values: a case's variable (or a suite default) that names a
//! file gets that file's content, read at the same revision as the dataset, so the
//! content reaches the rendered messages and with them the input key. `.json`, `.yaml`
//! and `.yml` files load as structured values, anything else as text.
//!
//! A case's path is relative to the dataset's folder; a default's to the repository
//! root, where `.promptgate.yml` lives. Absolute paths and paths that climb out of the
//! repository are refused: a pull request writes these paths.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::config::{Case, Dataset, Defaults, CONFIG_PATH};
use crate::diag::{line_of, Diagnostic, Diagnostics};
use crate::source::{read_text, Rev, Source};

pub const PREFIX: &str = "file://";

/// The largest file a variable may load: the same bound as one dataset line, for the
/// same reason (it is rendered into the prompt).
pub const MAX_FILE_BYTES: usize = crate::config::dataset::MAX_CASE_LINE_BYTES;

/// The path a variable value names, when it is a `file://` reference.
pub fn reference(value: &Value) -> Option<&str> {
    value.as_str()?.strip_prefix(PREFIX)
}

/// `rel` resolved against the folder `dir` (`""`: the repository root) to a
/// repository path.
pub fn resolve(dir: &str, rel: &str) -> Result<String, String> {
    if rel.starts_with('/') || rel.starts_with('\\') || rel.get(1..2) == Some(":") {
        return Err("an absolute path; write it relative to the file that names it".into());
    }
    if rel.contains('\\') {
        return Err("a path with `\\`; separate folders with `/`".into());
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("the path leaves the repository".into());
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err("the path names no file".into());
    }
    Ok(parts.join("/"))
}

fn folder(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Every repository path the dataset's cases and the defaults load: what `detect`
/// adds to a suite's dependencies. Paths that do not resolve load nothing.
pub fn referenced(dataset: Option<&Dataset>, defaults: Option<&Defaults>) -> BTreeSet<String> {
    let dir = dataset.map_or("", |d| folder(&d.file));
    let from_cases = dataset
        .into_iter()
        .flat_map(|d| &d.cases)
        .flat_map(|c| c.vars.values())
        .filter_map(reference)
        .filter_map(|r| resolve(dir, r).ok());
    let from_defaults = defaults
        .into_iter()
        .flat_map(|d| d.vars.values())
        .filter_map(reference)
        .filter_map(|r| resolve("", r).ok());
    from_cases.chain(from_defaults).collect()
}

/// Reads files once per revision, however many cases name them.
struct Loader<'a> {
    source: &'a dyn Source,
    rev: &'a Rev,
    loaded: HashMap<String, Result<Value, String>>,
}

impl Loader<'_> {
    async fn load(&mut self, path: &str) -> Result<Value, String> {
        if let Some(done) = self.loaded.get(path) {
            return done.clone();
        }
        let got = match read_text(self.source, self.rev, path).await {
            Ok(Some(text)) => parse(path, text),
            Ok(None) => Err(format!("`{path}` does not exist at {}", self.rev.label())),
            Err(e) => Err(format!("`{path}` cannot be read: {e:#}")),
        };
        self.loaded.insert(path.to_string(), got.clone());
        got
    }

    /// Replaces each `file://` value of `vars` by its content; problems go to `fail`.
    async fn fill(
        &mut self,
        vars: &mut serde_json::Map<String, Value>,
        dir: &str,
        mut fail: impl FnMut(&str, &str, String),
    ) {
        for (name, value) in vars.iter_mut() {
            let Some(rel) = reference(value).map(str::to_string) else {
                continue;
            };
            let got = match resolve(dir, &rel) {
                Ok(path) => self.load(&path).await,
                Err(e) => Err(e),
            };
            match got {
                Ok(v) => *value = v,
                Err(e) => fail(name, &rel, e),
            }
        }
    }
}

fn parse(path: &str, text: String) -> Result<Value, String> {
    if text.len() > MAX_FILE_BYTES {
        return Err(format!(
            "`{path}` is {} bytes; a variable file may have at most {MAX_FILE_BYTES}",
            text.len()
        ));
    }
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| format!("`{path}` is not valid JSON: {e}"))
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        // The config's YAML guard (aliases, nesting) applies: a PR writes this file.
        crate::config::parse_yaml::<Value>(path, &text)
            .map_err(|d| format!("`{path}` is not valid YAML: {d}"))
    } else {
        Ok(Value::String(text))
    }
}

/// Loads every `file://` variable of the cases and of the defaults at `rev`, then
/// merges the defaults into the cases. Every problem names the dataset line (or the
/// config line) and the path.
pub async fn load_and_merge(
    source: &dyn Source,
    rev: &Rev,
    dataset: &mut Dataset,
    defaults: Option<&Defaults>,
    config_text: &str,
    diags: &mut Diagnostics,
) {
    let mut loader = Loader {
        source,
        rev,
        loaded: HashMap::new(),
    };
    let file = dataset.file.clone();
    let dir = folder(&file).to_string();
    for case in &mut dataset.cases {
        let Case { id, line, vars, .. } = case;
        loader
            .fill(vars, &dir, |name, rel, e| {
                diags.push(Diagnostic::new(
                    &file,
                    Some(*line),
                    format!("case `{id}`: variable `{name}`: `{PREFIX}{rel}`: {e}"),
                ))
            })
            .await;
    }
    let Some(defaults) = defaults else {
        return;
    };
    let mut defaults = defaults.clone();
    loader
        .fill(&mut defaults.vars, "", |name, rel, e| {
            diags.push(Diagnostic::new(
                CONFIG_PATH,
                line_of(config_text, &format!("{PREFIX}{rel}")),
                format!("`defaults.vars.{name}`: `{PREFIX}{rel}`: {e}"),
            ))
        })
        .await;
    diags.extend(dataset.apply_defaults(&defaults));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_to_the_folder_and_refuses_escapes() {
        assert_eq!(
            resolve("evals/support", "docs/a.txt").unwrap(),
            "evals/support/docs/a.txt"
        );
        assert_eq!(
            resolve("evals/support", "../shared/./b.json").unwrap(),
            "evals/shared/b.json"
        );
        assert_eq!(resolve("", "ctx.md").unwrap(), "ctx.md");
        for bad in ["/etc/passwd", "../../../x", "C:/x", "a\\b"] {
            assert!(resolve("evals/support", bad).is_err(), "{bad}");
        }
        assert!(resolve("evals", "../../x").is_err());
        assert!(resolve("", "../x").is_err());
        assert!(resolve("evals", "..").is_err());
    }

    #[test]
    fn structured_files_load_as_values() {
        assert_eq!(
            parse("a.json", "{\"k\": [1, 2]}".into()).unwrap(),
            serde_json::json!({"k": [1, 2]})
        );
        assert_eq!(
            parse("a.yml", "k: v\n".into()).unwrap(),
            serde_json::json!({"k": "v"})
        );
        assert_eq!(
            parse("a.md", "# hi\n".into()).unwrap(),
            Value::String("# hi\n".into())
        );
        assert!(parse("a.json", "{".into()).unwrap_err().contains("a.json"));
    }

    #[test]
    fn lists_what_cases_and_defaults_load() {
        let d = Dataset::parse(
            "evals/s.jsonl",
            "{\"id\":\"a\",\"vars\":{\"doc\":\"file://docs/a.md\",\"q\":\"x\"}}\n{\"id\":\"b\",\"vars\":{\"doc\":\"file://../../out\"}}\n",
        )
        .unwrap();
        let defaults: Defaults =
            serde_json::from_value(serde_json::json!({"vars": {"p": "file://policy.md"}})).unwrap();
        assert_eq!(
            referenced(Some(&d), Some(&defaults)),
            ["evals/docs/a.md".to_string(), "policy.md".to_string()].into()
        );
    }
}
