//! A suite's shadow replay (SPEC §10): a deterministic sample of production requests
//! from the Bedrock invocation logs, sent to the head's model (with head's system
//! prompt when that is what changed), each answer compared with the logged one.

use futures::future::join_all;
use serde_json::json;

use super::findings::redact_pii;
use super::spend::{self, CallKind, Spend};
use super::suite_plan::PlannedSuite;
use crate::config::shadow::ShadowConfig;
use crate::config::ModelSpec;
use crate::execute::client::ModelClient;
use crate::execute::{ChatRequest, EmbedRequest, Message};
use crate::plan::{self, keys};
use crate::report::{ShadowExample, ShadowGate, ShadowReport, SuiteReport, Verdict};
use crate::shadow::records::{exchange, Body};
use crate::shadow::source::LogReader;
use crate::shadow::{parse_objects, sample, Invocation, LogSource};

/// Examples shown in the comment, lowest similarity first.
const WORST_SHOWN: usize = 5;
/// Characters of each answer an example shows.
const EXCERPT_CHARS: usize = 280;

/// What the replay sends: the head model, and head's system prompt when replaced.
struct Replay {
    spec: ModelSpec,
    system: Option<String>,
    reason: String,
}

/// Whether the change is one a replay can test, and how (issue: model manifest, or a
/// system template that renders without per-request variables).
fn what_to_replay(p: &PlannedSuite) -> Result<Replay, String> {
    let Some(base) = &p.base else {
        return Err("the suite cannot be planned at base, so there is no production manifest to compare with".into());
    };
    let head = &p.head;
    let model_changed = base.plan.spec.identity() != head.plan.spec.identity();
    let system_changed = base.system_template != head.system_template;
    let spec = head.plan.spec.clone();
    match (model_changed, system_changed, &head.system_static) {
        (true, true, Some(s)) => Ok(Replay { spec, system: Some(s.clone()), reason: "model manifest and system prompt changed".into() }),
        (true, true, None) => Ok(Replay { spec, system: None, reason: "model manifest changed (the system template uses per-request variables, so the logged system prompt is kept)".into() }),
        (true, false, _) => Ok(Replay { spec, system: None, reason: "model manifest changed".into() }),
        (false, true, Some(s)) => Ok(Replay { spec, system: Some(s.clone()), reason: "system prompt changed".into() }),
        (false, true, None) => Err("the system template changed but renders only with per-request variables, which production logs do not carry".into()),
        (false, false, _) => Err("the change touches neither the model manifest nor the system template, so production traffic would be answered as before".into()),
    }
}

/// Runs the replay; never fails (an error is in the result).
pub(super) async fn run(
    p: &PlannedSuite,
    cfg: &ShadowConfig,
    client: &ModelClient,
) -> ShadowReport {
    let mut out = ShadowReport {
        logs: cfg.logs.clone(),
        since: cfg.since.clone(),
        floor: cfg.floor(),
        ..ShadowReport::default()
    };
    let replay = match what_to_replay(p) {
        Ok(r) => r,
        Err(why) => {
            out.reason = why;
            out.pass = true;
            return out;
        }
    };
    out.applies = true;
    out.reason = replay.reason.clone();
    if let Err(e) = replay_into(&mut out, p, cfg, &replay, client).await {
        out.error = Some(e);
        out.pass = false;
    }
    out
}

