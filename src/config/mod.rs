//! The repository config (`.promptgate.yml`) and the data files it points at (SPEC §1–2).
//!
//! Parsing is pure over text so the CLI (local git) and the bot (forge API) share it.
//! Every error names the file and, where it can be found, the line.

pub mod dataset;
pub mod guardrail;
pub mod manifest;
pub mod repo;

pub use dataset::{Assertion, AssertionKind, Case, Dataset};
pub use guardrail::{GuardrailConfig, GuardrailExpect, GuardrailSource, GuardrailTest};
pub use manifest::{ModelManifest, ModelSpec, Parameters, Pricing, ProviderKind};
pub use repo::{
    Evaluators, MetricName, ModelRef, Prompts, ReleaseConfig, RepoConfig, SuiteConfig, Threshold,
    CONFIG_PATH,
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
    serde_yaml_ng::from_str(text).map_err(|e| Diagnostics(vec![yaml_diag(file, &e)]))
}
