//! `validate`: every problem in the config and the files it names, all at once: unknown
//! keys, missing files, bad globs, bad JSONL lines, duplicate case ids, manifests, and
//! templates that do not render for some case.

use crate::check::CheckOptions;
use crate::config::{RepoConfig, CONFIG_PATH};
use crate::diag::{Diagnostic, Diagnostics};
use crate::gate::prerequisites;
use crate::plan::{self, EvaluatorSpecs};
use crate::source::{read_text, Rev, Source};

/// Validates the repository at `rev`; an empty result means it is valid.
pub async fn validate(source: &dyn Source, rev: &Rev, opts: &CheckOptions) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let text = match read_text(source, rev, CONFIG_PATH).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            diags.push(Diagnostic::new(
                CONFIG_PATH,
                None,
                "file not found at the repository root",
            ));
            return diags;
        }
        Err(e) => {
            diags.push(Diagnostic::new(
                CONFIG_PATH,
                None,
                format!("cannot read: {e:#}"),
            ));
            return diags;
        }
    };
    let (config, config_diags) = RepoConfig::parse_all(&text);
    diags.extend(config_diags);
    let Some(config) = config else {
        return diags;
    };
    for (name, suite) in &config.suites {
        if !opts.suites.is_empty() && !opts.suites.contains(name) {
            continue;
        }
        match plan::load_suite(source, rev, suite, &text).await {
            // Render every case once (sample 0) to find templates that do not render;
            // evaluators do not change rendering.
            Ok(files) => {
                if let Err(d) = plan::plan_side(suite, &files, &EvaluatorSpecs::default(), 1) {
                    diags.extend(d);
                }
                let available = prerequisites::Evaluators {
                    embedding: config.evaluators.embedding.is_some(),
                    judge: config.evaluators.judge.is_some(),
                };
                diags.extend(prerequisites::static_problems(
                    name, suite, &files, available, &text,
                ));
            }
            Err(d) => diags.extend(d),
        }
    }
    let mut refs = Vec::new();
    refs.extend(config.evaluators.embedding.iter());
    refs.extend(config.evaluators.judge.iter());
    refs.extend(config.release.iter().filter_map(|r| r.judge.as_ref()));
    // The templates and dataset are the gating model's; a compared model (`models:`
    // after the first) adds only its manifest, checked like an evaluator's.
    let compared = config
        .suites
        .iter()
        .filter(|(name, _)| opts.suites.is_empty() || opts.suites.contains(name))
        .flat_map(|(name, s)| {
            s.compared_models()
                .iter()
                .map(move |p| (format!("suite `{name}`: model"), p.as_str()))
        });
    let evaluator_manifests = refs
        .iter()
        .filter_map(|r| r.manifest.as_deref())
        .map(|p| ("evaluator".to_string(), p));
    for (what, path) in compared.chain(evaluator_manifests).collect::<Vec<_>>() {
        match read_text(source, rev, path).await {
            Ok(Some(t)) => {
                if let Err(d) = crate::config::ModelManifest::parse(path, &t) {
                    diags.extend(d);
                }
            }
            Ok(None) => diags.push(Diagnostic::new(
                CONFIG_PATH,
                crate::diag::line_of(&text, path),
                format!("{what} manifest `{path}` does not exist"),
            )),
            Err(e) => diags.push(Diagnostic::new(path, None, format!("cannot read: {e:#}"))),
        }
    }
    if let Err(d) = crate::check::calibration::load(source, rev, &config, &text).await {
        diags.extend(d);
    }
    diags.dedup();
    diags
}
