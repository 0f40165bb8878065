//! What a run's calls cost, by kind. A call is paid only when it was made now: a cached
//! answer cost nothing this run, and a replayed one (recordings) is not spending at all;
//! its price is kept apart as what a live run would have paid.

use crate::config::Pricing;
pub use crate::report::CallKind;
use crate::report::CostByKind;

/// How one answer was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Called,
    Cached,
    Replayed,
}

impl Source {
    pub fn of(cached: bool, replayed: bool) -> Self {
        match (cached, replayed) {
            (true, _) => Source::Cached,
            (false, true) => Source::Replayed,
            (false, false) => Source::Called,
        }
    }
}

/// Paid and would-have-paid dollars of some calls.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spend {
    pub paid: CostByKind,
    pub replayed_usd: f64,
}

impl Spend {
    /// Books one answer: its price at `pricing` (none: unpriced, 0) into `kind`.
    pub fn charge(
        &mut self,
        kind: CallKind,
        pricing: Option<&Pricing>,
        tokens: (u64, u64),
        source: Source,
    ) {
        let cost = pricing.map_or(0.0, |p| p.cost(tokens.0, tokens.1));
        match source {
            Source::Cached => {}
            Source::Replayed => self.replayed_usd += cost,
            Source::Called => {
                if let Some(bucket) = self.paid.bucket(kind) {
                    *bucket += cost;
                }
            }
        }
    }

    pub fn add(&mut self, other: &Spend) {
        self.paid.add(&other.paid);
        self.replayed_usd += other.replayed_usd;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_made_now_are_paid_and_replays_are_kept_apart() {
        let p = Pricing {
            input_per_1k_tokens: 1.0,
            output_per_1k_tokens: 2.0,
        };
        let mut s = Spend::default();
        s.charge(CallKind::Generation, Some(&p), (1000, 1000), Source::Called);
        s.charge(CallKind::Judge, Some(&p), (1000, 0), Source::Cached);
        s.charge(CallKind::Embedding, None, (1000, 0), Source::Called);
        s.charge(CallKind::Attack, Some(&p), (0, 500), Source::Replayed);
        assert_eq!(s.paid.generation, 3.0);
        assert_eq!(s.paid.total(), 3.0);
        assert_eq!(s.replayed_usd, 1.0);
    }
}
