//! Planning: load a suite's files at one revision, render every case's messages, and
//! compute the input and score keys that decide what is affected (SPEC §3).

pub mod endpoints;
pub mod guardrail;
pub mod injection;
pub mod keys;
pub mod var_files;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;

use crate::config::{
    Case, Dataset, GuardrailConfig, ModelManifest, ModelSpec, Pricing, SuiteConfig, CONFIG_PATH,
};
use crate::diag::{line_of, Diagnostic, Diagnostics};
use crate::execute::Message;
use crate::source::{read_text, Rev, Source};

/// Evaluator models, resolved from `evaluators` (and `release.judge` on the release tier).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EvaluatorSpecs {
    pub embedding: Option<ModelSpec>,
    pub judge: Option<ModelSpec>,
    /// Prices of the evaluator calls (`pricing` inline or in the evaluator's manifest);
    /// not part of any key.
    #[serde(default)]
    pub embedding_pricing: Option<Pricing>,
    #[serde(default)]
    pub judge_pricing: Option<Pricing>,
    /// `judge_escalation`: ambiguous answers are judged again by this judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// The evaluators model-graded assertions use (`similar`: the embedding model,
    /// `llm-rubric`: the judge), whatever the suite's metrics; in a case's score key
    /// only when the case has such an assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assert_embedding: Option<ModelSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assert_judge: Option<ModelSpec>,
}

/// The judge a suite escalates ambiguous answers to, and the band that is ambiguous.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Escalation {
    pub judge: ModelSpec,
    #[serde(default)]
    pub pricing: Option<Pricing>,
    pub band: crate::config::repo::JudgeEscalation,
}

impl EvaluatorSpecs {
    /// The judge and the embedding model, where set.
    pub fn iter(&self) -> impl Iterator<Item = &ModelSpec> {
        self.judge
            .iter()
            .chain(self.embedding.iter())
            .chain(self.escalation.iter().map(|e| &e.judge))
            .chain(self.assert_embedding.iter())
            .chain(self.assert_judge.iter())
    }
}

/// A suite's files as they are at one revision.
#[derive(Clone, Debug)]
pub struct SuiteFiles {
    pub manifest: ModelManifest,
    /// Template path → text, including every template reached through include/import.
    pub templates: BTreeMap<String, String>,
    pub dataset: Dataset,
    pub guardrail: Option<GuardrailConfig>,
    /// Digest of the files matched by `watch`: a change there changes every key.
    pub watch_digest: Option<String>,
    /// The suite's own attacks (`injection.attacks`), merged into the built-in corpus.
    pub attacks: Vec<crate::inject::Attack>,
}

/// One case, ready to run: its rendered messages and keys. Serialisable so a CodeBuild
/// shard plan can carry it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlannedCase {
    pub case: Case,
    pub messages: Vec<Message>,
    /// One input key per sample index.
    pub input_keys: Vec<String>,
    pub score_key: String,
}

/// Every case of a suite at one revision.
#[derive(Clone, Debug)]
pub struct SidePlan {
    pub spec: ModelSpec,
    pub pricing: Option<Pricing>,
    pub dataset_file: String,
    pub cases: Vec<PlannedCase>,
    /// The guardrail Converse applies to every generation (Bedrock models only).
    pub guardrail: Option<crate::execute::GuardrailRef>,
    /// Case id → index in `cases`.
    index: std::collections::HashMap<String, usize>,
}

impl SidePlan {
    pub fn get(&self, id: &str) -> Option<&PlannedCase> {
        self.index.get(id).and_then(|&i| self.cases.get(i))
    }
}

/// Static include/import/extends names, fetched before rendering because a `Source`
/// read is async and minijinja's loader is not.
fn referenced_templates(text: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r#"\{%-?\s*(?:include|import|extends|from)\s+["']([^"']+)["']"#).ok()
    });
    match re {
        Some(re) => re.captures_iter(text).map(|c| c[1].to_string()).collect(),
        None => Vec::new(),
    }
}

