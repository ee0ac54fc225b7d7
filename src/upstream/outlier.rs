//! Passive outlier detection (SPEC §5): consecutive failures (connect
//! errors, resets, timeouts, 5xx) eject a target for `eject_for`, doubled on
//! each repeat ejection up to ten times `eject_for`; never more than
//! `max_ejected_percent` of an upstream's targets at once.
//!
//! [`observe_failure`] is the whole policy as a pure function of the state,
//! the spec, the time and how many siblings are ejected, so it is tested
//! without sockets or clocks.

use std::time::Duration;

use crate::config::OutlierSpec;

/// The rule for upstreams without an `[outlier]` section, fed connect
/// failures only (refused, `connect_timeout`, a name that does not
/// resolve): a target that cannot be reached serves nothing, so after 3 in
/// a row (one can be a blip: a single lost SYN outlasts a 1 s
/// `connect_timeout`) it is ejected for 1 s, doubled on each repeat up to
/// 10 s, nginx's `max_fails`/`fail_timeout` at steady state. A dead target
/// then costs 3 failed connects per probe (retried elsewhere or sent to the
/// fallback, never seen by a client), and a restarted one is back within
/// 10 s without health checks. No share cap: ejecting a target nobody can
/// connect to removes no capacity, and with all of them out the route's
/// fallback takes over at once (or 503 `no_healthy_upstream` instead of a
/// 502 after a wasted connect).
pub const CONNECT_FAILURES: OutlierSpec = OutlierSpec {
    consecutive_failures: 3,
    eject_for: Duration::from_secs(1),
    max_ejected_percent: 100,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutlierState {
    pub consecutive: u32,
    /// Ejections in the current streak; decides the doubling.
    pub ejections: u32,
    /// When the last ejection ends, in clock milliseconds.
    pub last_until: Option<u64>,
}

/// Applies one failure at `now` (ms). Returns the time the target is
/// ejected until, when this failure ejects it.
pub fn observe_failure(
    state: &mut OutlierState,
    spec: &OutlierSpec,
    now: u64,
    ejected: usize,
    total: usize,
) -> Option<u64> {
    state.consecutive += 1;
    if state.consecutive < spec.consecutive_failures {
        return None;
    }
    if (ejected + 1) * 100 > spec.max_ejected_percent as usize * total {
        // Over the cap: the count stays high, so the target is ejected at
        // its next failure once a sibling has come back.
        return None;
    }
    let base = u64::try_from(spec.eject_for.as_millis()).unwrap_or(u64::MAX);
    let cap = base.saturating_mul(10);
    // A target that stayed in for a whole maximum ejection since the last
    // one ended starts its streak over.
    if state
        .last_until
        .is_some_and(|end| now > end.saturating_add(cap))
    {
        state.ejections = 0;
    }
    state.ejections += 1;
    let duration = base
        .saturating_mul(1 << (state.ejections - 1).min(4))
        .min(cap);
    let until = now.saturating_add(duration);
    state.consecutive = 0;
    state.last_until = Some(until);
    Some(until)
}

pub fn observe_success(state: &mut OutlierState) {
    state.consecutive = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OutlierSpec {
        OutlierSpec {
            consecutive_failures: 3,
            eject_for: Duration::from_secs(10),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures() {
        let mut s = OutlierState::default();
        assert_eq!(observe_failure(&mut s, &spec(), 0, 0, 2), None);
        assert_eq!(observe_failure(&mut s, &spec(), 0, 0, 2), None);
        assert_eq!(observe_failure(&mut s, &spec(), 0, 0, 2), Some(10_000));
    }

    #[test]
    fn success_resets_the_count() {
        let mut s = OutlierState::default();
        observe_failure(&mut s, &spec(), 0, 0, 2);
        observe_failure(&mut s, &spec(), 0, 0, 2);
        observe_success(&mut s);
        assert_eq!(observe_failure(&mut s, &spec(), 0, 0, 2), None);
    }

    #[test]
    fn repeat_ejections_double_up_to_ten_times() {
        let mut s = OutlierState::default();
        let mut now = 0;
        let mut durations = Vec::new();
        for _ in 0..6 {
            let until = (0..3)
                .find_map(|_| observe_failure(&mut s, &spec(), now, 0, 2))
                .unwrap();
            durations.push((until - now) / 1000);
            now = until + 1;
        }
        assert_eq!(durations, vec![10, 20, 40, 80, 100, 100]);
    }

    #[test]
    fn streak_forgotten_after_a_long_good_spell() {
        let mut s = OutlierState::default();
        let until = (0..3)
            .find_map(|_| observe_failure(&mut s, &spec(), 0, 0, 2))
            .unwrap();
        let later = until + 100_001;
        let again = (0..3)
            .find_map(|_| observe_failure(&mut s, &spec(), later, 0, 2))
            .unwrap();
        assert_eq!(again - later, 10_000);
    }

    #[test]
    fn max_ejected_percent_is_respected() {
        let mut s = OutlierState::default();
        // One of two already out: 50% allows no second.
        for _ in 0..10 {
            assert_eq!(observe_failure(&mut s, &spec(), 0, 1, 2), None);
        }
        // Once the sibling is back, the next failure ejects.
        assert!(observe_failure(&mut s, &spec(), 0, 0, 2).is_some());
        // A single target at 50% is never ejected.
        let mut lone = OutlierState::default();
        assert!((0..10).all(|_| observe_failure(&mut lone, &spec(), 0, 0, 1).is_none()));
    }

    #[test]
    fn the_built_in_connect_rule_ejects_even_the_last_target() {
        let mut s = OutlierState::default();
        let rule = CONNECT_FAILURES;
        assert_eq!(observe_failure(&mut s, &rule, 0, 0, 1), None);
        assert_eq!(observe_failure(&mut s, &rule, 0, 0, 1), None);
        assert_eq!(observe_failure(&mut s, &rule, 0, 0, 1), Some(1_000));
        // Both of two targets may be out: nothing to protect.
        let mut other = OutlierState::default();
        let until = (0..3).find_map(|_| observe_failure(&mut other, &rule, 0, 1, 2));
        assert_eq!(until, Some(1_000));
    }
}
