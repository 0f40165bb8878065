//! `GET /runs/{id}`: the stored run and its full report as an HTML page, rendered from
//! `comment-templates/run.html.j2` (embedded at build time, HTML-escaped), with the
//! small script `run.js` inline; `GET /runs`: the index of recent runs
//! (`runs.html.j2`).

use anyhow::Context;
use base64::Engine;
use minijinja::{AutoEscape, Environment, Value};
use sha2::{Digest, Sha256};

use super::run_view::{self, PageQuery};
use crate::settings::Settings;
use crate::store::runs::{RunFilter, RunListing, RunPage};

pub const TEMPLATE_NAME: &str = "run.html.j2";
const TEMPLATE: &str = include_str!("../../comment-templates/run.html.j2");
pub const INDEX_TEMPLATE_NAME: &str = "runs.html.j2";
const INDEX_TEMPLATE: &str = include_str!("../../comment-templates/runs.html.j2");
/// The page's only script; the Content-Security-Policy allows it by its hash.
const SCRIPT: &str = include_str!("../../comment-templates/run.js");

/// The pages' Content-Security-Policy: nothing is loaded from anywhere, and the one
/// inline script runs because its hash is listed, so text from a report that slipped
/// past escaping could still not run.
pub fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{hash}'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// The template environment of the page, with its filters.
pub fn environment() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("load_plot", load_plot);
    env.add_template(TEMPLATE_NAME, TEMPLATE)
        .context("the run page template does not parse")?;
    env.add_template(INDEX_TEMPLATE_NAME, INDEX_TEMPLATE)
        .context("the run index template does not parse")?;
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

/// Renders the page of `run` (page id `public_id`) with the filters of `query`.
pub fn render(
    env: &Environment<'_>,
    settings: &Settings,
    run: &RunPage,
    public_id: &str,
    query: &PageQuery,
) -> anyhow::Result<String> {
    let (report, mut report_error) = match &run.report_json {
        None => (None, None),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("not valid JSON: {e}"))),
        },
    };
    let view = match report
        .clone()
        .map(serde_json::from_value::<crate::report::Report>)
    {
        Some(Ok(r)) => Some(run_view::page_view(&r, run_view::Filter::of(query))),
        Some(Err(e)) => {
            report_error = Some(format!("not a report this version can show in full: {e}"));
            None
        }
        None => None,
    };
    let mut run_ctx = serde_json::to_value(run).context("encoding the run")?;
    if let Some(obj) = run_ctx.as_object_mut() {
        obj.remove("report_json");
        obj.insert(
            "pr_url".to_string(),
            serde_json::to_value(pr_url(settings, &run.forge, &run.repo, run.pr))?,
        );
    }
    let grant = match (query.exp, query.sig.as_deref()) {
        (Some(exp), Some(sig)) => format!("?exp={exp}&sig={}", run_view::query_escape(sig)),
        _ => String::new(),
    };
    let tmpl = env
        .get_template(TEMPLATE_NAME)
        .context("the run page template is missing")?;
    tmpl.render(minijinja::context! {
        run => Value::from_serialize(&run_ctx),
        report => Value::from_serialize(&report),
        report_error => report_error,
        view => Value::from_serialize(&view),
        grant => minijinja::context! { exp => query.exp, sig => query.sig },
        json_href => format!("{public_id}.json{grant}"),
        script => Value::from_safe_string(SCRIPT.to_string()),
    })
    .map_err(|e| anyhow::anyhow!("rendering the run page: {e:#}"))
}

/// Runs the index shows per page unless `per_page` says otherwise, and at most.
pub const INDEX_PER_PAGE: u32 = 50;
pub const INDEX_MAX_PER_PAGE: u32 = 200;

/// The index's query: which runs, and which page of them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct IndexQuery {
    #[serde(default)]
    pub repo: String,
    pub pr: Option<i64>,
    pub page: Option<u64>,
    pub per_page: Option<u32>,
}

impl IndexQuery {
    pub fn filter(&self) -> RunFilter {
        RunFilter {
            repo: Some(self.repo.trim().to_string()).filter(|r| !r.is_empty()),
            pr: self.pr,
        }
    }

    /// (page from 1, runs per page).
    pub fn page(&self) -> (u64, u32) {
        (
            self.page.unwrap_or(1).max(1),
            self.per_page
                .unwrap_or(INDEX_PER_PAGE)
                .clamp(1, INDEX_MAX_PER_PAGE),
        )
    }

    /// The index URL of page `page` with these filters.
    fn href(&self, page: u64) -> String {
        let mut q = Vec::new();
        if let Some(repo) = self.filter().repo {
            q.push(format!("repo={}", run_view::query_escape(&repo)));
        }
        if let Some(pr) = self.pr {
            q.push(format!("pr={pr}"));
        }
        if let Some(n) = self.per_page {
            q.push(format!("per_page={n}"));
        }
        q.push(format!("page={page}"));
        format!("/runs?{}", q.join("&"))
    }
}

/// Renders the index page: `runs` is one page plus possibly one more row, which only
/// says that a next page exists.
pub fn render_index(
    env: &Environment<'_>,
    settings: &Settings,
    query: &IndexQuery,
    mut runs: Vec<RunListing>,
) -> anyhow::Result<String> {
    let (page, per_page) = query.page();
    let more = runs.len() > per_page as usize;
    runs.truncate(per_page as usize);
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "pr_url".into(),
                    serde_json::to_value(pr_url(settings, &r.forge, &r.repo, r.pr))?,
                );
                obj.insert(
                    "pr_href".into(),
                    format!("/runs?repo={}&pr={}", run_view::query_escape(&r.repo), r.pr).into(),
                );
            }
            Ok(v)
        })
        .collect::<Result<_, serde_json::Error>>()
        .context("encoding the runs")?;
    let filter = query.filter();
    let tmpl = env
        .get_template(INDEX_TEMPLATE_NAME)
        .context("the run index template is missing")?;
    tmpl.render(minijinja::context! {
        runs => rows,
        page => page,
        prev_href => (page > 1).then(|| query.href(page - 1)),
        next_href => more.then(|| query.href(page + 1)),
        repo => filter.repo,
        pr => filter.pr,
    })
    .map_err(|e| anyhow::anyhow!("rendering the run index: {e:#}"))
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
