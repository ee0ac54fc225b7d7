//! RFC 3339 timestamps (UTC) for logs and the admin API, without a date
//! crate: the civil-from-days conversion is a dozen lines. [`parse_rfc3339`]
//! reads them back (a ramp's `start`), with the inverse conversion.

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

/// `2026-12-01T09:00:00Z`, `2026-12-01T10:00:00.250+01:00`: Unix
/// milliseconds. RFC 3339 §5.6 `date-time`: the offset is required (`Z` or
/// `±HH:MM`), `T` and `Z` may be lower case, fractional seconds are kept to
/// the millisecond. A leap second (`:60`) is read as the next second.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "invalid time {text:?}: expected RFC 3339 with an offset, such as \
             \"2026-12-01T09:00:00Z\" or \"2026-12-01T10:00:00+01:00\""
        )
    };
    let b = text.as_bytes();
    let digits = |at: usize, n: usize| -> Option<i64> {
        let part = b.get(at..at + n)?;
        part.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return Err(bad());
    }
    let field = |at, n| digits(at, n).ok_or_else(bad);
    let (y, mo, d) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (h, mi, s) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    let month_days = match mo {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return Err(bad()),
    };
    if d < 1 || d > month_days || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let mut at = 19;
    let mut millis = 0;
    if sep(at, b".") {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return Err(bad());
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset = match &b[at..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (field(at + 1, 2)?, field(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let minutes = oh * 60 + om;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return Err(bad()),
    };
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset * 60;
    Ok(seconds * 1000 + millis)
}

/// Howard Hinnant's algorithm: (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    #[test]
    fn parses_what_it_formats_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-11-23T18:57:00.123Z"),
            Ok(1_795_460_220_123)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23t19:57:00.1234+01:00"),
            Ok(1_795_460_220_123)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T18:27:00.5-00:30"),
            Ok(1_795_460_220_500)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1000));
        for t in 0..3 {
            let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + t * 86_399 * 37);
            let text = rfc3339(when);
            let ms = when.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
            assert_eq!(parse_rfc3339(&text), Ok(ms), "{text}");
        }
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01T09:00:00",
            "2026-12-01 09:00:00Z",
            "2026-13-01T09:00:00Z",
            "2026-02-29T09:00:00Z",
            "2026-04-31T09:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T09:00:00.Z",
            "2026-12-01T09:00:00+0100",
            "2026-12-01T09:00:00+01:60",
            "2026-12-01T09:00:00Zjunk",
            "+026-12-01T09:00:00Z",
            "2026-12-01T09:00:00ü",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }
}
