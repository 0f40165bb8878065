//! promptgate: diff-scoped, paired base/head evaluation of LLM prompt, model and
//! guardrail changes.
//!
//! The modules follow the pipeline, one folder per step:
//! `config` (repository config and data files) → `detect` (changed paths → suites →
//! cases) → `plan` (rendered requests, input and score keys) → `execute` (providers,
//! concurrency, retries, record/replay) → `score` (assertions, similarity, judge,
//! latency, cost) → `gate` (thresholds and regressions → verdict) → `report` (JSON and
//! the markdown comment). `store` is the result cache keyed by content; `source` reads
//! files at a revision (local git now, forge APIs in the bot); `check` runs the whole
//! pipeline and is what both the CLI and the bot call.
//! `load` is apart from the pipeline: an open-loop load generator (constant arrival
//! rate, latency percentiles, errors by kind) over any target.

pub mod audit;
pub mod bot;
pub mod check;
pub mod commands;
pub mod config;
pub mod detect;
pub mod diag;
pub mod event;
pub mod execute;
pub mod executor;
pub mod forge;
pub mod gate;
pub mod import;
pub mod inject;
pub mod load;
pub mod plan;
pub mod report;
pub mod score;
pub mod server;
pub mod settings;
pub mod shadow;
pub mod source;
pub mod store;
pub mod validate;
pub mod webhook;
