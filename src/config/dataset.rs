//! Golden datasets: JSON Lines, one case per line (SPEC §2).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Diagnostics};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssertionKind {
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "not-contains")]
    NotContains,
    #[serde(rename = "icontains")]
    IContains,
    #[serde(rename = "regex")]
    Regex,
    #[serde(rename = "equals")]
    Equals,
    #[serde(rename = "is-json")]
    IsJson,
    #[serde(rename = "json-schema")]
    JsonSchema,
}

impl AssertionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionKind::Contains => "contains",
            AssertionKind::NotContains => "not-contains",
            AssertionKind::IContains => "icontains",
            AssertionKind::Regex => "regex",
            AssertionKind::Equals => "equals",
            AssertionKind::IsJson => "is-json",
            AssertionKind::JsonSchema => "json-schema",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    #[serde(rename = "type")]
    pub kind: AssertionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

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
            for a in &case.asserts {
                if let Err(msg) = check_assertion(a) {
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

/// Checks that an assertion has the value its type needs, and that regexes and
/// schemas compile, so a bad assertion fails at load rather than scoring as a miss.
fn check_assertion(a: &Assertion) -> Result<(), String> {
    let kind = a.kind.as_str();
    match a.kind {
        AssertionKind::IsJson => Ok(()),
        AssertionKind::JsonSchema => match &a.value {
            Some(schema) => jsonschema::validator_for(schema)
                .map(|_| ())
                .map_err(|e| format!("assertion `json-schema` has an invalid schema: {e}")),
            None => Err("assertion `json-schema` needs a `value` (the schema)".into()),
        },
        AssertionKind::Regex => match a.value.as_ref().and_then(|v| v.as_str()) {
            Some(re) => regex::Regex::new(re)
                .map(|_| ())
                .map_err(|e| format!("assertion `regex` does not compile: {e}")),
            None => Err("assertion `regex` needs a string `value`".into()),
        },
        _ => match a.value.as_ref().and_then(|v| v.as_str()) {
            Some(_) => Ok(()),
            None => Err(format!("assertion `{kind}` needs a string `value`")),
        },
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
}
