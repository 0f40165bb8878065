//! Golden datasets: JSON Lines, one case per line (SPEC §2).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Diagnostics};

pub use super::assertion::{Assertion, AssertionKind};

/// One golden case.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub asserts: Vec<Assertion>,
    /// The weighted share of `assert` that must pass (promptfoo's test `threshold`);
    /// absent, every assertion with a weight above 0 must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// 1-based line in the dataset file; not part of the case's content.
    #[serde(skip)]
    pub line: usize,
}

/// A parsed dataset, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pub file: String,
    pub cases: Vec<Case>,
}

/// The longest dataset line: a case's variables are rendered into its prompt, and a
/// few such lines repeated by a template would exhaust the service's memory.
pub const MAX_CASE_LINE_BYTES: usize = 1 << 20;

impl Dataset {
    /// Parses every case (a `.csv` file by its header row, anything else as JSON
    /// Lines), collecting all errors (bad lines, unknown keys, duplicate ids, bad
    /// assertions) rather than stopping at the first.
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::default();
        let cases = if is_csv(file) {
            csv_cases(file, text, &mut diags)
        } else {
            jsonl_cases(file, text, &mut diags)
        };
        let cases = checked(file, cases, &mut diags);
        // Reading and checking are two passes: report in file order.
        diags.0.sort_by_key(|d| d.line);
        if cases.is_empty() && diags.is_empty() {
            // A suite with no cases gates nothing: every metric would be vacuous.
            let how = if is_csv(file) {
                "a header row, then one row per case"
            } else {
                "one JSON object per line"
            };
            diags.push(Diagnostic::new(
                file,
                None,
                format!("the dataset has no cases ({how})"),
            ));
        }
        if diags.is_empty() {
            Ok(Dataset {
                file: file.to_string(),
                cases,
            })
        } else {
            Err(diags)
        }
    }

    /// Merges a suite's `defaults` into every case (see [`Case::with_defaults`]) and
    /// checks the merged assertions against each case's `expected`, which a default
    /// `rouge-l` without a `value` needs.
    pub fn apply_defaults(&mut self, defaults: &Defaults) -> Diagnostics {
        let mut diags = Diagnostics::default();
        for case in &mut self.cases {
            *case = std::mem::take(case).with_defaults(defaults);
            for a in defaults.asserts.iter() {
                if let Err(msg) = a.compile(case.expected.as_deref()) {
                    diags.push(Diagnostic::new(
                        &self.file,
                        Some(case.line),
                        format!(
                            "case `{}`: from the suite's `defaults.assert`: {msg}",
                            case.id
                        ),
                    ));
                }
            }
        }
        diags
    }
}

/// A suite's `defaults` (promptfoo's `defaultTest`): variables and assertions every
/// case of the suite gets. They are test content, so they reach the keys through each
/// merged case, never as a suite-wide key: a change affects exactly the cases whose
/// rendered messages or assertions it changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub asserts: Vec<Assertion>,
}

impl Case {
    /// The case with `defaults` merged in: a variable the case sets wins over the
    /// default one; the default assertions come after the case's own.
    pub fn with_defaults(mut self, defaults: &Defaults) -> Self {
        for (name, value) in &defaults.vars {
            if !self.vars.contains_key(name) {
                self.vars.insert(name.clone(), value.clone());
            }
        }
        self.asserts.extend(defaults.asserts.iter().cloned());
        self
    }
}

/// A dataset file read as CSV rather than JSON Lines.
pub fn is_csv(file: &str) -> bool {
    file.to_ascii_lowercase().ends_with(".csv")
}

fn too_long(file: &str, line: usize, bytes: usize) -> Diagnostic {
    Diagnostic::new(
        file,
        Some(line),
        format!("the case is {bytes} bytes; the limit is {MAX_CASE_LINE_BYTES} bytes per line"),
    )
}

