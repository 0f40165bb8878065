//! `GET /runs/{id}`: the stored run and its full report as a plain HTML page, rendered
//! from `comment-templates/run.html.j2` (embedded at build time, HTML-escaped).

use anyhow::Context;
use minijinja::{AutoEscape, Environment, Value};
use serde::Serialize;
use sqlx::{Row, SqlitePool};

use crate::settings::Settings;

pub const TEMPLATE_NAME: &str = "run.html.j2";
const TEMPLATE: &str = include_str!("../../comment-templates/run.html.j2");

/// One row of the `runs` table.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub forge: String,
    pub repo: String,
    pub pr: i64,
    pub head_sha: String,
    pub base_sha: Option<String>,
    pub status: String,
    pub verdict: Option<String>,
    pub report_json: Option<String>,
    pub comment_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The run whose page id is `public_id`.
pub async fn load_run(pool: &SqlitePool, public_id: &str) -> anyhow::Result<Option<RunRow>> {
    let row = sqlx::query(
        "SELECT id, forge, repo, pr, head_sha, base_sha, status, verdict, report_json, \
         comment_id, created_at, updated_at FROM runs WHERE public_id = ?1",
    )
    .bind(public_id)
    .fetch_optional(pool)
    .await
    .context("reading the run")?;
    let Some(r) = row else {
        return Ok(None);
    };
    Ok(Some(RunRow {
        id: r.try_get("id")?,
        forge: r.try_get("forge")?,
        repo: r.try_get("repo")?,
        pr: r.try_get("pr")?,
        head_sha: r.try_get("head_sha")?,
        base_sha: r.try_get("base_sha")?,
        status: r.try_get("status")?,
        verdict: r.try_get("verdict")?,
        report_json: r.try_get("report_json")?,
        comment_id: r.try_get("comment_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    }))
}

/// The template environment of the page, with its filters.
pub fn environment() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("num", num);
    env.add_filter("signed", signed);
    env.add_filter("threshold", threshold);
    env.add_filter("load_plot", load_plot);
    env.add_template(TEMPLATE_NAME, TEMPLATE)
        .context("the run page template does not parse")?;
    Ok(env)
}

/// A suite's load test as an inline SVG (latency over time, the p95 gate dashed),
/// drawn by the server: the page needs no script. Empty when the value is no load test.
fn load_plot(v: Value) -> Value {
    let report = serde_json::to_value(&v)
        .ok()
        .and_then(|j| serde_json::from_value::<crate::report::LoadReport>(j).ok());
    let Some(report) = report else {
        return Value::from("");
    };
    let gate = report
        .gates
        .iter()
        .find(|g| g.metric == crate::config::load::LoadMetric::LatencyP95Ms)
        .and_then(|g| g.threshold.max)
        .map(|ms| ms.round() as u64);
    Value::from_safe_string(crate::load::svg_plot(&report.outcome, gate))
}

fn as_f64(v: &Value) -> Option<f64> {
    if v.is_none() || v.is_undefined() {
        return None;
    }
    f64::try_from(v.clone()).ok()
}

fn fmt3(x: f64) -> String {
    let s = format!("{x:.3}");
    if s == "-0.000" {
        "0.000".to_string()
    } else {
        s
    }
}

fn num(v: Value) -> String {
    as_f64(&v).map(fmt3).unwrap_or_else(|| "—".to_string())
}

fn signed(v: Value) -> String {
    match as_f64(&v) {
        Some(x) if x > 0.0 => format!("+{}", fmt3(x)),
        Some(x) => fmt3(x),
        None => "—".to_string(),
    }
}

fn threshold(v: Value) -> String {
    if v.is_none() || v.is_undefined() {
        return "—".to_string();
    }
    let min = v.get_attr("min").ok().as_ref().and_then(as_f64);
    let max = v.get_attr("max").ok().as_ref().and_then(as_f64);
    match (min, max) {
        (Some(a), Some(b)) => format!("{} … {}", fmt3(a), fmt3(b)),
        (Some(a), None) => format!("≥ {}", fmt3(a)),
        (None, Some(b)) => format!("≤ {}", fmt3(b)),
        (None, None) => "—".to_string(),
    }
}

/// Link to the PR/MR on its forge, when the forge's web address can be derived.
pub fn pr_url(settings: &Settings, forge: &str, repo: &str, pr: i64) -> Option<String> {
    match forge {
        "github" => {
            let api = settings.github_api_url.trim_end_matches('/');
            let web = if api == "https://api.github.com" {
                "https://github.com".to_string()
            } else {
                // GitHub Enterprise: https://HOST/api/v3 → https://HOST
                api.strip_suffix("/api/v3")?.to_string()
            };
            Some(format!("{web}/{repo}/pull/{pr}"))
        }
        "gitlab" => Some(format!(
            "{}/{repo}/-/merge_requests/{pr}",
            settings.gitlab_url.trim_end_matches('/')
        )),
        _ => None,
    }
}

/// Renders the page of `run`.
pub fn render(env: &Environment<'_>, settings: &Settings, run: &RunRow) -> anyhow::Result<String> {
    let (report, report_error) = match &run.report_json {
        None => (None, None),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("not valid JSON: {e}"))),
        },
    };
    let mut run_ctx = serde_json::to_value(run).context("encoding the run")?;
    if let Some(obj) = run_ctx.as_object_mut() {
        obj.remove("report_json");
        obj.insert(
            "pr_url".to_string(),
            serde_json::to_value(pr_url(settings, &run.forge, &run.repo, run.pr))?,
        );
    }
    let tmpl = env
        .get_template(TEMPLATE_NAME)
        .context("the run page template is missing")?;
    tmpl.render(minijinja::context! {
        run => Value::from_serialize(&run_ctx),
        report => Value::from_serialize(&report),
        report_error => report_error,
    })
    .map_err(|e| anyhow::anyhow!("rendering the run page: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_test_is_plotted_inline_and_anything_else_is_not() {
        let env = environment().unwrap();
        let load = serde_json::json!({
            "offered_rps": 12.0, "achieved_rps": 12.0, "requests": 2,
            "latency_ms": {"p50": 80, "p95": 90, "p99": 90, "max": 90},
            "errors": {"throttled": 0, "server": 0, "timeout": 0, "overload": 0},
            "error_rate": 0.0, "peak_in_flight": 1,
            "timeline": [{"t_ms": 0, "latency_ms": 80, "ok": true}, {"t_ms": 83, "latency_ms": 90, "ok": true}],
            "schedule_lag_us": {"p50": 1, "p99": 2, "max": 2},
            "duration_s": 0.17, "max_in_flight": 32, "pass": true, "cost_usd": 0.0,
            "gates": [{"metric": "latency_p95_ms", "value": 90.0, "threshold": {"max": 450.0}, "pass": true}]
        });
        let out = env
            .render_str(
                "{{ load | load_plot }}",
                minijinja::context! { load => load },
            )
            .unwrap();
        assert!(out.starts_with("<svg"), "{out}");
        assert!(out.contains("gate 450 ms"), "{out}");
        let none = env
            .render_str("{{ x | load_plot }}", minijinja::context! { x => "<b>" })
            .unwrap();
        assert_eq!(none, "");
    }
}
