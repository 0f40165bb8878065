//! Latency over time as a self-contained inline SVG (no script, no external style),
//! small enough to embed in a report: all dots go in one `<path>`.

use std::fmt::Write;

use super::LoadOutcome;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;
const TICKS: f64 = 5.0;

/// A 1, 2 or 5 × 10^k step that cuts `span` into about [`TICKS`] intervals.
fn nice_step(span: f64) -> f64 {
    let raw = (span / TICKS).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A tick label: an integer when it is one, else up to three decimals.
fn label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Plots each timeline point (a dot for an answer, a cross for an error) with
/// latency in ms up and time in seconds across, and a dashed line at `gate_ms`.
pub fn svg_plot(outcome: &LoadOutcome, gate_ms: Option<u64>) -> String {
    let planned_s = if outcome.offered_rps > 0.0 {
        outcome.requests as f64 / outcome.offered_rps
    } else {
        0.0
    };
    let last_s = outcome
        .timeline
        .iter()
        .map(|p| p.t_ms as f64 / 1000.0)
        .fold(0.0, f64::max);
    let x_span = planned_s.max(last_s).max(1e-3);
    let x_step = nice_step(x_span);
    let x_top = (x_span / x_step).ceil() * x_step;

    let highest = outcome
        .timeline
        .iter()
        .map(|p| p.latency_ms)
        .chain(gate_ms)
        .max()
        .unwrap_or(0) as f64;
    let y_span = (highest * 1.05).max(1.0);
    let y_step = nice_step(y_span).max(1.0);
    let y_top = (y_span / y_step).ceil() * y_step;

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |s: f64| LEFT + s / x_top * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / y_top * plot_h;

    let mut svg = String::with_capacity(16 * 1024);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11" role="img"><title>Latency over time at {} req/s offered</title>"##,
        label(outcome.offered_rps)
    );
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>"##
    );

    // Grid and tick labels.
    let mut grid = String::new();
    let mut labels = String::new();
    let mut v = 0.0;
    while v <= y_top + y_step * 1e-6 {
        let py = y(v);
        let _ = write!(grid, "M{LEFT} {py:.1}h{plot_w}");
        let _ = write!(
            labels,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 4.0,
            py + 4.0,
            label(v)
        );
        v += y_step;
    }
    let mut s = 0.0;
    while s <= x_top + x_step * 1e-6 {
        let px = x(s);
        let _ = write!(grid, "M{px:.1} {TOP}v{plot_h}");
        let _ = write!(
            labels,
            r##"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h + 14.0,
            label(s)
        );
        s += x_step;
    }
    let _ = write!(
        svg,
        r##"<path d="{grid}" stroke="#eee" fill="none"/>{labels}"##
    );
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0
    );
    let _ = write!(
        svg,
        r##"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">latency (ms)</text>"##,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // Points: a round dot per answer (a zero-length stroke), a cross per error.
    let mut dots = String::new();
    let mut crosses = String::new();
    for p in &outcome.timeline {
        let px = x(p.t_ms as f64 / 1000.0);
        let py = y(p.latency_ms as f64);
        if p.ok {
            let _ = write!(dots, "M{px:.1} {py:.1}h0");
        } else {
            let _ = write!(crosses, "M{:.1} {:.1}l6 6m0-6l-6 6", px - 3.0, py - 3.0);
        }
    }
    if !dots.is_empty() {
        let _ = write!(
            svg,
            r##"<path d="{dots}" stroke="#2b6cb0" stroke-width="4" stroke-linecap="round" fill="none"/>"##
        );
    }
    if !crosses.is_empty() {
        let _ = write!(
            svg,
            r##"<path d="{crosses}" stroke="#c53030" stroke-width="1.5" fill="none"/>"##
        );
    }

    if let Some(gate) = gate_ms {
        let py = y(gate as f64);
        let _ = write!(
            svg,
            r##"<line class="gate" x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#dd6b20" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#dd6b20">gate {gate} ms</text>"##,
            LEFT + plot_w,
            LEFT + plot_w - 4.0,
            py - 4.0
        );
    }

    // Legend above the plot.
    let _ = write!(
        svg,
        r##"<path d="M{LEFT} 10h0" stroke="#2b6cb0" stroke-width="4" stroke-linecap="round"/><text x="{:.1}" y="14">answered</text><path d="M{:.1} 7l6 6m0-6l-6 6" stroke="#c53030" stroke-width="1.5"/><text x="{:.1}" y="14">error</text>"##,
        LEFT + 7.0,
        LEFT + 70.0,
        LEFT + 80.0
    );
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{ErrorCounts, LoadOutcome, ScheduleLag, TimelinePoint};

    fn outcome(points: u64) -> LoadOutcome {
        LoadOutcome {
            offered_rps: 50.0,
            achieved_rps: 45.0,
            requests: 500,
            latency_ms: None,
            errors: ErrorCounts::default(),
            error_rate: 0.0,
            peak_in_flight: 3,
            timeline: (0..points)
                .map(|i| TimelinePoint {
                    t_ms: i * 20,
                    latency_ms: 100 + (i * 37) % 1700,
                    ok: i % 10 != 9,
                })
                .collect(),
            schedule_lag_us: ScheduleLag::default(),
        }
    }

    #[test]
    fn plot_has_points_axes_and_the_gate_line() {
        let svg = svg_plot(&outcome(500), Some(1200));
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains(r#"class="gate""#));
        assert!(svg.contains("stroke-dasharray"));
        assert!(svg.contains("gate 1200 ms"));
        assert!(svg.contains("latency (ms)") && svg.contains("time (s)"));
        // 450 answers as dots, 50 errors as crosses.
        assert_eq!(
            svg.matches("h0").count(),
            450 + 1,
            "one more dot in the legend"
        );
        assert_eq!(svg.matches("l6 6m0-6l-6 6").count(), 50 + 1);
        // 10 s of arrivals: ticks every 2 s; latency up to 1.8 s: ticks every 500 ms.
        assert!(svg.contains(">10</text>") && svg.contains(">2000</text>"));
        assert!(!svg.contains("<script"));
        assert!(svg.len() < 20 * 1024, "{} bytes", svg.len());
        // The gate line sits at 1200 ms on a 0..2000 ms axis of 200 px from y = 20.
        assert!(svg.contains(r#"y1="100.0""#), "{svg}");
    }

    #[test]
    fn plot_without_gate_or_points_is_still_a_plot() {
        let svg = svg_plot(&outcome(0), None);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("stroke-dasharray"));
        assert!(!svg.contains("gate"));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(2100.0), 500.0);
        assert_eq!(nice_step(0.9), 0.2);
        assert_eq!(label(0.2 * 3.0), "0.6");
        assert_eq!(label(1000.0), "1000");
    }
}