async fn replay_into(
    out: &mut ShadowReport,
    p: &PlannedSuite,
    cfg: &ShadowConfig,
    replay: &Replay,
    client: &ModelClient,
) -> Result<(), String> {
    let embedding = p
        .evaluators
        .embedding
        .clone()
        .or_else(|| p.evaluators.assert_embedding.clone())
        .ok_or("shadow similarity needs `evaluators.embedding`")?;
    let source = LogSource::parse(&cfg.logs).map_err(|e| format!("shadow.logs: {e}"))?;
    let reader = LogReader::new(source).await;
    let objects = reader
        .objects()
        .await
        .map_err(|e| format!("reading the invocation logs at {}: {e:#}", cfg.logs))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let parsed = parse_objects(
        &objects,
        now,
        cfg.since().as_secs() as i64,
        cfg.model_id.as_deref(),
    );
    out.skipped = parsed.skipped;
    out.eligible = parsed.eligible.len();
    let picked = sample(parsed.eligible, cfg.sample);
    out.sampled = picked.len();
    out.sampled_ids = picked.iter().map(|r| r.request_id.clone()).collect();
    if picked.is_empty() {
        return Err(format!(
            "no eligible production request in {} within {} ({} of them), so the shadow gates cannot be computed",
            cfg.logs,
            cfg.since,
            cfg.model_id.as_deref().map_or("any model".to_string(), |m| format!("model `{m}`"))
        ));
    }
    let base_pricing = p.base.as_ref().and_then(|b| b.plan.pricing.clone());
    let head = &p.head.plan;
    let ctx = Ctx {
        reader: &reader,
        replay,
        embedding: &embedding,
        p,
        client,
    };
    let results = join_all(picked.iter().map(|r| ctx.one(r))).await;
    let mut spent = Spend::default();
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for (r, res) in picked.iter().zip(results) {
        match res {
            Ok(Some(d)) => {
                spent.add(&d.spend);
                done.push((r, d));
            }
            Ok(None) => out.skipped.body += 1,
            Err(e) => failures.push(format!("request {}: {e}", r.request_id)),
        }
    }
    out.cost_usd = spent.paid.total();
    out.replayed = done.len();
    if let Some(first) = failures.first() {
        return Err(format!(
            "{} of {} replays failed; first: {first}",
            failures.len(),
            picked.len()
        ));
    }
    if done.is_empty() {
        return Err("no sampled request has a text conversation a replay can send".into());
    }
    let n = done.len() as f64;
    let sims: Vec<f64> = done.iter().map(|(_, d)| d.similarity).collect();
    let similarity = sims.iter().sum::<f64>() / n;
    let drift = sims.iter().filter(|s| **s < out.floor - 1e-12).count() as f64 / n;
    out.similarity = Some(similarity);
    out.drift_rate = Some(drift);
    out.metrics = cfg
        .gates()
        .into_iter()
        .map(|(m, t)| {
            let v = match m {
                crate::config::shadow::ShadowMetric::Similarity => similarity,
                crate::config::shadow::ShadowMetric::DriftRate => drift,
            };
            ShadowGate {
                name: m.as_str().to_string(),
                head: Some(v),
                threshold: t,
                pass: t.holds(v),
            }
        })
        .collect();
    out.pass = out.metrics.iter().all(|g| g.pass);
    let mean = |v: Vec<u64>| (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64);
    out.production_latency_ms = mean(
        done.iter()
            .filter_map(|(_, d)| d.production_latency_ms)
            .collect(),
    );
    out.candidate_latency_ms = mean(done.iter().map(|(_, d)| d.candidate_latency_ms).collect());
    out.production_cost_usd = base_pricing.as_ref().map(|pr| {
        done.iter()
            .map(|(r, _)| pr.cost(r.input_tokens, r.output_tokens))
            .sum()
    });
    out.candidate_cost_usd = head.pricing.as_ref().map(|pr| {
        done.iter()
            .map(|(_, d)| pr.cost(d.tokens.0, d.tokens.1))
            .sum()
    });
    done.sort_by(|a, b| {
        a.1.similarity
            .total_cmp(&b.1.similarity)
            .then_with(|| a.0.request_id.cmp(&b.0.request_id))
    });
    out.worst = done
        .iter()
        .take(WORST_SHOWN)
        .map(|(r, d)| ShadowExample {
            request_id: r.request_id.clone(),
            similarity: d.similarity,
            production: shown(&d.production),
            candidate: shown(&d.candidate),
        })
        .collect();
    Ok(())
}

