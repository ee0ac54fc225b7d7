//! A ramp at run time (SPEC §11): the split whose `to` side grows on the
//! schedule of `[routes.ramp]`, and rolls itself back (or holds) when a
//! gate fails on this instance's own traffic.
//!
//! [`Ramp`] is compiled with its route: one [`Layout`] per step, the
//! rollback layout (`to` at 0) and the configured one (before `start`), so
//! a request only reads the wall clock, loads one atomic (the verdict) and
//! picks a layout. What must outlive a reload, the verdict, the failure
//! and the window of `to`'s answers, is a [`RampState`] that `compile`
//! hands from the old route to the new when the route's name, its split
//! and its parsed ramp section are the same ([`Ramp::same_ramp`]): an
//! unchanged section keeps its rollback, a changed one starts afresh.
//!
//! The schedule itself is `config::schedule` (a pure function of the file and a
//! time); this module adds what only a running instance knows.

pub mod layout;
pub mod window;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;
use serde_json::{json, Value};

use crate::clock::Wall;
use crate::config::schedule::{configured_percent, shares, OnFailure, Phase, RampSpec};
use crate::config::Side;
use crate::sticky::BUCKETS;
pub use layout::Layout;
use window::Window;

/// The verdict's flags; the low bits hold the step index at the failure.
const HELD: u32 = 1 << 30;
const ROLLED_BACK: u32 = 1 << 31;
const STEP: u32 = (1 << 30) - 1;

/// A gate (`figway_ramp_failures_total`'s `gate` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    ErrorRate,
    P99,
}

impl Gate {
    pub const ALL: [Gate; 2] = [Gate::ErrorRate, Gate::P99];

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::ErrorRate => "error_rate",
            Gate::P99 => "p99",
        }
    }
}

/// Why a ramp stopped on this instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failure {
    pub gate: Gate,
    /// A share in 0..1 for `error_rate`, seconds for `p99`.
    pub value: f64,
    pub limit: f64,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// What a ramp outlives a reload with.
pub struct RampState {
    /// 0: following the schedule; else [`HELD`] or [`ROLLED_BACK`] with the
    /// step at the failure. The one atomic a request loads.
    verdict: AtomicU32,
    /// Written once, by the gate that failed; read by `/ramps`.
    failure: Mutex<Option<Failure>>,
    window: Window,
    /// `figway_ramp_failures_total{route, gate}`, in [`Gate::ALL`] order.
    failures: [IntCounter; 2],
}

/// What `/ramps` and `figway check` say of a ramp now.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `scheduled`, `ramping`, `complete`, `rolled_back` or `held`.
    pub state: &'static str,
    /// `to`'s share in force, in percent.
    pub percent: f64,
    pub step: Option<usize>,
    /// Unix milliseconds.
    pub next_step_at: Option<i64>,
    pub failure: Option<Failure>,
}

/// A split by upstream name: each side's upstream and configured weight.
pub type SplitNames = Box<[(Box<str>, u32)]>;

pub struct Ramp {
    pub spec: RampSpec,
    /// The split's configured weights, for the shares in force.
    weights: Box<[u32]>,
    /// The route's name and its split by upstream name: with `spec`, what
    /// makes a ramp "the same" across a reload.
    identity: (Box<str>, SplitNames),
    configured: Layout,
    rollback: Layout,
    steps: Box<[Layout]>,
    state: Arc<RampState>,
    wall: Arc<Wall>,
}

impl Ramp {
    /// `split` names each side's upstream; `previous` is the route of the
    /// same name in the table being replaced, whose state is kept when it
    /// is the same ramp; `failures` the route's two failure counters.
    pub fn new(
        route: &str,
        sides: &[Side],
        split: SplitNames,
        spec: RampSpec,
        wall: Arc<Wall>,
        previous: Option<&Ramp>,
        failures: impl FnOnce() -> [IntCounter; 2],
    ) -> Ramp {
        let weights: Vec<u32> = sides.iter().map(|s| s.weight).collect();
        let layout = |percent: f64| {
            let buckets = (percent * BUCKETS as f64 / 100.0).round() as u64;
            Layout::new(&weights, spec.to, buckets)
        };
        let identity = (Box::from(route), split);
        let state = match previous {
            Some(p) if p.identity == identity && p.spec == spec => p.state.clone(),
            _ => Arc::new(RampState {
                verdict: AtomicU32::new(0),
                failure: Mutex::new(None),
                window: Window::new(spec.window),
                failures: failures(),
            }),
        };
        Ramp {
            configured: layout(configured_percent(&weights, spec.to)),
            rollback: layout(0.0),
            steps: (0..spec.steps.len())
                .map(|k| layout(spec.percent(k)))
                .collect(),
            weights: weights.clone().into(),
            identity,
            spec,
            state,
            wall,
        }
    }

    /// Whether `other` is the same ramp (same route name, split and parsed
    /// section): a reload between them keeps its verdict.
    pub fn same_ramp(&self, other: &Ramp) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// The bucket layout in force now: the hot path's one clock read and
    /// one atomic load.
    pub fn layout_now(&self) -> &Layout {
        let verdict = self.state.verdict.load(Relaxed);
        if verdict & ROLLED_BACK != 0 {
            return &self.rollback;
        }
        let k = if verdict & HELD != 0 {
            (verdict & STEP) as usize
        } else {
            match self.spec.phase_at(self.wall.now_ms()) {
                Phase::Scheduled => return &self.configured,
                Phase::Ramping(k) => k,
                Phase::Complete => self.steps.len() - 1,
            }
        };
        self.steps.get(k).unwrap_or(&self.rollback)
    }

