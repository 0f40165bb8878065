//! Pushes to the default branch: the bot evaluates the pushed commit so the result
//! cache always holds the default branch's results, and a PR opened against it pays
//! only for the cases it changes (SPEC §3). No status and no comment: nobody asked,
//! and a red default branch is the PR gate's business, not the baseline's.

use super::{repo_id, Bot};
use crate::check::{baseline_run, CheckOptions};
use crate::event::PushEvent;
use crate::executor::RunRequest as ExecRequest;
use crate::forge::source::ForgeSource;
use crate::report::Tier;
use crate::source::Rev;

impl Bot {
    /// Evaluates every case of every suite at the pushed commit, on the executor. Cases
    /// the push did not change are already cached (from the previous push's baseline),
    /// so this costs what the push changed: the diff scoping happens in the cache keys.
    pub async fn baseline(&self, push: &PushEvent) -> anyhow::Result<()> {
        let forge = self.forge(&push.repo)?;
        let repo = repo_id(&push.repo);
        let source = ForgeSource::at_commit(forge, repo.clone());
        let options = CheckOptions {
            suites: Vec::new(),
            full: true,
            // A PR's base side is evaluated in the PR tier, so that is what to cache.
            tier: Tier::Pr,
            endpoints: self.endpoint_rules.clone(),
            namespace: Some(super::cache_namespace(&push.repo)),
            load: false,
            estimate_only: false,
            // A baseline has nobody to confirm it; a run over budget is noted in the log.
            budget: None,
        };
        let (revs, options) = baseline_run(Rev::Commit(push.after.clone()), &push.after, &options);
        let in_flight = self.metrics.run_in_flight();
        let report = self
            .executor
            .run(ExecRequest {
                run_id: format!("baseline-{}", super::short_sha(&push.after)),
                head_sha: push.after.clone(),
                source: &source,
                revs: &revs,
                opts: &options,
            })
            .await;
        drop(in_flight);
        self.metrics.record_usage(&report.usage);
        let errors = report.errors.len()
            + report
                .suites
                .iter()
                .filter(|s| s.verdict == crate::report::Verdict::Error)
                .count();
        tracing::info!(
            repo = %repo.full_name,
            branch = %push.branch,
            sha = %push.after,
            before = push.before.as_deref().unwrap_or("(new branch)"),
            model_calls = report.usage.model_calls,
            cache_hits = report.usage.cache_hits,
            errors,
            "baseline of the default branch cached"
        );
        for e in &report.errors {
            tracing::warn!(repo = %repo.full_name, sha = %push.after, error = %e, "baseline error");
        }
        Ok(())
    }
}
