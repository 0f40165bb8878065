//! Detection: which suites a change can touch, from the changed paths alone. The keys
//! computed in `plan` then decide, case by case, what is actually affected.

use globset::{Glob, GlobSetBuilder};

use crate::config::SuiteConfig;

/// The changed paths that trigger a suite: its own files, its `watch` globs, and
/// anything in a folder that holds one of its templates (where an include may live).
pub fn triggered_by(suite: &SuiteConfig, changed: &[String]) -> Vec<String> {
    let files = suite.files();
    let template_dirs: Vec<&str> = suite
        .prompts
        .roles()
        .into_iter()
        .filter_map(|(_, p)| p.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
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
                || watch.as_ref().is_some_and(|w| w.is_match(path.as_str()))
                || template_dirs
                    .iter()
                    .any(|d| path.starts_with(d) && path.as_bytes().get(d.len()) == Some(&b'/'))
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

    #[test]
    fn readme_triggers_nothing() {
        assert!(triggered_by(&suite(), &["README.md".into()]).is_empty());
    }

    #[test]
    fn own_files_watch_and_template_folder_trigger() {
        let changed: Vec<String> = [
            "README.md",
            "models/m.yaml",
            "src/retrieval/index.rs",
            "prompts/s/partials/tone.j2",
            "prompts/sx/user.j2",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            triggered_by(&suite(), &changed),
            vec![
                "models/m.yaml",
                "src/retrieval/index.rs",
                "prompts/s/partials/tone.j2"
            ]
        );
    }
}
