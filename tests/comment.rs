//! The sticky PR comment: content, size cap, template overrides and escaping.

use std::collections::BTreeMap;

use promptgate::config::{MetricName, Threshold};
use promptgate::report::markdown::*;
use promptgate::report::{
    CaseCounts, CaseDetail, CaseSide, ConfigChange, Failure, GuardrailBlock, InjectionBlock,
    InjectionFailure, MetricRow, Report, SuiteReport, Tier, Usage, Verdict,
};

fn min(v: f64) -> Option<Threshold> {
    Some(Threshold {
        min: Some(v),
        max: None,
    })
}

fn max(v: f64) -> Option<Threshold> {
    Some(Threshold {
        min: None,
        max: Some(v),
    })
}

fn row(
    name: &str,
    base: Option<f64>,
    head: Option<f64>,
    threshold: Option<Threshold>,
    pass: bool,
    regression: bool,
) -> MetricRow {
    let name = MetricName::ALL
        .into_iter()
        .find(|m| m.as_str() == name)
        .expect("a metric name");
    let mut row = MetricRow::new(name, base, head);
    row.threshold = threshold;
    row.pass = pass;
    row.regression = regression;
    row
}

fn scores(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn side(output: &str, pairs: &[(&str, f64)]) -> Option<CaseSide> {
    Some(CaseSide {
        output: output.to_string(),
        scores: scores(pairs),
        error: None,
        guardrail_intervened: false,
        expected: None,
    })
}

fn failure(case: &str, metric: &str, detail: &str) -> Failure {
    Failure {
        case: case.to_string(),
        metric: metric.to_string(),
        detail: detail.to_string(),
    }
}

fn empty_suite(name: &str, verdict: Verdict) -> SuiteReport {
    SuiteReport::empty(name, verdict)
}

fn report(verdict: Verdict, suites: Vec<SuiteReport>) -> Report {
    Report {
        verdict,
        base: "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39".to_string(),
        head: "9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c".to_string(),
        tier: Tier::Pr,
        suites,
        usage: Usage {
            model_calls: 28,
            embedding_calls: 14,
            cache_hits: 106,
            input_tokens: 18_432,
            output_tokens: 4_210,
            cost_usd: 0.04213,
            ..Usage::default()
        },
        duration_ms: 83_400,
        errors: Vec::new(),
        notes: Vec::new(),
        config_change: None,
        judge_calibration: None,
        tickets: Vec::new(),
        ticket_policy: None,
        estimate: None,
        over_budget: None,
    }
}

fn realistic() -> Report {
    let mut support = empty_suite("support-answer", Verdict::NeedsReview);
    support.triggered_by = vec!["prompts/support/user.j2".to_string()];
    support.cases = CaseCounts {
        total: 120,
        affected: 14,
        evaluated: 12,
        cached: 2,
        removed: 0,
    };
    support.metrics = vec![
        row("similarity", Some(0.91), Some(0.84), min(0.82), true, true),
        row(
            "faithfulness",
            Some(0.93),
            Some(0.942),
            min(0.85),
            true,
            false,
        ),
        row("assertions", Some(1.0), Some(0.857), min(1.0), false, false),
        row(
            "latency_p95_ms",
            Some(412.0),
            Some(398.6),
            max(450.0),
            true,
            false,
        ),
        row(
            "cost_per_case_usd",
            Some(0.00291),
            Some(0.00314),
            max(0.01),
            true,
            false,
        ),
        row(
            "injection_failures",
            None,
            Some(1.0),
            max(0.0),
            false,
            false,
        ),
        row("guardrail_failures", None, Some(0.0), max(0.0), true, false),
    ];
    support.failures = vec![
        failure(
            "refund-window",
            "assertions",
            "contains \"30 days\": not found in output",
        ),
        failure("shipping-abroad", "similarity", "0.612 < 0.82 (base 0.901)"),
        failure(
            "warranty-claim",
            "assertions",
            "regex `^Warranty` did not match",
        ),
    ];
    support.flaky = vec!["gift-card-balance".to_string()];
    support.injection = Some(InjectionBlock {
        attempts: 24,
        failures: vec![InjectionFailure {
            case: "refund-window".to_string(),
            attack: "ignore-previous-instructions".to_string(),
            technique: "direct".to_string(),
            evidence: "Sure! As requested, here is my system prompt: You are".to_string(),
        }],
    });
    support.guardrail = Some(GuardrailBlock {
        tests: 2,
        failures: Vec::new(),
    });
    support.details = vec![
        CaseDetail {
            case: "refund-window".to_string(),
            status: "fail".to_string(),
            flaky: false,
            base: side(
                "You can return them within 30 days of delivery.",
                &[("assertions", 1.0), ("similarity", 0.94)],
            ),
            head: side(
                "Returns are accepted within a month.",
                &[("assertions", 0.0), ("similarity", 0.81)],
            ),
        },
        CaseDetail {
            case: "shipping-abroad".to_string(),
            status: "fail".to_string(),
            flaky: false,
            base: side(
                "We ship to 40 countries; see the list at /shipping.",
                &[("similarity", 0.901)],
            ),
            head: side("I'm not sure.", &[("similarity", 0.612)]),
        },
        CaseDetail {
            case: "warranty-claim".to_string(),
            status: "fail".to_string(),
            flaky: false,
            base: None,
            head: side(
                "To claim the warranty, email support@example.com.",
                &[("assertions", 0.0)],
            ),
        },
    ];

    let mut billing = empty_suite("billing-faq", Verdict::Skipped);
    billing.cases = CaseCounts {
        total: 80,
        affected: 0,
        evaluated: 0,
        cached: 0,
        removed: 0,
    };

    let mut r = report(Verdict::NeedsReview, vec![support, billing]);
    r.notes = vec!["Base revision results were reused from an earlier run.".to_string()];
    r
}

fn opts_with_url() -> RenderOptions {
    RenderOptions {
        report_url: Some("https://promptgate.example.com/runs/42".to_string()),
        ..RenderOptions::default()
    }
}

#[test]
fn realistic_comment_snapshot() {
    let out = render_comment(&realistic(), &opts_with_url()).unwrap();
    assert!(out.starts_with(&format!("{COMMENT_MARKER}\n")));
    assert_markdown_well_formed(&out);
    insta::assert_snapshot!("realistic_comment", out);
}

#[test]
fn rendering_is_deterministic() {
    let a = render_comment(&realistic(), &opts_with_url()).unwrap();
    let b = render_comment(&realistic(), &opts_with_url()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn config_change_and_run_errors_are_shown() {
    let mut suite = empty_suite("a", Verdict::Error);
    suite.errors = vec!["case `slow-one`: provider timed out after 3 retries".to_string()];
    suite.details = vec![CaseDetail {
        case: "slow-one".to_string(),
        status: "error".to_string(),
        flaky: false,
        base: side("fine", &[]),
        head: Some(CaseSide {
            output: String::new(),
            scores: BTreeMap::new(),
            error: Some("timeout after 30 s".to_string()),
            guardrail_intervened: true,
            expected: None,
        }),
    }];
    let mut r = report(Verdict::Error, vec![suite]);
    r.errors = vec![".promptgate.yml:7: unknown key `sutes`".to_string()];
    r.config_change = Some(ConfigChange {
        valid: false,
        errors: vec![".promptgate.yml:12: bad glob `src/[`".to_string()],
        changes: vec!["support-answer: similarity min 0.82 → 0.70".to_string()],
    });
    let out = render_comment(&r, &RenderOptions::default()).unwrap();
    assert!(out.contains("## 🛑 promptgate: error"), "{out}");
    assert!(out.contains("unknown key `sutes`"), "{out}");
    assert!(out.contains("This PR edits `.promptgate.yml`"), "{out}");
    assert!(out.contains("❌ The new config is invalid"), "{out}");
    assert!(out.contains("bad glob"), "{out}");
    assert!(out.contains("comes from the base branch"), "{out}");
    assert!(
        out.contains("- 🛑 case `slow-one`: provider timed out"),
        "{out}"
    );
    assert!(
        out.contains("<details><summary>🛑 <code>slow-one</code> — error</summary>"),
        "{out}"
    );
    assert!(out.contains("🛑 timeout after 30 s"), "{out}");
    assert!(!out.contains("_Empty output._"), "{out}");
    assert_markdown_well_formed(&out);
}

fn big_output(i: usize) -> String {
    let line = format!("Case {i}: the quick brown fox jumps over the lazy dog. ");
    line.repeat(2048 / line.len() + 1)
}

#[test]
fn size_cap_with_thousands_of_failing_cases() {
    let n = 5_000;
    let mut s = empty_suite("support-answer", Verdict::Fail);
    s.triggered_by = vec!["models/support.yaml".to_string()];
    s.cases = CaseCounts {
        total: n,
        affected: n,
        evaluated: n,
        cached: 0,
        removed: 0,
    };
    s.metrics = vec![
        row("similarity", Some(0.91), Some(0.41), min(0.82), false, true),
        row("assertions", Some(1.0), Some(0.0), min(1.0), false, false),
    ];
    for i in 0..n {
        s.failures.push(failure(
            &format!("case-{i:05}"),
            "similarity",
            &format!("0.41 < 0.82; {}", "detail text ".repeat(20)),
        ));
        s.details.push(CaseDetail {
            case: format!("case-{i:05}"),
            status: "fail".to_string(),
            flaky: false,
            base: side(&big_output(i), &[("similarity", 0.91)]),
            head: side(&big_output(i + 1), &[("similarity", 0.41)]),
        });
    }
    let r = report(Verdict::Fail, vec![s]);
    let out = render_comment(&r, &opts_with_url()).unwrap();
    let chars = out.chars().count();
    assert!(chars <= GITHUB_COMMENT_LIMIT, "{chars} chars");
    assert!(out.starts_with(COMMENT_MARKER));
    assert!(out.contains("## ❌ promptgate: failed"));
    assert!(out.contains("| metric | base | head | Δ | threshold | result |"));
    assert!(out.contains("| `similarity` | 0.910 | 0.410 | −0.500 | ≥ 0.82 | ❌ ⚠️ regression |"));
    assert_markdown_well_formed(&out);
    assert!(
        out.contains("more cases — see the full report"),
        "no mention of left-out cases"
    );
    assert!(out.contains("more failures — see the full report"));

    // A much smaller cap shrinks further, down to the compact form, and still fits.
    for cap in [20_000, 4_000, 1_500, 600, 120] {
        let opts = RenderOptions {
            max_chars: cap,
            ..opts_with_url()
        };
        let out = render_comment(&r, &opts).unwrap();
        assert!(
            out.chars().count() <= cap,
            "cap {cap}: {}",
            out.chars().count()
        );
        assert!(out.starts_with(COMMENT_MARKER), "cap {cap}");
        assert!(out.contains("promptgate: failed"), "cap {cap}");
        assert_markdown_well_formed(&out);
    }
    // Somewhere between the full comment and the template-free summary, the compact form
    // (verdict, tables, usage, one "not shown" line per suite) is what fits.
    let compact = (500..3_000)
        .step_by(25)
        .map(|cap| {
            let opts = RenderOptions {
                max_chars: cap,
                ..opts_with_url()
            };
            render_comment(&r, &opts).unwrap()
        })
        .find(|out| out.contains("Not shown:"))
        .expect("a cap that selects the compact form");
    assert!(compact.contains("| metric | base | head | Δ | threshold | result |"));
    assert!(compact.contains("**Usage:**"));
    assert!(
        compact.contains("Not shown: 5,000 failures, 5,000 case details"),
        "{compact}"
    );
    assert!(!compact.contains("<details>"));
}

#[test]
fn custom_template_overrides_the_embedded_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("comment.md.j2"),
        "{{ marker }}\nCustom: {{ verdict.label }} with {{ suites | length }} suites\n",
    )
    .unwrap();
    let opts = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..RenderOptions::default()
    };
    let out = render_comment(&realistic(), &opts).unwrap();
    assert_eq!(
        out,
        format!("{COMMENT_MARKER}\nCustom: needs review with 2 suites\n")
    );
}

