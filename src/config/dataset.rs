//! Golden datasets: JSON Lines, one case per line (SPEC §2).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Diagnostics};

pub use super::assertion::{Assertion, AssertionKind};

/// One golden case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub asserts: Vec<Assertion>,
    /// The weighted share of `assert` that must pass (promptfoo's test `threshold`);
    /// absent, every assertion with a weight above 0 must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// 1-based line in the dataset file; not part of the case's content.
    #[serde(skip)]
    pub line: usize,
}

/// A parsed dataset, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pub file: String,
    pub cases: Vec<Case>,
}

/// The longest dataset line: a case's variables are rendered into its prompt, and a
/// few such lines repeated by a template would exhaust the service's memory.
pub const MAX_CASE_LINE_BYTES: usize = 1 << 20;

impl Dataset {
    /// Parses every line, collecting all errors (bad JSON, unknown keys, duplicate ids,
    /// bad assertions) rather than stopping at the first.
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut cases = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (line, trimmed) in super::jsonl_lines(text) {
            if trimmed.len() > MAX_CASE_LINE_BYTES {
                diags.push(Diagnostic::new(
                    file,
                    Some(line),
                    format!(
                        "the case is {} bytes; the limit is {MAX_CASE_LINE_BYTES} bytes per line",
                        trimmed.len()
                    ),
                ));
                continue;
            }
            let mut case: Case = match serde_json::from_str(trimmed) {
                Ok(c) => c,
                Err(e) => {
                    diags.push(Diagnostic::new(
                        file,
                        Some(line),
                        format!("invalid case: {e}"),
                    ));
                    continue;
                }
            };
            case.line = line;
            if case.id.trim().is_empty() {
                diags.push(Diagnostic::new(file, Some(line), "case `id` is empty"));
            }
            if let Some(first) = seen.get(&case.id) {
                diags.push(Diagnostic::new(
                    file,
                    Some(line),
                    format!("duplicate case id `{}` (first on line {first})", case.id),
                ));
                continue;
            }
            seen.insert(case.id.clone(), line);
            if let Some(t) = case.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
                diags.push(Diagnostic::new(
                    file,
                    Some(line),
                    format!("case `{}`: `threshold` {t} must lie in 0..1", case.id),
                ));
            }
            for a in &case.asserts {
                if let Err(msg) = a.compile(case.expected.as_deref()) {
                    diags.push(Diagnostic::new(
                        file,
                        Some(line),
                        format!("case `{}`: {msg}", case.id),
                    ));
                }
            }
            cases.push(case);
        }
        if cases.is_empty() && diags.is_empty() {
            // A suite with no cases gates nothing: every metric would be vacuous.
            diags.push(Diagnostic::new(
                file,
                None,
                "the dataset has no cases (one JSON object per line)",
            ));
        }
        if diags.is_empty() {
            Ok(Dataset {
                file: file.to_string(),
                cases,
            })
        } else {
            Err(diags)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let text = r#"{"id": "refund-window", "vars": {"question": "How long?", "context": "30 days."}, "expected": "Within 30 days.", "assert": [{"type": "contains", "value": "30 days"}]}"#;
        let d = Dataset::parse("evals/g.jsonl", text).unwrap();
        assert_eq!(d.cases.len(), 1);
        assert_eq!(d.cases[0].line, 1);
        assert_eq!(d.cases[0].asserts[0].kind, AssertionKind::Contains);
    }

    #[test]
    fn a_huge_line_is_refused_naming_it() {
        let text = format!(
            "{{\"id\": \"a\"}}\n{{\"id\": \"b\", \"vars\": {{\"ctx\": \"{}\"}}}}\n",
            "x".repeat(MAX_CASE_LINE_BYTES)
        );
        let err = Dataset::parse("evals/g.jsonl", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("evals/g.jsonl:2: the case is"), "{err}");
        assert!(err.contains("the limit is 1048576 bytes per line"), "{err}");
    }

    #[test]
    fn reports_every_bad_line() {
        let text = "{\"id\":\"a\"}\n\n{\"id\":\"a\"}\n{not json\n{\"id\":\"b\",\"varz\":{}}\n{\"id\":\"c\",\"assert\":[{\"type\":\"regex\",\"value\":\"(\"}]}\n";
        let err = Dataset::parse("g.jsonl", text).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![Some(3), Some(4), Some(5), Some(6)], "{err}");
        assert!(err.0[0]
            .message
            .contains("duplicate case id `a` (first on line 1)"));
        assert!(err.0[2].message.contains("varz"));
        assert!(err.0[3].message.contains("regex"));
    }

    #[test]
    fn unknown_assert_type_is_an_error() {
        let err = Dataset::parse(
            "g.jsonl",
            r#"{"id":"a","assert":[{"type":"startswith","value":"x"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("g.jsonl:1: invalid case"),
            "{err}"
        );
    }

    #[test]
    fn new_assertion_types_load_and_bad_ones_name_their_line() {
        let good = r#"{"id":"a","expected":"30 days","threshold":0.5,"assert":[{"type":"contains-any","value":["30","thirty"],"weight":2},{"type":"rouge-l"},{"type":"regex","value":"^yes","flags":"i"},{"type":"json-path","value":{"path":"$.q","equals":"billing"}},{"type":"latency","threshold":2000}]}"#;
        let d = Dataset::parse("g.jsonl", good).unwrap();
        assert_eq!(d.cases[0].threshold, Some(0.5));
        assert_eq!(d.cases[0].asserts[0].weight, Some(2.0));
        let bad = [
            r#"{"id":"a","assert":[{"type":"contains-any","value":"30"}]}"#,
            r#"{"id":"b","assert":[{"type":"regex","value":"(","flags":"i"}]}"#,
            r#"{"id":"c","assert":[{"type":"bleu"}]}"#,
            r#"{"id":"d","threshold":1.5,"assert":[{"type":"contains","value":"x"}]}"#,
            r#"{"id":"e","assert":[{"type":"contains","value":"x","wieght":1}]}"#,
            r#"{"id":"f","assert":[{"type":"starts_with","value":"x"}]}"#,
        ];
        let err = Dataset::parse("g.jsonl", &bad.join("\n")).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|d| d.line).collect();
        assert_eq!(
            lines,
            vec![Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
            "{err}"
        );
        let text = err.to_string();
        for want in [
            "g.jsonl:1: case `a`: assertion `contains-any` needs a `value` that is a non-empty list of strings",
            "g.jsonl:2: case `b`: assertion `regex` does not compile",
            "g.jsonl:3: case `c`: assertion `bleu` needs a string `value` or the case's `expected`",
            "g.jsonl:4: case `d`: `threshold` 1.5 must lie in 0..1",
            "wieght",
            "did you mean `starts-with`?",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
    }
}
