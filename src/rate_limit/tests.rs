use super::*;
use http::HeaderValue;

const S: u64 = 1_000_000_000;

fn spec(rate: f64, burst: u32, key: RateLimitKey) -> RateLimitSpec {
    RateLimitSpec { rate, burst, key }
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after(1), 1);
    assert_eq!(retry_after(S), 1);
    assert_eq!(retry_after(S + 1), 2);
    assert_eq!(
        retry_after(u64::MAX),
        u32::try_from(u64::MAX / S + 1).unwrap_or(u32::MAX)
    );
}

#[test]
fn keys_never_pass_the_cap_and_the_least_recent_go_first() {
    let limiter = RateLimiter::new(&spec(1.0, 1, RateLimitKey::ClientIp));
    let keyed = match &limiter.buckets {
        Buckets::Keyed(k) => k,
        Buckets::Route(_) => unreachable!(),
    };
    let hash = |i: u64| {
        let mut h = keyed.hasher.build_hasher();
        h.write_u64(i);
        h.finish()
    };
    let total = 150_000u64;
    for i in 0..total {
        assert!(
            limiter.check_key_at(hash(i), S).is_ok(),
            "key {i} starts full"
        );
    }
    assert!(limiter.keys() <= MAX_KEYS, "{} keys", limiter.keys());
    assert!(
        limiter.keys() > MAX_KEYS * 9 / 10,
        "{} keys",
        limiter.keys()
    );
    // The newest keys are still there (their buckets are empty), the
    // oldest were dropped (theirs start full again).
    for i in total - 10_000..total {
        assert!(
            limiter.check_key_at(hash(i), S).is_err(),
            "recent key {i} kept"
        );
    }
    for i in 0..10_000 {
        assert!(
            limiter.check_key_at(hash(i), S).is_ok(),
            "old key {i} dropped"
        );
    }
    assert!(limiter.keys() <= MAX_KEYS);
}

#[test]
fn idle_keys_are_dropped_after_a_minute() {
    let limiter = RateLimiter::new(&spec(10.0, 10, RateLimitKey::ClientIp));
    for key in 0..5_000u64 {
        limiter
            .check_key_at(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), S)
            .unwrap();
    }
    assert_eq!(limiter.keys(), 5_000);
    // Within the minute nothing goes; after it, the once-a-second sweep
    // empties every shard.
    limiter.check_key_at(0, 59 * S).unwrap();
    assert_eq!(limiter.keys(), 5_000);
    limiter.check_key_at(0, 62 * S).unwrap();
    assert_eq!(limiter.keys(), 1);
}

#[test]
fn a_bucket_slower_than_a_minute_is_kept_until_full() {
    // One token per 10 minutes: dropping the key after a minute would hand
    // a full bucket back early.
    let limiter = RateLimiter::new(&spec(1.0 / 600.0, 1, RateLimitKey::ClientIp));
    limiter.check_key_at(7, S).unwrap();
    limiter.check_key_at(8, 120 * S).unwrap();
    assert!(limiter.check_key_at(7, 120 * S).is_err());
    assert_eq!(limiter.check_key_at(7, 121 * S), Err(480));
}

#[test]
fn the_route_key_is_one_bucket() {
    let limiter = RateLimiter::new(&spec(2.0, 3, RateLimitKey::Route));
    for key in 0..3 {
        limiter.check_key_at(key, S).unwrap();
    }
    assert_eq!(limiter.check_key_at(99, S), Err(1));
    assert_eq!(limiter.keys(), 1);
}

#[test]
fn header_keys_fall_back_to_the_client_address() {
    let limiter = RateLimiter::new(&spec(
        1.0,
        1,
        RateLimitKey::Header(http::HeaderName::from_static("x-user")),
    ));
    let Buckets::Keyed(keyed) = &limiter.buckets else {
        unreachable!()
    };
    let key = &limiter.spec.key;
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    let none = HeaderMap::new();
    let mut alice = HeaderMap::new();
    alice.insert("x-user", HeaderValue::from_static("alice"));
    // The raw address as a header value must not be the address's key.
    let mut sneaky = HeaderMap::new();
    sneaky.insert(
        "x-user",
        HeaderValue::from_bytes(&[10, 0, 0, 1]).unwrap_or(HeaderValue::from_static("x")),
    );
    assert_eq!(keyed.key(key, &none, ip), keyed.key(key, &none, mapped));
    assert_ne!(keyed.key(key, &alice, ip), keyed.key(key, &none, ip));
    assert_eq!(
        keyed.key(key, &alice, ip),
        keyed.key(key, &alice, "10.9.9.9".parse().unwrap())
    );
    assert_ne!(keyed.key(key, &sneaky, ip), keyed.key(key, &none, ip));
}
