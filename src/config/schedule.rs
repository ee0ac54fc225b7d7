//! A ramp's schedule (SPEC §11): the validated `[routes.ramp]` and which
//! step is in force at a given Unix time, with the shares it gives each
//! side. A pure function of the file and a time, with no runtime type in
//! it (and nothing of the config reader: `model` refers to it), so that
//! `figway check`, `figway explain`, `/routes`, `/ramps` and the proxy all
//! compute the same thing and every instance of a fleet agrees.

use std::time::Duration;

/// A validated `[routes.ramp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RampSpec {
    /// Index into the route's sides: the side that grows.
    pub to: usize,
    /// Unix milliseconds of step 0's start.
    pub start_ms: i64,
    /// `to`'s percent at each step: strictly increasing, 1..=100.
    pub steps: Vec<u8>,
    pub hold: Duration,
    pub window: Duration,
    pub min_requests: u64,
    pub max_error_rate: Option<f64>,
    pub max_p99: Option<Duration>,
    pub on_failure: OnFailure,
}

/// What a failed gate does (`on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// `to` gets 0 percent.
    Rollback,
    /// The percent in force stays; the schedule stops.
    Hold,
}

impl OnFailure {
    pub const NAMES: [&'static str; 2] = ["rollback", "hold"];
}

/// Where the schedule stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `start`: the configured weights hold.
    Scheduled,
    /// Step `k` is in force, its hold not yet over.
    Ramping(usize),
    /// The last step's hold is over; its percent stays.
    Complete,
}

// === the schedule ===

impl RampSpec {
    fn hold_ms(&self) -> i64 {
        i64::try_from(self.hold.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// When step `k` comes into force (`k == steps.len()`: the end of the
    /// last step's hold).
    pub fn step_start_ms(&self, k: usize) -> i64 {
        let k = i64::try_from(k).unwrap_or(i64::MAX);
        self.start_ms
            .saturating_add(k.saturating_mul(self.hold_ms()))
    }

    /// The phase at Unix milliseconds `now`.
    pub fn phase_at(&self, now_ms: i64) -> Phase {
        if now_ms < self.start_ms {
            return Phase::Scheduled;
        }
        let k = (now_ms - self.start_ms) / self.hold_ms();
        match usize::try_from(k) {
            Ok(k) if k < self.steps.len() => Phase::Ramping(k),
            _ => Phase::Complete,
        }
    }

    /// The step in force in `phase` (`None` while scheduled).
    pub fn step(&self, phase: Phase) -> Option<usize> {
        match phase {
            Phase::Scheduled => None,
            Phase::Ramping(k) => Some(k),
            Phase::Complete => Some(self.steps.len() - 1),
        }
    }

    /// The next change the schedule makes after `phase`: `start`, the next
    /// step's start, the end of the last step's hold; `None` once complete.
    pub fn next_step_at(&self, phase: Phase) -> Option<i64> {
        match phase {
            Phase::Scheduled => Some(self.start_ms),
            Phase::Ramping(k) => Some(self.step_start_ms(k + 1)),
            Phase::Complete => None,
        }
    }

    /// `to`'s percent at step `k`.
    pub fn percent(&self, k: usize) -> f64 {
        f64::from(self.steps[k.min(self.steps.len() - 1)])
    }
}

/// Each side's share in percent when `to` has `percent`, given the sides'
/// configured `weights`: the others share the rest in proportion to their
/// weights, all zero: equally.
pub fn shares(weights: &[u32], to: usize, percent: f64) -> Vec<f64> {
    let others: u64 = (0..weights.len())
        .filter(|i| *i != to)
        .map(|i| u64::from(weights[i]))
        .sum();
    let count = weights.len().saturating_sub(1).max(1) as f64;
    let rest = 100.0 - percent;
    (0..weights.len())
        .map(|i| match i {
            i if i == to => percent,
            _ if others == 0 => rest / count,
            i => rest * f64::from(weights[i]) / others as f64,
        })
        .collect()
}

/// `to`'s share in percent of the configured `weights` (before start).
pub fn configured_percent(weights: &[u32], to: usize) -> f64 {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    100.0 * f64::from(weights[to]) / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: &[u8], hold_s: u64) -> RampSpec {
        RampSpec {
            to: 0,
            start_ms: 1_000_000,
            steps: steps.to_vec(),
            hold: Duration::from_secs(hold_s),
            window: Duration::from_secs(60),
            min_requests: 100,
            max_error_rate: None,
            max_p99: None,
            on_failure: OnFailure::Rollback,
        }
    }

    #[test]
    fn the_schedule_is_a_function_of_the_time() {
        let s = spec(&[1, 5, 25, 100], 10);
        assert_eq!(s.phase_at(999_999), Phase::Scheduled);
        assert_eq!(s.next_step_at(Phase::Scheduled), Some(1_000_000));
        assert_eq!(s.phase_at(1_000_000), Phase::Ramping(0));
        assert_eq!(s.phase_at(1_009_999), Phase::Ramping(0));
        assert_eq!(s.phase_at(1_010_000), Phase::Ramping(1));
        assert_eq!(s.next_step_at(Phase::Ramping(1)), Some(1_020_000));
        assert_eq!(s.phase_at(1_039_999), Phase::Ramping(3));
        assert_eq!(s.next_step_at(Phase::Ramping(3)), Some(1_040_000));
        assert_eq!(s.phase_at(1_040_000), Phase::Complete);
        assert_eq!(s.phase_at(i64::MAX), Phase::Complete);
        assert_eq!(s.step(Phase::Complete), Some(3));
        assert_eq!(s.next_step_at(Phase::Complete), None);
        assert_eq!(s.percent(2), 25.0);
    }

    #[test]
    fn others_share_the_rest_by_weight_or_equally() {
        assert_eq!(shares(&[0, 100], 0, 25.0), [25.0, 75.0]);
        assert_eq!(shares(&[30, 10, 30], 1, 20.0), [40.0, 20.0, 40.0]);
        assert_eq!(shares(&[0, 0, 5], 2, 50.0), [25.0, 25.0, 50.0]);
        assert_eq!(configured_percent(&[1, 3], 0), 25.0);
    }
}
