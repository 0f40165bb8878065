//! Makespan of a CodeBuild run against shard count: a deterministic simulation (no
//! real time passes), for N = 5,000 cases at a fixed per-case latency, with the
//! CodeBuild start-up overhead (queue + provisioning + image pull) as a parameter.
//! The README's table and the default shard sizing come from this output.
//!
//! `cargo bench --bench shard_makespan` (add `--profile dev` to skip the release build).

use promptgate::executor::shard::{min_cases_rule, table, ShardSizing, SimParams};

fn main() {
    let base = SimParams {
        cases: 5_000,
        case_latency: 2.0,
        concurrency: 8,
        startup: 45.0,
        build_slots: 20,
    };
    println!(
        "N = {} cases, {} s per case, {} requests in flight per build, {} concurrent builds\n",
        base.cases, base.case_latency, base.concurrency, base.build_slots
    );
    print!(
        "{}",
        table(
            &base,
            &[30.0, 45.0, 60.0],
            &[0, 1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 40, 64]
        )
    );
    println!();
    for startup in [30.0, 45.0, 60.0] {
        let p = SimParams { startup, ..base };
        println!(
            "start-up {startup:.0} s: rule min_cases_per_shard = concurrency × ⌈start-up / latency⌉ = {}",
            min_cases_rule(&p)
        );
    }
    let d = ShardSizing::default();
    println!(
        "\ndefaults: max_shards = {}, min_cases_per_shard = {}",
        d.max_shards, d.min_cases_per_shard
    );
    for n in [100, 500, 1_000, 2_000, 5_000, 20_000] {
        let s = d.shard_count(n);
        let p = SimParams { cases: n, ..base };
        println!(
            "  N = {n:>6}: {s:>2} shard(s), makespan {:>5.0} s (local {:>5.0} s)",
            promptgate::executor::shard::makespan(&p, s),
            promptgate::executor::shard::makespan(&p, 0)
        );
    }
}
