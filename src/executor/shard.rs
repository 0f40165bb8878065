//! Shard planning, pure: how many shards a run gets and which units go where, plus
//! the makespan model the default sizing comes from (`cargo bench --bench
//! shard_makespan` prints the table quoted in the README).

/// How a run is cut: at most `max_shards` shards, each with at least
/// `min_cases_per_shard` units (a run smaller than that is one shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSizing {
    pub max_shards: usize,
    pub min_cases_per_shard: usize,
}

impl Default for ShardSizing {
    fn default() -> Self {
        Self {
            max_shards: crate::settings::DEFAULT_MAX_SHARDS,
            min_cases_per_shard: crate::settings::DEFAULT_MIN_CASES_PER_SHARD,
        }
    }
}

impl ShardSizing {
    /// The number of shards for `n` units: `clamp(n / min_cases_per_shard, 1, max_shards)`,
    /// and none for no work.
    pub fn shard_count(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (n / self.min_cases_per_shard.max(1)).clamp(1, self.max_shards.max(1))
    }

    /// Cuts `items` into [`ShardSizing::shard_count`] contiguous groups whose sizes
    /// differ by at most one. Contiguous keeps a suite's units together, so a shard
    /// loads few distinct models.
    pub fn split<T>(&self, items: Vec<T>) -> Vec<Vec<T>> {
        let shards = self.shard_count(items.len());
        if shards == 0 {
            return Vec::new();
        }
        let (base, extra) = (items.len() / shards, items.len() % shards);
        let mut out = Vec::with_capacity(shards);
        let mut it = items.into_iter();
        for i in 0..shards {
            let take = base + usize::from(i < extra);
            out.push(it.by_ref().take(take).collect());
        }
        out
    }
}

/// Inputs of the makespan model. Times in seconds.
#[derive(Clone, Copy, Debug)]
pub struct SimParams {
    /// Units (cases) to evaluate.
    pub cases: usize,
    /// Wall time of one case's requests (generation, then judge and embeddings).
    pub case_latency: f64,
    /// Requests in flight per build (`PROMPTGATE_MAX_CONCURRENCY`).
    pub concurrency: usize,
    /// CodeBuild queue + provisioning + image pull + source download per build.
    pub startup: f64,
    /// Builds the account runs at once; more shards wait for a free slot.
    pub build_slots: usize,
}

/// Time from the first StartBuild to the last result for `shards` shards; `0` shards
/// means the bot's own machine, with no start-up.
pub fn makespan(p: &SimParams, shards: usize) -> f64 {
    let conc = p.concurrency.max(1);
    let rounds = |cases: usize| cases.div_ceil(conc) as f64 * p.case_latency;
    if shards == 0 {
        return rounds(p.cases);
    }
    let per_shard = p.cases.div_ceil(shards);
    let waves = shards.div_ceil(p.build_slots.max(1));
    waves as f64 * (p.startup + rounds(per_shard))
}

/// Build minutes billed (each build rounded up to a whole minute; the start-up is
/// billed too, queueing aside, so it is counted as a whole to stay on the safe side).
pub fn build_minutes(p: &SimParams, shards: usize) -> f64 {
    if shards == 0 {
        return 0.0;
    }
    let conc = p.concurrency.max(1);
    let per_shard = p.cases.div_ceil(shards);
    let one = p.startup + per_shard.div_ceil(conc) as f64 * p.case_latency;
    shards as f64 * (one / 60.0).ceil()
}

/// The sizing rule: a shard should work at least as long as it took to start, so
/// `min_cases_per_shard = concurrency × ⌈startup / case_latency⌉`. Below that, more
/// shards add start-up cost faster than they remove work time.
pub fn min_cases_rule(p: &SimParams) -> usize {
    p.concurrency.max(1) * (p.startup / p.case_latency).ceil() as usize
}

