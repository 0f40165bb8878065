//! The dataset `assert` types (SPEC §2), checked against one output.

use crate::config::{Assertion, AssertionKind};

/// The result of a case's assertion list on one output.
#[derive(Clone, Debug, PartialEq)]
pub struct AssertOutcome {
    pub pass: bool,
    /// One line per failed assertion, saying what was expected.
    pub failures: Vec<String>,
}

/// Checks every assertion; the case passes when all do.
pub fn evaluate(asserts: &[Assertion], output: &str) -> AssertOutcome {
    let failures: Vec<String> = asserts
        .iter()
        .filter_map(|a| check(a, output).err())
        .collect();
    AssertOutcome {
        pass: failures.is_empty(),
        failures,
    }
}

fn text_value(a: &Assertion) -> Result<&str, String> {
    a.value
        .as_ref()
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{}: needs a string value", a.kind.as_str()))
}

fn check(a: &Assertion, output: &str) -> Result<(), String> {
    match a.kind {
        AssertionKind::Contains => {
            let v = text_value(a)?;
            output
                .contains(v)
                .then_some(())
                .ok_or_else(|| format!("contains {v:?}: not found"))
        }
        AssertionKind::NotContains => {
            let v = text_value(a)?;
            (!output.contains(v))
                .then_some(())
                .ok_or_else(|| format!("not-contains {v:?}: found"))
        }
        AssertionKind::IContains => {
            let v = text_value(a)?;
            output
                .to_lowercase()
                .contains(&v.to_lowercase())
                .then_some(())
                .ok_or_else(|| format!("icontains {v:?}: not found"))
        }
        AssertionKind::Equals => {
            let v = text_value(a)?;
            (output.trim() == v.trim())
                .then_some(())
                .ok_or_else(|| format!("equals {v:?}: output differs"))
        }
        AssertionKind::Regex => {
            let v = text_value(a)?;
            let re =
                regex::Regex::new(v).map_err(|e| format!("regex {v:?} does not compile: {e}"))?;
            re.is_match(output)
                .then_some(())
                .ok_or_else(|| format!("regex {v:?}: no match"))
        }
        AssertionKind::IsJson => parse_json(output).map(|_| ()),
        AssertionKind::JsonSchema => {
            let schema = a
                .value
                .as_ref()
                .ok_or("json-schema: needs a schema value")?;
            let doc = parse_json(output)?;
            let validator = jsonschema::validator_for(schema)
                .map_err(|e| format!("json-schema: invalid schema: {e}"))?;
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .take(3)
                .map(|e| e.to_string())
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(format!("json-schema: {}", errors.join("; ")))
            }
        }
    }
}

/// Parses the output as JSON, accepting one surrounding markdown code fence because
/// chat models add one even when asked not to.
fn parse_json(output: &str) -> Result<serde_json::Value, String> {
    let text = strip_fence(output.trim());
    serde_json::from_str(text).map_err(|e| format!("is-json: output is not JSON ({e})"))
}

/// Removes one ```lang … ``` fence around `text`, if there is exactly that.
pub fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return text;
    };
    match body.split_once('\n') {
        Some((lang, inner)) if !lang.contains(' ') => inner.trim(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn a(kind: &str, value: serde_json::Value) -> Assertion {
        serde_json::from_value(json!({"type": kind, "value": value})).unwrap()
    }

    #[test]
    fn table() {
        let schema = json!({"type": "object", "required": ["days"], "properties": {"days": {"type": "integer"}}});
        let rows: Vec<(Assertion, &str, bool)> = vec![
            (a("contains", json!("30 days")), "within 30 days.", true),
            (a("contains", json!("30 days")), "within 30 Days.", false),
            (a("icontains", json!("30 DAYS")), "within 30 days.", true),
            (a("not-contains", json!("sorry")), "Sure!", true),
            (a("not-contains", json!("sorry")), "I'm sorry", false),
            (a("equals", json!("yes")), " yes\n", true),
            (a("equals", json!("yes")), "yes!", false),
            (a("regex", json!(r"^\d+ days$")), "30 days", true),
            (a("regex", json!(r"^\d+ days$")), "thirty days", false),
            (
                serde_json::from_value(json!({"type": "is-json"})).unwrap(),
                "{\"a\":1}",
                true,
            ),
            (
                serde_json::from_value(json!({"type": "is-json"})).unwrap(),
                "```json\n{\"a\":1}\n```",
                true,
            ),
            (
                serde_json::from_value(json!({"type": "is-json"})).unwrap(),
                "a: 1",
                false,
            ),
            (a("json-schema", schema.clone()), "{\"days\": 30}", true),
            (
                a("json-schema", schema.clone()),
                "{\"days\": \"30\"}",
                false,
            ),
            (a("json-schema", schema), "not json", false),
        ];
        for (i, (assertion, output, want)) in rows.iter().enumerate() {
            let got = evaluate(std::slice::from_ref(assertion), output);
            assert_eq!(
                got.pass, *want,
                "row {i}: {assertion:?} on {output:?}: {got:?}"
            );
            assert_eq!(got.failures.is_empty(), *want, "row {i}");
        }
    }

    #[test]
    fn all_must_pass() {
        let asserts = vec![a("contains", json!("a")), a("contains", json!("z"))];
        let out = evaluate(&asserts, "abc");
        assert!(!out.pass);
        assert_eq!(out.failures, vec!["contains \"z\": not found"]);
        assert!(evaluate(&[], "anything").pass);
    }
}
