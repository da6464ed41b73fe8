//! Durations as people type them: `250ms`, `30s`, `5m`, `2h`, `7d`.
//!
//! A whole number and one unit, nothing else. That covers every duration
//! the command takes (leases, timeouts, delays, retention), and a parser
//! this small is easier to trust than a dependency that accepts forms no
//! one here needs ("1h 30m 5s", "1 fortnight").

use std::fmt;
use std::time::Duration;

/// Parses `text`; the error is one line that shows the accepted forms.
///
/// ```text
/// "30s" -> 30 seconds; "250ms" -> 0.25 s; "7d" -> 604,800 s
/// ```
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let malformed = || {
        format!(
            "{text:?} is not a duration (expected a whole number and a unit: 250ms, 30s, 5m, 2h, 7d)"
        )
    };
    if digits.is_empty() {
        return Err(malformed());
    }
    let amount: u64 = digits.parse().map_err(|_| malformed())?;
    let seconds_per_unit: u64 = match unit {
        "ms" => return Ok(Duration::from_millis(amount)),
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(malformed()),
    };
    amount
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// A duration shown the way [`parse`] reads it where that is exact, and
/// with one decimal otherwise: `250ms`, `30s`, `1.5s`, `5m`, `2h 5m`.
pub(crate) struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duration = self.0;
        let seconds = duration.as_secs();
        if seconds == 0 {
            return write!(f, "{}ms", duration.as_millis());
        }
        if seconds < 60 {
            return if duration.subsec_millis() == 0 {
                write!(f, "{seconds}s")
            } else {
                write!(f, "{:.1}s", duration.as_secs_f64())
            };
        }
        let (days, hours, minutes, rest) =
            (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
        match (days, hours) {
            (0, 0) if rest == 0 => write!(f, "{minutes}m"),
            (0, 0) => write!(f, "{minutes}m {rest}s"),
            (0, _) => write!(f, "{hours}h {minutes}m"),
            _ => write!(f, "{days}d {hours}h"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_refused_on_one_line() {
        for bad in ["", "s", "30", "30x", "-5s", "1.5s", "5 m", "1h30m", "99999999999999999999s"] {
            let error = parse(bad).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(parse("999999999999999999d").unwrap_err().contains("too long"));
    }

    #[test]
    fn durations_display_compactly() {
        let show = |duration| Human(duration).to_string();
        assert_eq!(show(Duration::from_millis(250)), "250ms");
        assert_eq!(show(Duration::from_secs(30)), "30s");
        assert_eq!(show(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(show(Duration::from_secs(300)), "5m");
        assert_eq!(show(Duration::from_secs(305)), "5m 5s");
        assert_eq!(show(Duration::from_secs(7_500)), "2h 5m");
        assert_eq!(show(Duration::from_secs(90_000)), "1d 1h");
    }
}
