//! Calendar arithmetic in UTC, without a date library.
//!
//! Budgets reset on calendar boundaries (day, ISO week starting Monday,
//! month), all in UTC. The domain takes the current time as an argument
//! (milliseconds since the Unix epoch) so tests control the clock.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub const MS_PER_DAY: i64 = 86_400_000;
pub const MS_PER_HOUR: i64 = 3_600_000;
pub const MS_PER_MINUTE: i64 = 60_000;

/// A budget window kind.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Daily,
    Weekly,
    Monthly,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Daily, Window::Weekly, Window::Monthly];

    pub fn name(self) -> &'static str {
        match self {
            Window::Daily => "daily",
            Window::Weekly => "weekly",
            Window::Monthly => "monthly",
        }
    }

    /// The start (inclusive) of the window that contains `at`.
    pub fn start(self, at: Millis) -> Millis {
        let day = at.div_euclid(MS_PER_DAY);
        match self {
            Window::Daily => day * MS_PER_DAY,
            // 1970-01-01 was a Thursday: Monday is three days earlier.
            Window::Weekly => ((day + 3).div_euclid(7) * 7 - 3) * MS_PER_DAY,
            Window::Monthly => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * MS_PER_DAY
            }
        }
    }

    /// The start of the next window after the one containing `at`.
    pub fn end(self, at: Millis) -> Millis {
        let day = at.div_euclid(MS_PER_DAY);
        match self {
            Window::Daily => (day + 1) * MS_PER_DAY,
            Window::Weekly => self.start(at) + 7 * MS_PER_DAY,
            Window::Monthly => {
                let (y, m, _) = civil_from_days(day);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * MS_PER_DAY
            }
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Start of the UTC hour containing `at`: the rollup bucket.
pub fn hour_start(at: Millis) -> Millis {
    at.div_euclid(MS_PER_HOUR) * MS_PER_HOUR
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 text for a timestamp, for humans and JSON.
pub fn rfc3339(at: Millis) -> String {
    let day = at.div_euclid(MS_PER_DAY);
    let ms = at.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(day);
    let (h, mi, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// What [`parse_time`] takes, as a regular expression (the OpenAPI
/// document's pattern for every time parameter). Text that matches it is a
/// time or a day the calendar lacks (`2026-02-30`); nothing else parses.
pub const TIME_PATTERN: &str = concat!(
    r"^([0-9]{1,18}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
    r"([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?",
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?)$"
);

/// Why a time parameter was not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not of the form [`TIME_PATTERN`] says.
    #[error(
        "`{0}` is not a time: give milliseconds since 1970 or RFC 3339 like 2026-11-25T13:00:00Z"
    )]
    Malformed(String),
    /// Well formed, but the month has no such day.
    #[error("`{0}` names a day its month does not have")]
    NoSuchDay(String),
}

/// Reads a time as milliseconds since the epoch (`1764000000000`) or as
/// RFC 3339 (`2026-11-25T13:00:00Z`, `2026-11-25T14:00:00.5+01:00`) or a
/// bare date (`2026-11-25`, midnight UTC): exactly the text
/// [`TIME_PATTERN`] matches, no surrounding space, so that what the
/// document allows and what the server takes are one set.
pub fn parse_time(s: &str) -> Result<Millis, TimeError> {
    let bad = || TimeError::Malformed(s.to_string());
    let b = s.as_bytes();
    if (1..=18).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        return s.parse::<i64>().map_err(|_| bad());
    }
    // Fixed-width digits at `at`, bounded by `max`.
    let field = |at: usize, len: usize, max: i64| -> Result<i64, TimeError> {
        let digits = b.get(at..at + len).ok_or_else(bad)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let v = digits.iter().fold(0, |v, d| v * 10 + i64::from(d - b'0'));
        if v > max { Err(bad()) } else { Ok(v) }
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    let (y, m, d) = (field(0, 4, 9999)?, field(5, 2, 12)?, field(8, 2, 31)?);
    if !at(4, b"-") || !at(7, b"-") || m == 0 || d == 0 {
        return Err(bad());
    }
    let mut ms = 0;
    if b.len() > 10 {
        if !at(10, b"Tt ") || !at(13, b":") || !at(16, b":") {
            return Err(bad());
        }
        let (h, mi, sec) = (field(11, 2, 23)?, field(14, 2, 59)?, field(17, 2, 60)?);
        ms = h * MS_PER_HOUR + mi * MS_PER_MINUTE + sec * 1000;
        let mut i = 19;
        if at(i, b".") {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return Err(bad());
            }
            // Milliseconds: the first three digits, padded.
            ms += (0..3).fold(0, |v, k| {
                v * 10
                    + b.get(i + 1 + k)
                        .filter(|_| k < digits)
                        .map_or(0, |d| i64::from(d - b'0'))
            });
            i += 1 + digits;
        }
        // The offset: `Z`, or `±hh:mm` of local time ahead of UTC.
        let utc = at(i, b"Zz") && b.len() == i + 1;
        if !utc {
            if !(at(i, b"+-") && at(i + 3, b":") && b.len() == i + 6) {
                return Err(bad());
            }
            let off = field(i + 1, 2, 23)? * MS_PER_HOUR + field(i + 4, 2, 59)? * MS_PER_MINUTE;
            ms -= if b[i] == b'-' { -off } else { off };
        }
    }
    if d > days_in_month(y, m) {
        return Err(TimeError::NoSuchDay(s.to_string()));
    }
    Ok(days_from_civil(y, m as u32, d as u32) * MS_PER_DAY + ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(days: i64) -> Millis {
        days * MS_PER_DAY
    }

    #[test]
    fn civil_round_trip() {
        for z in -800_000..800_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 25), 20_782);
    }

    #[test]
    fn windows() {
        // 2026-11-25 is a Wednesday.
        let now = at(days_from_civil(2026, 11, 25)) + 13 * MS_PER_HOUR;
        assert_eq!(Window::Daily.start(now), at(days_from_civil(2026, 11, 25)));
        assert_eq!(Window::Daily.end(now), at(days_from_civil(2026, 11, 26)));
        assert_eq!(Window::Weekly.start(now), at(days_from_civil(2026, 11, 23)));
        assert_eq!(Window::Weekly.end(now), at(days_from_civil(2026, 11, 30)));
        assert_eq!(Window::Monthly.start(now), at(days_from_civil(2026, 11, 1)));
        assert_eq!(Window::Monthly.end(now), at(days_from_civil(2026, 12, 1)));
        let dec = at(days_from_civil(2026, 12, 31));
        assert_eq!(Window::Monthly.end(dec), at(days_from_civil(2027, 1, 1)));
        // A Monday starts its own week; a Sunday belongs to the week before.
        let mon = at(days_from_civil(2026, 11, 23));
        assert_eq!(Window::Weekly.start(mon), mon);
        let sun = at(days_from_civil(2026, 11, 29)) + MS_PER_DAY - 1;
        assert_eq!(Window::Weekly.start(sun), mon);
        assert_eq!(rfc3339(now + 1_234), "2026-11-25T13:00:01.234Z");
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1764000000000"), Ok(1_764_000_000_000));
        let d = crate::time::days_from_civil(2026, 11, 25) * MS_PER_DAY;
        assert_eq!(parse_time("2026-11-25"), Ok(d));
        assert_eq!(parse_time("2026-11-25T13:00:00Z"), Ok(d + 13 * MS_PER_HOUR));
        assert_eq!(
            parse_time("2026-11-25T14:00:00.5+01:00"),
            Ok(d + 13 * MS_PER_HOUR + 500)
        );
        assert_eq!(
            parse_time("2026-11-25T12:30:00-00:30"),
            Ok(d + 13 * MS_PER_HOUR)
        );
        assert_eq!(
            parse_time("2024-02-29"),
            Ok(at(days_from_civil(2024, 2, 29)))
        );
        for bad in [
            "",
            "x",
            "2026-13-01",
            "2026-11-25T25:00:00Z",
            "2026-11-25T13:00Z",
            "-5",
            "+5",
            " 5",
            "5 ",
            "2026-11-25T13:00:00",
            "2026-11-25T13:00:00.Z",
            "2026-11-25T13:00:00.1234567890Z",
            "2026-11-25T13:00:00+1:00",
            "2026-11-25T13:00:00+01:00x",
            "1234567890123456789",
        ] {
            assert_eq!(
                parse_time(bad),
                Err(TimeError::Malformed(bad.into())),
                "{bad}"
            );
        }
        for gone in ["2026-02-30", "2026-02-29", "2026-04-31", "1900-02-29"] {
            assert_eq!(parse_time(gone), Err(TimeError::NoSuchDay(gone.into())));
        }
    }

    proptest::proptest! {
        /// Whatever the document's pattern allows parses, or names a day
        /// its month lacks; it is never called malformed.
        #[test]
        fn what_the_pattern_allows_is_read(s in TIME_PATTERN.trim_start_matches('^').trim_end_matches('$')) {
            match parse_time(&s) {
                Ok(_) | Err(TimeError::NoSuchDay(_)) => {}
                Err(e) => panic!("{s}: {e}"),
            }
        }
    }
}
