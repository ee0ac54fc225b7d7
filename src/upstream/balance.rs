//! Target choice within an upstream, prepared at compile time so a pick is
//! a few array reads:
//!
//! - smooth weighted round robin (nginx's algorithm) is run once to produce
//!   its whole cycle; a pick reads the slot an atomic counter points at;
//! - least request is power of two choices: two distinct random targets,
//!   the one with fewer requests in flight per unit of weight wins;
//! - hash is a consistent-hash ring of ~160 points per target (more for
//!   heavier ones), so adding a target moves only about 1/n of the keys.
//!
//! Every algorithm skips targets that are unhealthy, ejected or already
//! tried by this request; `available` says which are left.

use crate::hash::stable_hash2;

/// The cycle nginx's smooth weighted round robin walks for `weights`, reduced
/// by their greatest common divisor. For weights 5,1,1 it is
/// `0 0 1 0 2 0 0`: the heavy target is spread out rather than bunched, which
/// is what makes it "smooth". Entries index `weights`.
pub fn smooth_schedule(weights: &[u32]) -> Box<[u16]> {
    let gcd = weights.iter().fold(0u32, |g, w| gcd(g, *w)).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / gcd)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(best as u16);
    }
    schedule.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Target indices a request has already tried; retries are capped at 10,
/// so a fixed array suffices and a pick never allocates.
#[derive(Debug, Default, Clone)]
pub struct Tried {
    items: [u32; 12],
    len: usize,
}

impl Tried {
    pub fn push(&mut self, index: usize) {
        if self.len < self.items.len() {
            self.items[self.len] = index as u32;
            self.len += 1;
        }
    }

