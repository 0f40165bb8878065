//! `.promptgate.yml`: suites, thresholds, evaluators and the release tier (SPEC §1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::{ModelSpec, Parameters, ProviderKind};
use super::parse_yaml;
use crate::diag::{line_of, Diagnostic, Diagnostics};

/// Where the config lives in a repository.
pub const CONFIG_PATH: &str = ".promptgate.yml";

/// Default for `max_regression` when a suite does not set one.
pub const DEFAULT_MAX_REGRESSION: f64 = 0.05;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub version: u32,
    pub suites: BTreeMap<String, SuiteConfig>,
    #[serde(default)]
    pub evaluators: Evaluators,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<super::tickets::TicketsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<super::budget::BudgetConfig>,
}

/// Message role → template file. Messages are sent in the order system, user, assistant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
}

impl Prompts {
    /// (role, template path) in message order.
    pub fn roles(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(p) = &self.system {
            out.push(("system", p.as_str()));
        }
        if let Some(p) = &self.user {
            out.push(("user", p.as_str()));
        }
        if let Some(p) = &self.assistant {
            out.push(("assistant", p.as_str()));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    pub prompts: Prompts,
    /// The gating model's manifest. With `models:` in the file it is filled from the
    /// list's first entry on parse, so every consumer reads the gating model here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// `models: [A, B, …]`: the suite runs on each, side by side; `A` gates and is also
    /// [`Self::model`]. Empty when the file says `model:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<String>,
    pub dataset: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrusted_vars: Vec<String>,
    #[serde(default = "one")]
    pub samples: u32,
    #[serde(default)]
    pub metrics: BTreeMap<MetricName, Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_regression: Option<f64>,
    /// How the injection suite runs (only when `injection_failures` is gated).
    #[serde(default)]
    pub injection: InjectionConfig,
    /// The suite's load test (release tier, `check --load`, `/promptgate run load`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<super::load::LoadConfig>,
    /// Replay sampled production requests against the head (SPEC §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<super::shadow::ShadowConfig>,
    /// Re-judge ambiguous answers with `release.judge` (PR tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_escalation: Option<JudgeEscalation>,
    /// Variables and assertions merged into every case. Test content, not policy: the
    /// planner reads them from the config at each side (see `check::plan_into`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<super::Defaults>,
}

/// `judge_escalation: { band: [low, high] }`: an answer whose PR-judge faithfulness or
/// relevance lands inside the band is judged again by `release.judge`, whose grade then
/// counts ("use the heavy model when the cheaper model detects ambiguity").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeEscalation {
    pub band: [f64; 2],
}

impl JudgeEscalation {
    pub fn contains(&self, score: f64) -> bool {
        score >= self.band[0] - 1e-12 && score <= self.band[1] + 1e-12
    }
}

fn one() -> u32 {
    1
}

/// Default number of a suite's cases that carry each attack.
pub const DEFAULT_INJECTION_SAMPLE: usize = 2;

/// The prompt-injection suite of a suite. Not in SPEC §1, which fixes no knob for it;
/// added so the sample and the extra attacks can be set without a code change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionConfig {
    /// Cases that carry each attack (chosen by a stable hash of their id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<usize>,
    /// A JSONL file of extra attacks, merged into the built-in corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacks: Option<String>,
    /// Also ask the judge whether an answer followed injected instructions.
    #[serde(default)]
    pub judge: bool,
}

impl SuiteConfig {
    pub fn max_regression(&self) -> f64 {
        self.max_regression.unwrap_or(DEFAULT_MAX_REGRESSION)
    }

    /// Every file path the suite names directly (templates, manifest, guardrail, dataset).
    pub fn files(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.prompts.roles().into_iter().map(|(_, p)| p).collect();
        out.push(&self.model);
        // A change to a compared model's manifest triggers the suite too (SPEC §3).
        out.extend(self.compared_models().iter().map(String::as_str));
        if let Some(g) = &self.guardrail {
            out.push(g);
        }
        out.push(&self.dataset);
        if let Some(a) = &self.injection.attacks {
            out.push(a);
        }
        out
    }

