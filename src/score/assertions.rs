//! The dataset `assert` types (SPEC §2), checked against one output.

use crate::config::assertion::{Check, Compiled, PathExpect};
use crate::config::Assertion;
use crate::execute::ToolCall;

/// The result of a case's assertion list on one output.
#[derive(Clone, Debug, PartialEq)]
pub struct AssertOutcome {
    pub pass: bool,
    /// One line per failed assertion, saying what was expected.
    pub failures: Vec<String>,
}

/// What assertions look at: one generation of a case, and the case's reference answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    pub output: &'a str,
    pub expected: Option<&'a str>,
    pub latency_ms: u64,
    /// `None` when the model manifest has no `pricing`.
    pub cost_usd: Option<f64>,
    /// The grades of model-graded assertions (`similar`, `llm-rubric`), by
    /// [`grading_key`](crate::config::assertion::grading_key): a score and why.
    pub graded: Option<&'a std::collections::HashMap<String, (f64, String)>>,
    /// The tools the generation called (`tool-called`, `tool-args-schema`).
    pub tool_calls: &'a [ToolCall],
}

/// Checks every assertion. With no case `threshold` the case passes when every
/// assertion of weight above 0 does; with one, when the weighted share of passing
/// assertions reaches it.
pub fn evaluate(asserts: &[Assertion], threshold: Option<f64>, subject: &Subject) -> AssertOutcome {
    let mut failures = Vec::new();
    let (mut total, mut passed) = (0.0, 0.0);
    let mut heavy_failed = false;
    for a in asserts {
        let (weight, result) = match a.compile(subject.expected) {
            Ok(c) => (c.weight, run(&c, subject)),
            Err(e) => (a.weight.unwrap_or(1.0).max(0.0), Err(e)),
        };
        total += weight;
        match result {
            Ok(()) => passed += weight,
            Err(e) => {
                heavy_failed |= weight > 0.0;
                failures.push(e);
            }
        }
    }
    let pass = match threshold {
        None => !heavy_failed,
        Some(t) => {
            let score = if total > 0.0 { passed / total } else { 1.0 };
            // A tolerance, so three passing thirds reach a threshold of 1.
            let pass = score + 1e-9 >= t;
            if !pass {
                failures.push(format!(
                    "weighted score {score:.2} is below the case threshold {t}"
                ));
            }
            pass
        }
    };
    AssertOutcome { pass, failures }
}

/// Runs one compiled assertion: `Err` is the failure line.
fn run(c: &Compiled, subject: &Subject) -> Result<(), String> {
    let (held, fact) = holds(&c.check, subject);
    if held != c.negated {
        Ok(())
    } else {
        Err(format!("{}: {fact}", c.label))
    }
}