    pub fn contains(&self, index: usize) -> bool {
        self.items[..self.len].contains(&(index as u32))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Smooth WRR over a precomputed schedule, starting at `counter`.
pub fn pick_round_robin(
    schedule: &[u16],
    counter: usize,
    targets: usize,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let len = schedule.len();
    let slot = |i: usize| usize::from(schedule[(counter.wrapping_add(i)) % len]);
    // Usually the first slot will do. When targets are down, look a little
    // further, then make sure some target is left before walking the rest of
    // a long schedule on every request of an outage.
    let quick = len.min(targets.max(2));
    if let Some(i) = (0..quick).map(slot).find(|i| ok(*i)) {
        return Some(i);
    }
    if !(0..targets).any(&ok) {
        return None;
    }
    (quick..len).map(slot).find(|i| ok(*i))
}

/// Power of two choices, weighted: of two distinct random targets, the one
/// with fewer requests in flight per unit of weight.
pub fn pick_least_request(
    weights: &[u32],
    in_flight: impl Fn(usize) -> usize,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = weights.len();
    // No endpoints (a name that resolves to nothing): nothing to draw from.
    if n == 0 {
        return None;
    }
    if n == 1 {
        return ok(0).then_some(0);
    }
    let a = fastrand::usize(..n);
    let mut b = fastrand::usize(..n - 1);
    if b >= a {
        b += 1;
    }
    match (ok(a), ok(b)) {
        (true, true) => {
            // (a+1)/wa <= (b+1)/wb, without division; +1 so idle targets
            // still compare by weight.
            let load_a = (in_flight(a) as u64 + 1) * u64::from(weights[b]);
            let load_b = (in_flight(b) as u64 + 1) * u64::from(weights[a]);
            Some(if load_a <= load_b { a } else { b })
        }
        (true, false) => Some(a),
        (false, true) => Some(b),
        (false, false) => {
            let start = fastrand::usize(..n);
            (0..n).map(|i| (start + i) % n).find(|i| ok(*i))
        }
    }
}

/// Points per target on the hash ring, at average weight.
const POINTS_PER_TARGET: u64 = 160;

/// A consistent-hash ring: `(point, target index)` sorted by point.
#[derive(Debug, Default)]
pub struct Ring {
    points: Box<[(u64, u16)]>,
}

impl Ring {
    /// Each target's points are hashes of its authority and a counter, so
    /// they depend on the target alone: adding one target leaves every other
    /// target's points where they were.
    pub fn new(authorities: &[&str], weights: &[u32]) -> Ring {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum::<u64>().max(1);
        let n = authorities.len() as u64;
        let mut points = Vec::new();
        for (i, (authority, weight)) in authorities.iter().zip(weights).enumerate() {
            let count = (POINTS_PER_TARGET * n * u64::from(*weight) / total).max(1);
            for j in 0..count {
                points.push((
                    stable_hash2(authority.as_bytes(), &j.to_le_bytes()),
                    i as u16,
                ));
            }
        }
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// The first acceptable target clockwise from `hash`.
    pub fn pick(&self, hash: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let start = self.points.partition_point(|(p, _)| *p < hash);
        (0..len)
            .map(|i| usize::from(self.points[(start + i) % len].1))
            .find(|i| ok(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_sequence() {
        // The example from nginx's commit introducing smooth WRR.
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_skips_unavailable() {
        let s = smooth_schedule(&[1, 1, 1]);
        let picks: Vec<usize> = (0..6)
            .filter_map(|c| pick_round_robin(&s, c, 3, |i| i != 1))
            .collect();
        assert!(picks.iter().all(|i| *i != 1));
        assert_eq!(picks.len(), 6);
        assert_eq!(pick_round_robin(&s, 0, 3, |_| false), None);
    }

    #[test]
    fn least_request_prefers_the_idle_target() {
        let weights = [1, 1];
        let busy = |i: usize| if i == 0 { 10 } else { 0 };
        assert!((0..100).all(|_| pick_least_request(&weights, busy, |_| true) == Some(1)));
        assert!((0..100).all(|_| pick_least_request(&weights, busy, |i| i == 0) == Some(0)));
        assert_eq!(pick_least_request(&weights, busy, |_| false), None);
    }

    #[test]
    fn least_request_is_weighted_when_idle() {
        let weights = [3, 1];
        assert!((0..100).all(|_| pick_least_request(&weights, |_| 0, |_| true) == Some(0)));
    }

    #[test]
    fn ring_moves_about_one_nth_when_a_target_is_added() {
        let four = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"];
        let five = [
            "10.0.0.1:80",
            "10.0.0.2:80",
            "10.0.0.3:80",
            "10.0.0.4:80",
            "10.0.0.5:80",
        ];
        let r4 = Ring::new(&four, &[1; 4]);
        let r5 = Ring::new(&five, &[1; 5]);
        let keys = 10_000;
        let moved = (0..keys)
            .filter(|k| {
                let h = crate::hash::stable_hash(format!("user-{k}").as_bytes());
                r4.pick(h, |_| true) != r5.pick(h, |_| true)
            })
            .count();
        // Ideal is 1/5 = 2,000; every moved key must have gone to the new one.
        assert!((1_400..2_600).contains(&moved), "{moved} moved");
        for k in 0..keys {
            let h = crate::hash::stable_hash(format!("user-{k}").as_bytes());
            let (a, b) = (r4.pick(h, |_| true), r5.pick(h, |_| true));
            assert!(a == b || b == Some(4));
        }
    }

    #[test]
    fn ring_skips_unavailable_to_the_next_target() {
        let r = Ring::new(&["a:1", "b:1", "c:1"], &[1, 1, 1]);
        for k in 0..100u64 {
            let h = crate::hash::stable_hash(&k.to_le_bytes());
            let first = r.pick(h, |_| true).unwrap();
            let second = r.pick(h, |i| i != first).unwrap();
            assert_ne!(first, second);
        }
    }

    #[test]
    fn proportions_and_gcd() {
        let s = smooth_schedule(&[300, 100]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 3);
        assert_eq!(&*smooth_schedule(&[1]), &[0]);
        assert_eq!(&*smooth_schedule(&[2, 2]), &[0, 1]);
    }
}
