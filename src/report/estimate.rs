//! The cost preflight of a run (SPEC §5 `estimate`): what the run is expected to call
//! and pay, computed after planning and before the first model call, next to `usage`
//! so the estimate's error shows run after run.

use serde::{Deserialize, Serialize};

use super::{CallKind, CostByKind};

/// How the token counts are guessed; shown with every estimate.
pub const METHOD: &str = "calls: the planned requests not in the result cache; input tokens: \
characters / 4 of the rendered messages (a rule of thumb for English under BPE tokenizers, \
no tokenizer is run); output tokens: the cached answer of the same case at the other side, \
else the case's `expected` answer, else the manifest's max_tokens, else 256; judge answers 60 \
tokens; priced with the manifests' pricing; judge escalations and the grades of `similar` and \
`llm-rubric` assertions are not estimated";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Chat calls (generations, judge, attacks, load requests), like `usage.model_calls`.
    pub calls: u64,
    pub cost_usd: f64,
    #[serde(default)]
    pub calls_by_kind: CallsByKind,
    #[serde(default)]
    pub cost_by_kind: CostByKind,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub method: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallsByKind {
    pub generation: u64,
    pub judge: u64,
    pub embedding: u64,
    pub attack: u64,
    pub load: u64,
    /// Shadow replays (not in the estimate yet: the sample is known only once the
    /// logs are read).
    #[serde(default)]
    pub shadow: u64,
    /// ApplyGuardrail calls (not priced: guardrails have no pricing).
    pub guardrail: u64,
}

impl Estimate {
    /// Adds one call of `kind` with its tokens and dollars.
    pub fn add(&mut self, kind: CallKind, input: u64, output: u64, usd: f64) {
        let c = &mut self.calls_by_kind;
        let count = match kind {
            CallKind::Generation => &mut c.generation,
            CallKind::Judge => &mut c.judge,
            CallKind::Embedding => &mut c.embedding,
            CallKind::Attack => &mut c.attack,
            CallKind::Load => &mut c.load,
            CallKind::Shadow => &mut c.shadow,
            CallKind::Guardrail => &mut c.guardrail,
        };
        *count += 1;
        if let Some(bucket) = self.cost_by_kind.bucket(kind) {
            *bucket += usd;
        }
        if !matches!(kind, CallKind::Embedding | CallKind::Guardrail) {
            self.calls += 1;
        }
        self.input_tokens += input;
        self.output_tokens += output;
        self.cost_usd = self.cost_by_kind.total();
    }
}
