//! A PR cannot weaken the dataset its gate is computed on without a human: thresholds
//! come from base but cases from head, so deleting the hard cases, or their assertions,
//! would make a failing suite pass. Such changes are listed and hold the suite for
//! review; adding cases or assertions never does.

use std::collections::HashMap;

use crate::config::Case;
use crate::report::{DatasetChange, DatasetChangeKind};

/// Case by case, what head did to base's dataset, in base's order.
pub fn dataset_changes(base: &[&Case], head: &[&Case]) -> Vec<DatasetChange> {
    let head_by_id: HashMap<&str, &Case> = head.iter().map(|c| (c.id.as_str(), *c)).collect();
    let mut out = Vec::new();
    for b in base {
        let Some(h) = head_by_id.get(b.id.as_str()) else {
            out.push(DatasetChange {
                case: b.id.clone(),
                change: DatasetChangeKind::Removed,
                detail: String::new(),
            });
            continue;
        };
        let mut lost = lost_assertions(b, h);
        // A lower case `threshold` lets failing assertions pass the case (absent: all).
        let (bt, ht) = (b.threshold.unwrap_or(1.0), h.threshold.unwrap_or(1.0));
        if ht < bt && !b.asserts.is_empty() {
            lost.push(format!("case threshold {bt} (now {ht})"));
        }
        if !lost.is_empty() {
            out.push(DatasetChange {
                case: b.id.clone(),
                change: DatasetChangeKind::AssertionsRemoved,
                detail: format!("no longer asserted: {}", lost.join(", ")),
            });
        }
        if b.expected != h.expected {
            out.push(DatasetChange {
                case: b.id.clone(),
                change: DatasetChangeKind::ExpectedChanged,
                detail: String::new(),
            });
        }
    }
    out
}

/// Base assertions with no equal counterpart at head (as a multiset: two equal
/// assertions at base and one at head lose one).
fn lost_assertions(base: &Case, head: &Case) -> Vec<String> {
    let canonical = |a: &crate::config::Assertion| serde_json::to_string(a).unwrap_or_default();
    let mut left: HashMap<String, usize> = HashMap::new();
    for a in &head.asserts {
        *left.entry(canonical(a)).or_default() += 1;
    }
    base.asserts
        .iter()
        .filter(|a| match left.get_mut(&canonical(a)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .map(canonical)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(line: &str) -> Case {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn removals_and_lost_assertions_weaken_additions_do_not() {
        let a = case(
            r#"{"id": "a", "expected": "x", "assert": [{"type": "contains", "value": "30"}, {"type": "contains", "value": "30"}]}"#,
        );
        let b = case(r#"{"id": "b"}"#);
        let c = case(r#"{"id": "c", "assert": [{"type": "contains", "value": "x"}]}"#);
        let a2 = case(
            r#"{"id": "a", "expected": "y", "assert": [{"type": "contains", "value": "30"}]}"#,
        );
        let c2 = case(
            r#"{"id": "c", "assert": [{"type": "contains", "value": "x"}, {"type": "regex", "value": "y"}]}"#,
        );
        let new = case(r#"{"id": "new"}"#);
        let changes = dataset_changes(&[&a, &b, &c], &[&a2, &c2, &new]);
        let kinds: Vec<(&str, DatasetChangeKind)> = changes
            .iter()
            .map(|c| (c.case.as_str(), c.change))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a", DatasetChangeKind::AssertionsRemoved),
                ("a", DatasetChangeKind::ExpectedChanged),
                ("b", DatasetChangeKind::Removed),
            ]
        );
        assert!(changes[0].detail.contains("contains"), "{changes:?}");
        assert!(dataset_changes(&[&c], &[&c2]).is_empty());
    }

    #[test]
    fn a_lower_case_threshold_weakens_a_higher_one_does_not() {
        let strict = case(r#"{"id": "a", "assert": [{"type": "contains", "value": "30"}]}"#);
        let loose = case(
            r#"{"id": "a", "threshold": 0.5, "assert": [{"type": "contains", "value": "30"}]}"#,
        );
        let changes = dataset_changes(&[&strict], &[&loose]);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].change, DatasetChangeKind::AssertionsRemoved);
        assert!(
            changes[0].detail.contains("case threshold 1 (now 0.5)"),
            "{changes:?}"
        );
        assert!(dataset_changes(&[&loose], &[&strict]).is_empty());
    }
}
