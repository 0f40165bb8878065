//! The attack corpus: the built-in attacks (`attacks.jsonl`, embedded at build time)
//! and a suite's own attacks, JSON Lines of `{"id", "technique", "goal", "text"}`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::{Attack, Goal, Technique, NONCE_PLACEHOLDER};
use crate::diag::{Diagnostic, Diagnostics};

/// The built-in corpus. The encoded attacks (base64, rot13, hex) were computed from
/// their plain instruction; the unit tests decode them back.
const BUILTIN_JSONL: &str = include_str!("attacks.jsonl");
/// The `source` (and diagnostic file name) of the built-in attacks.
pub const BUILTIN_SOURCE: &str = "builtin";

/// One line of an attacks file, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttack {
    id: String,
    technique: String,
    goal: String,
    text: String,
}

/// The built-in attacks, in corpus order, with `source` `"builtin"`.
pub fn builtin() -> Vec<Attack> {
    static CORPUS: OnceLock<Vec<Attack>> = OnceLock::new();
    CORPUS
        .get_or_init(|| match parse_attacks(BUILTIN_SOURCE, BUILTIN_JSONL) {
            Ok(attacks) => attacks,
            // The unit tests parse the embedded file, so this cannot ship broken.
            Err(e) => panic!("the built-in attack corpus is invalid:\n{e}"),
        })
        .clone()
}

/// Parses an attacks file (JSON Lines; blank lines are skipped), collecting every error
/// with its line: bad JSON, unknown or missing keys, an unknown technique or goal, an
/// empty id or text, a duplicate id, a hijack attack without `{nonce}`. Each attack's
/// `source` is `file`.
pub fn parse_attacks(file: &str, text: &str) -> Result<Vec<Attack>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut attacks = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, trimmed) in crate::config::jsonl_lines(text) {
        let mut error = |msg: String| diags.push(Diagnostic::new(file, Some(line), msg));
        let raw: RawAttack = match serde_json::from_str(trimmed) {
            Ok(r) => r,
            Err(e) => {
                error(format!("invalid attack: {e}"));
                continue;
            }
        };
        let mut ok = true;
        let id = raw.id.trim().to_string();
        if id.is_empty() {
            error("attack `id` is empty".into());
            ok = false;
        } else if let Some(first) = seen.get(&id) {
            error(format!(
                "duplicate attack id `{id}` (first on line {first})"
            ));
            ok = false;
        } else {
            seen.insert(id.clone(), line);
        }
        let technique = Technique::parse(raw.technique.trim());
        if technique.is_none() {
            let known: Vec<&str> = Technique::ALL.iter().map(|t| t.as_str()).collect();
            error(format!(
                "attack `{id}`: unknown technique `{}` (expected one of: {})",
                raw.technique,
                known.join(", ")
            ));
        }
        let goal = Goal::parse(raw.goal.trim());
        if goal.is_none() {
            error(format!(
                "attack `{id}`: unknown goal `{}` (expected `leak` or `hijack`)",
                raw.goal
            ));
        }
        if raw.text.trim().is_empty() {
            error(format!("attack `{id}`: `text` is empty"));
            ok = false;
        }
        if goal == Some(Goal::Hijack) && !raw.text.contains(NONCE_PLACEHOLDER) {
            error(format!(
                "attack `{id}`: a hijack attack must contain `{NONCE_PLACEHOLDER}` and ask \
                 for the word HIJACKED followed by the reverse of it (that computed marker \
                 is how success is detected)"
            ));
            ok = false;
        }
        if let (true, Some(technique), Some(goal)) = (ok, technique, goal) {
            attacks.push(Attack {
                id,
                technique,
                goal,
                text: raw.text,
                source: file.to_string(),
            });
        }
    }
    if diags.is_empty() {
        Ok(attacks)
    } else {
        Err(diags)
    }
}
