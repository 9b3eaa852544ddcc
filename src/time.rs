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

/// Reads a time as milliseconds since the epoch (`1764000000000`) or as
/// RFC 3339 (`2026-11-25T13:00:00Z`, `2026-11-25T14:00:00.5+01:00`) or a
/// bare date (`2026-11-25`, midnight UTC).
pub fn parse_time(s: &str) -> Result<Millis, String> {
    let bad = || {
        format!(
            "`{s}` is not a time: give milliseconds since 1970 or RFC 3339 like 2026-11-25T13:00:00Z"
        )
    };
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| bad());
    }
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(day), None) if y.len() == 4 && m.len() == 2 && day.len() == 2 => {
            (num(y)?, num(m)?, num(day)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || day < 1 || day > days_in_month(y, m) {
        return Err(bad());
    }
    let days = crate::time::days_from_civil(y, m as u32, day as u32);
    let Some(rest) = rest else {
        return Ok(days * MS_PER_DAY);
    };
    let (clock, offset_ms) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (c, off) = (&rest[..i], &rest[i..]);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 || oh.to_string().len() > 2 {
            return Err(bad());
        }
        (c, sign * (oh * MS_PER_HOUR + om * MS_PER_MINUTE))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let (h, mi, sec) = match (t.next(), t.next(), t.next(), t.next()) {
        (Some(h), Some(mi), Some(sec), None) if h.len() == 2 && mi.len() == 2 && sec.len() == 2 => {
            (num(h)?, num(mi)?, num(sec)?)
        }
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let ms = match frac {
        None => 0,
        Some(f) => {
            num(f)?;
            let f3: String = f.chars().chain("000".chars()).take(3).collect();
            num(&f3)?
        }
    };
    Ok(days * MS_PER_DAY + h * MS_PER_HOUR + mi * MS_PER_MINUTE + sec * 1000 + ms - offset_ms)
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
        for bad in [
            "",
            "x",
            "2026-13-01",
            "2026-02-30",
            "2026-11-25T25:00:00Z",
            "2026-11-25T13:00Z",
            "-5",
            "2026-11-25T13:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
