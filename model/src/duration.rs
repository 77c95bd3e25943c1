//! Go's durations, as upstream's flags take them and its objects store them: one parser and
//! one formatter for every binary (boots' `TINKERBELL_TFTP_TIMEOUT`, rufio's intervals, the
//! worker's retry flags, a Workflow action's `executionDuration`).

use std::time::Duration;

/// A string that is not a duration; the message names it and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration ({why}; e.g. 500ms, 30s, 1h30m)")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

const NANOS_PER: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parse Go's `time.ParseDuration` syntax (`300ms`, `1.5h`, `2h45m`, `-0`, units `ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h`), and a bare number of seconds (`45`), which our flags always took.
/// Negative durations are refused: nothing here waits a negative time.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let input = s;
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (negative, mut rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("no number"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, tail) = rest.split_at(int_len);
        let (frac, tail) = match tail.strip_prefix('.') {
            Some(t) => {
                let n = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                t.split_at(n)
            }
            None => ("", tail),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err("a unit without a number"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per = unit_of(unit).ok_or_else(|| {
            err(if unit.is_empty() {
                "a number without a unit"
            } else {
                "unknown unit"
            })
        })?;
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err("too large"))?
        };
        let mut nanos = whole.checked_mul(per).ok_or_else(|| err("too large"))?;
        // The fraction, digit by digit, as Go does (exact to the nanosecond).
        let mut scale = per;
        for d in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(|| err("too large"))?;
        rest = tail;
    }
    if negative && total > 0 {
        return Err(err("negative"));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

fn unit_of(unit: &str) -> Option<u128> {
    NANOS_PER.iter().find(|(u, _)| *u == unit).map(|(_, n)| *n)
}

/// Go's `time.Duration.String()`: `0s`, `999ns`, `1.5µs`, `250ms`, `1.5s`, `1m1s`, `1h2m3.5s`,
/// `1h0m0s`. A negative duration is this with a leading `-`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let s = decimal(
        u128::from(s) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `n / unit` as a decimal with trailing zeros trimmed.
fn decimal(n: u128, unit: u128) -> String {
    let (whole, rest) = (n / unit, n % unit);
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_parses() {
        for (s, nanos) in [
            ("0", 0u128),
            ("-0", 0),
            ("+5s", 5_000_000_000),
            ("45", 45_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("2h45m10s", 9_910_000_000_000),
            ("90s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("100us", 100_000),
            ("100µs", 100_000),
            ("100μs", 100_000),
            ("7ns", 7),
            ("1.0000000001s", 1_000_000_000),
            (" 10m ", 600_000_000_000),
        ] {
            assert_eq!(parse(s).unwrap().as_nanos(), nanos, "{s}");
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        for (s, why) in [
            ("", "empty"),
            ("m", "a unit without a number"),
            ("10x", "unknown unit"),
            ("5 m", "unknown unit"),
            ("1h5", "a number without a unit"),
            ("-5s", "negative"),
            ("-", "no number"),
            (".s", "a unit without a number"),
            ("99999999999999999999999h", "too large"),
        ] {
            let e = parse(s).unwrap_err();
            assert_eq!(e.why, why, "{s}");
            assert!(e.to_string().contains(&format!("{s:?}")), "{e}");
        }
    }

    #[test]
    fn formats_as_go_does() {
        for (nanos, want) in [
            (0u64, "0s"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (2_500_000_000, "2.5s"),
            (61_000_000_000, "1m1s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (3_600_000_000_000, "1h0m0s"),
        ] {
            assert_eq!(format(Duration::from_nanos(nanos)), want);
            // And back.
            assert_eq!(parse(want).unwrap(), Duration::from_nanos(nanos), "{want}");
        }
    }
}