    /// The manifests compared with the gating one (`models:` after the first).
    pub fn compared_models(&self) -> &[String] {
        self.models.get(1..).unwrap_or_default()
    }

    /// The suite as run on a compared model: its cases and case metrics only. Attacks,
    /// guardrail tests and the load test are about what ships, so they stay with the
    /// gating model (and are not paid for once per model).
    pub fn on_compared_model(&self, manifest: &str) -> SuiteConfig {
        let mut s = self.clone();
        s.model = manifest.to_string();
        s.models = Vec::new();
        s.guardrail = None;
        s.load = None;
        s.metrics.retain(|m, _| {
            !matches!(
                m,
                MetricName::InjectionFailures | MetricName::GuardrailFailures
            )
        });
        s.injection = InjectionConfig::default();
        s
    }

    /// `models:` names the gating model in `model`, so one code path reads it.
    fn normalize(&mut self) {
        if self.model.is_empty() {
            if let Some(first) = self.models.first() {
                self.model = first.clone();
            }
        }
    }

    /// The injection suite runs when the suite gates on `injection_failures`.
    pub fn runs_injection(&self) -> bool {
        self.metrics.contains_key(&MetricName::InjectionFailures)
    }

    /// Guardrail tests run when the suite names a guardrail config.
    pub fn runs_guardrail_tests(&self) -> bool {
        self.guardrail.is_some()
    }

    pub fn uses_judge(&self) -> bool {
        self.metrics.keys().any(|m| m.needs_judge())
    }

    pub fn uses_embedding(&self) -> bool {
        self.metrics.contains_key(&MetricName::Similarity)
    }
}

/// The metrics a suite can gate on. Declaration order is display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    Assertions,
    Similarity,
    Faithfulness,
    Relevance,
    HallucinationRate,
    LatencyP50Ms,
    LatencyP95Ms,
    CostPerCaseUsd,
    InjectionFailures,
    GuardrailFailures,
}

impl MetricName {
    pub const ALL: [MetricName; 10] = [
        MetricName::Assertions,
        MetricName::Similarity,
        MetricName::Faithfulness,
        MetricName::Relevance,
        MetricName::HallucinationRate,
        MetricName::LatencyP50Ms,
        MetricName::LatencyP95Ms,
        MetricName::CostPerCaseUsd,
        MetricName::InjectionFailures,
        MetricName::GuardrailFailures,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::Assertions => "assertions",
            MetricName::Similarity => "similarity",
            MetricName::Faithfulness => "faithfulness",
            MetricName::Relevance => "relevance",
            MetricName::HallucinationRate => "hallucination_rate",
            MetricName::LatencyP50Ms => "latency_p50_ms",
            MetricName::LatencyP95Ms => "latency_p95_ms",
            MetricName::CostPerCaseUsd => "cost_per_case_usd",
            MetricName::InjectionFailures => "injection_failures",
            MetricName::GuardrailFailures => "guardrail_failures",
        }
    }

    /// Metrics on a 0..1 scale, which `max_regression` applies to.
    pub fn is_unit_scale(self) -> bool {
        matches!(
            self,
            MetricName::Assertions
                | MetricName::Similarity
                | MetricName::Faithfulness
                | MetricName::Relevance
                | MetricName::HallucinationRate
        )
    }

    /// True when a larger value is better; a regression is a move the other way.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            MetricName::Assertions
                | MetricName::Similarity
                | MetricName::Faithfulness
                | MetricName::Relevance
        )
    }

    /// What the metric's values measure, which decides how they are printed.
    pub fn unit(self) -> MetricUnit {
        match self {
            MetricName::LatencyP50Ms | MetricName::LatencyP95Ms => MetricUnit::Millis,
            MetricName::CostPerCaseUsd => MetricUnit::Usd,
            MetricName::InjectionFailures | MetricName::GuardrailFailures => MetricUnit::Count,
            _ => MetricUnit::Ratio,
        }
    }

    /// `delta` (head − base) moves this metric the bad way (beyond rounding noise).
    pub fn worsens(self, delta: f64) -> bool {
        const EPS: f64 = 1e-9;
        if self.higher_is_better() {
            delta < -EPS
        } else {
            delta > EPS
        }
    }

    pub fn needs_judge(self) -> bool {
        matches!(
            self,
            MetricName::Faithfulness | MetricName::Relevance | MetricName::HallucinationRate
        )
    }
}

