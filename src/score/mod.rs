//! Scoring one output: assertions, similarity, and the judge; plus the statistics that
//! turn per-case scores into suite metrics.

pub mod assertions;
pub mod judge;
pub mod stats;

/// Cosine similarity of two embeddings; `None` when either is empty, of different
/// length, or all zeros (no direction to compare).
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    Some((dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_basics() {
        assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0]), Some(1.0));
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap().abs() < 1e-12);
        let c = cosine(&[1.0, 1.0], &[1.0, 0.0]).unwrap();
        assert!((c - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9);
        assert_eq!(cosine(&[], &[]), None);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), None);
    }
}

/// Scores of one sample (one generation) of a case.
#[derive(Clone, Debug, Default)]
pub struct SampleScores {
    pub output: String,
    pub latency_ms: u64,
    /// The guardrail Converse applied intervened on this generation.
    pub guardrail_intervened: bool,
    pub cost_usd: Option<f64>,
    /// What this sample's calls (generation, embeddings, judge) cost this run.
    pub spend: crate::check::spend::Spend,
    /// Chat calls (generation, judge) made for this sample now, not cached or replayed.
    pub calls: u64,
    pub assertions: Option<assertions::AssertOutcome>,
    pub similarity: Option<f64>,
    pub judge: Option<judge::JudgeScores>,
    /// `judge_escalation` re-judged this answer with the heavy judge: what that call
    /// cost this run (0 when cached).
    pub escalated: Option<f64>,
}

/// A case's scores at one revision: means over its samples.
#[derive(Clone, Debug, Default)]
pub struct CaseScores {
    pub id: String,
    pub samples: Vec<SampleScores>,
    /// A provider or judge failure: the case has no honest score.
    pub error: Option<String>,
    /// Every call for this case was answered from the cache.
    pub cached: bool,
}

impl CaseScores {
    fn mean_of(&self, f: impl Fn(&SampleScores) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(f).collect();
        stats::mean(&v)
    }

    /// Share of samples whose assertion list passed; `None` when the case has none.
    pub fn assertions(&self) -> Option<f64> {
        self.mean_of(|s| {
            s.assertions
                .as_ref()
                .map(|a| if a.pass { 1.0 } else { 0.0 })
        })
    }
    pub fn similarity(&self) -> Option<f64> {
        self.mean_of(|s| s.similarity)
    }
    pub fn faithfulness(&self) -> Option<f64> {
        self.mean_of(|s| s.judge.as_ref().map(|j| j.faithfulness))
    }
    pub fn relevance(&self) -> Option<f64> {
        self.mean_of(|s| s.judge.as_ref().map(|j| j.relevance))
    }
    /// Share of samples the judge flagged as unsupported.
    pub fn hallucination(&self) -> Option<f64> {
        self.mean_of(|s| {
            s.judge
                .as_ref()
                .map(|j| if j.hallucination { 1.0 } else { 0.0 })
        })
    }
    /// Chat calls made for this case now.
    pub fn calls(&self) -> u64 {
        self.samples.iter().map(|s| s.calls).sum()
    }

    /// Mean cost of one generation of this case.
    pub fn cost(&self) -> Option<f64> {
        self.mean_of(|s| s.cost_usd)
    }
}
