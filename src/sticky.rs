//! Sticky splits (SPEC §3): the key is hashed with the route's name into a
//! fixed space of [`BUCKETS`] buckets, and each side owns a contiguous range
//! of buckets in config order, sized by weight. The side is therefore a pure
//! function of (route name, key, weights): every figway instance, after
//! every restart, agrees, with no shared state. Raising one side's weight
//! (others unchanged) only widens that side's range, so no key ever leaves
//! it; with two sides, any change moves keys only toward the side whose
//! share grew.

use crate::hash::stable_hash2;

/// Size of the sticky bucket space: shares are exact to 0.01%.
pub const BUCKETS: u64 = 10_000;

/// Where each side's bucket range ends: side i owns `[ends[i-1], ends[i])`,
/// `ends` rising to [`BUCKETS`]. `weights` in config order.
pub fn bucket_ends(weights: impl IntoIterator<Item = u32> + Clone) -> Box<[u64]> {
    let total: u64 = weights.clone().into_iter().map(u64::from).sum();
    let mut cumulative = 0u64;
    weights
        .into_iter()
        .map(|w| {
            cumulative += u64::from(w);
            BUCKETS * cumulative / total.max(1)
        })
        .collect()
}

/// The bucket a sticky key falls in, for the route named `route`.
pub fn bucket(route: &str, key: &[u8]) -> u64 {
    stable_hash2(route.as_bytes(), key) % BUCKETS
}

/// The side that owns `bucket`, given the sides' `ends`.
pub fn side_for_bucket(ends: &[u64], bucket: u64) -> usize {
    ends.partition_point(|end| *end <= bucket)
        .min(ends.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(weights: &[u32]) -> Box<[u64]> {
        bucket_ends(weights.iter().copied())
    }

    #[test]
    fn ranges_follow_weights_in_order() {
        assert_eq!(&*ends(&[10, 90]), &[1_000, 10_000]);
        assert_eq!(&*ends(&[0, 1]), &[0, 10_000]);
        assert_eq!(&*ends(&[1, 1, 1]), &[3_333, 6_666, 10_000]);
    }

    #[test]
    fn raising_a_side_never_moves_a_key_off_it() {
        // For every bucket: if it was on side i before side i grew, it is
        // still on side i after.
        for (before, after, grown) in [
            (vec![10, 90], vec![30, 70], 0),
            (vec![10, 90], vec![30, 90], 0),
            (vec![10, 10, 80], vec![10, 30, 80], 1),
            (vec![10, 10, 80], vec![10, 10, 95], 2),
        ] {
            let (b, a) = (ends(&before), ends(&after));
            for x in 0..BUCKETS {
                if side_for_bucket(&b, x) == grown {
                    assert_eq!(
                        side_for_bucket(&a, x),
                        grown,
                        "{before:?} -> {after:?} bucket {x}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_sides_move_only_toward_the_side_that_grew() {
        let (b, a) = (ends(&[10, 90]), ends(&[30, 70]));
        for x in 0..BUCKETS {
            let (before, after) = (side_for_bucket(&b, x), side_for_bucket(&a, x));
            assert!(before == after || after == 0);
        }
    }
}
