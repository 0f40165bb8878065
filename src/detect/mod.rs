//! Detection: which suites a change can touch. The keys computed in `plan` decide, case
//! by case, what is actually affected (SPEC §3); this filter runs before them, so it
//! must never drop a path a key depends on. It is built from what rendering can load:
//! the suite's own files, its `watch` globs, and every template reachable from its
//! templates at base or at head (see [`plan::load_templates`]: the renderer gets that
//! map and no loader, so no other file can reach a rendered message).

use std::collections::BTreeSet;

use globset::{Glob, GlobSetBuilder};

use crate::config::SuiteConfig;
use crate::diag::Diagnostics;
use crate::plan;
use crate::source::{Rev, Source};

/// Every path a suite's keys can depend on, at either revision.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    /// Templates reached from the suite's templates at base or head (transitively).
    templates: BTreeSet<String>,
}

impl Dependencies {
    /// Reads the suite's template closure at every revision given. Read problems are
    /// left to planning, which reports them with their file and line.
    pub async fn of(
        source: &dyn Source,
        revs: &[&Rev],
        suite: &SuiteConfig,
        config_text: &str,
    ) -> Self {
        let mut templates = BTreeSet::new();
        for rev in revs {
            let mut ignored = Diagnostics::default();
            templates.extend(
                plan::load_templates(source, rev, suite, config_text, &mut ignored)
                    .await
                    .into_keys(),
            );
        }
        Self { templates }
    }
}

/// The changed paths that trigger a suite: its own files, its `watch` globs, and every
/// template its templates include, import or extend at base or head.
pub fn triggered_by(suite: &SuiteConfig, deps: &Dependencies, changed: &[String]) -> Vec<String> {
    let files = suite.files();
    let mut builder = GlobSetBuilder::new();
    for g in &suite.watch {
        // Bad globs are reported by config validation; here they simply match nothing.
        if let Ok(glob) = Glob::new(g) {
            builder.add(glob);
        }
    }
    let watch = builder.build().ok();
    changed
        .iter()
        .filter(|path| {
            files.contains(&path.as_str())
                || deps.templates.contains(path.as_str())
                || watch.as_ref().is_some_and(|w| w.is_match(path.as_str()))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepoConfig;

    fn suite() -> SuiteConfig {
        let cfg = RepoConfig::parse(
            "version: 1\nsuites:\n  s:\n    prompts: { system: prompts/s/system.j2, user: prompts/s/user.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    watch: [\"src/retrieval/**\"]\n",
        )
        .unwrap();
        cfg.suites["s"].clone()
    }

    fn deps(templates: &[&str]) -> Dependencies {
        Dependencies {
            templates: templates.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn readme_triggers_nothing() {
        assert!(triggered_by(&suite(), &deps(&[]), &["README.md".into()]).is_empty());
    }

    #[test]
    fn own_files_watch_and_loaded_templates_trigger() {
        let changed: Vec<String> = [
            "README.md",
            "models/m.yaml",
            "src/retrieval/index.rs",
            "prompts/s/partials/tone.j2",
            "prompts/s/partials/unused.j2",
            "prompts/shared/voice.j2",
            "prompts/sx/user.j2",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            triggered_by(
                &suite(),
                &deps(&[
                    "prompts/s/user.j2",
                    "prompts/s/partials/tone.j2",
                    "prompts/shared/voice.j2"
                ]),
                &changed
            ),
            vec![
                "models/m.yaml",
                "src/retrieval/index.rs",
                "prompts/s/partials/tone.j2",
                "prompts/shared/voice.j2"
            ]
        );
    }
}
