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
}
