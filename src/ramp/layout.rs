//! Where each sticky bucket goes while a ramp gives its `to` side a share
//! (SPEC §11). The split's other sides keep ranges laid out by their
//! configured weights over the whole bucket space (all zero: equal
//! ranges), and `to` takes the same leading fraction of every one of those
//! ranges. As `to`'s share grows, each leading part only grows, so a bucket
//! either stays on its side or moves to `to`: with any number of sides,
//! keys only ever move towards `to` (the monotonic property of SPEC §3,
//! across steps). [`crate::sticky`]'s contiguous ranges cannot give that
//! with three sides or more: widening one range shifts its neighbours.
//!
//! A layout is built once per step when the table is compiled; a request
//! does one binary search over at most `2 × (sides - 1)` segment ends.

use crate::sticky::BUCKETS;

/// The owner of each bucket for one share of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Where each segment ends, rising to [`BUCKETS`]; empty segments are
    /// left out.
    ends: Box<[u64]>,
    /// The side (index in the split) that owns each segment.
    sides: Box<[u32]>,
}

impl Layout {
    /// The layout that gives side `to` `to_buckets` of [`BUCKETS`] (the
    /// rest to the others by `weights`, in config order).
    pub fn new(weights: &[u32], to: usize, to_buckets: u64) -> Layout {
        let to_buckets = to_buckets.min(BUCKETS);
        let others: Vec<usize> = (0..weights.len()).filter(|i| *i != to).collect();
        let weight = |i: usize| {
            let all_zero = others.iter().all(|o| weights[*o] == 0);
            if all_zero {
                1
            } else {
                u64::from(weights[i])
            }
        };
        let total: u64 = others.iter().map(|i| weight(*i)).sum();
        let (mut ends, mut sides) = (Vec::new(), Vec::new());
        let mut push = |end: u64, side: usize| {
            if end > ends.last().copied().unwrap_or(0) {
                ends.push(end);
                sides.push(side as u32);
            }
        };
        let mut cumulative = 0;
        for i in others.iter().copied() {
            let start = BUCKETS * cumulative / total.max(1);
            cumulative += weight(i);
            let end = BUCKETS * cumulative / total.max(1);
            push(start + (end - start) * to_buckets / BUCKETS, to);
            push(end, i);
        }
        if ends.is_empty() {
            // `to` is the only side.
            ends.push(BUCKETS);
            sides.push(to as u32);
        }
        Layout {
            ends: ends.into_boxed_slice(),
            sides: sides.into_boxed_slice(),
        }
    }

    /// The side that owns `bucket` (below [`BUCKETS`]).
    pub fn side(&self, bucket: u64) -> usize {
        let i = self
            .ends
            .partition_point(|end| *end <= bucket)
            .min(self.ends.len() - 1);
        self.sides[i] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(layout: &Layout, side: usize) -> u64 {
        (0..BUCKETS).filter(|b| layout.side(*b) == side).count() as u64
    }

    #[test]
    fn to_gets_its_share_and_the_others_theirs_by_weight() {
        let l = Layout::new(&[0, 100], 0, 2_500);
        assert_eq!((share(&l, 0), share(&l, 1)), (2_500, 7_500));
        // `to`'s part of each range is rounded down on its own (rounding
        // the total instead could shrink a part as the share grows): it
        // may get a bucket (0.01%) less per other side.
        let l = Layout::new(&[30, 10, 60], 1, 5_000);
        assert_eq!(
            (share(&l, 0), share(&l, 1), share(&l, 2)),
            (1_667, 4_999, 3_334)
        );
        // Other sides all at zero share equally.
        let l = Layout::new(&[0, 0, 0], 2, 1_000);
        assert_eq!(
            (share(&l, 0), share(&l, 1), share(&l, 2)),
            (4_500, 4_500, 1_000)
        );
        assert_eq!(share(&Layout::new(&[5, 5], 1, 0), 1), 0);
        assert_eq!(share(&Layout::new(&[5, 5], 1, BUCKETS), 1), BUCKETS);
        assert_eq!(share(&Layout::new(&[0], 0, 100), 0), BUCKETS);
    }

    /// For every pair of consecutive steps of several ramps (2, 3 and 4
    /// sides, `to` first, middle and last, weights even and uneven), over
    /// all 10,000 buckets: a bucket either keeps its side or moves to `to`.
    #[test]
    fn keys_only_ever_move_towards_to() {
        let steps = [0u64, 1, 5, 10, 25, 33, 50, 75, 99, 100];
        let cases: [(&[u32], usize); 7] = [
            (&[0, 100], 0),
            (&[100, 0], 1),
            (&[0, 70, 30], 0),
            (&[70, 0, 30], 1),
            (&[1, 1, 1], 2),
            (&[10, 0, 0, 90], 3),
            (&[3, 7, 0, 11], 2),
        ];
        for (weights, to) in cases {
            for pair in steps.windows(2) {
                let before = Layout::new(weights, to, pair[0] * 100);
                let after = Layout::new(weights, to, pair[1] * 100);
                for b in 0..BUCKETS {
                    let (x, y) = (before.side(b), after.side(b));
                    assert!(
                        x == y || y == to,
                        "{weights:?} to {to}: {}% -> {}%: bucket {b} moved {x} -> {y}",
                        pair[0],
                        pair[1]
                    );
                }
            }
        }
    }
}