impl std::fmt::Display for MetricName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit of a metric's values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MetricUnit {
    /// 0..1 scores and rates.
    Ratio,
    /// Milliseconds.
    Millis,
    /// US dollars.
    Usd,
    /// Counts (injection and guardrail failures).
    Count,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Threshold {
    pub fn holds(&self, value: f64) -> bool {
        self.min.is_none_or(|m| value >= m - 1e-12) && self.max.is_none_or(|m| value <= m + 1e-12)
    }
}

/// An evaluator model: inline manifest fields, or `manifest: PATH` to reuse a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Sampling parameters only: the request knobs (`tools`, `extra_headers`, …) come
    /// from a manifest file, where they are checked.
    #[serde(default, deserialize_with = "super::manifest::sampling_block")]
    pub parameters: Parameters,
    /// Prices of an inline evaluator's calls, like a manifest's (not part of any key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::config::Pricing>,
    /// The judge's calibration set (JSON Lines of labelled answers); judge only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    /// Below this Cohen's kappa on any label, judge metrics are shown but do not gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kappa: Option<f64>,
}

impl ModelRef {
    /// The inline spec, or `None` when the ref points at a manifest file instead.
    pub fn inline_spec(&self) -> Option<ModelSpec> {
        Some(ModelSpec {
            provider: self.provider?,
            model: self.model.clone()?,
            region: self.region.clone(),
            base_url: self.base_url.clone(),
            api_key_env: self.api_key_env.clone(),
            parameters: self.parameters.clone(),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<ModelRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<ModelRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<ModelRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    #[serde(default)]
    pub approvers: Vec<String>,
}

impl RepoConfig {
    /// Parses and checks the config text. Checks that need other files (do they exist,
    /// do templates render) happen when the suite is loaded at a revision.
    pub fn parse(text: &str) -> Result<Self, Diagnostics> {
        match Self::parse_all(text) {
            (Some(cfg), d) if d.is_empty() => Ok(cfg),
            (_, d) => Err(d),
        }
    }

    /// Parses as far as possible and returns every problem found. An unknown key stops
    /// serde at the first one, so its line (and the block under it) is blanked and the
    /// text parsed again: line numbers stay true and all unknown keys are reported.
    pub fn parse_all(text: &str) -> (Option<Self>, Diagnostics) {
        let file = CONFIG_PATH;
        let mut diags = Diagnostics::default();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let cfg = loop {
            let attempt = lines.join("\n");
            match parse_yaml::<RepoConfig>(file, &attempt) {
                Ok(cfg) => break Some(cfg),
                Err(d) => {
                    let unknown =
                        d.0.first()
                            .filter(|x| x.message.contains("unknown field"))
                            .and_then(|x| x.line);
                    diags.extend(d);
                    match unknown {
                        Some(line) if line >= 1 && line <= lines.len() && diags.0.len() < 50 => {
                            blank_block(&mut lines, line - 1)
                        }
                        _ => break None,
                    }
                }
            }
        };
        let Some(cfg) = cfg else {
            return (None, diags);
        };
        cfg.check(text, &mut diags);
        let mut cfg = cfg;
        for suite in cfg.suites.values_mut() {
            suite.normalize();
        }
        (Some(cfg), diags)
    }

    fn check(&self, text: &str, diags: &mut Diagnostics) {
        let file = CONFIG_PATH;
        let cfg = self;
        if cfg.version != 1 {
            diags.push(Diagnostic::new(
                file,
                line_of(text, "version"),
                format!(
                    "unsupported version {} (this promptgate reads version 1)",
                    cfg.version
                ),
            ));
        }
        if cfg.suites.is_empty() {
            diags.push(Diagnostic::new(
                file,
                line_of(text, "suites"),
                "no suites are defined",
            ));
        }
        // Calibration belongs to the PR-tier judge (`evaluators.judge`); the release
        // judge is checked against the same set.
        let misplaced = [
            ("evaluators.embedding", cfg.evaluators.embedding.as_ref()),
            (
                "release.judge",
                cfg.release.as_ref().and_then(|r| r.judge.as_ref()),
            ),
        ];
        for (at, r) in misplaced {
            if r.is_some_and(|r| r.calibration.is_some() || r.min_kappa.is_some()) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "calibration").or(line_of(text, "min_kappa")),
                    format!("`{at}` cannot take `calibration` or `min_kappa`: they belong under `evaluators.judge`"),
                ));
            }
        }
        if let Some(k) = cfg.evaluators.judge.as_ref().and_then(|j| j.min_kappa) {
            if !(-1.0..=1.0).contains(&k) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "min_kappa"),
                    format!("`evaluators.judge.min_kappa` {k} is outside -1..1 (Cohen's kappa)"),
                ));
            }
        }
        for (name, suite) in &cfg.suites {
            let at = line_of(text, &format!("{name}:"));
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                diags.push(Diagnostic::new(
                    file,
                    at,
                    format!("suite name `{name}` must match [a-z0-9-_]+"),
                ));
            }
            if suite.prompts.roles().is_empty() {
                diags.push(Diagnostic::new(
                    file,
                    at,
                    format!("suite `{name}` has no prompts"),
                ));
            }
            match (suite.model.is_empty(), suite.models.is_empty()) {
                (true, true) => diags.push(Diagnostic::new(
                    file,
                    at,
                    format!("suite `{name}` names no model: give `model: PATH` or `models: [PATH, …]`"),
                )),
                (false, false) => diags.push(Diagnostic::new(
                    file,
                    crate::diag::line_in_section(text, name, "models:"),
                    format!("suite `{name}` sets both `model` and `models`: give one (the first of `models` gates)"),
                )),
                _ => {}
            }
            for (i, m) in suite.models.iter().enumerate() {
                if m.trim().is_empty() || suite.models[..i].contains(m) {
                    diags.push(Diagnostic::new(
                        file,
                        crate::diag::line_in_section(text, name, "models:"),
                        format!("suite `{name}`: `models` entry `{m}` is empty or listed twice"),
                    ));
                }
            }
            if suite.samples == 0 {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "samples"),
                    format!("suite `{name}`: samples must be at least 1"),
                ));
            }
            for glob in &suite.watch {
                if let Err(e) = globset::Glob::new(glob) {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, glob),
                        format!("suite `{name}`: bad glob `{glob}`: {}", e.kind()),
                    ));
                }
            }
            if let Some(r) = suite.max_regression {
                if !(0.0..=1.0).contains(&r) {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, "max_regression"),
                        format!("suite `{name}`: max_regression {r} is outside 0..1"),
                    ));
                }
            }
            for (metric, t) in &suite.metrics {
                let range = if metric.is_unit_scale() {
                    (0.0..=1.0, "0..1")
                } else {
                    (0.0..=f64::MAX, "0 or more")
                };
                for bound in [t.min, t.max].into_iter().flatten() {
                    if !range.0.contains(&bound) {
                        diags.push(Diagnostic::new(
                            file,
                            crate::diag::line_in_section(text, name, &format!("{}:", metric.as_str())),
                            format!(
                                "suite `{name}`: `{}` threshold {bound} is outside {} (a rate or score, e.g. 0.8 for 80 %)",
                                metric.as_str(),
                                range.1
                            ),
                        ));
                    }
                }
                if t.min.is_none() && t.max.is_none() {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, metric.as_str()),
                        format!(
                            "suite `{name}`: metric `{}` needs `min` or `max`",
                            metric.as_str()
                        ),
                    ));
                }
            }
            if let Some(load) = &suite.load {
                load.check(name, text, diags);
            }
            if let Some(shadow) = &suite.shadow {
                shadow.check(name, text, diags);
                // Replays are compared by embedding similarity: without it the block
                // could only pass silently.
                if cfg.evaluators.embedding.is_none() {
                    diags.push(Diagnostic::new(
                        file,
                        crate::diag::line_in_section(text, name, "shadow:"),
                        format!("suite `{name}` sets `shadow` but `evaluators.embedding`, which compares a replay with the production answer, is not set"),
                    ));
                }
            }
            if let Some(e) = &suite.judge_escalation {
                let [low, high] = e.band;
                if !(0.0..=1.0).contains(&low) || !(0.0..=1.0).contains(&high) || low > high {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, "judge_escalation"),
                        format!("suite `{name}`: judge_escalation.band [{low}, {high}] must be two scores in 0..1, low first"),
                    ));
                }
                if !suite.uses_judge() {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, "judge_escalation"),
                        format!("suite `{name}` sets `judge_escalation` but gates on no judge metric (faithfulness, relevance, hallucination_rate)"),
                    ));
                }
                if cfg
                    .release
                    .as_ref()
                    .and_then(|r| r.judge.as_ref())
                    .is_none()
                {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, "judge_escalation"),
                        format!("suite `{name}` sets `judge_escalation` but `release.judge`, the judge it escalates to, is not set"),
                    ));
                }
            }
            // Shape and syntax here; against each case's `expected` once merged.
            for a in suite.defaults.iter().flat_map(|d| &d.asserts) {
                if let Err(msg) = a.compile(Some("expected")) {
                    diags.push(Diagnostic::new(
                        file,
                        crate::diag::line_in_section(text, name, "defaults:"),
                        format!("suite `{name}`: `defaults.assert`: {msg}"),
                    ));
                }
            }
            if suite.runs_injection() && suite.untrusted_vars.is_empty() {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "injection_failures"),
                    format!("suite `{name}` gates on `injection_failures` but lists no `untrusted_vars` to attack"),
                ));
            }
            if suite.injection.judge && cfg.evaluators.judge.is_none() {
                diags.push(Diagnostic::new(
                    file,
                    at,
                    format!(
                        "suite `{name}` sets `injection.judge` but `evaluators.judge` is not set"
                    ),
                ));
            }
            if suite.metrics.contains_key(&MetricName::GuardrailFailures)
                && suite.guardrail.is_none()
            {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "guardrail_failures"),
                    format!("suite `{name}` gates on `guardrail_failures` but names no `guardrail` config"),
                ));
            }
            if suite.uses_judge() && cfg.evaluators.judge.is_none() {
                diags.push(Diagnostic::new(
                    file,
                    at,
                    format!("suite `{name}` uses a judge metric but `evaluators.judge` is not set"),
                ));
            }
            if suite.uses_embedding() && cfg.evaluators.embedding.is_none() {
                diags.push(Diagnostic::new(
                    file,
                    at,
                    format!(
                        "suite `{name}` uses `similarity` but `evaluators.embedding` is not set"
                    ),
                ));
            }
        }
        if let Some(b) = &cfg.budget {
            for name in b.invalid() {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, name),
                    format!("`budget.{name}` must be a number of dollars, 0 or more"),
                ));
            }
        }
        if let Some(t) = &cfg.tickets {
            if t.on.is_empty() {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "tickets"),
                    "`tickets.on` lists no finding (any of: hallucination, injection, regressed)",
                ));
            }
            if t.labels.iter().any(|l| l.trim().is_empty()) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "labels"),
                    "`tickets.labels` has an empty label",
                ));
            }
        }
        let mut refs: Vec<(&str, &ModelRef)> = Vec::new();
        if let Some(e) = &cfg.evaluators.embedding {
            refs.push(("evaluators.embedding", e));
        }
        if let Some(j) = &cfg.evaluators.judge {
            refs.push(("evaluators.judge", j));
        }
        if let Some(release) = &cfg.release {
            if let Some(j) = &release.judge {
                refs.push(("release.judge", j));
            }
            for glob in &release.branches {
                if let Err(e) = globset::Glob::new(glob) {
                    diags.push(Diagnostic::new(
                        file,
                        line_of(text, glob),
                        format!("release.branches: bad glob `{glob}`: {}", e.kind()),
                    ));
                }
            }
            if release.samples == Some(0) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "samples"),
                    "release.samples must be at least 1",
                ));
            }
        }
        for (what, r) in refs {
            if let Some(reason) = r
                .base_url
                .as_deref()
                .and_then(super::manifest::bad_base_url)
            {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, "base_url"),
                    format!("{what}: {reason}"),
                ));
            }
            let inline = r.provider.is_some() || r.model.is_some();
            if r.manifest.is_some() == inline || (inline && r.inline_spec().is_none()) {
                diags.push(Diagnostic::new(
                    file,
                    line_of(text, what.rsplit('.').next().unwrap_or(what)),
                    format!("{what}: give either `manifest: PATH` or both `provider` and `model`"),
                ));
            }
        }
    }
}