/// Whether the check holds on the subject, and what was observed, phrased so that it
/// explains a failure of the check or of its `not-` form.
fn holds(check: &Check, s: &Subject) -> (bool, String) {
    let out = s.output;
    match check {
        Check::Contains {
            needles,
            all,
            fold_case,
        } => {
            let hay = if *fold_case {
                out.to_lowercase()
            } else {
                out.to_string()
            };
            let found = |n: &&String| {
                if *fold_case {
                    hay.contains(&n.to_lowercase())
                } else {
                    hay.contains(n.as_str())
                }
            };
            let (hits, misses): (Vec<&String>, Vec<&String>) = needles.iter().partition(found);
            match (needles.len(), *all) {
                (1, _) if misses.is_empty() => (true, "found".into()),
                (1, _) => (false, "not found".into()),
                (_, true) if misses.is_empty() => (true, "all found".into()),
                (_, true) => (false, format!("missing {}", quoted(&misses))),
                (_, false) if hits.is_empty() => (false, "none found".into()),
                (_, false) => (true, format!("found {}", quoted(&hits))),
            }
        }
        Check::StartsWith(prefix) => {
            let held = out.trim_start().starts_with(prefix.as_str());
            (held, if held { "it does" } else { "it does not" }.into())
        }
        Check::Regex(re) => match re.find(out) {
            Some(m) => (true, format!("matches {:?}", m.as_str())),
            None => (false, "no match".into()),
        },
        Check::Equals(v) => {
            let held = out.trim() == v.trim();
            (
                held,
                if held {
                    "output is equal"
                } else {
                    "output differs"
                }
                .into(),
            )
        }
        Check::Json => match parse_json(out) {
            Ok(_) => (true, "output is JSON".into()),
            Err(e) => (false, e),
        },
        Check::JsonSchema(validator) => match parse_json(out) {
            Ok(doc) => {
                let errors: Vec<String> = validator
                    .iter_errors(&doc)
                    .take(3)
                    .map(|e| e.to_string())
                    .collect();
                (errors.is_empty(), errors.join("; "))
            }
            Err(e) => (false, e),
        },
        Check::JsonPath(checks) => {
            let doc = match parse_json(out) {
                Ok(doc) => doc,
                Err(e) => return (false, e),
            };
            match path_miss(checks, &doc) {
                Some(m) => (false, m),
                None => (true, "every path check holds".into()),
            }
        }
        Check::Levenshtein { reference, max } => {
            let d = levenshtein(out.trim(), reference.trim()) as f64;
            (d <= *max, format!("edit distance {d} (at most {max})"))
        }
        Check::RougeL { reference, min } => {
            let v = rouge_l(out, reference);
            (v >= *min, format!("ROUGE-L {v:.3} (at least {min})"))
        }
        Check::Bleu { reference, min } => {
            let v = bleu(out, reference);
            (v >= *min, format!("BLEU {v:.3} (at least {min})"))
        }
        Check::WordCount { min, max } => {
            let n = out.split_whitespace().count() as u64;
            let held = min.is_none_or(|lo| n >= lo) && max.is_none_or(|hi| n <= hi);
            let range = match (min, max) {
                (Some(lo), Some(hi)) if lo == hi => format!("exactly {lo}"),
                (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
                (Some(lo), None) => format!("at least {lo}"),
                (None, Some(hi)) => format!("at most {hi}"),
                (None, None) => "any".into(),
            };
            (held, format!("{n} words (want {range})"))
        }
        Check::Latency { max_ms } => (
            s.latency_ms as f64 <= *max_ms,
            format!("the generation took {} ms (at most {max_ms})", s.latency_ms),
        ),
        Check::Cost { max_usd } => match s.cost_usd {
            Some(c) => (
                c <= *max_usd,
                format!("the generation cost ${c:.6} (at most ${max_usd})"),
            ),
            None => (false, "no cost: the model manifest has no `pricing`".into()),
        },
        Check::Graded { key, min } => match s.graded.and_then(|g| g.get(key)) {
            Some((score, why)) => (
                *score + 1e-12 >= *min,
                format!("scored {score:.3} (at least {min}): {why}"),
            ),
            None => (false, "was not graded".into()),
        },
        Check::ToolCalled { name, args } => {
            let mut misses = Vec::new();
            for call in s.tool_calls.iter().filter(|c| &c.name == name) {
                match path_miss(args, &call.arguments) {
                    None => return (true, format!("`{name}` was called")),
                    Some(m) => misses.push(m),
                }
            }
            match misses.first() {
                // Called, but never with arguments that pass the checks.
                Some(m) => (false, format!("`{name}` was called, but {m}")),
                None => (false, called(s.tool_calls)),
            }
        }
        Check::ToolArgsSchema { name, validator } => {
            let mut calls = s.tool_calls.iter().filter(|c| &c.name == name).peekable();
            if calls.peek().is_none() {
                return (false, called(s.tool_calls));
            }
            // Every call to the tool must fit: one good call does not excuse a bad one.
            for (i, call) in calls.enumerate() {
                let errors: Vec<String> = validator
                    .iter_errors(&call.arguments)
                    .take(3)
                    .map(|e| e.to_string())
                    .collect();
                if !errors.is_empty() {
                    return (
                        false,
                        format!("call {} of `{name}`: {}", i + 1, errors.join("; ")),
                    );
                }
            }
            (true, format!("every call of `{name}` has valid arguments"))
        }
    }
}

/// The tools an answer called, for failure lines.
fn called(calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        return "no tool was called".into();
    }
    let names: Vec<String> = calls.iter().map(|c| format!("`{}`", c.name)).collect();
    format!("called {}", names.join(", "))
}

/// The first json-path check that `doc` fails, said as what was found.
fn path_miss(
    checks: &[crate::config::assertion::PathCheck],
    doc: &serde_json::Value,
) -> Option<String> {
    checks.iter().find_map(|c| {
        let got = c.path.select(doc);
        match (&c.expect, got) {
            (PathExpect::Exists(want), got) if got.is_some() != *want => Some(match got {
                Some(v) => format!("`{}` exists ({v})", c.text),
                None => format!("`{}` does not exist", c.text),
            }),
            (PathExpect::Equals(want), Some(v)) if !json_eq(v, want) => {
                Some(format!("`{}` is {v}, not {want}", c.text))
            }
            (PathExpect::Equals(_), None) => Some(format!("`{}` does not exist", c.text)),
            _ => None,
        }
    })
}

