//! The generator under paused time: sleeps advance the clock instantly, so these
//! runs are deterministic and take milliseconds of real time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::*;

fn plan(rate: f64, secs: f64, max_in_flight: usize, timeout_ms: u64) -> LoadPlan {
    LoadPlan::new(
        rate,
        Duration::from_secs_f64(secs),
        max_in_flight,
        Duration::from_millis(timeout_ms),
    )
    .expect("valid plan")
}

/// Answers after a fixed delay (none by default) and tracks its own concurrency;
/// optionally fails every n-th request with a kind.
#[derive(Default)]
struct Fixed {
    delay: Duration,
    fail_every: Option<(usize, LoadErrorKind)>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl LoadTarget for Fixed {
    async fn send(&self, index: usize) -> Result<(), LoadErrorKind> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match self.fail_every {
            Some((n, kind)) if index % n == n - 1 => Err(kind),
            _ => Ok(()),
        }
    }
}

/// Latency grows with the requests it is already serving: 10 ms × in flight
/// (including this one), like a server with a queue.
#[derive(Default)]
struct Queueing {
    in_flight: AtomicUsize,
}

#[async_trait]
impl LoadTarget for Queueing {
    async fn send(&self, _index: usize) -> Result<(), LoadErrorKind> {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(10 * n as u64)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn fast_target_gets_the_offered_rate_without_errors() {
    let target = Arc::new(Fixed::default());
    let out = run(&plan(50.0, 2.0, 16, 1_000), target.clone()).await;
    assert_eq!(out.requests, 100);
    assert_eq!(target.calls.load(Ordering::SeqCst), 100);
    assert_eq!(out.offered_rps, 50.0);
    assert!(
        (out.achieved_rps - 50.0).abs() <= 2.5,
        "achieved {}",
        out.achieved_rps
    );
    assert_eq!(out.errors, ErrorCounts::default());
    assert_eq!(out.error_rate, 0.0);
    let lat = out.latency_ms.expect("latencies");
    assert_eq!((lat.p50, lat.p99, lat.max), (0, 0, 0));
    // 100 arrivals, under the 500-point cap: every one is in the timeline, in order,
    // 20 ms apart.
    assert_eq!(out.timeline.len(), 100);
    assert_eq!(out.timeline[0].t_ms, 0);
    assert_eq!(out.timeline[99].t_ms, 1_980);
    assert!(out.timeline.iter().all(|p| p.ok));
}

#[tokio::test(start_paused = true)]
async fn arrivals_follow_the_clock_not_the_completions() {
    let target = Arc::new(Fixed {
        delay: Duration::from_secs(1),
        ..Fixed::default()
    });
    let started = tokio::time::Instant::now();
    let out = run(&plan(20.0, 2.0, 100, 5_000), target.clone()).await;
    assert_eq!(out.requests, 40);
    assert_eq!(out.errors.total(), 0);
    // On schedule: a closed loop would have sent its next request only after 1 s.
    assert!(
        out.schedule_lag_us.max < 5_000,
        "lag {:?}",
        out.schedule_lag_us
    );
    // Little's law: 20 rps × 1 s ≈ 20 requests in flight at once, seen by the target
    // as by the generator.
    let peak = target.peak.load(Ordering::SeqCst);
    assert!((19..=21).contains(&peak), "target peak {peak}");
    assert!(
        (19..=21).contains(&out.peak_in_flight),
        "generator peak {}",
        out.peak_in_flight
    );
    let lat = out.latency_ms.expect("latencies");
    assert!(
        (999..=1_001).contains(&lat.p50) && (999..=1_001).contains(&lat.max),
        "{lat:?}"
    );
    // Last arrival at 1.95 s, answered 1 s later: the run waits for it.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_950) && took < Duration::from_millis(3_000),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn queueing_target_shows_a_higher_p95() {
    let fast = run(
        &plan(200.0, 2.0, 1_000, 10_000),
        Arc::new(Fixed {
            delay: Duration::from_millis(10),
            ..Fixed::default()
        }),
    )
    .await;
    let queueing = run(
        &plan(200.0, 2.0, 1_000, 10_000),
        Arc::new(Queueing::default()),
    )
    .await;
    let fast_p95 = fast.latency_ms.expect("fast").p95;
    let queue = queueing.latency_ms.expect("queueing");
    assert_eq!(fast_p95, 10);
    // 200 rps at 10 ms per request already in flight: each arrival meets about twice
    // as many as the last one left, so latency climbs for the whole run.
    assert!(
        queue.p95 > 10 * fast_p95,
        "{queue:?} vs fast p95 {fast_p95}"
    );
    // Deterministic under paused time: about 1 s at the median, 2 s at the end.
    assert!((1_800..=2_050).contains(&queue.p95), "{queue:?}");
    assert!(queueing.peak_in_flight > 150, "{}", queueing.peak_in_flight);
    assert!(queue.p50 < queue.p95 && queue.p95 <= queue.max, "{queue:?}");
    assert_eq!(queueing.errors.total(), 0);
}

#[tokio::test(start_paused = true)]
async fn throttles_count_as_errors() {
    let target = Arc::new(Fixed {
        fail_every: Some((10, LoadErrorKind::Throttled)),
        ..Fixed::default()
    });
    let out = run(&plan(50.0, 2.0, 16, 1_000), target).await;
    assert_eq!(out.requests, 100);
    assert_eq!(
        out.errors,
        ErrorCounts {
            throttled: 10,
            ..ErrorCounts::default()
        }
    );
    assert!((out.error_rate - 0.1).abs() < 1e-12, "{}", out.error_rate);
    // Only answers count towards the achieved rate.
    assert!(
        (out.achieved_rps - 45.0).abs() < 1e-9,
        "{}",
        out.achieved_rps
    );
    assert_eq!(out.timeline.iter().filter(|p| !p.ok).count(), 10);
}

#[tokio::test(start_paused = true)]
async fn server_errors_count_by_kind() {
    let target = Arc::new(Fixed {
        fail_every: Some((4, LoadErrorKind::Server)),
        ..Fixed::default()
    });
    let out = run(&plan(10.0, 2.0, 4, 1_000), target).await;
    assert_eq!(out.errors.server, 5);
    assert_eq!(out.errors.total(), 5);
    assert!((out.error_rate - 0.25).abs() < 1e-12);
}

#[tokio::test(start_paused = true)]
async fn no_room_is_an_overload_not_a_delay() {
    // 20 rps, 0.99 s each, room for 5: the first 5 arrivals (0..200 ms) go, the next
    // 15 find no room; from 1 s each arrival finds the slot freed 10 ms earlier (5
    // go), then none until 1.99 s, after the last arrival at 1.95 s.
    let target = Arc::new(Fixed {
        delay: Duration::from_millis(990),
        ..Fixed::default()
    });
    let out = run(&plan(20.0, 2.0, 5, 5_000), target.clone()).await;
    assert_eq!(out.requests, 40);
    assert_eq!(target.calls.load(Ordering::SeqCst), 10);
    assert_eq!(out.errors.overload, 30);
    assert_eq!(out.errors.total(), 30);
    assert!((out.error_rate - 0.75).abs() < 1e-12);
    assert!((out.achieved_rps - 5.0).abs() < 1e-9);
    assert_eq!(out.peak_in_flight, 5);
    assert_eq!(target.peak.load(Ordering::SeqCst), 5);
    // Turned-away arrivals still went out on time.
    assert!(out.schedule_lag_us.max < 5_000);
    let overloads: Vec<_> = out.timeline.iter().filter(|p| !p.ok).collect();
    assert_eq!(overloads.len(), 30);
    assert!(overloads.iter().all(|p| p.latency_ms == 0));
}

#[tokio::test(start_paused = true)]
async fn slow_answers_time_out() {
    let target = Arc::new(Fixed {
        delay: Duration::from_secs(2),
        ..Fixed::default()
    });
    let out = run(&plan(10.0, 1.0, 100, 500), target).await;
    assert_eq!(out.requests, 10);
    assert_eq!(out.errors.timeout, 10);
    assert_eq!(out.error_rate, 1.0);
    assert_eq!(out.achieved_rps, 0.0);
    assert_eq!(out.latency_ms, None);
    // A timed-out request is plotted at the timeout.
    assert!(out.timeline.iter().all(|p| !p.ok && p.latency_ms == 500));
}

#[tokio::test(start_paused = true)]
async fn panicking_target_is_a_server_error() {
    struct Panics;
    #[async_trait]
    impl LoadTarget for Panics {
        async fn send(&self, index: usize) -> Result<(), LoadErrorKind> {
            if index == 3 {
                panic!("target bug");
            }
            Ok(())
        }
    }
    let out = run(&plan(10.0, 1.0, 4, 500), Arc::new(Panics)).await;
    assert_eq!(out.requests, 10);
    assert_eq!(out.errors.server, 1);
    assert!((out.achieved_rps - 9.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn timeline_is_sampled_to_at_most_500_points() {
    let out = run(&plan(1_000.0, 1.2, 64, 1_000), Arc::new(Fixed::default())).await;
    assert_eq!(out.requests, 1_200);
    // Every 3rd arrival: 400 points, spread over the whole run.
    assert_eq!(out.timeline.len(), 400);
    assert_eq!(out.timeline.first().map(|p| p.t_ms), Some(0));
    assert_eq!(out.timeline.last().map(|p| p.t_ms), Some(1_197));
    assert!(out.timeline.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
}

#[test]
fn bad_plans_name_the_field() {
    let ok = Duration::from_secs(1);
    let field = |r: Result<LoadPlan, LoadPlanError>| r.map(|_| ()).map_err(|e| e.field);
    assert_eq!(field(LoadPlan::new(0.0, ok, 1, ok)), Err("rate_rps"));
    assert_eq!(field(LoadPlan::new(-3.0, ok, 1, ok)), Err("rate_rps"));
    assert_eq!(field(LoadPlan::new(f64::NAN, ok, 1, ok)), Err("rate_rps"));
    assert_eq!(
        field(LoadPlan::new(f64::INFINITY, ok, 1, ok)),
        Err("rate_rps")
    );
    assert_eq!(
        field(LoadPlan::new(5.0, Duration::ZERO, 1, ok)),
        Err("duration")
    );
    assert_eq!(field(LoadPlan::new(5.0, ok, 0, ok)), Err("max_in_flight"));
    assert_eq!(
        field(LoadPlan::new(5.0, ok, 1, Duration::ZERO)),
        Err("timeout")
    );
    // 0.1 rps for 1 s schedules nothing; 1e9 rps for 1 s is past the cap.
    assert_eq!(field(LoadPlan::new(0.1, ok, 1, ok)), Err("rate_rps"));
    assert_eq!(field(LoadPlan::new(1e9, ok, 1, ok)), Err("rate_rps"));
    let err = LoadPlan::new(5.0, ok, 0, ok).unwrap_err();
    assert_eq!(
        err.to_string(),
        "load plan: max_in_flight must be at least 1"
    );
    let p = LoadPlan::new(2.5, Duration::from_secs(3), 7, ok).expect("valid");
    assert_eq!(p.requests(), 8, "round(7.5)");
    assert_eq!(
        (p.rate_rps(), p.duration(), p.max_in_flight(), p.timeout()),
        (2.5, Duration::from_secs(3), 7, ok)
    );
}

#[test]
fn outcome_serialises_with_snake_case_names_and_round_trips() {
    let out = LoadOutcome {
        offered_rps: 10.0,
        achieved_rps: 9.0,
        requests: 10,
        latency_ms: None,
        errors: ErrorCounts {
            throttled: 1,
            ..ErrorCounts::default()
        },
        error_rate: 0.1,
        peak_in_flight: 2,
        timeline: vec![TimelinePoint {
            t_ms: 0,
            latency_ms: 12,
            ok: true,
        }],
        schedule_lag_us: ScheduleLag {
            p50: 1,
            p99: 2,
            max: 3,
        },
    };
    let json = serde_json::to_value(&out).expect("json");
    assert_eq!(
        json["errors"],
        serde_json::json!({"throttled": 1, "server": 0, "timeout": 0, "overload": 0})
    );
    assert!(json.get("latency_ms").is_none(), "absent when no answer");
    assert_eq!(json["schedule_lag_us"]["max"], 3);
    assert_eq!(json["timeline"][0]["latency_ms"], 12);
    let back: LoadOutcome = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, out);
    assert_eq!(
        serde_json::to_value(LoadErrorKind::Overload).expect("json"),
        "overload"
    );
}
