//! The judge calibration set (`evaluators.judge.calibration`): labelled answers the
//! judge must agree with before its scores gate (SPEC §2).

use std::collections::HashMap;

use serde::Deserialize;

use crate::diag::{Diagnostic, Diagnostics};

/// The minimum Cohen's kappa on every label when `min_kappa` is not set.
pub const DEFAULT_MIN_KAPPA: f64 = 0.6;

/// What a human said about one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationLabel {
    pub faithful: bool,
    pub relevant: bool,
    pub hallucination: bool,
}

/// One labelled answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationItem {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub context: String,
    pub answer: String,
    pub label: CalibrationLabel,
    #[serde(skip)]
    pub line: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibrationSet {
    pub file: String,
    pub items: Vec<CalibrationItem>,
}

impl CalibrationSet {
    /// Parses every line, collecting all errors (bad JSON, a missing label, duplicate ids).
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut items = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (line, trimmed) in super::jsonl_lines(text) {
            let mut item: CalibrationItem = match serde_json::from_str(trimmed) {
                Ok(i) => i,
                Err(e) => {
                    diags.push(Diagnostic::new(
                        file,
                        Some(line),
                        format!("invalid calibration item: {e}"),
                    ));
                    continue;
                }
            };
            item.line = line;
            if let Some(first) = seen.insert(item.id.clone(), line) {
                diags.push(Diagnostic::new(
                    file,
                    Some(line),
                    format!("duplicate id `{}` (first on line {first})", item.id),
                ));
                continue;
            }
            items.push(item);
        }
        if items.is_empty() && diags.is_empty() {
            diags.push(Diagnostic::new(
                file,
                None,
                "the calibration set has no items: the judge cannot be calibrated",
            ));
        }
        if diags.is_empty() {
            Ok(Self {
                file: file.to_string(),
                items,
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
    fn parses_the_spec_shape_and_names_bad_lines() {
        let ok = r#"{"id": "a", "question": "q", "context": "c", "answer": "x", "label": {"faithful": true, "relevant": true, "hallucination": false}}"#;
        let set = CalibrationSet::parse("cal.jsonl", ok).unwrap();
        assert_eq!(set.items[0].line, 1);
        assert!(!set.items[0].label.hallucination);
        let bad =
            format!("{ok}\n{{\"id\": \"b\", \"question\": \"q\", \"answer\": \"x\"}}\n{ok}\n");
        let err = CalibrationSet::parse("cal.jsonl", &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cal.jsonl:2") && err.contains("label"),
            "{err}"
        );
        assert!(
            err.contains("cal.jsonl:3") && err.contains("duplicate"),
            "{err}"
        );
        assert!(CalibrationSet::parse("cal.jsonl", "\n").is_err());
    }
}
