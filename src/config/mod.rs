//! The repository config (`.promptgate.yml`) and the data files it points at (SPEC §1–2).
//!
//! Parsing is pure over text so the CLI (local git) and the bot (forge API) share it.
//! Every error names the file and, where it can be found, the line.

pub mod assertion;
pub mod budget;
pub mod calibration;
pub mod csv;
pub mod dataset;
pub mod guardrail;
pub mod jsonpath;
pub mod load;
pub mod manifest;
pub mod repo;
pub mod shadow;
pub mod tickets;

pub use dataset::{Assertion, AssertionKind, Case, Dataset, Defaults};
pub use guardrail::{GuardrailConfig, GuardrailExpect, GuardrailSource, GuardrailTest};
pub use manifest::{ModelManifest, ModelSpec, Parameters, Pricing, ProviderKind};
pub use repo::{
    Evaluators, MetricName, MetricUnit, ModelRef, Prompts, ReleaseConfig, RepoConfig, SuiteConfig,
    Threshold, CONFIG_PATH,
};

use crate::diag::{Diagnostic, Diagnostics};

/// The non-blank lines of a JSON Lines file with their 1-based line numbers.
pub(crate) fn jsonl_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Turns a serde_yaml_ng error into a diagnostic that carries its line.
pub(crate) fn yaml_diag(file: &str, err: &serde_yaml_ng::Error) -> Diagnostic {
    let line = err.location().map(|l| l.line());
    // serde_yaml_ng appends " at line X column Y" to the message; the line is in the
    // diagnostic already, so keep the message short.
    let msg = err.to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    Diagnostic::new(file, line, msg)
}

/// Parses a YAML document into `T`, reporting a single diagnostic with a line on error.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, Diagnostics> {
    if let Some(d) = yaml_too_big(file, text) {
        return Err(Diagnostics(vec![d]));
    }
    serde_yaml_ng::from_str(text).map_err(|e| {
        let mut d = yaml_diag(file, &e);
        d.message = explain_indentation(&d.message, text);
        Diagnostics(vec![d])
    })
}

/// Adds the likely cause to the parser's messages that a mis-indented key produces: a
/// "missing field" whose key is written elsewhere in the file (at the wrong depth), and
/// "mapping values are not allowed" (a key deeper than the one above it).
fn explain_indentation(message: &str, text: &str) -> String {
    if message.starts_with("mapping values are not allowed") {
        return format!(
            "{message}: a key is indented deeper than the key above it (or a value holds an unquoted `: `)"
        );
    }
    let Some(field) = message
        .split("missing field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    else {
        return message.to_string();
    };
    let key = format!("{field}:");
    match text
        .lines()
        .position(|l| l.trim_start().trim_start_matches("- ").starts_with(&key))
    {
        Some(i) => format!(
            "{message}; `{field}:` is written at line {}, so it is probably indented wrongly (it must line up with the other keys of this block)",
            i + 1
        ),
        None => message.to_string(),
    }
}

/// The largest YAML file (config, manifest, guardrail) promptgate parses.
pub const MAX_YAML_BYTES: usize = 1 << 20;
/// The deepest `[`/`{` nesting, and the most aliases, a YAML file may have. These files
/// come from the PR: 200 KB of nested flow collections took the parser 36 s, and
/// aliases can expand a small file into a huge value.
pub const MAX_YAML_DEPTH: usize = 32;
pub const MAX_YAML_ALIASES: usize = 256;

/// Why a YAML text is refused before parsing, if it is: its size, its flow nesting, or
/// its number of aliases (counted outside quotes and comments).
fn yaml_too_big(file: &str, text: &str) -> Option<Diagnostic> {
    if text.len() > MAX_YAML_BYTES {
        return Some(Diagnostic::new(
            file,
            None,
            format!(
                "the file is {} bytes; the limit is {MAX_YAML_BYTES} bytes",
                text.len()
            ),
        ));
    }
    let (mut depth, mut aliases) = (0usize, 0usize);
    for (i, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'')
                    if prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':') =>
                {
                    quote = Some(c)
                }
                (None, '#') if prev.is_whitespace() => break,
                (None, '[' | '{') => depth += 1,
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                (None, '*') if prev.is_whitespace() || matches!(prev, '[' | '{' | ',') => {
                    aliases += 1
                }
                _ => {}
            }
            if depth > MAX_YAML_DEPTH {
                return Some(Diagnostic::new(
                    file,
                    Some(i + 1),
                    format!("collections are nested more than {MAX_YAML_DEPTH} deep"),
                ));
            }
            prev = c;
        }
        if aliases > MAX_YAML_ALIASES {
            return Some(Diagnostic::new(
                file,
                Some(i + 1),
                format!("more than {MAX_YAML_ALIASES} aliases (`*name`)"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_alias_heavy_yaml_is_refused_before_parsing() {
        let deep = format!("a: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let err = parse_yaml::<serde_json::Value>("m.yaml", &deep)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.yaml:1: collections are nested more than 32 deep"),
            "{err}"
        );
        let mut laughs = String::from("a: &a [x, x]\n");
        for i in 0..300 {
            laughs.push_str(&format!("k{i}: [*a, *a]\n"));
        }
        let err = parse_yaml::<serde_json::Value>("m.yaml", &laughs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("aliases"), "{err}");
        let big = format!("a: \"{}\"\n", "x".repeat(MAX_YAML_BYTES));
        let err = parse_yaml::<serde_json::Value>("m.yaml", &big)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the limit is 1048576 bytes"), "{err}");
        // Brackets and stars inside quotes or comments do not count.
        let fine = format!(
            "a: \"{}\" # {}\nb: '*x *y'\n",
            "[".repeat(100),
            "{".repeat(100)
        );
        parse_yaml::<serde_json::Value>("m.yaml", &fine).unwrap();
    }
}
