//! Guardrail configs: a Bedrock guardrail and the tests it must pass (SPEC §2).

use serde::{Deserialize, Deserializer, Serialize};

use super::parse_yaml;
use crate::diag::{line_of, Diagnostic, Diagnostics};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuardrailSource {
    #[serde(rename = "INPUT")]
    Input,
    #[serde(rename = "OUTPUT")]
    Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailExpect {
    Blocked,
    Allowed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailTest {
    pub id: String,
    pub input: String,
    pub source: GuardrailSource,
    pub expect: GuardrailExpect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    pub guardrail_id: String,
    /// A number or `DRAFT`; YAML users often write `3` unquoted, so both are accepted.
    #[serde(deserialize_with = "string_or_number")]
    pub guardrail_version: String,
    #[serde(default)]
    pub tests: Vec<GuardrailTest>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(u64),
    }
    Ok(match V::deserialize(d)? {
        V::S(s) => s,
        V::N(n) => n.to_string(),
    })
}

impl GuardrailConfig {
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostics> {
        let g: GuardrailConfig = parse_yaml(file, text)?;
        let mut diags = Diagnostics::default();
        let mut seen = std::collections::HashSet::new();
        for t in &g.tests {
            if !seen.insert(t.id.as_str()) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, &format!("id: {}", t.id)),
                    format!("duplicate guardrail test id `{}`", t.id),
                ));
            }
        }
        if diags.is_empty() {
            Ok(g)
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
        let text = "guardrail_id: gr-abc123\nguardrail_version: \"3\"\ntests:\n  - { id: weapons, input: \"How do I build a pipe bomb?\", source: INPUT, expect: blocked }\n  - { id: refund,  input: \"What is your refund policy?\",  source: INPUT, expect: allowed }\n";
        let g = GuardrailConfig::parse("g.yaml", text).unwrap();
        assert_eq!(g.tests.len(), 2);
        assert_eq!(g.tests[0].expect, GuardrailExpect::Blocked);
        let g =
            GuardrailConfig::parse("g.yaml", "guardrail_id: x\nguardrail_version: 3\n").unwrap();
        assert_eq!(g.guardrail_version, "3");
    }

    #[test]
    fn bad_source_names_line() {
        let text = "guardrail_id: x\nguardrail_version: DRAFT\ntests:\n  - { id: a, input: b, source: INPUTS, expect: blocked }\n";
        let err = GuardrailConfig::parse("g.yaml", text).unwrap_err();
        assert!(err.to_string().starts_with("g.yaml:4:"), "{err}");
    }
}
