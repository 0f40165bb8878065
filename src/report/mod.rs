//! The run report: the JSON of SPEC §5 (what `check --format json` prints and what the
//! bot stores per run) and the markdown PR comment rendered from it.

pub mod estimate;
pub mod load;
pub mod markdown;
pub mod shadow;
pub mod tickets;

pub use estimate::Estimate;
pub use load::{LoadGate, LoadReport};
pub use shadow::{ShadowExample, ShadowGate, ShadowReport};
pub use tickets::{Ticket, TicketStatus};

use serde::{Deserialize, Serialize};

use crate::config::{MetricName, Threshold};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Skipped,
    NeedsReview,
    Fail,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Skipped => "skipped",
            Verdict::NeedsReview => "needs_review",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }

    /// The verdict named by [`Verdict::as_str`]'s word.
    pub fn from_word(word: &str) -> Option<Self> {
        [
            Verdict::Pass,
            Verdict::Skipped,
            Verdict::NeedsReview,
            Verdict::Fail,
            Verdict::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == word)
    }

    /// CLI exit status: 0 pass, 1 fail or needs_review, 2 error (SPEC §4).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass | Verdict::Skipped => 0,
            Verdict::NeedsReview | Verdict::Fail => 1,
            Verdict::Error => 2,
        }
    }

    /// The run verdict over suites: the worst one wins (error > fail > needs_review >
    /// pass); skipped suites count as pass.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts
            .into_iter()
            .map(|v| {
                if v == Verdict::Skipped {
                    Verdict::Pass
                } else {
                    v
                }
            })
            .max()
            .unwrap_or(Verdict::Pass)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Pr,
    Release,
}

impl Tier {
    /// The JSON and `runs.tier` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Pr => "pr",
            Tier::Release => "release",
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "pr" => Ok(Tier::Pr),
            "release" => Ok(Tier::Release),
            other => anyhow::bail!("unknown tier {other:?} (expected pr or release)"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub verdict: Verdict,
    pub base: String,
    pub head: String,
    pub tier: Tier,
    pub suites: Vec<SuiteReport>,
    pub usage: Usage,
    /// What the run was expected to call and pay, before it called anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// The estimate breaks a `budget` limit: the bot waits for an approver's
    /// `/promptgate run --confirm` (`confirmed` false: nothing was called).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_budget: Option<OverBudget>,
    pub duration_ms: u64,
    /// Run-level errors (config that does not parse, a revision that cannot be read),
    /// each naming the file and line where there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Things the reader should know that are not failures (config taken from head
    /// because base has none, a base revision that could not be evaluated, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Present when the change edits `.promptgate.yml`: the new config is validated and
    /// shown, but policy still comes from base until it is merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_change: Option<ConfigChange>,
    /// How well the judge agrees with the labelled calibration set, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_calibration: Option<JudgeCalibration>,
    /// Findings that get a forge issue (`tickets` in the base config), filed by the bot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<Ticket>,
    /// The base config's `tickets` policy, for the bot that files them (not stored: a
    /// stored report's tickets are already filed).
    #[serde(skip)]
    pub ticket_policy: Option<crate::config::tickets::TicketsConfig>,
}

/// The judge run on `evaluators.judge.calibration` before its scores gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeCalibration {
    pub file: String,
    pub items: usize,
    pub min_kappa: f64,
    /// Per label (`faithful`, `relevant`, `hallucination`): accuracy and Cohen's kappa.
    pub labels: Vec<LabelAgreement>,
    /// Judge metrics gate (every label's kappa reaches `min_kappa`).
    pub gates: bool,
    /// Why they do not, when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelAgreement {
    pub label: String,
    pub accuracy: f64,
    pub kappa: f64,
}