fn quoted(items: &[&String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    q.join(", ")
}

/// JSON equality where numbers compare by value, so `30` equals `30.0`.
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Edit distance in characters (insertions, deletions, substitutions), two rows.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Lowercase words: runs of letters and digits, so punctuation and case do not count
/// against an otherwise equal answer.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// ROUGE-L: the F1 of precision and recall of the longest common word subsequence.
fn rouge_l(candidate: &str, reference: &str) -> f64 {
    let (c, r) = (words(candidate), words(reference));
    if c.is_empty() || r.is_empty() {
        return if c.is_empty() && r.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut prev = vec![0usize; r.len() + 1];
    let mut cur = vec![0usize; r.len() + 1];
    for cw in &c {
        for (j, rw) in r.iter().enumerate() {
            cur[j + 1] = if cw == rw {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = prev[r.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, rec) = (lcs / c.len() as f64, lcs / r.len() as f64);
    2.0 * p * rec / (p + rec)
}

/// Sentence BLEU-4: the geometric mean of clipped 1- to 4-gram precisions (add-one
/// smoothed above unigrams, so one missing 4-gram does not zero a short answer) times
/// the brevity penalty.
fn bleu(candidate: &str, reference: &str) -> f64 {
    use std::collections::HashMap;
    let (c, r) = (words(candidate), words(reference));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let grams = |w: &[String], n: usize| -> HashMap<Vec<String>, usize> {
        let mut m = HashMap::new();
        for g in w.windows(n) {
            *m.entry(g.to_vec()).or_default() += 1;
        }
        m
    };
    let mut log_sum = 0.0;
    for n in 1..=4 {
        let (cg, rg) = (grams(&c, n), grams(&r, n));
        let total: usize = cg.values().sum();
        let matched: usize = cg
            .iter()
            .map(|(g, k)| (*k).min(rg.get(g).copied().unwrap_or(0)))
            .sum();
        let p = if n == 1 {
            matched as f64 / total as f64
        } else {
            (matched as f64 + 1.0) / (total as f64 + 1.0)
        };
        if p == 0.0 {
            return 0.0;
        }
        log_sum += p.ln() / 4.0;
    }
    let (cl, rl) = (c.len() as f64, r.len() as f64);
    let brevity = if cl >= rl { 1.0 } else { (1.0 - rl / cl).exp() };
    brevity * log_sum.exp()
}

/// Parses the output as JSON, accepting one surrounding markdown code fence because
/// chat models add one even when asked not to.
fn parse_json(output: &str) -> Result<serde_json::Value, String> {
    let text = strip_fence(output.trim());
    serde_json::from_str(text).map_err(|e| format!("is-json: output is not JSON ({e})"))
}

/// Removes one ```lang … ``` fence around `text`, if there is exactly that.
pub fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return text;
    };
    match body.split_once('\n') {
        Some((lang, inner)) if !lang.contains(' ') => inner.trim(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn a(kind: &str, value: serde_json::Value) -> Assertion {
        serde_json::from_value(json!({"type": kind, "value": value})).unwrap()
    }

    fn raw(v: serde_json::Value) -> Assertion {
        serde_json::from_value(v).unwrap()
    }

    fn on(output: &str) -> Subject<'_> {
        Subject {
            output,
            ..Default::default()
        }
    }

    fn check_rows(rows: &[(Assertion, Subject, bool)]) {
        for (i, (assertion, subject, want)) in rows.iter().enumerate() {
            let got = evaluate(std::slice::from_ref(assertion), None, subject);
            assert_eq!(
                got.pass, *want,
                "row {i}: {assertion:?} on {subject:?}: {got:?}"
            );
            assert_eq!(got.failures.is_empty(), *want, "row {i}: {got:?}");
        }
    }

    #[test]
    fn table() {
        let schema = json!({"type": "object", "required": ["days"], "properties": {"days": {"type": "integer"}}});
        let is_json = || raw(json!({"type": "is-json"}));
        check_rows(&[
            (a("contains", json!("30 days")), on("within 30 days."), true),
            (
                a("contains", json!("30 days")),
                on("within 30 Days."),
                false,
            ),
            (
                a("icontains", json!("30 DAYS")),
                on("within 30 days."),
                true,
            ),
            (a("not-contains", json!("sorry")), on("Sure!"), true),
            (a("not-contains", json!("sorry")), on("I'm sorry"), false),
            (a("equals", json!("yes")), on(" yes\n"), true),
            (a("equals", json!("yes")), on("yes!"), false),
            (a("regex", json!(r"^\d+ days$")), on("30 days"), true),
            (a("regex", json!(r"^\d+ days$")), on("thirty days"), false),
            (is_json(), on("{\"a\":1}"), true),
            (is_json(), on("```json\n{\"a\":1}\n```"), true),
            (is_json(), on("a: 1"), false),
            (a("json-schema", schema.clone()), on("{\"days\": 30}"), true),
            (
                a("json-schema", schema.clone()),
                on("{\"days\": \"30\"}"),
                false,
            ),
            (a("json-schema", schema), on("not json"), false),
        ]);
    }

    #[test]
    fn string_lists_prefixes_and_negations() {
        check_rows(&[
            (
                a("starts-with", json!("Yes")),
                on("\n Yes, within 30 days"),
                true,
            ),
            (a("starts-with", json!("Yes")), on("No."), false),
            (a("not-starts-with", json!("Sorry")), on("Sure."), true),
            (
                a("not-starts-with", json!("Sorry")),
                on("Sorry, no."),
                false,
            ),
            (
                a("contains-any", json!(["refund", "return"])),
                on("a return"),
                true,
            ),
            (
                a("contains-any", json!(["refund", "return"])),
                on("a Refund"),
                false,
            ),
            (
                a("not-contains-any", json!(["damn", "hell"])),
                on("fine"),
                true,
            ),
            (
                a("not-contains-any", json!(["damn", "hell"])),
                on("oh hell"),
                false,
            ),
            (
                a("contains-all", json!(["30", "days"])),
                on("30 days"),
                true,
            ),
            (
                a("contains-all", json!(["30", "days"])),
                on("30 weeks"),
                false,
            ),
            (a("not-contains-all", json!(["a", "b"])), on("a only"), true),
            (a("not-contains-all", json!(["a", "b"])), on("a b"), false),
            (
                a("icontains-any", json!(["REFUND", "x"])),
                on("a refund"),
                true,
            ),
            (
                a("icontains-any", json!(["REFUND", "x"])),
                on("nothing"),
                false,
            ),
            (a("not-icontains-any", json!(["SORRY"])), on("sure"), true),
            (a("not-icontains-any", json!(["SORRY"])), on("Sorry"), false),
            (
                a("icontains-all", json!(["Free", "SHIPPING"])),
                on("free shipping"),
                true,
            ),
            (
                a("icontains-all", json!(["Free", "SHIPPING"])),
                on("free returns"),
                false,
            ),
            (a("not-icontains-all", json!(["a", "b"])), on("A"), true),
            (a("not-icontains-all", json!(["a", "b"])), on("A B"), false),
            (a("not-icontains", json!("SORRY")), on("sure"), true),
            (a("not-icontains", json!("SORRY")), on("so sorry"), false),
            (a("not-equals", json!("no")), on("yes"), true),
            (a("not-equals", json!("no")), on(" no "), false),
            (a("not-regex", json!(r"\bI am an AI\b")), on("Sure"), true),
            (
                a("not-regex", json!(r"\bI am an AI\b")),
                on("I am an AI model"),
                false,
            ),
        ]);
    }

    #[test]
    fn regex_flags() {
        let re =
            |flags: &str| raw(json!({"type": "regex", "value": "^total: \\d+$", "flags": flags}));
        check_rows(&[
            (re(""), on("Total: 3"), false),
            (re("i"), on("Total: 3"), true),
            (re("i"), on("sum\nTotal: 3"), false),
            (re("im"), on("sum\nTotal: 3"), true),
            (
                raw(json!({"type": "regex", "value": "a.b", "flags": "s"})),
                on("a\nb"),
                true,
            ),
            (
                raw(json!({"type": "regex", "value": "a.b"})),
                on("a\nb"),
                false,
            ),
            (
                raw(json!({"type": "not-regex", "value": "SORRY", "flags": "i"})),
                on("sorry"),
                false,
            ),
        ]);
    }

    #[test]
    fn json_types_and_paths() {
        let doc =
            "```json\n{\"queue\": \"billing\", \"items\": [{\"qty\": 2}], \"note\": null}\n```";
        let path = |v: serde_json::Value| a("json-path", v);
        check_rows(&[
            (raw(json!({"type": "is-valid-json"})), on("[1]"), true),
            (raw(json!({"type": "is-valid-json"})), on("nope"), false),
            (raw(json!({"type": "not-is-valid-json"})), on("nope"), true),
            (raw(json!({"type": "not-is-valid-json"})), on("{}"), false),
            (
                path(json!({"path": "$.queue", "equals": "billing"})),
                on(doc),
                true,
            ),
            (
                path(json!({"path": "$.queue", "equals": "shipping"})),
                on(doc),
                false,
            ),
            (
                path(
                    json!([{"path": "$.items[0].qty", "equals": 2.0}, {"path": "$['note']", "exists": true}]),
                ),
                on(doc),
                true,
            ),
            (
                path(json!([{"path": "$.queue"}, {"path": "$.items[1]"}])),
                on(doc),
                false,
            ),
            (
                path(json!({"path": "$.items[1]", "exists": false})),
                on(doc),
                true,
            ),
            (
                path(json!({"path": "$.queue", "exists": false})),
                on(doc),
                false,
            ),
            (
                path(json!({"path": "$.missing", "equals": null})),
                on(doc),
                false,
            ),
            (path(json!({"path": "$.queue"})), on("not json"), false),
        ]);
        let out = evaluate(
            &[path(json!({"path": "$.queue", "equals": "shipping"}))],
            None,
            &on(doc),
        );
        assert!(
            out.failures[0].contains("`$.queue` is \"billing\", not \"shipping\""),
            "{out:?}"
        );
    }

    #[test]
    fn similarity_types_against_value_or_expected() {
        let with_expected = |output| Subject {
            output,
            expected: Some("You can return them within 30 days."),
            ..Default::default()
        };
        let t = |kind: &str, t: f64| raw(json!({"type": kind, "threshold": t}));
        check_rows(&[
            (a("levenshtein", json!("colour")), on("color"), true),
            (
                raw(json!({"type": "levenshtein", "value": "colour", "threshold": 0})),
                on("color"),
                false,
            ),
            (
                t("levenshtein", 2.0),
                with_expected("You can return them within 30 days!"),
                true,
            ),
            (
                t("levenshtein", 2.0),
                with_expected("Returns: 30 days."),
                false,
            ),
            (
                raw(json!({"type": "rouge-l"})),
                with_expected("you can return them within 30 days"),
                true,
            ),
            (
                raw(json!({"type": "rouge-l"})),
                with_expected("We ship worldwide."),
                false,
            ),
            (
                t("rouge-l", 0.9),
                with_expected("You can return them in 30 days."),
                false,
            ),
            (
                raw(json!({"type": "bleu"})),
                with_expected("You can return them within 30 days."),
                true,
            ),
            (
                raw(json!({"type": "bleu"})),
                with_expected("Shipping takes a week."),
                false,
            ),
            (
                a("bleu", json!("the cat sat on the mat")),
                on("the cat sat on a mat"),
                true,
            ),
        ]);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert!((rouge_l("a b c d", "a c d e") - 0.75).abs() < 1e-9);
        assert!((bleu("same words here", "same words here") - 1.0).abs() < 1e-9);
        assert_eq!(bleu("", "x"), 0.0);
    }

    #[test]
    fn tool_called_and_tool_args_schema() {
        use crate::execute::ToolCall;
        let call = |name: &str, arguments: serde_json::Value| ToolCall {
            name: name.into(),
            arguments,
        };
        let good = [
            call("lookup_order", json!({"order_id": "A1"})),
            call("refund", json!({"amount": 5})),
        ];
        let bad = [
            call("lookup_order", json!({"order_id": "A1"})),
            call("lookup_order", json!({"order_id": 7})),
        ];
        fn with(tool_calls: &[ToolCall]) -> Subject<'_> {
            Subject {
                tool_calls,
                ..Default::default()
            }
        }
        let schema = json!({
            "name": "lookup_order",
            "schema": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}
        });
        check_rows(&[
            (a("tool-called", json!("refund")), with(&good), true),
            (a("tool-called", json!("cancel")), with(&good), false),
            (a("tool-called", json!("refund")), on("refund"), false),
            (a("not-tool-called", json!("cancel")), with(&good), true),
            (a("not-tool-called", json!("refund")), with(&good), false),
            (a("tool-args-schema", schema.clone()), with(&good), true),
            // One call of the tool has arguments the schema refuses.
            (a("tool-args-schema", schema.clone()), with(&bad), false),
            // No call of the tool at all.
            (a("tool-args-schema", schema), on("order A1"), false),
            // `args`: json-path checks on a call's arguments; one matching call is enough.
            (
                a(
                    "tool-called",
                    json!({"name": "lookup_order", "args": {"path": "$.order_id", "equals": 7}}),
                ),
                with(&bad),
                true,
            ),
            (
                a(
                    "tool-called",
                    json!({"name": "refund", "args": [{"path": "$.amount", "equals": 6}]}),
                ),
                with(&good),
                false,
            ),
            (
                a(
                    "not-tool-called",
                    json!({"name": "refund", "args": {"path": "$.amount", "equals": 6}}),
                ),
                with(&good),
                true,
            ),
        ]);
        let out = evaluate(
            &[a(
                "tool-called",
                json!({"name": "refund", "args": {"path": "$.amount", "equals": 6}}),
            )],
            None,
            &with(&good),
        );
        assert!(
            out.failures[0].contains("`refund` was called, but `$.amount` is 5, not 6"),
            "{:?}",
            out.failures
        );
        let out = evaluate(&[a("tool-called", json!("cancel"))], None, &with(&good));
        assert_eq!(
            out.failures,
            vec!["tool-called \"cancel\": called `lookup_order`, `refund`".to_string()]
        );
    }

    #[test]
    fn word_count_latency_and_cost() {
        let wc = |v: serde_json::Value| raw(v);
        let timed = |latency_ms, cost_usd| Subject {
            output: "ok",
            latency_ms,
            cost_usd,
            ..Default::default()
        };
        check_rows(&[
            (
                wc(json!({"type": "word-count", "min": 2, "max": 3})),
                on("one two"),
                true,
            ),
            (
                wc(json!({"type": "word-count", "min": 2, "max": 3})),
                on("one"),
                false,
            ),
            (
                wc(json!({"type": "word-count", "max": 3})),
                on("a b c d"),
                false,
            ),
            (
                wc(json!({"type": "word-count", "value": 2})),
                on(" a\n b "),
                true,
            ),
            (
                wc(json!({"type": "word-count", "value": {"min": 3}})),
                on("a b"),
                false,
            ),
            (
                raw(json!({"type": "latency", "threshold": 1000})),
                timed(999, None),
                true,
            ),
            (
                raw(json!({"type": "latency", "threshold": 1000})),
                timed(1001, None),
                false,
            ),
            (
                raw(json!({"type": "cost", "threshold": 0.01})),
                timed(1, Some(0.002)),
                true,
            ),
            (
                raw(json!({"type": "cost", "threshold": 0.01})),
                timed(1, Some(0.02)),
                false,
            ),
            (
                raw(json!({"type": "cost", "threshold": 0.01})),
                timed(1, None),
                false,
            ),
        ]);
    }

    #[test]
    fn all_must_pass() {
        let asserts = vec![a("contains", json!("a")), a("contains", json!("z"))];
        let out = evaluate(&asserts, None, &on("abc"));
        assert!(!out.pass);
        assert_eq!(out.failures, vec!["contains \"z\": not found"]);
        assert!(evaluate(&[], None, &on("anything")).pass);
    }

    #[test]
    fn weighted_share_against_the_case_threshold() {
        let w = |value: &str, weight: f64| {
            raw(json!({"type": "contains", "value": value, "weight": weight}))
        };
        // Weights 3 (passes) and 1 (fails): a weighted score of 0.75.
        let asserts = vec![w("a", 3.0), w("z", 1.0)];
        assert!(!evaluate(&asserts, None, &on("abc")).pass);
        assert!(evaluate(&asserts, Some(0.75), &on("abc")).pass);
        let out = evaluate(&asserts, Some(0.8), &on("abc"));
        assert!(!out.pass);
        assert_eq!(
            out.failures,
            vec![
                "contains \"z\": not found",
                "weighted score 0.75 is below the case threshold 0.8"
            ]
        );
        // A weight of 0 reports but never fails the case by default.
        let out = evaluate(&[w("a", 1.0), w("z", 0.0)], None, &on("abc"));
        assert!(out.pass);
        assert_eq!(out.failures.len(), 1);
        // Three thirds reach a threshold of 1 despite rounding.
        let thirds = vec![w("a", 0.1), w("b", 0.1), w("c", 0.1)];
        assert!(evaluate(&thirds, Some(1.0), &on("abc")).pass);
        assert!(evaluate(&[w("z", 0.0)], Some(1.0), &on("abc")).pass);
    }
}