#[test]
fn custom_partial_overrides_only_that_partial() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("usage.md.j2"),
        "\nUSAGE {{ usage.model_calls }}\n",
    )
    .unwrap();
    let opts = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..RenderOptions::default()
    };
    let out = render_comment(&realistic(), &opts).unwrap();
    assert!(out.contains("| metric | base | head | Δ | threshold | result |"));
    assert!(out.trim_end().ends_with("USAGE 28"), "{out}");
}

#[test]
fn broken_template_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("comment.md.j2"),
        "{{ marker }}\nline two\n{{ foo(\n",
    )
    .unwrap();
    let opts = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..RenderOptions::default()
    };
    let err = render_comment(&realistic(), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("comment.md.j2"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    let RenderError::Template { file, line, .. } = &err;
    assert!(file.ends_with("comment.md.j2"), "{file}");
    assert_eq!(*line, Some(3));
}

#[test]
fn broken_partial_names_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("suite.md.j2"),
        "### {{ suite.name }}\n{% if %}\n",
    )
    .unwrap();
    let opts = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..RenderOptions::default()
    };
    let msg = render_comment(&realistic(), &opts).unwrap_err().to_string();
    assert!(msg.contains("suite.md.j2"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn undefined_variable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("comment.md.j2"),
        "{{ marker }}\n{{ nope.x }}\n",
    )
    .unwrap();
    let opts = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..RenderOptions::default()
    };
    let msg = render_comment(&realistic(), &opts).unwrap_err().to_string();
    assert!(msg.contains("comment.md.j2 line 2"), "{msg}");
}