fn jsonl_cases(file: &str, text: &str, diags: &mut Diagnostics) -> Vec<Case> {
    let mut cases = Vec::new();
    for (line, trimmed) in super::jsonl_lines(text) {
        if trimmed.len() > MAX_CASE_LINE_BYTES {
            diags.push(too_long(file, line, trimmed.len()));
            continue;
        }
        match serde_json::from_str::<Case>(trimmed) {
            Ok(mut case) => {
                case.line = line;
                cases.push(case);
            }
            Err(e) => diags.push(Diagnostic::new(
                file,
                Some(line),
                format!("invalid case: {e}"),
            )),
        }
    }
    cases
}

/// What a CSV column holds.
enum Column {
    Id,
    Expected,
    /// promptfoo's `__expected`, `__expected1`, …: one assertion per cell.
    Assert,
    Var(String),
}

/// Cases from a CSV file: a header row names the columns; `id`, `expected` and
/// `__expected…` are reserved, every other column is a variable (a string). Without an
/// `id` column a row's id is `row-N`, N its 1-based position under the header.
fn csv_cases(file: &str, text: &str, diags: &mut Diagnostics) -> Vec<Case> {
    let records = match super::csv::records(text) {
        Ok(r) => r,
        Err(e) => {
            diags.push(Diagnostic::new(
                file,
                Some(e.line),
                format!("invalid CSV: {}", e.message),
            ));
            return Vec::new();
        }
    };
    let mut rows = records.into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, raw) in header.fields.iter().enumerate() {
        let name = raw.trim();
        let problem = if name.is_empty() {
            Some(format!("column {} has no name in the header row", i + 1))
        } else if let Some(first) = names.insert(name.to_string(), i + 1) {
            Some(format!(
                "column `{name}` appears twice in the header row (columns {first} and {})",
                i + 1
            ))
        } else if name.starts_with("__") && !is_assert_column(name) {
            Some(format!(
                "column `{name}`: of promptfoo's `__` columns only `__expected` (and `__expected1`, `__expected2`, …) is supported"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            diags.push(Diagnostic::new(file, Some(header.line), p));
        }
        columns.push(match name {
            "id" => Column::Id,
            "expected" => Column::Expected,
            n if is_assert_column(n) => Column::Assert,
            n => Column::Var(n.to_string()),
        });
    }
    if !diags.is_empty() {
        return Vec::new();
    }
    let mut cases = Vec::new();
    for (n, row) in rows.enumerate() {
        if row.fields.len() != columns.len() {
            diags.push(Diagnostic::new(
                file,
                Some(row.line),
                format!(
                    "the row has {} fields; the header has {} columns",
                    row.fields.len(),
                    columns.len()
                ),
            ));
            continue;
        }
        let bytes: usize = row.fields.iter().map(String::len).sum();
        if bytes > MAX_CASE_LINE_BYTES {
            diags.push(too_long(file, row.line, bytes));
            continue;
        }
        let mut case = Case {
            id: format!("row-{}", n + 1),
            line: row.line,
            ..Default::default()
        };
        for (column, cell) in columns.iter().zip(row.fields) {
            match column {
                Column::Id => case.id = cell,
                Column::Expected => case.expected = Some(cell).filter(|c| !c.is_empty()),
                Column::Assert if cell.trim().is_empty() => {}
                Column::Assert => match assertion_cell(&cell) {
                    Ok(a) => case.asserts.push(a),
                    Err(msg) => diags.push(Diagnostic::new(
                        file,
                        Some(row.line),
                        format!("case `{}`: `__expected` {msg}", case.id),
                    )),
                },
                Column::Var(name) => {
                    case.vars
                        .insert(name.clone(), serde_json::Value::String(cell));
                }
            }
        }
        cases.push(case);
    }
    cases
}

fn is_assert_column(name: &str) -> bool {
    name.strip_prefix("__expected")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// promptfoo types a CSV cell may name that this version does not run: refused, not
/// read as an `equals` of the whole text.
const UNSUPPORTED_CELL_TYPES: &[&str] = &[
    "javascript",
    "python",
    "fn",
    "eval",
    "grade",
    "model-graded-closedqa",
    "model-graded-factuality",
    "factuality",
    "answer-relevance",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "classifier",
    "moderation",
    "perplexity",
    "webhook",
    "contains-json",
    "is-sql",
    "is-xml",
    "contains-xml",
];

/// One `__expected` cell, promptfoo's way: `TYPE: VALUE` or `TYPE(THRESHOLD): VALUE`
/// for an assertion type, a bare type that takes no value (`is-json`), and anything
/// else an `equals` of the whole cell. `-any`/`-all` types split their value at commas.
fn assertion_cell(cell: &str) -> Result<Assertion, String> {
    let text = cell.trim();
    let (head, rest) = match text.split_once(':') {
        Some((h, r)) => (h.trim(), Some(r.trim())),
        None => (text, None),
    };
    let (name, threshold) = match head.strip_suffix(')').and_then(|h| h.split_once('(')) {
        Some((n, t)) => (n.trim(), Some(t.trim())),
        None => (head, None),
    };
    let known = AssertionKind::ALL.iter().any(|k| k.as_str() == name);
    if !known && UNSUPPORTED_CELL_TYPES.contains(&name) {
        return Err(format!(
            "`{name}` is not supported in a CSV cell; put the case in a JSON Lines dataset"
        ));
    }
    let mut a = serde_json::Map::new();
    if !known {
        a.insert("type".into(), "equals".into());
        a.insert("value".into(), text.into());
    } else {
        a.insert("type".into(), name.into());
        if let Some(t) = threshold {
            let t: f64 = t
                .parse()
                .map_err(|_| format!("`{head}`: the threshold in parentheses is not a number"))?;
            a.insert("threshold".into(), t.into());
        }
        match rest.filter(|r| !r.is_empty()) {
            None => {}
            Some(v) if name.ends_with("-any") || name.ends_with("-all") => {
                let items: Vec<serde_json::Value> = v.split(',').map(|s| s.trim().into()).collect();
                a.insert("value".into(), items.into());
            }
            Some(v) if matches!(name, "json-schema" | "json-path" | "word-count") => {
                let parsed = serde_json::from_str(v)
                    .map_err(|e| format!("`{name}`: the value is not JSON: {e}"))?;
                a.insert("value".into(), parsed);
            }
            Some(v) => {
                a.insert("value".into(), v.into());
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(a)).map_err(|e| e.to_string())
}

/// The checks every case passes however it was written: a non-empty unique id, a
/// threshold in 0..1, assertions that compile. Duplicates are dropped (and reported).
fn checked(file: &str, cases: Vec<Case>, diags: &mut Diagnostics) -> Vec<Case> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        let line = case.line;
        if case.id.trim().is_empty() {
            diags.push(Diagnostic::new(file, Some(line), "case `id` is empty"));
        }
        if let Some(first) = seen.get(&case.id) {
            diags.push(Diagnostic::new(
                file,
                Some(line),
                format!("duplicate case id `{}` (first on line {first})", case.id),
            ));
            continue;
        }
        seen.insert(case.id.clone(), line);
        if let Some(t) = case.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            diags.push(Diagnostic::new(
                file,
                Some(line),
                format!("case `{}`: `threshold` {t} must lie in 0..1", case.id),
            ));
        }
        for a in &case.asserts {
            if let Err(msg) = a.compile(case.expected.as_deref()) {
                diags.push(Diagnostic::new(
                    file,
                    Some(line),
                    format!("case `{}`: {msg}", case.id),
                ));
            }
        }
        out.push(case);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let text = r#"{"id": "refund-window", "vars": {"question": "How long?", "context": "30 days."}, "expected": "Within 30 days.", "assert": [{"type": "contains", "value": "30 days"}]}"#;
        let d = Dataset::parse("evals/g.jsonl", text).unwrap();
        assert_eq!(d.cases.len(), 1);
        assert_eq!(d.cases[0].line, 1);
        assert_eq!(d.cases[0].asserts[0].kind, AssertionKind::Contains);
    }

    #[test]
    fn a_huge_line_is_refused_naming_it() {
        let text = format!(
            "{{\"id\": \"a\"}}\n{{\"id\": \"b\", \"vars\": {{\"ctx\": \"{}\"}}}}\n",
            "x".repeat(MAX_CASE_LINE_BYTES)
        );
        let err = Dataset::parse("evals/g.jsonl", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("evals/g.jsonl:2: the case is"), "{err}");
        assert!(err.contains("the limit is 1048576 bytes per line"), "{err}");
    }

    #[test]
    fn reports_every_bad_line() {
        let text = "{\"id\":\"a\"}\n\n{\"id\":\"a\"}\n{not json\n{\"id\":\"b\",\"varz\":{}}\n{\"id\":\"c\",\"assert\":[{\"type\":\"regex\",\"value\":\"(\"}]}\n";
        let err = Dataset::parse("g.jsonl", text).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![Some(3), Some(4), Some(5), Some(6)], "{err}");
        assert!(err.0[0]
            .message
            .contains("duplicate case id `a` (first on line 1)"));
        assert!(err.0[2].message.contains("varz"));
        assert!(err.0[3].message.contains("regex"));
    }

    #[test]
    fn unknown_assert_type_is_an_error() {
        let err = Dataset::parse(
            "g.jsonl",
            r#"{"id":"a","assert":[{"type":"startswith","value":"x"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("g.jsonl:1: invalid case"),
            "{err}"
        );
    }

    #[test]
    fn new_assertion_types_load_and_bad_ones_name_their_line() {
        let good = r#"{"id":"a","expected":"30 days","threshold":0.5,"assert":[{"type":"contains-any","value":["30","thirty"],"weight":2},{"type":"rouge-l"},{"type":"regex","value":"^yes","flags":"i"},{"type":"json-path","value":{"path":"$.q","equals":"billing"}},{"type":"latency","threshold":2000}]}"#;
        let d = Dataset::parse("g.jsonl", good).unwrap();
        assert_eq!(d.cases[0].threshold, Some(0.5));
        assert_eq!(d.cases[0].asserts[0].weight, Some(2.0));
        let bad = [
            r#"{"id":"a","assert":[{"type":"contains-any","value":"30"}]}"#,
            r#"{"id":"b","assert":[{"type":"regex","value":"(","flags":"i"}]}"#,
            r#"{"id":"c","assert":[{"type":"bleu"}]}"#,
            r#"{"id":"d","threshold":1.5,"assert":[{"type":"contains","value":"x"}]}"#,
            r#"{"id":"e","assert":[{"type":"contains","value":"x","wieght":1}]}"#,
            r#"{"id":"f","assert":[{"type":"starts_with","value":"x"}]}"#,
        ];
        let err = Dataset::parse("g.jsonl", &bad.join("\n")).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|d| d.line).collect();
        assert_eq!(
            lines,
            vec![Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
            "{err}"
        );
        let text = err.to_string();
        for want in [
            "g.jsonl:1: case `a`: assertion `contains-any` needs a `value` that is a non-empty list of strings",
            "g.jsonl:2: case `b`: assertion `regex` does not compile",
            "g.jsonl:3: case `c`: assertion `bleu` needs a string `value` or the case's `expected`",
            "g.jsonl:4: case `d`: `threshold` 1.5 must lie in 0..1",
            "wieght",
            "did you mean `starts-with`?",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
    }

    #[test]
    fn csv_columns_become_vars_and_reserved_columns_do_not() {
        let text = "id,question,expected,__expected,__expected2\nrefund,\"How long, really?\",30 days,contains: 30 days,\"icontains-any: thirty, 30\"\nplain,Hi,,Hello there,\nshaped,Q,,rouge-l(0.4): thirty days,is-json\n";
        let d = Dataset::parse("evals/g.csv", text).unwrap();
        let [a, b, c] = &d.cases[..] else {
            panic!("{:?}", d.cases)
        };
        assert_eq!((a.id.as_str(), a.line), ("refund", 2));
        assert_eq!(a.vars["question"], "How long, really?");
        assert_eq!(a.vars.len(), 1, "id and expected are no vars");
        assert_eq!(a.expected.as_deref(), Some("30 days"));
        let kinds = |c: &Case| {
            c.asserts
                .iter()
                .map(|x| x.kind.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(a), vec!["contains", "icontains-any"]);
        assert_eq!(
            a.asserts[1].value,
            Some(serde_json::json!(["thirty", "30"]))
        );
        assert_eq!(b.expected, None);
        assert_eq!(kinds(b), vec!["equals"], "no prefix: promptfoo's equals");
        assert_eq!(b.asserts[0].value, Some(serde_json::json!("Hello there")));
        assert_eq!(kinds(c), vec!["rouge-l", "is-json"]);
        assert_eq!(c.asserts[0].threshold, Some(0.4));
    }

    #[test]
    fn csv_without_an_id_column_numbers_its_rows() {
        let d = Dataset::parse("g.csv", "question\n\"a\nb\"\nc\n").unwrap();
        let ids: Vec<(&str, usize)> = d.cases.iter().map(|c| (c.id.as_str(), c.line)).collect();
        assert_eq!(ids, vec![("row-1", 2), ("row-2", 4)]);
        assert_eq!(d.cases[0].vars["question"], "a\nb");
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let cases = [
            (
                "id,q\na,1,2\n",
                "g.csv:2: the row has 3 fields; the header has 2 columns",
            ),
            (
                "id,q\na,\"open\n",
                "g.csv:2: invalid CSV: a quoted field is not closed",
            ),
            ("id,q,q\n", "g.csv:1: column `q` appears twice"),
            (
                "id,__prefix\n",
                "g.csv:1: column `__prefix`: of promptfoo's `__` columns only",
            ),
            (
                "id,q\na,1\na,2\n",
                "g.csv:3: duplicate case id `a` (first on line 2)",
            ),
            (
                "id,__expected\na,javascript: output.length < 9\n",
                "g.csv:2: case `a`: `__expected` `javascript` is not supported",
            ),
            (
                "id,__expected\na,regex: (\n",
                "g.csv:2: case `a`: assertion `regex` does not compile",
            ),
            (
                "id,q\n",
                "g.csv: the dataset has no cases (a header row, then one row per case)",
            ),
        ];
        for (text, want) in cases {
            let err = Dataset::parse("g.csv", text).unwrap_err().to_string();
            assert!(err.contains(want), "{want} in:\n{err}");
        }
    }

    #[test]
    fn defaults_merge_under_the_case() {
        let mut d = Dataset::parse(
            "g.jsonl",
            "{\"id\":\"a\",\"vars\":{\"tone\":\"curt\"},\"assert\":[{\"type\":\"contains\",\"value\":\"x\"}]}\n{\"id\":\"b\",\"expected\":\"ref\"}\n",
        )
        .unwrap();
        let defaults: Defaults = serde_json::from_value(serde_json::json!({
            "vars": {"tone": "warm", "lang": "en"},
            "assert": [{"type": "rouge-l"}]
        }))
        .unwrap();
        let err = d.clone().apply_defaults(&defaults).to_string();
        assert!(
            err.contains("g.jsonl:1: case `a`: from the suite's `defaults.assert`: assertion `rouge-l` needs"),
            "a has no `expected` for the default rouge-l: {err}"
        );
        let defaults = Defaults {
            asserts: vec![serde_json::from_value(serde_json::json!({"type": "is-json"})).unwrap()],
            ..defaults
        };
        assert!(d.apply_defaults(&defaults).is_empty());
        let [a, b] = &d.cases[..] else { panic!() };
        assert_eq!(a.vars["tone"], "curt", "the case's own var wins");
        assert_eq!(a.vars["lang"], "en");
        assert_eq!(b.vars["tone"], "warm");
        let kinds: Vec<&str> = a.asserts.iter().map(|x| x.kind.as_str()).collect();
        assert_eq!(kinds, vec!["contains", "is-json"], "defaults come after");
    }
}
