//! `[routes.ramp]` (SPEC §11) read and validated: every rule with its
//! file:line:col. What it reads into, and the schedule, are in `schedule`.

use std::time::Duration;

use super::doc::{At, Problems, Table};
use super::fields::positive;
use super::model::Side;
use super::schedule::{OnFailure, RampSpec};
use super::units::parse_duration;
use crate::timefmt::parse_rfc3339;

// === reading ===

/// Reads `[routes.ramp]`. `sides` are the route's, when they were read;
/// `split` whether the route has a split; `names` the upstreams' names.
pub(super) fn read_ramp(
    t: &mut Table<'_, '_>,
    sides: Option<&[Side]>,
    split: bool,
    upstream_name: &dyn Fn(usize) -> Option<String>,
    problems: &mut Problems,
) -> Option<RampSpec> {
    let to = t
        .required("to", problems)
        .and_then(|_| t.string("to", problems));
    let to = to.and_then(|to| {
        if !split {
            problems.add(
                to.span,
                t.key_path("to"),
                "a ramp needs a route with `split`: it moves traffic between the split's sides",
            );
            return None;
        }
        let sides = sides?;
        let found = sides
            .iter()
            .position(|s| upstream_name(s.upstream).as_deref() == Some(to.value.as_str()));
        if found.is_none() {
            let names: Vec<String> = sides
                .iter()
                .filter_map(|s| upstream_name(s.upstream))
                .collect();
            let hint = crate::suggest::did_you_mean(&to.value, names.iter().map(String::as_str));
            problems.add(
                to.span,
                t.key_path("to"),
                format!(
                    "{:?} is not a side of this route's split{hint}: the sides are {}",
                    to.value,
                    names
                        .iter()
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        found
    });
    let start = t
        .required("start", problems)
        .and_then(|_| t.parsed("start", problems, parse_rfc3339));
    let steps = t
        .required("steps", problems)
        .and_then(|_| read_steps(t, problems));
    let hold = t
        .required("hold", problems)
        .and_then(|_| t.parsed("hold", problems, at_least_a_second));
    let window = match t.get("window") {
        Some(_) => t.parsed("window", problems, at_least_a_second),
        None => Some(Duration::from_secs(60)),
    };
    let min_requests = match t.get("min_requests") {
        Some(_) => positive(t, "min_requests", problems).map(|n| n as u64),
        None => Some(100),
    };
    let max_error_rate = match t.number("max_error_rate", problems) {
        Some(At { value, .. }) if value > 0.0 && value <= 1.0 => Some(Some(value)),
        Some(n) => {
            problems.add(
                n.span,
                t.key_path("max_error_rate"),
                "must be a share greater than 0 and at most 1 (0.05 is 5%)",
            );
            None
        }
        None => Some(None),
    };
    let max_p99 = match t.get("max_p99") {
        Some(_) => t
            .parsed("max_p99", problems, |text| match parse_duration(text)? {
                Duration::ZERO => Err("must be greater than zero".into()),
                d => Ok(d),
            })
            .map(Some),
        None => Some(None),
    };
    let on_failure = match t.string("on_failure", problems) {
        None => Some(OnFailure::Rollback),
        Some(f) => match f.value.as_str() {
            "rollback" => Some(OnFailure::Rollback),
            "hold" => Some(OnFailure::Hold),
            other => {
                let hint = crate::suggest::did_you_mean(other, OnFailure::NAMES);
                problems.add(
                    f.span,
                    t.key_path("on_failure"),
                    format!(
                        "unknown on_failure {other:?}{hint}: expected \"rollback\" or \"hold\""
                    ),
                );
                None
            }
        },
    };
    Some(RampSpec {
        to: to?,
        start_ms: start?,
        steps: steps?,
        hold: hold?,
        window: window?,
        min_requests: min_requests?,
        max_error_rate: max_error_rate?,
        max_p99: max_p99?,
        on_failure: on_failure?,
    })
}

fn at_least_a_second(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d < Duration::from_secs(1) => Err("must be at least 1s".into()),
        d => Ok(d),
    }
}

/// `steps`: integers, strictly increasing, within 1..=100; each bad item
/// is reported at itself.
fn read_steps(t: &mut Table<'_, '_>, problems: &mut Problems) -> Option<Vec<u8>> {
    let path = t.key_path("steps");
    let items = t.array("steps", problems)?;
    if items.is_empty() {
        let span = t.span_of(&["steps"]).unwrap_or_else(|| t.span.clone());
        problems.add(
            span,
            path,
            "list at least one percent, such as [1, 10, 50, 100]",
        );
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("{path}[{i}]");
        let Some(n) = super::doc::as_integer(item, &key, problems) else {
            ok = false;
            continue;
        };
        if !(1..=100).contains(&n.value) {
            problems.add(n.span, key, "a step is a percent from 1 to 100");
            ok = false;
            continue;
        }
        if let Some(&before) = steps.last() {
            if n.value <= i64::from(before) {
                problems.add(
                    n.span,
                    key,
                    format!(
                        "steps must be strictly increasing: {} follows {before}",
                        n.value
                    ),
                );
                ok = false;
            }
        }
        steps.push(n.value as u8);
    }
    ok.then_some(steps)
}

#[cfg(test)]
mod tests;
