//! Unit tests of `config::ramp`, in a file of their own so the module's
//! source reads as the code it is.

use std::time::Duration;

use super::*;

// === validation: every rule of SPEC §11, each at its file:line:col ===

/// Lines 1-8: listen, admin and upstreams `monolith` and `users`; the
/// route opens on line 9, its ramp section on line 13 (`to` on 14).
fn file(route: &str, ramp: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [upstreams.monolith]\ntargets = [\"http://127.0.0.1:8000\"]\n\
             [upstreams.users]\ntargets = [\"http://127.0.0.1:9001\"]\n\
             [[routes]]\nname = \"users\"\nprefix = \"/api/users\"\n{route}\n\
             [routes.ramp]\n{ramp}\n"
    )
}

const SPLIT: &str = "split = [{ to = \"users\", weight = 0 }, { to = \"monolith\", weight = 100 }]";

fn ramp(lines: &[&str]) -> String {
    file(SPLIT, &lines.join("\n"))
}

const TO: &str = "to = \"users\"";
const START: &str = "start = \"2026-12-01T09:00:00Z\"";
const STEPS: &str = "steps = [1, 5, 25, 50, 100]";
const HOLD: &str = "hold = \"10m\"";

/// Every error as `line:col: key: message`.
fn errors(text: &str) -> Vec<String> {
    match super::super::load_str(text, std::path::Path::new("f.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e
            .messages
            .iter()
            .map(|m| m.strip_prefix("f.toml:").unwrap_or(m).to_string())
            .collect(),
    }
}

fn one_error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all[0].clone()
}

#[test]
fn a_full_ramp_reads_with_its_defaults() {
    let loaded = super::super::load_str(
        &ramp(&[TO, START, STEPS, HOLD]),
        std::path::Path::new("f.toml"),
    )
    .unwrap();
    let spec = loaded.config.routes[0].ramp.clone().unwrap();
    assert_eq!(spec.to, 0);
    assert_eq!(spec.start_ms, 1_796_115_600_000);
    assert_eq!(spec.steps, [1, 5, 25, 50, 100]);
    assert_eq!(spec.hold, Duration::from_secs(600));
    assert_eq!(spec.window, Duration::from_secs(60));
    assert_eq!(spec.min_requests, 100);
    assert_eq!((spec.max_error_rate, spec.max_p99), (None, None));
    assert_eq!(spec.on_failure, OnFailure::Rollback);
    // `to` at weight 0 is how a ramp starts: no weight-0 warning for it.
    assert!(
        loaded.warnings.iter().all(|w| !w.contains("weight 0")),
        "{:?}",
        loaded.warnings
    );
    let text = ramp(&[
        TO,
        "start = \"2026-12-01T10:00:00+01:00\"",
        STEPS,
        HOLD,
        "window = \"30s\"",
        "min_requests = 5",
        "max_error_rate = 1",
        "max_p99 = \"800ms\"",
        "on_failure = \"hold\"",
    ]);
    let loaded = super::super::load_str(&text, std::path::Path::new("f.toml")).unwrap();
    let spec = loaded.config.routes[0].ramp.clone().unwrap();
    assert_eq!(spec.start_ms, 1_796_115_600_000);
    assert_eq!(spec.window, Duration::from_secs(30));
    assert_eq!(spec.min_requests, 5);
    assert_eq!(spec.max_error_rate, Some(1.0));
    assert_eq!(spec.max_p99, Some(Duration::from_millis(800)));
    assert_eq!(spec.on_failure, OnFailure::Hold);
}

#[test]
fn required_keys_are_named_at_the_section() {
    let all = errors(&ramp(&[]));
    assert_eq!(
        all,
        [
            "13:1: routes[0].ramp.to: missing required key",
            "13:1: routes[0].ramp.start: missing required key",
            "13:1: routes[0].ramp.steps: missing required key",
            "13:1: routes[0].ramp.hold: missing required key",
        ]
    );
}

#[test]
fn to_must_be_a_side_of_the_split() {
    let e = one_error(&ramp(&["to = \"user\"", START, STEPS, HOLD]));
    assert_eq!(
        e,
        "14:6: routes[0].ramp.to: \"user\" is not a side of this route's split \
             (did you mean \"users\"?): the sides are \"users\", \"monolith\""
    );
}

#[test]
fn a_ramp_needs_a_split() {
    let e = one_error(&file(
        "to = \"monolith\"",
        &[TO, START, STEPS, HOLD].join("\n"),
    ));
    assert_eq!(
        e,
        "14:6: routes[0].ramp.to: a ramp needs a route with `split`: it moves traffic \
             between the split's sides"
    );
}

