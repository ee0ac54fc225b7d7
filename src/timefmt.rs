//! RFC 3339 timestamps (UTC) for logs and the admin API, without a date
//! crate: the civil-from-days conversion is a dozen lines.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-23T18:57:00.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let mut text = [0u8; 24];
    rfc3339_millis_into(t, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// As [`rfc3339_millis`], into a fixed buffer, without allocating.
pub fn rfc3339_millis_into(t: SystemTime, out: &mut [u8; 24]) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let unix = d.as_secs();
    let (y, m, day) = civil_from_days((unix / 86_400) as i64);
    let rem = unix % 86_400;
    let mut put = |at: usize, v: u64, n: usize| {
        let mut v = v;
        for i in (0..n).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y as u64, 4);
    put(5, u64::from(m), 2);
    put(8, u64::from(day), 2);
    put(11, rem / 3600, 2);
    put(14, rem % 3600 / 60, 2);
    put(17, rem % 60, 2);
    put(20, u64::from(d.subsec_millis()), 3);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out[23] = b'Z';
}

/// `2026-11-23T18:57:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, secs) = split(d.as_secs());
    format!("{date}T{secs}Z")
}

fn split(unix: u64) -> (String, String) {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Howard Hinnant's algorithm: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_460_220_123);
        assert_eq!(rfc3339_millis(t), "2026-11-23T18:57:00.123Z");
        let mut b = [0u8; 24];
        rfc3339_millis_into(t, &mut b);
        assert_eq!(&b, b"2026-11-23T18:57:00.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
