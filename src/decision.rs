//! The routing decision for one request: which route, the path that goes
//! upstream, and which side of a split. `proxy` and `figway explain` both
//! call [`decide`] and [`choose_side`], so what explain prints is what the
//! proxy does.
//!
//! Sticky splits: the key is hashed with the route's name into a fixed space
//! of [`BUCKETS`] buckets, and each side owns a contiguous range of buckets
//! in config order, sized by weight. The side is therefore a pure function
//! of (route name, key, weights): every figway instance, after every
//! restart, agrees, with no shared state. Raising one side's weight (others
//! unchanged) only widens that side's range, so no key ever leaves it; with
//! two sides, any change moves keys only toward the side whose share grew.

use http::header::HOST;
use std::net::IpAddr;

use http::{HeaderMap, Method, Uri};

use crate::config::Side;
use crate::error::ErrorKind;
use crate::hash::stable_hash2;
use crate::keys;
use crate::path;
use crate::state::{Route, Snapshot};

pub struct Decision<'s> {
    pub route_index: usize,
    pub route: &'s Route,
    /// Normalised, with strip/rewrite applied, and the query unchanged.
    pub path_forwarded: String,
}

/// The host a request is routed by: the authority of an absolute-form or
/// HTTP/2 request, else the `Host` header.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
}

pub fn decide<'s>(
    snapshot: &'s Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Decision<'s>, ErrorKind> {
    let normalized = path::normalize(uri.path()).map_err(|_| ErrorKind::BadRequest)?;
    let host = request_host(uri, headers);
    let found = snapshot
        .router
        .lookup(host, method, &normalized)
        .ok_or(ErrorKind::NoRoute)?;
    let route = &snapshot.routes[found.route];
    let rest = &normalized[found.prefix_len..];
    let query = uri.query();
    let mut forwarded =
        String::with_capacity(normalized.len() + query.map_or(0, |q| q.len() + 1) + 16);
    match (&route.rewrite_prefix, route.strip_prefix) {
        (Some(new), _) => {
            // Joining "/v2/" and "/7" must not double the slash.
            if rest.starts_with('/') {
                forwarded.push_str(new.strip_suffix('/').unwrap_or(new));
            } else {
                forwarded.push_str(new);
            }
            forwarded.push_str(rest);
        }
        (None, true) => {
            if !rest.starts_with('/') {
                forwarded.push('/');
            }
            forwarded.push_str(rest);
        }
        (None, false) => forwarded.push_str(&normalized),
    }
    if forwarded.is_empty() {
        forwarded.push('/');
    }
    if let Some(q) = query {
        forwarded.push('?');
        forwarded.push_str(q);
    }
    Ok(Decision {
        route_index: found.route,
        route,
        path_forwarded: forwarded,
    })
}

/// Size of the sticky bucket space: shares are exact to 0.01%.
pub const BUCKETS: u64 = 10_000;

/// Where each side's bucket range ends: side i owns
/// `[ends[i-1], ends[i])`, `ends` rising to [`BUCKETS`].
pub fn bucket_ends(sides: &[Side]) -> Box<[u64]> {
    let total: u64 = sides.iter().map(|s| u64::from(s.weight)).sum();
    let mut cumulative = 0u64;
    sides
        .iter()
        .map(|s| {
            cumulative += u64::from(s.weight);
            BUCKETS * cumulative / total.max(1)
        })
        .collect()
}

/// The bucket a sticky key falls in, for one route.
pub fn sticky_bucket(route: &Route, key: &[u8]) -> u64 {
    stable_hash2(route.name.as_bytes(), key) % BUCKETS
}

/// The side that owns `bucket`.
pub fn side_for_bucket(route: &Route, bucket: u64) -> usize {
    route
        .bucket_ends
        .partition_point(|end| *end <= bucket)
        .min(route.sides.len() - 1)
}

/// The side of the route this request goes to: by its sticky key when the
/// route has one and the request carries it, else at random by weight.
pub fn choose_side(route: &Route, headers: &HeaderMap, client: IpAddr) -> usize {
    if route.sides.len() == 1 {
        return 0;
    }
    if let Some(source) = &route.sticky {
        let mut buf = [0u8; 16];
        if let Some(key) = keys::key_value(source, headers, client, &mut buf) {
            return side_for_bucket(route, sticky_bucket(route, key));
        }
    }
    let mut pick = fastrand::u64(..route.total_weight.max(1));
    for (i, side) in route.sides.iter().enumerate() {
        let w = u64::from(side.weight);
        if pick < w {
            return i;
        }
        pick -= w;
    }
    route.sides.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sides(weights: &[u32]) -> Vec<Side> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Side {
                upstream: i,
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn ranges_follow_weights_in_order() {
        assert_eq!(&*bucket_ends(&sides(&[10, 90])), &[1_000, 10_000]);
        assert_eq!(&*bucket_ends(&sides(&[0, 1])), &[0, 10_000]);
        assert_eq!(&*bucket_ends(&sides(&[1, 1, 1])), &[3_333, 6_666, 10_000]);
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
            let (b, a) = (bucket_ends(&sides(&before)), bucket_ends(&sides(&after)));
            let side = |ends: &[u64], x: u64| ends.partition_point(|e| *e <= x);
            for x in 0..BUCKETS {
                if side(&b, x) == grown {
                    assert_eq!(side(&a, x), grown, "{before:?} -> {after:?} bucket {x}");
                }
            }
        }
    }

    #[test]
    fn two_sides_move_only_toward_the_side_that_grew() {
        let (b, a) = (
            bucket_ends(&sides(&[10, 90])),
            bucket_ends(&sides(&[30, 70])),
        );
        let side = |ends: &[u64], x: u64| ends.partition_point(|e| *e <= x);
        for x in 0..BUCKETS {
            let (before, after) = (side(&b, x), side(&a, x));
            assert!(before == after || after == 0);
        }
    }
}
