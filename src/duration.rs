//! The one duration syntax of stateward, for flags (`--grace 7d`), policy files
//! (`pendingFor: 10m`) and the API server's `?timeout=10s`: Go's `time.ParseDuration`
//! (`500ms`, `1.5s`, `1h30m`) plus `d` for days. Pure: no clock, no I/O.
use std::time::Duration;

const NANOS_PER: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// The JSON-schema pattern of [`parse`]'s syntax, for policy files.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+$";

/// Parses a sequence of `<number><unit>` (`90s`, `1.5h`, `1h30m`, `7d`). `None` for an
/// empty text, a missing or unknown unit, a sign, or an overflow.
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty()
            || (number.contains('.') && fraction.is_empty())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let per = NANOS_PER.iter().find(|(name, _)| *name == unit)?.1;
        let whole: u128 = whole.parse().ok()?;
        let mut nanos = whole.checked_mul(per)?;
        let mut scale = per;
        for digit in fraction.bytes() {
            scale /= 10;
            nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
        }
        total = total.checked_add(nanos)?;
        rest = next;
    }
    let seconds = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(seconds, (total % 1_000_000_000) as u32))
}

/// [`parse`] for settings kept in whole seconds (thresholds, grace periods, ages): `None`
/// also when the duration has a fraction of a second.
pub fn seconds(text: &str) -> Option<i64> {
    let duration = parse(text)?;
    if duration.subsec_nanos() != 0 {
        return None;
    }
    i64::try_from(duration.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_days_parse() {
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in [
            "", "10", "s", "7w", "d", "-5s", "+5s", "1.s", ".5s", "5 s", "10m ", "1.2.3s", "lots",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(parse("99999999999999999999999d"), None);
    }

    #[test]
    fn whole_seconds() {
        assert_eq!(seconds("30m"), Some(1800));
        assert_eq!(seconds("1.5m"), Some(90));
        assert_eq!(seconds("500ms"), None);
        assert_eq!(seconds("7w"), None);
    }
}
