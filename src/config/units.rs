//! Durations and sizes as operators write them in the config file
//! (`"250ms"`, `"1.5s"`, `"2m"`, `"1MiB"`). Kept apart from the TOML walker so
//! the grammar is tested on its own and the error text is the same everywhere.

use std::time::Duration;

/// Parses `<number><unit>` with unit `ms`, `s`, `m` or `h`; the number may have
/// a fractional part (`1.5s`). Zero is allowed; negative or unit-less values are not.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a number and a unit ms, s, m or h (\"250ms\", \"1.5s\")")
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    // A year is far beyond any timeout anyone means; it also keeps
    // Duration::from_secs_f64 away from its overflow panic.
    if !seconds.is_finite() || seconds > 365.0 * 24.0 * 3600.0 {
        return Err(format!("duration {text:?} is too large"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `<whole number><unit>` with unit `B`, `KiB`, `MiB` or `GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size {text:?}: expected a whole number and a unit B, KiB, MiB or GiB");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "1.s",
            ".5s",
            "-1s",
            "1 s",
            "1sec",
            "1.2.3s",
            "99999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        for bad in ["", "1", "MiB", "1.5MiB", "1MB", "1 MiB", "99999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
