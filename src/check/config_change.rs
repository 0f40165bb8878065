//! What a PR's `.promptgate.yml` would change in policy, shown in the comment.

use crate::config::{MetricName, RepoConfig};
use crate::report::ConfigChange;

/// Validates the head's config and lists what it would change in policy.
pub(super) fn config_change(base: &RepoConfig, head_text: &str) -> ConfigChange {
    match RepoConfig::parse(head_text) {
        Err(d) => ConfigChange {
            valid: false,
            errors: d.0.iter().map(|x| x.to_string()).collect(),
            changes: Vec::new(),
        },
        Ok(head) => {
            let mut changes = Vec::new();
            for name in head.suites.keys().filter(|n| !base.suites.contains_key(*n)) {
                changes.push(format!("adds suite `{name}`"));
            }
            for name in base.suites.keys().filter(|n| !head.suites.contains_key(*n)) {
                changes.push(format!("removes suite `{name}`"));
            }
            for (name, b) in &base.suites {
                let Some(h) = head.suites.get(name) else {
                    continue;
                };
                for m in MetricName::ALL {
                    let (bt, ht) = (b.metrics.get(&m), h.metrics.get(&m));
                    if bt != ht {
                        changes.push(format!(
                            "`{name}.{}`: {} → {}",
                            m.as_str(),
                            fmt_threshold(bt),
                            fmt_threshold(ht)
                        ));
                    }
                }
                if b.max_regression() != h.max_regression() {
                    changes.push(format!(
                        "`{name}.max_regression`: {} → {}",
                        b.max_regression(),
                        h.max_regression()
                    ));
                }
                if b.defaults != h.defaults {
                    // Test content, read at each side: it counts in this very run.
                    changes.push(format!(
                        "`{name}.defaults` changed (evaluated at the head in this run, like a dataset change)"
                    ));
                }
                // Which models run (and which one gates) is policy: it applies once merged.
                let models = |s: &crate::config::SuiteConfig| {
                    std::iter::once(s.model.as_str())
                        .chain(s.compared_models().iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if models(b) != models(h) {
                    changes.push(format!(
                        "`{name}` models (the first gates): [{}] → [{}]",
                        models(b),
                        models(h)
                    ));
                }
                if b.samples != h.samples {
                    changes.push(format!("`{name}.samples`: {} → {}", b.samples, h.samples));
                }
            }
            if base.evaluators != head.evaluators {
                changes.push("changes `evaluators`".to_string());
            }
            if base.release != head.release {
                changes
                    .push("changes `release` (branches, judge, samples or approvers)".to_string());
            }
            ConfigChange {
                valid: true,
                errors: Vec::new(),
                changes,
            }
        }
    }
}

fn fmt_threshold(t: Option<&crate::config::Threshold>) -> String {
    match t {
        None => "none".to_string(),
        Some(t) => match (t.min, t.max) {
            (Some(a), Some(b)) => format!("min {a}, max {b}"),
            (Some(a), None) => format!("min {a}"),
            (None, Some(b)) => format!("max {b}"),
            (None, None) => "none".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_model_list_is_summarised() {
        let text = |models: &str| {
            format!("version: 1\nsuites:\n  s:\n    prompts: {{ user: u.j2 }}\n    {models}\n    dataset: d.jsonl\n")
        };
        let base = RepoConfig::parse(&text("model: a.yaml")).unwrap();
        let change = config_change(&base, &text("models: [a.yaml, b.yaml]"));
        assert_eq!(
            change.changes,
            ["`s` models (the first gates): [a.yaml] → [a.yaml, b.yaml]"]
        );
        assert!(config_change(&base, &text("models: [a.yaml]"))
            .changes
            .is_empty());
    }
}