    /// Counts one answer to a request the split sent to `to`: `error` when
    /// its status is 5xx (`to`'s own, or figway's), `latency` to its head.
    pub fn record(&self, error: bool, latency: Duration) {
        self.state.window.record(self.wall.now_ms(), error, latency);
    }

    /// The ramp's state now on this instance.
    pub fn status(&self) -> Status {
        self.status_at(self.wall.now_ms())
    }

    pub fn status_at(&self, now_ms: i64) -> Status {
        let verdict = self.state.verdict.load(Relaxed);
        if verdict != 0 {
            let step = (verdict & STEP) as usize;
            let failure = *self.state.failure.lock().unwrap_or_else(|e| e.into_inner());
            let rolled_back = verdict & ROLLED_BACK != 0;
            return Status {
                state: if rolled_back { "rolled_back" } else { "held" },
                percent: if rolled_back {
                    0.0
                } else {
                    self.spec.percent(step)
                },
                step: Some(step),
                next_step_at: None,
                failure,
            };
        }
        let phase = self.spec.phase_at(now_ms);
        let step = self.spec.step(phase);
        Status {
            state: match phase {
                Phase::Scheduled => "scheduled",
                Phase::Ramping(_) => "ramping",
                Phase::Complete => "complete",
            },
            percent: match step {
                None => configured_percent(&self.weights, self.spec.to),
                Some(k) => self.spec.percent(k),
            },
            step,
            next_step_at: self.spec.next_step_at(phase),
            failure: None,
        }
    }

    /// Each side's share in force, in percent, once `start` has passed
    /// (SPEC §11: `/routes` and `explain`); `None` before, when the
    /// configured weights hold.
    pub fn shares_now(&self) -> Option<Vec<f64>> {
        let status = self.status();
        status
            .step
            .map(|_| shares(&self.weights, self.spec.to, status.percent))
    }

    /// Judges the gates at `now` (once a second, from the state's task).
    /// Only a ramp in progress is judged, and only once `to` answered
    /// `min_requests` in the window; the first gate over its limit stops
    /// the ramp on this instance, logged once and counted.
    pub fn judge(&self, route: &str, to: &str) {
        self.judge_at(self.wall.now_ms(), route, to);
    }

    pub fn judge_at(&self, now_ms: i64, route: &str, to: &str) {
        if self.state.verdict.load(Relaxed) != 0 {
            return;
        }
        let Phase::Ramping(k) = self.spec.phase_at(now_ms) else {
            return;
        };
        let totals = self.state.window.totals(now_ms);
        if totals.count < self.spec.min_requests {
            return;
        }
        let error_rate = self
            .spec
            .max_error_rate
            .map(|limit| (Gate::ErrorRate, totals.error_rate(), limit));
        let p99 = self
            .spec
            .max_p99
            .map(|limit| (Gate::P99, totals.p99().as_secs_f64(), limit.as_secs_f64()));
        let Some((gate, value, limit)) = error_rate
            .into_iter()
            .chain(p99)
            .find(|(_, value, limit)| value > limit)
        else {
            return;
        };
        let flag = match self.spec.on_failure {
            OnFailure::Rollback => ROLLED_BACK,
            OnFailure::Hold => HELD,
        };
        let verdict = flag | (k as u32 & STEP);
        if self
            .state
            .verdict
            .compare_exchange(0, verdict, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        *self.state.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Failure {
            gate,
            value,
            limit,
            at_ms: now_ms,
        });
        self.state.failures[gate as usize].inc();
        let action = match self.spec.on_failure {
            OnFailure::Rollback => "rolled back: the upstream gets 0% on this instance",
            OnFailure::Hold => "held: the schedule stops at this step on this instance",
        };
        tracing::warn!(
            route,
            upstream = to,
            gate = gate.as_str(),
            value,
            limit,
            step = k,
            requests = totals.count,
            "ramp failed a gate; {action} until its [routes.ramp] section changes"
        );
    }

    /// `GET /ramps`'s entry for this ramp; `to` is its upstream's name.
    pub fn json(&self, to: &str) -> Value {
        let s = self.status();
        let time = |ms: i64| crate::timefmt::rfc3339(crate::clock::unix_ms_to_system(ms));
        json!({
            "to": to,
            "state": s.state,
            "percent": number(s.percent),
            "step": s.step,
            "next_step_at": s.next_step_at.map(time),
            "failure": s.failure.map(|f| json!({
                "gate": f.gate.as_str(),
                "value": f.value,
                "limit": f.limit,
                "at": crate::timefmt::rfc3339_millis(crate::clock::unix_ms_to_system(f.at_ms)),
            })),
        })
    }

    /// `figway check`'s lines for this ramp: each step's percent and its
    /// start (RFC 3339 UTC), its end, and the state now.
    pub fn schedule_text(&self, route: &str, to: &str) -> String {
        let time = |ms: i64| crate::timefmt::rfc3339(crate::clock::unix_ms_to_system(ms));
        let s = self.status();
        let mut out = format!(
            "ramp {route}: {to} in {} steps of {:?}, state now: {} ({}%)\n",
            self.spec.steps.len(),
            self.spec.hold,
            s.state,
            number(s.percent)
        );
        for (k, percent) in self.spec.steps.iter().enumerate() {
            out.push_str(&format!(
                "  step {k}: {percent:>3}% from {}\n",
                time(self.spec.step_start_ms(k))
            ));
        }
        out.push_str(&format!(
            "  complete at {}\n",
            time(self.spec.step_start_ms(self.spec.steps.len()))
        ));
        out
    }
}

/// A percent as JSON: an integer when whole (25, not 25.0).
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests;