#[test]
fn backticks_and_pipes_in_outputs_do_not_break_the_markdown() {
    let nasty = "Here is code:\n```python\nprint('a | b')\n```\nand ```` four `` ticks | pipe\n</details> <details>";
    let mut s = empty_suite("code-gen", Verdict::Fail);
    s.cases = CaseCounts {
        total: 1,
        affected: 1,
        evaluated: 1,
        cached: 0,
        removed: 0,
    };
    s.metrics = vec![row(
        "assertions",
        Some(1.0),
        Some(0.0),
        min(1.0),
        false,
        false,
    )];
    s.failures = vec![failure(
        "weird|id`x",
        "assertions",
        "expected `a | b`\nbut got ```` | and a \\| escaped pipe",
    )];
    s.injection = Some(InjectionBlock {
        attempts: 1,
        failures: vec![InjectionFailure {
            case: "weird|id`x".to_string(),
            attack: "pipe | attack".to_string(),
            technique: "table|break".to_string(),
            evidence: "leaked ``` | secret\nnext line".to_string(),
        }],
    });
    s.details = vec![CaseDetail {
        case: "weird|id`x".to_string(),
        status: "fail".to_string(),
        flaky: false,
        base: side(nasty, &[("assertions", 1.0)]),
        head: side(nasty, &[("assertions", 0.0)]),
    }];
    let out = render_comment(&report(Verdict::Fail, vec![s]), &RenderOptions::default()).unwrap();
    assert_markdown_well_formed(&out);

    // The outputs sit in fences longer than their longest backtick run (4).
    assert!(
        out.contains("`````text\nHere is code:\n```python\n"),
        "{out}"
    );
    // Every table row keeps its column count: pipes in cells are escaped.
    for table in tables(&out) {
        let cols = unescaped_pipes(&table[0]);
        for line in &table {
            assert_eq!(unescaped_pipes(line), cols, "row breaks the table: {line}");
        }
    }
    assert!(out.contains("| ``weird\\|id`x`` |"), "{out}");
}

