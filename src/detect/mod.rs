//! Detection: which suites a change can touch. The keys computed in `plan` decide, case
//! by case, what is actually affected (SPEC §3); this filter runs before them, so it
//! must never drop a path a key depends on. It is built from what rendering can load:
//! the suite's own files, its `watch` globs, and every template reachable from its
//! templates at base or at head (see [`plan::load_templates`]: the renderer gets that
//! map and no loader, so no other file can reach a rendered message), and every file a
//! `file://` variable of its cases or `defaults` loads at base or at head.

use std::collections::BTreeSet;

use globset::{Glob, GlobSetBuilder};

use crate::config::{Dataset, SuiteConfig, CONFIG_PATH};
use crate::diag::Diagnostics;
use crate::plan;
use crate::source::{read_text, Rev, Source};

/// Every path a suite's keys can depend on, at either revision.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    /// Templates reached from the suite's templates at base or head (transitively).
    templates: BTreeSet<String>,
    /// Files `file://` variables load at base or head.
    var_files: BTreeSet<String>,
    /// The suite's `defaults` differ between the sides' `.promptgate.yml`.
    defaults_changed: bool,
}

impl Dependencies {
    /// Reads the suite's template closure and its cases' `file://` paths at every
    /// revision given, each with the suite as that revision's config writes it (its
    /// `defaults`). Read problems are left to planning, which reports them with their
    /// file and line. A path one side names and the other does not needs no care: the
    /// dataset or the defaults differ then, and they trigger the suite themselves.
    pub async fn of(
        source: &dyn Source,
        sides: &[(&Rev, &SuiteConfig)],
        config_text: &str,
    ) -> Self {
        let mut deps = Self::default();
        for (rev, suite) in sides {
            let mut ignored = Diagnostics::default();
            deps.templates.extend(
                plan::load_templates(source, rev, suite, config_text, &mut ignored)
                    .await
                    .into_keys(),
            );
            // Parsing every dataset on every run only to find no reference is wasted.
            let refers = |t: &str| t.contains(plan::var_files::PREFIX);
            let text = read_text(source, rev, &suite.dataset).await.ok().flatten();
            let dataset = text
                .filter(|t| refers(t))
                .and_then(|t| Dataset::parse(&suite.dataset, &t).ok());
            deps.var_files.extend(plan::var_files::referenced(
                dataset.as_ref(),
                suite.defaults.as_ref(),
            ));
        }
        deps.defaults_changed = sides.windows(2).any(|w| w[0].1.defaults != w[1].1.defaults);
        deps
    }
}

/// The changed paths that trigger a suite: its own files, its `watch` globs, every
/// template its templates include, import or extend, and every file its variables
/// load, at base or head; and `.promptgate.yml` when the suite's `defaults` changed.
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
                || deps.var_files.contains(path.as_str())
                || (deps.defaults_changed && path.as_str() == CONFIG_PATH)
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
            ..Default::default()
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

    #[test]
    fn loaded_files_and_a_defaults_change_trigger() {
        let changed: Vec<String> = ["evals/docs/a.md", "evals/docs/b.md", CONFIG_PATH]
            .map(String::from)
            .to_vec();
        let deps = Dependencies {
            var_files: ["evals/docs/a.md".to_string()].into(),
            ..Default::default()
        };
        assert_eq!(
            triggered_by(&suite(), &deps, &changed),
            vec!["evals/docs/a.md"]
        );
        let deps = Dependencies {
            defaults_changed: true,
            ..deps
        };
        assert_eq!(
            triggered_by(&suite(), &deps, &changed),
            vec!["evals/docs/a.md", CONFIG_PATH]
        );
    }
}