#[test]
fn start_is_rfc3339_with_an_offset() {
    for bad in [
        "2026-12-01T09:00:00",
        "2026-12-01",
        "tomorrow",
        "2026-12-01T09:00:00+0100",
    ] {
        let e = one_error(&ramp(&[TO, &format!("start = \"{bad}\""), STEPS, HOLD]));
        assert!(
            e.starts_with("15:9: routes[0].ramp.start: invalid time"),
            "{e}"
        );
    }
    let e = one_error(&ramp(&[TO, "start = 2026-12-01T09:00:00Z", STEPS, HOLD]));
    assert!(e.starts_with("15:9: routes[0].ramp.start: "), "{e}");
}

#[test]
fn steps_are_non_empty_strictly_increasing_percents() {
    let e = one_error(&ramp(&[TO, START, "steps = []", HOLD]));
    assert_eq!(
        e,
        "16:9: routes[0].ramp.steps: list at least one percent, such as [1, 10, 50, 100]"
    );
    let e = one_error(&ramp(&[TO, START, "steps = [1, 5, 5]", HOLD]));
    assert_eq!(
        e,
        "16:16: routes[0].ramp.steps[2]: steps must be strictly increasing: 5 follows 5"
    );
    let e = one_error(&ramp(&[TO, START, "steps = [10, 2]", HOLD]));
    assert_eq!(
        e,
        "16:14: routes[0].ramp.steps[1]: steps must be strictly increasing: 2 follows 10"
    );
    let all = errors(&ramp(&[TO, START, "steps = [0, 50, 101]", HOLD]));
    assert_eq!(
        all,
        [
            "16:10: routes[0].ramp.steps[0]: a step is a percent from 1 to 100",
            "16:17: routes[0].ramp.steps[2]: a step is a percent from 1 to 100",
        ]
    );
    let e = one_error(&ramp(&[TO, START, "steps = [1, \"5\"]", HOLD]));
    assert!(e.starts_with("16:13: routes[0].ramp.steps[1]: "), "{e}");
}

#[test]
fn hold_and_window_are_at_least_a_second() {
    let e = one_error(&ramp(&[TO, START, STEPS, "hold = \"500ms\""]));
    assert_eq!(e, "17:8: routes[0].ramp.hold: must be at least 1s");
    let e = one_error(&ramp(&[TO, START, STEPS, "hold = \"10\""]));
    assert!(
        e.starts_with("17:8: routes[0].ramp.hold: invalid duration"),
        "{e}"
    );
    let e = one_error(&ramp(&[TO, START, STEPS, HOLD, "window = \"0s\""]));
    assert_eq!(e, "18:10: routes[0].ramp.window: must be at least 1s");
}

#[test]
fn gates_limits_are_checked() {
    let e = one_error(&ramp(&[TO, START, STEPS, HOLD, "min_requests = 0"]));
    assert_eq!(
        e,
        "18:16: routes[0].ramp.min_requests: must be a positive integer"
    );
    for bad in ["0", "0.0", "1.5", "-0.1"] {
        let e = one_error(&ramp(&[
            TO,
            START,
            STEPS,
            HOLD,
            &format!("max_error_rate = {bad}"),
        ]));
        assert_eq!(
                e,
                "18:18: routes[0].ramp.max_error_rate: must be a share greater than 0 and at most 1 (0.05 is 5%)"
            );
    }
    let e = one_error(&ramp(&[TO, START, STEPS, HOLD, "max_p99 = \"fast\""]));
    assert!(
        e.starts_with("18:11: routes[0].ramp.max_p99: invalid duration"),
        "{e}"
    );
    let e = one_error(&ramp(&[TO, START, STEPS, HOLD, "max_p99 = \"0ms\""]));
    assert_eq!(
        e,
        "18:11: routes[0].ramp.max_p99: must be greater than zero"
    );
}

#[test]
fn on_failure_is_rollback_or_hold_with_a_suggestion() {
    let e = one_error(&ramp(&[TO, START, STEPS, HOLD, "on_failure = \"rolback\""]));
    assert_eq!(
        e,
        "18:14: routes[0].ramp.on_failure: unknown on_failure \"rolback\" (did you mean \
             \"rollback\"?): expected \"rollback\" or \"hold\""
    );
}

#[test]
fn an_unknown_key_in_the_section_is_named() {
    let e = one_error(&ramp(&[TO, START, STEPS, HOLD, "max_p90 = \"1s\""]));
    assert_eq!(
        e,
        "18:1: routes[0].ramp.max_p90: unknown key (did you mean \"max_p99\"?)"
    );
}