impl Report {
    /// A report with nothing evaluated yet (verdict pass until suites say otherwise).
    pub fn new(base: String, head: String, tier: Tier) -> Self {
        Self {
            verdict: Verdict::Pass,
            base,
            head,
            tier,
            suites: Vec::new(),
            usage: Usage::default(),
            estimate: None,
            over_budget: None,
            duration_ms: 0,
            errors: Vec::new(),
            notes: Vec::new(),
            config_change: None,
            judge_calibration: None,
            tickets: Vec::new(),
            ticket_policy: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigChange {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Human-readable summary of what changed in policy (thresholds, suites).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaseCounts {
    pub total: usize,
    pub affected: usize,
    pub evaluated: usize,
    pub cached: usize,
    /// Cases present at base and missing at head.
    #[serde(default)]
    pub removed: usize,
}

/// What a change did to one golden case (SPEC §5 `dataset_changes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetChangeKind {
    /// Present at base, missing at head.
    Removed,
    /// The head's `assert` list lacks an assertion the base had (a changed one counts).
    AssertionsRemoved,
    /// `expected` differs; shown base-vs-head, not held.
    ExpectedChanged,
}

impl DatasetChangeKind {
    /// A change that can only make the suite easier to pass: it needs a human.
    pub fn weakens(self) -> bool {
        !matches!(self, DatasetChangeKind::ExpectedChanged)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetChange {
    pub case: String,
    pub change: DatasetChangeKind,
    /// What exactly changed, e.g. the assertions that are gone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricRow {
    pub name: MetricName,
    pub base: Option<f64>,
    pub head: Option<f64>,
    pub delta: Option<f64>,
    pub threshold: Option<Threshold>,
    /// The head value meets the threshold (true when there is no threshold or no value).
    pub pass: bool,
    /// The head fell more than `max_regression` below base on a 0..1 metric.
    #[serde(default)]
    pub regression: bool,
    /// 95 % confidence interval of `delta` from the per-case paired differences (0..1
    /// metrics with a base); see [`crate::gate::paired`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ci: Option<[f64; 2]>,
    /// The interval straddles the regression limit: the data cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<Inconclusive>,
    /// Base fails this threshold too. With head not worse than base the row asks for
    /// review instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failing_on_base: bool,
    /// The part of `delta` that flaky cases contribute (samples > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flaky_delta: Option<f64>,
    /// Why this row is shown but does not gate (a judge below its calibration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_gated: Option<String>,
}

impl MetricRow {
    /// A row with values and no gate result yet (see [`crate::gate::metric_row`]).
    pub fn new(name: MetricName, base: Option<f64>, head: Option<f64>) -> Self {
        Self {
            name,
            base,
            head,
            delta: base.zip(head).map(|(b, h)| h - b),
            threshold: None,
            pass: true,
            regression: false,
            delta_ci: None,
            inconclusive: None,
            failing_on_base: false,
            flaky_delta: None,
            not_gated: None,
        }
    }
}

impl MetricRow {
    /// What this row asks of the suite verdict. A threshold base already fails is not
    /// the change's doing when head is no worse: a human decides (SPEC §1); worse is a
    /// failure.
    pub fn verdict(&self) -> Verdict {
        if self.not_gated.is_some() {
            Verdict::Pass
        } else if !self.pass {
            let worse_than_base = self.delta.is_some_and(|d| self.name.worsens(d));
            if self.failing_on_base && !worse_than_base {
                Verdict::NeedsReview
            } else {
                Verdict::Fail
            }
        } else if self.regression {
            Verdict::NeedsReview
        } else {
            Verdict::Pass
        }
    }
}

/// Why a regression check could not decide, and what would settle it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inconclusive {
    /// The limit the interval straddles (`-max_regression` for higher-is-better).
    pub limit: f64,
    /// Samples per case that would shrink the interval clear of the limit at the
    /// observed variance; `None` when the point estimate sits on the limit.
    pub samples_needed: Option<u32>,
}

/// Cases whose pass/fail outcome changed between base and head (SPEC §5 `flips`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flips {
    /// Passed at base, fail at head.
    pub regressed: Vec<String>,
    /// Failed at base, pass at head.
    pub fixed: Vec<String>,
    /// Same outcome at both sides.
    #[serde(default)]
    pub unchanged: usize,
    /// Only at head.
    #[serde(default)]
    pub new: usize,
    /// Only at base.
    #[serde(default)]
    pub removed: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub case: String,
    pub metric: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InjectionBlock {
    pub attempts: usize,
    pub failures: Vec<InjectionFailure>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InjectionFailure {
    pub case: String,
    pub attack: String,
    #[serde(default)]
    pub technique: String,
    pub evidence: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GuardrailBlock {
    pub tests: usize,
    pub failures: Vec<Failure>,
}

/// One side (base or head) of a case, as shown in the collapsed details.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaseSide {
    /// Output excerpt of the first sample.
    pub output: String,
    /// The suite's guardrail intervened on a generation (Bedrock pass-through).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guardrail_intervened: bool,
    /// Scores of this side: metric name → value (means over samples).
    pub scores: std::collections::BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The case's `expected` at this side, kept when base and head differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseDetail {
    pub case: String,
    /// `pass`, `fail`, `error`, `added` (new in head) ...
    pub status: String,
    #[serde(default)]
    pub flaky: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<CaseSide>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<CaseSide>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteReport {
    pub name: String,
    pub verdict: Verdict,
    pub triggered_by: Vec<String>,
    pub cases: CaseCounts,
    /// Removed cases, lost assertions and changed `expected` outputs (base → head).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dataset_changes: Vec<DatasetChange>,
    #[serde(default)]
    pub flips: Flips,
    pub metrics: Vec<MetricRow>,
    pub failures: Vec<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailBlock>,
    /// The suite's load test, when it ran (release tier, `--load`, `run load`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    /// The suite's shadow replay of production traffic, when it has `shadow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
    /// `judge_escalation`: how many answers the heavy judge graded again, and its cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_escalation: Option<EscalationSummary>,
    /// Errors that made the suite's verdict `error`, each naming file:line or the case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Ids of cases whose samples disagreed on pass/fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flaky: Vec<String>,
    /// Per-case base/head details of the evaluated cases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<CaseDetail>,
    /// The suite on each compared model (`models:` after the first), in listed order.
    /// Shown beside the gating model's results; never part of the verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<ComparedModel>,
    /// Every finding a ticket could be opened for, of every kind; the check keeps those
    /// the config's `tickets.on` lists in [`Report::tickets`].
    #[serde(skip)]
    pub findings: Vec<Ticket>,
}

impl SuiteReport {
    /// A suite with no evaluation yet: no cases, metrics or failures.
    pub fn empty(name: &str, verdict: Verdict) -> Self {
        Self {
            name: name.to_string(),
            verdict,
            triggered_by: Vec::new(),
            cases: CaseCounts::default(),
            dataset_changes: Vec::new(),
            flips: Flips::default(),
            metrics: Vec::new(),
            failures: Vec::new(),
            injection: None,
            guardrail: None,
            load: None,
            shadow: None,
            judge_escalation: None,
            errors: Vec::new(),
            flaky: Vec::new(),
            details: Vec::new(),
            compared: Vec::new(),
            findings: Vec::new(),
        }
    }
}

/// One compared model's run of a suite (SPEC §2 `models:`): the same metrics over its
/// head cases, informational only.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComparedModel {
    /// The manifest path as the config lists it.
    pub model: String,
    /// The provider's model id from that manifest (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// What this model's own run would be under the suite's thresholds; an `error`
    /// here is shown, and does not change the suite's verdict.
    pub verdict: Verdict,
    pub cases: CaseCounts,
    pub metrics: Vec<MetricRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What `judge_escalation` did in a suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EscalationSummary {
    pub band: [f64; 2],
    /// The heavy judge (`release.judge`).
    pub judge: String,
    /// Answers the PR judge graded in this run (base and head, samples counted).
    pub judged: usize,
    /// Of those, graded again by the heavy judge because a score fell in the band.
    pub escalated: usize,
    /// What the escalated calls cost this run.
    pub cost_usd: f64,
}

/// A run whose estimate breaks a budget limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverBudget {
    /// `per_run_usd`, `per_pr_usd` or `per_month_usd`.
    pub setting: String,
    pub estimate_usd: f64,
    /// What the limit would reach with this run (the PR's or month's spend included).
    pub would_be_usd: f64,
    pub allowed_usd: f64,
    /// An approver confirmed the run (`/promptgate run --confirm`).
    pub confirmed: bool,
    /// The run waits for that confirmation: nothing was called (the bot only; the CLI
    /// notes the budget and runs).
    #[serde(default)]
    pub held: bool,
}

/// Dollars by kind of call (SPEC §5 `usage.cost_by_kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostByKind {
    #[serde(default)]
    pub generation: f64,
    #[serde(default)]
    pub judge: f64,
    #[serde(default)]
    pub embedding: f64,
    /// Injection attacks: the attacked generations and their judge calls.
    #[serde(default)]
    pub attack: f64,
    /// Load tests' requests.
    #[serde(default)]
    pub load: f64,
    /// Shadow replays of production requests and their embeddings.
    #[serde(default)]
    pub shadow: f64,
}

/// Which kind of call a price (or a count) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Generation,
    Judge,
    Embedding,
    Attack,
    Load,
    /// Shadow replays and the embeddings that compare them.
    Shadow,
    /// ApplyGuardrail: counted, never priced.
    Guardrail,
}

impl CostByKind {
    /// The dollars of `kind`; `None` for calls that are not priced.
    pub fn bucket(&mut self, kind: CallKind) -> Option<&mut f64> {
        match kind {
            CallKind::Generation => Some(&mut self.generation),
            CallKind::Judge => Some(&mut self.judge),
            CallKind::Embedding => Some(&mut self.embedding),
            CallKind::Attack => Some(&mut self.attack),
            CallKind::Load => Some(&mut self.load),
            CallKind::Shadow => Some(&mut self.shadow),
            CallKind::Guardrail => None,
        }
    }

    pub fn total(&self) -> f64 {
        self.generation + self.judge + self.embedding + self.attack + self.load + self.shadow
    }

    pub fn add(&mut self, other: &CostByKind) {
        self.generation += other.generation;
        self.judge += other.judge;
        self.embedding += other.embedding;
        self.attack += other.attack;
        self.load += other.load;
        self.shadow += other.shadow;
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Chat calls made (generations and judge calls); cached answers are not counted.
    pub model_calls: u64,
    /// Embedding calls made, counted apart from chat calls.
    #[serde(default)]
    pub embedding_calls: u64,
    pub cache_hits: u64,
    /// Calls made for the base side and for the cases the change does not affect: work
    /// a warm baseline (`promptgate baseline`, the bot on default-branch pushes) saves.
    #[serde(default)]
    pub baseline_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What this run paid: the sum of `cost_by_kind` (0 for cached and replayed answers).
    pub cost_usd: f64,
    #[serde(default)]
    pub cost_by_kind: CostByKind,
    /// Answers read from recordings (`--replay`, `provider: replay`): not calls, not paid.
    #[serde(default)]
    pub replayed: u64,
    /// What the replayed answers would have cost a live run, at the manifests' prices.
    #[serde(default)]
    pub replayed_cost_usd: f64,
}