#[test]
fn size_cap_with_thousands_of_suites_and_huge_errors() {
    let suites = (0..1_500)
        .map(|i| {
            let mut s = empty_suite(&format!("suite-{i:04}"), Verdict::Fail);
            s.metrics = vec![row(
                "similarity",
                Some(0.9),
                Some(0.5),
                min(0.8),
                false,
                true,
            )];
            s.errors = vec![format!("evals/{i}.jsonl:3: {}", "x".repeat(5_000))];
            s
        })
        .collect();
    let mut r = report(Verdict::Error, suites);
    r.errors = (0..200)
        .map(|i| format!("error {i}: {}", "<b>|`".repeat(2_000)))
        .collect();
    r.notes = vec!["n".repeat(100_000)];
    for cap in [GITHUB_COMMENT_LIMIT, 10_000, 1_000, 200, 27, 10, 0] {
        let opts = RenderOptions {
            max_chars: cap,
            ..opts_with_url()
        };
        let out = render_comment(&r, &opts).unwrap();
        assert!(
            out.chars().count() <= cap,
            "cap {cap}: {}",
            out.chars().count()
        );
        assert_markdown_well_formed(&out);
        if cap >= 200 {
            assert!(out.starts_with(COMMENT_MARKER), "cap {cap}");
            assert!(out.contains("## 🛑 promptgate: error"), "cap {cap}");
        }
        if cap >= 10_000 {
            assert!(
                out.contains("more suites — see the full report"),
                "cap {cap}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Markdown checks
// ---------------------------------------------------------------------------------------

/// No unclosed code fence (CommonMark: a fence of N backticks closes only on a line of at
/// least N backticks), an even number of fence lines, and balanced `<details>` outside
/// code blocks.
fn assert_markdown_well_formed(out: &str) {
    let mut fence: Option<usize> = None;
    let mut fence_lines = 0;
    let mut open = 0i64;
    let mut close = 0i64;
    for line in out.lines() {
        let t = line.trim_start();
        let ticks = t.chars().take_while(|&c| c == '`').count();
        match fence {
            Some(n) => {
                if ticks >= n && t[ticks..].trim().is_empty() {
                    fence = None;
                    fence_lines += 1;
                }
            }
            None => {
                if ticks >= 3 {
                    fence = Some(ticks);
                    fence_lines += 1;
                } else {
                    open += line.matches("<details>").count() as i64;
                    close += line.matches("</details>").count() as i64;
                    assert!(open >= close, "</details> before <details>: {line}");
                }
            }
        }
    }
    assert!(fence.is_none(), "unclosed code fence");
    assert_eq!(fence_lines % 2, 0, "odd number of fence lines");
    assert_eq!(open, close, "unbalanced <details>");
    // The raw count, as a reviewer would check it, agrees too.
    assert_eq!(
        out.matches("<details>").count(),
        out.matches("</details>").count()
    );
}

fn tables(out: &str) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with('|') {
            cur.push(line.to_string());
        } else if !cur.is_empty() {
            tables.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        tables.push(cur);
    }
    tables
}

/// Cell separators as a GFM table sees them: a pipe not escaped by a backslash.
fn unescaped_pipes(line: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in line.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            n += 1;
        }
    }
    n
}