/// Blanks line `i` and the more-indented lines under it (its YAML block).
fn blank_block(lines: &mut [String], i: usize) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let own = indent(&lines[i]);
    lines[i].clear();
    for l in lines.iter_mut().skip(i + 1) {
        if l.trim().is_empty() || indent(l) > own {
            l.clear();
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SPEC_EXAMPLE: &str = r#"version: 1
suites:
  support-answer:
    prompts:
      system: prompts/support/system.j2
      user: prompts/support/user.j2
    model: models/support.yaml
    guardrail: guardrails/support.yaml
    dataset: evals/support/golden.jsonl
    watch: ["src/retrieval/**"]
    untrusted_vars: [question]
    samples: 1
    metrics:
      similarity:         { min: 0.82 }
      faithfulness:       { min: 0.85 }
      relevance:          { min: 0.90 }
      hallucination_rate: { max: 0.02 }
      assertions:         { min: 1.0 }
      latency_p95_ms:     { max: 450 }
      cost_per_case_usd:  { max: 0.01 }
      injection_failures: { max: 0 }
      guardrail_failures: { max: 0 }
    max_regression: 0.05
evaluators:
  embedding: { provider: bedrock, model: amazon.titan-embed-text-v2:0 }
  judge:     { provider: bedrock, model: anthropic.claude-3-haiku-20240307-v1:0 }
release:
  branches: ["release/*"]
  judge:    { provider: bedrock, model: anthropic.claude-3-5-sonnet-20240620-v1:0 }
  samples: 3
  approvers: [alice, "@acme/ml-leads"]
"#;

    #[test]
    fn parses_spec_example() {
        let cfg = RepoConfig::parse(SPEC_EXAMPLE).unwrap();
        let s = &cfg.suites["support-answer"];
        assert_eq!(s.metrics.len(), 9);
        assert_eq!(
            s.prompts.roles()[0],
            ("system", "prompts/support/system.j2")
        );
        assert_eq!(cfg.release.unwrap().approvers.len(), 2);
    }

    #[test]
    fn unknown_key_names_line() {
        let text = SPEC_EXAMPLE.replace("    samples: 1\n", "    sample: 1\n");
        let err = RepoConfig::parse(&text).unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with(".promptgate.yml:12:"), "{s}");
        assert!(s.contains("unknown field `sample`"), "{s}");
    }

    #[test]
    fn inline_evaluator_parameters_take_sampling_keys_only() {
        let judge =
            "judge:     { provider: bedrock, model: anthropic.claude-3-haiku-20240307-v1:0 }";
        let with = |params: &str| {
            SPEC_EXAMPLE.replace(
                judge,
                &format!("judge: {{ provider: openai, model: j, base_url: \"http://x/v1\", parameters: {params} }}"),
            )
        };
        let ok = RepoConfig::parse(&with("{ temperature: 0, stop: [END] }")).unwrap();
        let spec = ok.evaluators.judge.unwrap().inline_spec().unwrap();
        assert_eq!(spec.parameters.stop, Some(vec!["END".to_string()]));
        let err = RepoConfig::parse(&with("{ extra_headers: { X-A: b } }")).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `extra_headers`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_metric_is_an_error() {
        let text = SPEC_EXAMPLE.replace("relevance:", "relevancy:");
        let err = RepoConfig::parse(&text).unwrap_err();
        assert!(err.to_string().contains("relevancy"), "{err}");
    }

    #[test]
    fn bad_glob_names_line() {
        let text = SPEC_EXAMPLE.replace("src/retrieval/**", "src/[retrieval");
        let err = RepoConfig::parse(&text).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(".promptgate.yml:10: suite `support-answer`: bad glob"),
            "{err}"
        );
    }

    #[test]
    fn reports_every_unknown_key() {
        let text = SPEC_EXAMPLE
            .replace("    samples: 1\n", "    sample: 1\n")
            .replace("  samples: 3\n", "  samples: 3\n  aprovers: [bob]\n")
            .replace("src/retrieval/**", "a/[b");
        let (cfg, d) = RepoConfig::parse_all(&text);
        assert!(cfg.is_some());
        let got: Vec<String> = d.0.iter().map(|x| x.to_string()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with(".promptgate.yml:12: suites.support-answer: unknown field `sample`"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with(".promptgate.yml:31: release: unknown field `aprovers`"),
            "{got:?}"
        );
        assert!(
            got[2].starts_with(".promptgate.yml:10: suite `support-answer`: bad glob"),
            "{got:?}"
        );
    }

    #[test]
    fn models_list_names_the_gating_model_and_the_compared_ones() {
        let text = SPEC_EXAMPLE.replace(
            "    model: models/support.yaml\n",
            "    models: [models/a.yaml, models/b.yaml]\n",
        );
        let cfg = RepoConfig::parse(&text).unwrap();
        let s = &cfg.suites["support-answer"];
        assert_eq!(s.model, "models/a.yaml");
        assert_eq!(s.compared_models(), ["models/b.yaml".to_string()]);
        assert!(s.files().contains(&"models/b.yaml"));
        let b = s.on_compared_model("models/b.yaml");
        assert_eq!(
            (b.model.as_str(), b.guardrail.as_ref()),
            ("models/b.yaml", None)
        );
        assert!(!b.runs_injection() && b.compared_models().is_empty());

        let both = SPEC_EXAMPLE.replace(
            "    model: models/support.yaml\n",
            "    model: models/support.yaml\n    models: [models/a.yaml]\n",
        );
        let err = RepoConfig::parse(&both).unwrap_err().to_string();
        assert!(err.contains("sets both `model` and `models`"), "{err}");
        let neither = SPEC_EXAMPLE.replace("    model: models/support.yaml\n", "");
        let err = RepoConfig::parse(&neither).unwrap_err().to_string();
        assert!(err.contains("names no model"), "{err}");
    }

    #[test]
    fn collects_several_errors() {
        let text = SPEC_EXAMPLE
            .replace("version: 1", "version: 2")
            .replace("src/retrieval/**", "a/[b")
            .replace("max_regression: 0.05", "max_regression: 5");
        let err = RepoConfig::parse(&text).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }
}