/// The README's table: makespan (and build minutes) against shard count, for each
/// start-up overhead.
pub fn table(base: &SimParams, startups: &[f64], shard_counts: &[usize]) -> String {
    let mut out = String::from("| shards | cases/shard |");
    for s in startups {
        out.push_str(&format!(" makespan, start-up {s:.0} s |"));
    }
    out.push_str(" build min (45 s) |\n|---:|---:|");
    for _ in startups {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    for &n in shard_counts {
        let label = if n == 0 {
            "local".to_string()
        } else {
            n.to_string()
        };
        let per = if n == 0 {
            base.cases
        } else {
            base.cases.div_ceil(n)
        };
        out.push_str(&format!("| {label} | {per} |"));
        for &s in startups {
            let p = SimParams {
                startup: s,
                ..*base
            };
            out.push_str(&format!(" {:.0} s |", makespan(&p, n)));
        }
        let p = SimParams {
            startup: 45.0,
            ..*base
        };
        out.push_str(&format!(" {:.0} |\n", build_minutes(&p, n)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(max_shards: usize, min_cases_per_shard: usize) -> ShardSizing {
        ShardSizing {
            max_shards,
            min_cases_per_shard,
        }
    }

    #[test]
    fn counts_respect_both_bounds() {
        let s = sizing(20, 200);
        assert_eq!(s.shard_count(0), 0);
        assert_eq!(s.shard_count(1), 1);
        assert_eq!(s.shard_count(199), 1);
        assert_eq!(s.shard_count(400), 2);
        assert_eq!(s.shard_count(599), 2);
        assert_eq!(s.shard_count(5_000), 20);
        assert_eq!(s.shard_count(1_000_000), 20);
        for n in [1usize, 7, 200, 399, 401, 3_999, 4_001, 5_000, 12_345] {
            let shards = s.split((0..n).collect::<Vec<_>>());
            assert!(shards.len() <= 20, "{n}");
            if shards.len() > 1 {
                assert!(shards.iter().all(|g| g.len() >= 200), "{n}");
            }
            let flat: Vec<usize> = shards.into_iter().flatten().collect();
            assert_eq!(flat, (0..n).collect::<Vec<_>>(), "order and coverage, {n}");
        }
    }

    #[test]
    fn split_is_balanced() {
        let groups = sizing(4, 2).split((0..10).collect::<Vec<_>>());
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        assert!(sizing(4, 2).split(Vec::<u8>::new()).is_empty());
        // Degenerate settings do not divide by zero.
        assert_eq!(sizing(0, 0).shard_count(5), 1);
    }

    fn params(startup: f64) -> SimParams {
        SimParams {
            cases: 5_000,
            case_latency: 2.0,
            concurrency: 8,
            startup,
            build_slots: 20,
        }
    }

    #[test]
    fn makespan_model() {
        let p = params(45.0);
        // Local: 625 rounds of 2 s.
        assert_eq!(makespan(&p, 0), 1250.0);
        assert_eq!(makespan(&p, 1), 45.0 + 1250.0);
        assert_eq!(makespan(&p, 20), 45.0 + 32.0 * 2.0);
        // Past the build slots, shards wait for a second wave.
        assert_eq!(makespan(&p, 40), 2.0 * (45.0 + 16.0 * 2.0));
        assert!(makespan(&p, 40) > makespan(&p, 20));
    }

    #[test]
    fn default_sizing_follows_the_rule() {
        // The defaults come from the rule at the middle of the 30–60 s start-up range,
        // rounded up: 8 × ⌈45 / 2⌉ = 184 → 200.
        assert_eq!(min_cases_rule(&params(45.0)), 184);
        let d = ShardSizing::default();
        assert!(d.min_cases_per_shard >= min_cases_rule(&params(45.0)));
        assert!(d.min_cases_per_shard <= min_cases_rule(&params(60.0)));
        // At the default, 5,000 cases finish within 10% of the best shard count up to
        // the build slots, for every start-up in the range.
        for startup in [30.0, 45.0, 60.0] {
            let p = params(startup);
            let best = (1..=20)
                .map(|s| makespan(&p, s))
                .fold(f64::INFINITY, f64::min);
            let chosen = makespan(&p, d.shard_count(p.cases));
            assert!(chosen <= best * 1.1, "{startup}: {chosen} vs {best}");
        }
    }
}
