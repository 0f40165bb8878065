//! Before the first model call: the estimate, `--estimate`, and the budget (SPEC §4,
//! §6 `--confirm`, issue 18). An executor that spends elsewhere (CodeBuild) calls
//! [`CheckPlan::preflight`] before it starts builds; [`super::execute`] calls it too,
//! and it runs once.

use super::{estimate, CheckPlan, PlannedSuite};
use crate::execute::client::ModelClient;
use crate::report::{OverBudget, Report, Verdict};

impl CheckPlan {
    /// Estimates the plan (its estimate goes into the report) and decides whether it
    /// may spend: `Some(report)` is the run's final report when it must not (an
    /// estimate only, or over budget with no approver's confirmation), having called
    /// nothing. Call it before any model call; a second call does nothing.
    pub async fn preflight(&mut self, client: &ModelClient) -> Option<Report> {
        if self.preflown {
            return None;
        }
        self.preflown = true;
        let keys: Vec<String> = self
            .suites
            .iter()
            .flat_map(PlannedSuite::planned_keys)
            .collect();
        client.prefetch(&keys).await;
        let estimate = estimate::estimate(&self.suites, self.calibration.as_ref(), client);
        let cost = estimate.cost_usd;
        let report = &mut self.report;
        report.estimate = Some(estimate);
        let state = self.budget.unwrap_or_default();
        let over = self
            .limits
            .as_ref()
            .and_then(|l| l.exceeded(cost, state.spent))
            .map(|(setting, allowed, would)| OverBudget {
                setting: setting.to_string(),
                estimate_usd: cost,
                would_be_usd: would,
                allowed_usd: allowed,
                confirmed: state.confirmed && !self.estimate_only,
                held: false,
            });
        if self.estimate_only {
            // Nothing is evaluated: no verdict is earned, but a plan that failed is one.
            let broken = !report.errors.is_empty()
                || report.suites.iter().any(|s| s.verdict == Verdict::Error);
            report.verdict = if broken {
                Verdict::Error
            } else {
                Verdict::Skipped
            };
            report.notes.push(
                "estimate only (`--estimate`): nothing was called and nothing was evaluated"
                    .to_string(),
            );
            report.over_budget = over;
            return Some(self.finished());
        }
        let over = over?;
        let (setting, would, allowed) = (over.setting.clone(), over.would_be_usd, over.allowed_usd);
        match self.budget {
            Some(s) if !s.confirmed => {
                // The bot waits for an approver: nothing is called.
                report.verdict = Verdict::NeedsReview;
                report.over_budget = Some(OverBudget { held: true, ..over });
                return Some(self.finished());
            }
            Some(_) => report.notes.push(format!(
                "over budget (`budget.{setting}`: ${would:.4} against ${allowed:.4} allowed), run as an approver confirmed"
            )),
            None => report.notes.push(format!(
                "over budget: `budget.{setting}` allows ${allowed:.4} and this run is estimated at ${would:.4}; the bot would wait for `/promptgate run --confirm`"
            )),
        }
        report.over_budget = Some(over);
        None
    }

    /// The report as it stands, timed.
    fn finished(&self) -> Report {
        let mut report = self.report.clone();
        report.duration_ms = self.started.elapsed().as_millis() as u64;
        report
    }
}