/// Resolves a template name used inside `parent`: as a repository path, or relative to
/// the parent's folder.
fn join_template(name: &str, parent: &str, known: &BTreeSet<String>) -> String {
    let rooted = normalize(name);
    if known.contains(&rooted) {
        return rooted;
    }
    match parent.rsplit_once('/') {
        Some((dir, _)) => normalize(&format!("{dir}/{name}")),
        None => normalize(name),
    }
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Reads a file the config names; absence is a diagnostic pointing at the config line.
async fn read_named(
    source: &dyn Source,
    rev: &Rev,
    path: &str,
    what: &str,
    config_text: &str,
    diags: &mut Diagnostics,
) -> Option<String> {
    match read_text(source, rev, path).await {
        Ok(Some(text)) => Some(text),
        Ok(None) => {
            diags.push(Diagnostic::new(
                CONFIG_PATH,
                line_of(config_text, path),
                format!("{what} `{path}` does not exist at {}", rev.label()),
            ));
            None
        }
        Err(e) => {
            diags.push(Diagnostic::new(path, None, format!("cannot read: {e:#}")));
            None
        }
    }
}

/// A suite's templates at `rev`, then every template they name in an
/// include/import/extends/from, transitively. The renderer is given exactly this map and
/// no loader, so rendering can load nothing else: this set (at base and head) is a
/// proven superset of the templates a suite's messages depend on (what `detect` needs).
pub async fn load_templates(
    source: &dyn Source,
    rev: &Rev,
    suite: &SuiteConfig,
    config_text: &str,
    diags: &mut Diagnostics,
) -> BTreeMap<String, String> {
    let mut templates: BTreeMap<String, String> = BTreeMap::new();
    let mut queue: Vec<(String, Option<String>)> = suite
        .prompts
        .roles()
        .into_iter()
        .map(|(_, p)| (p.to_string(), None))
        .collect();
    while let Some((name, parent)) = queue.pop() {
        let (path, text) = match &parent {
            None => {
                if templates.contains_key(&name) {
                    continue;
                }
                let text = read_named(source, rev, &name, "template", config_text, diags).await;
                (name.clone(), text)
            }
            Some(parent) => {
                // The same order as the render-time join: a repository path first,
                // then a path relative to the including template's folder.
                let candidates = [
                    normalize(&name),
                    join_template(&name, parent, &BTreeSet::new()),
                ];
                if candidates.iter().any(|c| templates.contains_key(c)) {
                    continue;
                }
                let mut found = None;
                for c in &candidates {
                    match read_text(source, rev, c).await {
                        Ok(Some(t)) => {
                            found = Some((c.clone(), t));
                            break;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            diags.push(Diagnostic::new(
                                c.clone(),
                                None,
                                format!("cannot read: {e:#}"),
                            ));
                            break;
                        }
                    }
                }
                match found {
                    Some((path, text)) => (path, Some(text)),
                    None => {
                        let line = templates.get(parent).and_then(|t| line_of(t, &name));
                        diags.push(Diagnostic::new(
                            parent.clone(),
                            line,
                            format!(
                                "included template `{name}` does not exist at {}",
                                rev.label()
                            ),
                        ));
                        continue;
                    }
                }
            }
        };
        if let Some(text) = text {
            for child in referenced_templates(&text) {
                queue.push((child, Some(path.clone())));
            }
            templates.insert(path, text);
        }
    }
    templates
}

/// Loads and parses every file of a suite at `rev`, collecting all problems. The
/// dataset's `file://` variables are read at `rev` too, and `suite.defaults` merged into
/// its cases: the caller passes the suite with the defaults of the config at `rev`.
pub async fn load_suite(
    source: &dyn Source,
    rev: &Rev,
    suite: &SuiteConfig,
    config_text: &str,
) -> Result<SuiteFiles, Diagnostics> {
    let mut diags = Diagnostics::default();

    let manifest = match read_named(
        source,
        rev,
        &suite.model,
        "model manifest",
        config_text,
        &mut diags,
    )
    .await
    {
        Some(text) => ModelManifest::parse(&suite.model, &text)
            .map_err(|d| diags.extend(d))
            .ok(),
        None => None,
    };
    let dataset = match read_named(
        source,
        rev,
        &suite.dataset,
        "dataset",
        config_text,
        &mut diags,
    )
    .await
    {
        Some(text) => match Dataset::parse(&suite.dataset, &text) {
            Ok(mut dataset) => {
                let defaults = suite.defaults.as_ref();
                var_files::load_and_merge(
                    source,
                    rev,
                    &mut dataset,
                    defaults,
                    config_text,
                    &mut diags,
                )
                .await;
                Some(dataset)
            }
            Err(d) => {
                diags.extend(d);
                None
            }
        },
        None => None,
    };
    let guardrail = match &suite.guardrail {
        Some(path) => match read_named(
            source,
            rev,
            path,
            "guardrail config",
            config_text,
            &mut diags,
        )
        .await
        {
            Some(text) => GuardrailConfig::parse(path, &text)
                .map_err(|d| diags.extend(d))
                .ok(),
            None => None,
        },
        None => None,
    };

    let templates = load_templates(source, rev, suite, config_text, &mut diags).await;

    let attacks = match &suite.injection.attacks {
        Some(path) => {
            match read_named(source, rev, path, "attack file", config_text, &mut diags).await {
                Some(text) => crate::inject::parse_attacks(path, &text)
                    .map_err(|d| diags.extend(d))
                    .unwrap_or_default(),
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };

    let watch_digest = if suite.watch.is_empty() {
        None
    } else {
        match watch_digest(source, rev, &suite.watch).await {
            Ok(d) => Some(d),
            Err(e) => {
                diags.push(Diagnostic::new(
                    CONFIG_PATH,
                    line_of(config_text, "watch"),
                    format!("reading watched files: {e:#}"),
                ));
                None
            }
        }
    };

    match (manifest, dataset) {
        (Some(manifest), Some(dataset)) if diags.is_empty() => Ok(SuiteFiles {
            manifest,
            templates,
            dataset,
            guardrail,
            watch_digest,
            attacks,
        }),
        _ => Err(diags),
    }
}

/// A digest over the paths and contents of every file matched by `watch`.
async fn watch_digest(source: &dyn Source, rev: &Rev, globs: &[String]) -> anyhow::Result<String> {
    let mut builder = globset::GlobSetBuilder::new();
    for g in globs {
        builder.add(globset::Glob::new(g)?);
    }
    let set = builder.build()?;
    let mut entries = Vec::new();
    for path in source.list_files(rev).await? {
        if set.is_match(&path) {
            let bytes = source.read(rev, &path).await?.unwrap_or_default();
            entries.push(json!([
                path,
                keys::digest(keys::FILES, &json!(hex::encode(&bytes)))
            ]));
        }
    }
    Ok(keys::digest(keys::FILES, &json!(entries)))
}

/// The per-sample input key (SPEC §3): provider, model, parameters, the rendered
/// messages, the sample index, and the digest of watched files.
pub fn input_key(
    spec: &ModelSpec,
    messages: &[Message],
    sample: u32,
    watch: Option<&str>,
) -> String {
    input_key_through(spec, messages, sample, watch, None)
}

/// [`input_key`] for a generation Converse screens with a Bedrock guardrail: the
/// guardrail and its version change the output (a blocked answer), so they are part
/// of the key. Left out when there is none, so every other key stays as it was.
pub fn input_key_through(
    spec: &ModelSpec,
    messages: &[Message],
    sample: u32,
    watch: Option<&str>,
    guardrail: Option<&crate::execute::GuardrailRef>,
) -> String {
    let mut key = json!({
        "model": spec.identity(),
        "messages": messages,
        "sample": sample,
        "watch": watch,
    });
    if let (Some(g), Some(map)) = (guardrail, key.as_object_mut()) {
        map.insert("guardrail".into(), json!(g));
    }
    keys::digest(keys::INPUT, &key)
}

/// The score key adds what scoring depends on: expected output, assertions, evaluators.
/// The case's `threshold` joins only when set, so every other key stays as it was.
pub fn score_key(input_keys: &[String], case: &Case, evaluators: &EvaluatorSpecs) -> String {
    let mut key = json!({
        "inputs": input_keys,
        "expected": case.expected,
        "assert": case.asserts,
        "embedding": evaluators.embedding.as_ref().map(ModelSpec::identity),
        "judge": evaluators.judge.as_ref().map(ModelSpec::identity),
    });
    if let (Some(t), Some(map)) = (case.threshold, key.as_object_mut()) {
        map.insert("threshold".into(), json!(t));
    }
    // Model-graded assertions depend on their grader: in the key only where used.
    let uses = |k: crate::config::AssertionKind| case.asserts.iter().any(|a| a.kind == k);
    if let Some(map) = key.as_object_mut() {
        if uses(crate::config::AssertionKind::Similar) {
            map.insert(
                "assert_embedding".into(),
                json!(evaluators
                    .assert_embedding
                    .as_ref()
                    .map(ModelSpec::identity)),
            );
        }
        if uses(crate::config::AssertionKind::LlmRubric) {
            map.insert(
                "assert_judge".into(),
                json!(evaluators.assert_judge.as_ref().map(ModelSpec::identity)),
            );
        }
    }
    // Escalation changes which judge's grade counts: in the key only when configured.
    if let (Some(e), Some(map)) = (&evaluators.escalation, key.as_object_mut()) {
        map.insert(
            "escalation".into(),
            json!({"judge": e.judge.identity(), "band": e.band.band}),
        );
    }
    keys::digest(keys::SCORE, &key)
}

/// Renders a suite's messages from its templates, parsed once per revision.
pub struct Renderer {
    env: Environment<'static>,
}

impl Renderer {
    pub fn new(templates: &BTreeMap<String, String>) -> Result<Self, Diagnostics> {
        Ok(Self {
            env: build_env(templates)?,
        })
    }

    /// The messages, in role order, for one set of variables.
    pub fn messages(
        &self,
        suite: &SuiteConfig,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<Message>, (String, minijinja::Error)> {
        let mut total = 0usize;
        suite
            .prompts
            .roles()
            .into_iter()
            .map(|(role, path)| {
                let text = render(&self.env, path, vars).map_err(|e| (path.to_string(), e))?;
                total += text.len();
                if total > MAX_CASE_BYTES {
                    let e = too_large(path, "the case's messages", total, MAX_CASE_BYTES);
                    return Err((path.to_string(), e));
                }
                Ok(Message::new(role, text))
            })
            .collect()
    }
}

impl Renderer {
    /// One template on its own, e.g. a system prompt with no variables.
    pub fn render_path(
        &self,
        path: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, minijinja::Error> {
        render(&self.env, path, vars)
    }

    /// Variables `path` reads that the case does not define: the names behind an
    /// "undefined value" error, which minijinja does not give.
    fn missing_vars(
        &self,
        path: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        let Ok(tmpl) = self.env.get_template(path) else {
            return Vec::new();
        };
        tmpl.undeclared_variables(false)
            .into_iter()
            .filter(|v| !vars.contains_key(v) && self.env.globals().all(|(g, _)| g != v.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn too_large(path: &str, what: &str, bytes: usize, limit: usize) -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!("{what} rendered from {path} is {bytes} bytes; the limit is {limit} bytes"),
    )
}

/// Renders every case and computes its keys. Template errors name the template file and
/// line and the case's dataset line; all of them are collected.
pub fn plan_side(
    suite: &SuiteConfig,
    files: &SuiteFiles,
    evaluators: &EvaluatorSpecs,
    samples: u32,
) -> Result<SidePlan, Diagnostics> {
    let renderer = Renderer::new(&files.templates)?;
    let spec = files.manifest.spec();
    let guardrail = files
        .guardrail
        .as_ref()
        .filter(|_| files.manifest.provider == crate::config::ProviderKind::Bedrock)
        .map(guardrail::guardrail_ref);
    let mut cases = Vec::with_capacity(files.dataset.cases.len());
    // One problem, however many cases hit it: (file, line, message) → the cases.
    let mut failures: BTreeMap<(String, Option<usize>, String), Vec<&Case>> = BTreeMap::new();
    for case in &files.dataset.cases {
        let messages = match renderer.messages(suite, &case.vars) {
            Ok(m) => m,
            Err((path, e)) => {
                let (file, line, mut text) = innermost(&path, &e);
                if text.starts_with(&minijinja::ErrorKind::UndefinedError.to_string()) {
                    let missing = renderer.missing_vars(&file, &case.vars);
                    if !missing.is_empty() {
                        let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
                        text = format!(
                            "undefined variable {} (not in the case's `vars`)",
                            names.join(", ")
                        );
                    }
                }
                failures.entry((file, line, text)).or_default().push(case);
                continue;
            }
        };
        let input_keys: Vec<String> = (0..samples)
            .map(|s| {
                let watch = files.watch_digest.as_deref();
                input_key_through(&spec, &messages, s, watch, guardrail.as_ref())
            })
            .collect();
        let score_key = score_key(&input_keys, case, evaluators);
        cases.push(PlannedCase {
            case: case.clone(),
            messages,
            input_keys,
            score_key,
        });
    }
    let mut diags = Diagnostics::default();
    for ((file, line, text), hit) in failures {
        let at = |c: &Case| format!("`{}` ({}:{})", c.id, files.dataset.file, c.line);
        let which = match hit.as_slice() {
            [one] => format!("case {}", at(one)),
            many => {
                let shown: Vec<String> = many.iter().take(3).map(|c| at(c)).collect();
                let more = many.len().saturating_sub(3);
                format!(
                    "{} cases: {}{}",
                    many.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
        };
        diags.push(Diagnostic::new(
            file,
            line,
            format!("does not render for {which}: {text}"),
        ));
    }
    if diags.is_empty() {
        Ok(SidePlan {
            spec,
            pricing: files.manifest.pricing.clone(),
            dataset_file: files.dataset.file.clone(),
            guardrail,
            index: cases
                .iter()
                .enumerate()
                .map(|(i, c)| (c.case.id.clone(), i))
                .collect(),
            cases,
        })
    } else {
        Err(diags)
    }
}

/// The template, line and message of the innermost error: an error inside an
/// included template arrives wrapped in the includer's.
fn innermost(path: &str, e: &minijinja::Error) -> (String, Option<usize>, String) {
    let mut best = (
        e.name().unwrap_or(path).to_string(),
        e.line(),
        error_text(e),
    );
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(inner) = err.downcast_ref::<minijinja::Error>() {
            if let Some(name) = inner.name() {
                best = (name.to_string(), inner.line(), error_text(inner));
            }
        }
        cur = err.source();
    }
    best
}

fn error_text(e: &minijinja::Error) -> String {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return format!(
            "rendering takes more than {RENDER_FUEL} template steps (the limit for one message), so it was stopped"
        );
    }
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Template steps one message may take to render. Templates come from the PR: a nested
/// loop must end as an error for its case, not hold a worker (or the service) for
/// minutes. Fuel counts instructions, so the limit is the same on every machine and a
/// render that passed once passes again; real prompts need a few thousand steps.
pub const RENDER_FUEL: u64 = 2_000_000;

/// The largest rendered message, and the largest sum of one case's messages. A 10 MB
/// variable repeated by a loop must not exhaust the service's memory.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
pub const MAX_CASE_BYTES: usize = 4 << 20;

fn build_env(templates: &BTreeMap<String, String>) -> Result<Environment<'static>, Diagnostics> {
    let mut env = Environment::new();
    env.set_fuel(Some(RENDER_FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    let known: Arc<BTreeSet<String>> = Arc::new(templates.keys().cloned().collect());
    let known_for_join = Arc::clone(&known);
    env.set_path_join_callback(move |name, parent| {
        join_template(name, parent, &known_for_join).into()
    });
    let mut diags = Diagnostics::default();
    for (path, text) in templates {
        if let Err(e) = env.add_template_owned(path.clone(), text.clone()) {
            diags.push(Diagnostic::new(
                path.clone(),
                e.line(),
                format!("template does not parse: {}", error_text(&e)),
            ));
        }
    }
    if diags.is_empty() {
        Ok(env)
    } else {
        Err(diags)
    }
}

fn render(
    env: &Environment<'static>,
    path: &str,
    vars: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, minijinja::Error> {
    let tmpl = env.get_template(path)?;
    let out = tmpl.render(minijinja::Value::from_serialize(vars))?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(too_large(path, "the message", out.len(), MAX_MESSAGE_BYTES));
    }
    Ok(out.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod guardrail_key_tests {
    use super::*;

    #[test]
    fn the_guardrail_converse_applies_is_part_of_the_input_key() {
        let spec = ModelSpec {
            provider: crate::config::ProviderKind::Bedrock,
            model: "m".into(),
            region: None,
            base_url: None,
            api_key_env: None,
            parameters: Default::default(),
        };
        let msgs = [Message::new("user", "hi")];
        let g = |v: &str| crate::execute::GuardrailRef {
            id: "gr-1".into(),
            version: v.into(),
        };
        let none = input_key_through(&spec, &msgs, 0, None, None);
        assert_eq!(
            none,
            input_key(&spec, &msgs, 0, None),
            "unchanged without one"
        );
        let v1 = input_key_through(&spec, &msgs, 0, None, Some(&g("1")));
        let v2 = input_key_through(&spec, &msgs, 0, None, Some(&g("2")));
        assert!(none != v1 && v1 != v2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_static_includes() {
        let t =
            r#"{% include "partials/a.j2" %} {%- import 'm.j2' as m %} {% extends "base.j2" %}"#;
        assert_eq!(
            referenced_templates(t),
            vec!["partials/a.j2", "m.j2", "base.j2"]
        );
    }

    #[test]
    fn joins_relative_to_parent() {
        let known = BTreeSet::new();
        assert_eq!(
            join_template("a.j2", "prompts/s/user.j2", &known),
            "prompts/s/a.j2"
        );
        assert_eq!(
            join_template("../c/a.j2", "prompts/s/user.j2", &known),
            "prompts/c/a.j2"
        );
        let known: BTreeSet<String> = ["shared/a.j2".to_string()].into();
        assert_eq!(
            join_template("shared/a.j2", "prompts/s/user.j2", &known),
            "shared/a.j2"
        );
    }

    #[test]
    fn weights_and_thresholds_change_the_score_key_not_the_input_key() {
        use crate::config::{Dataset, ModelManifest, RepoConfig};
        let cfg = RepoConfig::parse(
            "version: 1\nsuites:\n  s:\n    prompts: { user: u.j2 }\n    model: m.yaml\n    dataset: d.jsonl\n    metrics: { assertions: { min: 1.0 } }\n",
        )
        .unwrap();
        let suite = &cfg.suites["s"];
        let manifest = ModelManifest::parse(
            "m.yaml",
            "provider: openai\nmodel: m\nbase_url: http://127.0.0.1:9/v1\n",
        )
        .unwrap();
        let keys = |line: &str| {
            let files = SuiteFiles {
                manifest: manifest.clone(),
                templates: [("u.j2".to_string(), "Q: {{ q }}".to_string())].into(),
                dataset: Dataset::parse("d.jsonl", line).unwrap(),
                guardrail: None,
                watch_digest: None,
                attacks: Vec::new(),
            };
            let plan = plan_side(suite, &files, &EvaluatorSpecs::default(), 1).unwrap();
            let c = &plan.cases[0];
            (c.input_keys.clone(), c.score_key.clone())
        };
        let base = keys(r#"{"id":"a","vars":{"q":"x"},"assert":[{"type":"rouge-l","value":"y"}]}"#);
        for changed in [
            r#"{"id":"a","vars":{"q":"x"},"assert":[{"type":"rouge-l","value":"y","weight":2}]}"#,
            r#"{"id":"a","vars":{"q":"x"},"assert":[{"type":"rouge-l","value":"y","threshold":0.7}]}"#,
            r#"{"id":"a","vars":{"q":"x"},"threshold":0.5,"assert":[{"type":"rouge-l","value":"y"}]}"#,
        ] {
            let (inputs, score) = keys(changed);
            assert_eq!(inputs, base.0, "{changed}");
            assert_ne!(score, base.1, "{changed}");
        }
    }
}
