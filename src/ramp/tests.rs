//! Unit tests of `ramp`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

const START: i64 = 1_893_456_000_000;
const HOUR: i64 = 3_600_000;

fn spec(on_failure: OnFailure) -> RampSpec {
    RampSpec {
        to: 0,
        start_ms: START,
        steps: vec![10, 50, 100],
        hold: Duration::from_secs(3600),
        window: Duration::from_secs(60),
        min_requests: 10,
        max_error_rate: Some(0.2),
        max_p99: Some(Duration::from_millis(500)),
        on_failure,
    }
}

fn counters() -> [IntCounter; 2] {
    Gate::ALL.map(|g| IntCounter::new(format!("f_{}", g.as_str()), "h").unwrap())
}

fn ramp(spec: RampSpec, previous: Option<&Ramp>) -> Ramp {
    let sides = [
        Side {
            upstream: 0,
            weight: 0,
        },
        Side {
            upstream: 1,
            weight: 100,
        },
    ];
    let split: SplitNames = Box::new([("users".into(), 0), ("monolith".into(), 100)]);
    let wall = Arc::new(Wall::default());
    Ramp::new("users", &sides, split, spec, wall, previous, counters)
}

fn record(r: &Ramp, at: i64, n: usize, error: bool, latency_ms: u64) {
    for _ in 0..n {
        r.state
            .window
            .record(at, error, Duration::from_millis(latency_ms));
    }
}

#[test]
fn the_first_gate_over_its_limit_rolls_back_once_enough_answered() {
    let r = ramp(spec(OnFailure::Rollback), None);
    let t = START + HOUR + 5_000;
    record(&r, t, 9, true, 1);
    r.judge_at(t, "users", "users");
    assert_eq!(r.status_at(t).state, "ramping", "9 < min_requests");
    record(&r, t, 1, false, 900);
    r.judge_at(t, "users", "users");
    let s = r.status_at(t);
    assert_eq!((s.state, s.percent, s.step), ("rolled_back", 0.0, Some(1)));
    assert_eq!(s.next_step_at, None);
    let f = s.failure.unwrap();
    assert_eq!(
        (f.gate, f.value, f.limit, f.at_ms),
        (Gate::ErrorRate, 0.9, 0.2, t)
    );
    assert_eq!(r.state.failures.each_ref().map(|c| c.get()), [1, 0]);
    assert_eq!(r.layout_now(), &r.rollback);
    // Judged no more: the counter stays at one.
    r.judge_at(t + 1000, "users", "users");
    assert_eq!(r.state.failures[0].get(), 1);
}

#[test]
fn hold_keeps_the_step_and_p99_is_judged_in_seconds() {
    let r = ramp(spec(OnFailure::Hold), None);
    let t = START + 1_000;
    record(&r, t, 20, false, 700);
    r.judge_at(t, "users", "users");
    let s = r.status_at(t + 10 * HOUR);
    assert_eq!((s.state, s.percent, s.step), ("held", 10.0, Some(0)));
    let f = s.failure.unwrap();
    assert_eq!((f.gate, f.limit), (Gate::P99, 0.5));
    assert!((0.7..0.8).contains(&f.value), "{f:?}");
    assert_eq!(r.layout_now(), &r.steps[0]);
}

#[test]
fn gates_are_judged_only_while_ramping() {
    let r = ramp(spec(OnFailure::Rollback), None);
    for t in [START - 1, START + 3 * HOUR] {
        record(&r, t, 50, true, 1);
        r.judge_at(t, "users", "users");
        assert_ne!(r.status_at(t).state, "rolled_back");
    }
}

#[test]
fn a_recompile_keeps_the_verdict_of_the_same_ramp_only() {
    let first = ramp(spec(OnFailure::Rollback), None);
    record(&first, START, 10, true, 1);
    first.judge_at(START, "users", "users");
    let same = ramp(spec(OnFailure::Rollback), Some(&first));
    assert!(same.same_ramp(&first));
    assert_eq!(same.status_at(START).state, "rolled_back");
    let mut changed_spec = spec(OnFailure::Rollback);
    changed_spec.min_requests = 11;
    let changed = ramp(changed_spec, Some(&same));
    assert!(!changed.same_ramp(&same));
    assert_eq!(changed.status_at(START).state, "ramping");
}

#[test]
fn shares_and_percent_follow_the_schedule() {
    let r = ramp(spec(OnFailure::Rollback), None);
    let s = r.status_at(START - 1);
    assert_eq!(
        (s.state, s.percent, s.step, s.next_step_at),
        ("scheduled", 0.0, None, Some(START))
    );
    let s = r.status_at(START + HOUR);
    assert_eq!(
        (s.state, s.percent, s.next_step_at),
        ("ramping", 50.0, Some(START + 2 * HOUR))
    );
    let s = r.status_at(START + 3 * HOUR);
    assert_eq!(
        (s.state, s.percent, s.step, s.next_step_at),
        ("complete", 100.0, Some(2), None)
    );
    assert_eq!(number(12.5), json!(12.5));
    assert_eq!(number(50.0).to_string(), "50");
}