/// Redacted (credentials, e-mail addresses, phone and card numbers) and cut short.
fn shown(text: &str) -> String {
    let clean = redact_pii(&crate::inject::redact(text));
    match clean.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

struct Ctx<'a> {
    reader: &'a LogReader,
    replay: &'a Replay,
    embedding: &'a ModelSpec,
    p: &'a PlannedSuite,
    client: &'a ModelClient,
}

struct Done {
    similarity: f64,
    production: String,
    candidate: String,
    production_latency_ms: Option<u64>,
    candidate_latency_ms: u64,
    tokens: (u64, u64),
    spend: Spend,
}

impl Ctx<'_> {
    async fn body(&self, b: &Body) -> Result<serde_json::Value, String> {
        match b {
            Body::Inline(v) => Ok(v.clone()),
            Body::S3(path) => self.reader.body(path).await.map_err(|e| format!("{e:#}")),
            Body::Missing => Err("the record has no body (logging of text data is off)".into()),
        }
    }

    /// One replay; `Ok(None)` when the record is not a text conversation.
    async fn one(&self, r: &Invocation) -> Result<Option<Done>, String> {
        let input = self.body(&r.input).await?;
        let output = self.body(&r.output).await?;
        let Ok(ex) = exchange(&input, &output) else {
            return Ok(None);
        };
        let mut messages: Vec<Message> = ex
            .messages
            .into_iter()
            .filter(|m| m.role != "system" || self.replay.system.is_none())
            .collect();
        if let Some(system) = &self.replay.system {
            messages.insert(0, Message::new("system", system.clone()));
        }
        let head = &self.p.head.plan;
        let key = plan::input_key_through(
            &self.replay.spec,
            &messages,
            0,
            None,
            head.guardrail.as_ref(),
        );
        let answer = self
            .client
            .chat(ChatRequest {
                key,
                spec: self.replay.spec.clone(),
                messages,
                guardrail: head.guardrail.clone(),
            })
            .await
            .map_err(|e| format!("replay: {e}"))?;
        let mut spend = Spend::default();
        let a = &answer.value;
        spend.charge(
            CallKind::Shadow,
            head.pricing.as_ref(),
            (a.input_tokens, a.output_tokens),
            spend::Source::of(answer.cached, self.client.replays(&self.replay.spec)),
        );
        let embed = |text: String| {
            let key = keys::digest(
                keys::EMBED,
                &json!({"model": self.embedding.identity(), "text": text}),
            );
            self.client.embed(EmbedRequest {
                key,
                spec: self.embedding.clone(),
                text,
            })
        };
        let (x, y) = futures::join!(embed(a.text.clone()), embed(ex.answer.clone()));
        let (x, y) = (
            x.map_err(|e| format!("embedding: {e}"))?,
            y.map_err(|e| format!("embedding: {e}"))?,
        );
        for e in [&x, &y] {
            spend.charge(
                CallKind::Shadow,
                self.p.evaluators.embedding_pricing.as_ref(),
                (e.value.input_tokens, 0),
                spend::Source::of(e.cached, self.client.replays(self.embedding)),
            );
        }
        let similarity = crate::score::cosine(&x.value.vector, &y.value.vector)
            .ok_or("the embeddings cannot be compared")?;
        Ok(Some(Done {
            similarity,
            production: ex.answer,
            candidate: a.text.clone(),
            production_latency_ms: ex.latency_ms,
            candidate_latency_ms: a.latency_ms,
            tokens: (a.input_tokens, a.output_tokens),
            spend,
        }))
    }
}

/// Puts the result on the suite: a failing gate fails it, a replay that could not run
/// is an error; a change shadow cannot test leaves the verdict alone.
pub(super) fn apply(s: &mut SuiteReport, result: ShadowReport) {
    let verdict = match (&result.error, result.applies, result.pass) {
        (Some(e), _, _) => {
            s.errors.push(format!("shadow replay: {e}"));
            Verdict::Error
        }
        (None, false, _) | (None, true, true) => Verdict::Pass,
        (None, true, false) => Verdict::Fail,
    };
    s.verdict = Verdict::combine([s.verdict, verdict]);
    s.shadow = Some(result);
}
