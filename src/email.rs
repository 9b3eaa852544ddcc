//! E-mailed usage reports: the `[email]` configuration and when a
//! scheduled report is due. Pure: the runtime (`usecase/reports.rs`) reads
//! the store and speaks SMTP; what a report says is in `report.rs`.
//!
//! Credentials never sit in the file, which is often committed or shown
//! (`/api/config` prints the configuration): they come from
//! `ONEFLOW_SMTP_USERNAME` and `ONEFLOW_SMTP_PASSWORD` only.

use serde::{Deserialize, Serialize};

use crate::time::{MS_PER_DAY, MS_PER_HOUR, Millis, Window};

/// The environment variable holding the SMTP user name.
pub const USERNAME_ENV: &str = "ONEFLOW_SMTP_USERNAME";
/// The environment variable holding the SMTP password.
pub const PASSWORD_ENV: &str = "ONEFLOW_SMTP_PASSWORD";

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded by STARTTLS, which the server must offer
    /// (never sent in the clear if it does not): submission on port 587.
    #[default]
    Starttls,
    /// TLS from the first byte: port 465.
    Tls,
    /// No encryption: a relay on this machine only, since anything else
    /// would carry the password and the reports in the clear.
    None,
}

/// Which scheduled reports each user gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reports {
    #[default]
    Off,
    /// Yesterday's report, each day from `send_hour_utc`.
    Daily,
    /// Last week's (Monday to Sunday, UTC), each Monday from
    /// `send_hour_utc` (or later that week if the broker was down).
    Weekly,
}

/// The `[email]` section. Without `smtp_host` nothing is ever sent and
/// `POST /api/reports/send-now` answers 409 `email_not_configured`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The SMTP server's host name or IP address.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub tls: TlsMode,
    /// The sender's address (`reports@example.com`); required with
    /// `smtp_host`.
    pub from: Option<String>,
    pub reports: Reports,
    /// The UTC hour from which a closed period's report is sent (0 to 23).
    pub send_hour_utc: u8,
    /// How often the scheduler looks for reports due, in seconds.
    pub check_every_secs: u64,
    /// Also send a scheduled report for a period with no request in it;
    /// off, so that idle users are not mailed every day.
    pub send_empty: bool,
    /// Most reports one scheduler run sends; the rest wait for the next
    /// run, so one run never holds the SMTP server or the store for long.
    pub max_per_run: usize,
    /// Longest one message's whole SMTP exchange may take (connect, TLS,
    /// authentication, data): past it the send fails (502), never hangs.
    pub timeout_secs: u64,
    /// Budget alerts: when spend in a budget window reaches one of these
    /// percentages of its limit, the wallet's owner (a team's admins and
    /// billing members) is mailed once for that window
    /// (`oneflow::budget_alert`). Empty: no alert mail.
    pub budget_alerts: Vec<u8>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_host: None,
            smtp_port: 587,
            tls: TlsMode::Starttls,
            from: None,
            reports: Reports::Off,
            send_hour_utc: 6,
            check_every_secs: 60,
            send_empty: false,
            max_per_run: 100,
            timeout_secs: 30,
            budget_alerts: vec![80, 100],
        }
    }
}

/// Most percentages `budget_alerts` may list.
pub const MAX_ALERT_PERCENTS: usize = 5;

/// Checks `[email] budget_alerts`: at most [`MAX_ALERT_PERCENTS`]
/// percentages, each from 1 to 100.
pub fn check_percents(p: &[u8]) -> Result<(), String> {
    if p.len() > MAX_ALERT_PERCENTS {
        return Err(format!("lists at most {MAX_ALERT_PERCENTS} percentages"));
    }
    match p.iter().find(|x| !(1..=100).contains(*x)) {
        Some(x) => Err(format!("{x} is not a percentage from 1 to 100")),
        None => Ok(()),
    }
}

impl EmailConfig {
    /// Whether an SMTP server is configured at all.
    pub fn enabled(&self) -> bool {
        self.smtp_host.is_some()
    }

    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: &str| Err((format!("email.{k}"), r.to_string()));
        if self.send_hour_utc > 23 {
            return bad("send_hour_utc", "must be between 0 and 23");
        }
        if self.check_every_secs == 0 || self.check_every_secs > 86_400 {
            return bad("check_every_secs", "must be between 1 and 86400");
        }
        if self.timeout_secs == 0 || self.timeout_secs > 600 {
            return bad("timeout_secs", "must be between 1 and 600");
        }
        if self.max_per_run == 0 || self.max_per_run > 10_000 {
            return bad("max_per_run", "must be between 1 and 10000");
        }
        if let Err(why) = check_percents(&self.budget_alerts) {
            return bad("budget_alerts", &why);
        }
        let Some(host) = &self.smtp_host else {
            if self.reports != Reports::Off {
                return bad("reports", "needs email.smtp_host");
            }
            return Ok(());
        };
        if host.is_empty()
            || host.len() > 253
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return bad(
                "smtp_host",
                "must be a host name or an IP address, without scheme or port",
            );
        }
        if self.smtp_port == 0 {
            return bad("smtp_port", "must be between 1 and 65535");
        }
        if self.tls == TlsMode::None && !is_loopback(host) {
            return bad(
                "tls",
                "`none` is only allowed for a loopback host (localhost, 127.0.0.1, ::1): use starttls or tls",
            );
        }
        match &self.from {
            None => bad("from", "is required when email.smtp_host is set"),
            Some(a) if !is_address(a) => {
                bad("from", "must be an e-mail address like reports@example.com")
            }
            Some(_) => Ok(()),
        }
    }
}

/// Whether `host` names this machine: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `a` is a plain address `local@domain`: printable ASCII, no
/// spaces, none of the characters that would let it carry a display name,
/// a second address or a header, one `@`, a domain of dot-separated labels.
pub fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c))
    };
    !local.is_empty()
        && local.len() <= 64
        && plain(local)
        && !domain.is_empty()
        && domain.len() <= 253
        && plain(domain)
        && domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

/// The longest explicit period a report covers.
pub const MAX_DAYS: i64 = 366;

fn ceil(at: Millis, unit: Millis) -> Millis {
    let f = at.div_euclid(unit) * unit;
    if f == at { at } else { f + unit }
}

/// A report's period: `[from, to)`, milliseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: Millis,
    pub to: Millis,
}

impl Period {
    /// The previous UTC day, seen at `now`.
    pub fn previous_day(now: Millis) -> Period {
        let to = Window::Daily.start(now);
        Period {
            from: to - MS_PER_DAY,
            to,
        }
    }

    /// The previous 7 UTC days (today excluded), seen at `now`.
    pub fn previous_week(now: Millis) -> Period {
        let to = Window::Daily.start(now);
        Period {
            from: to - 7 * MS_PER_DAY,
            to,
        }
    }

    /// An explicit `[from, to)`, widened to whole hours, or to whole days
    /// when it is longer than two days, so that the totals, the chart's
    /// bars and the CSV cover one and the same range. At most 366 days.
    pub fn explicit(from: Millis, to: Millis) -> Result<Period, String> {
        if from < 0 || to < 0 {
            return Err("`from` and `to` must not be before 1970".into());
        }
        if from >= to {
            return Err("`from` must be before `to`".into());
        }
        if to - from > MAX_DAYS * MS_PER_DAY {
            return Err(format!("a report covers at most {MAX_DAYS} days"));
        }
        let hours = Period {
            from: from.div_euclid(MS_PER_HOUR) * MS_PER_HOUR,
            to: ceil(to, MS_PER_HOUR),
        };
        if hours.hourly() {
            return Ok(hours);
        }
        Ok(Period {
            from: from.div_euclid(MS_PER_DAY) * MS_PER_DAY,
            to: ceil(to, MS_PER_DAY),
        })
    }

    /// Whether the chart shows hours (a period of two days or less) or
    /// days.
    pub fn hourly(&self) -> bool {
        self.to - self.from <= 2 * MS_PER_DAY
    }
}

/// The period a scheduled report is due for at `now`, if any: the last
/// closed day (or ISO week), once `send_hour_utc` has come in the day (or
/// week) after it. Sending it once is the caller's part (a mark per user
/// and period start); this only says which period it would be, so a run
/// that comes late in the day still finds the same period.
pub fn due(reports: Reports, send_hour_utc: u8, now: Millis) -> Option<Period> {
    let window = match reports {
        Reports::Off => return None,
        Reports::Daily => Window::Daily,
        Reports::Weekly => Window::Weekly,
    };
    let current = window.start(now);
    if now < current + i64::from(send_hour_utc) * MS_PER_HOUR {
        return None;
    }
    let from = window.start(current - 1);
    Some(Period { from, to: current })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{days_from_civil, parse_time};

    fn at(s: &str) -> Millis {
        parse_time(s).unwrap()
    }

    #[test]
    fn a_daily_report_is_due_for_yesterday_from_the_send_hour_on() {
        assert_eq!(due(Reports::Daily, 6, at("2026-12-07T05:59:59Z")), None);
        let p = due(Reports::Daily, 6, at("2026-12-07T06:00:00Z")).unwrap();
        assert_eq!((p.from, p.to), (at("2026-12-06"), at("2026-12-07")));
        // Late in the day it is still yesterday's: a node down at six
        // sends it when it comes back.
        let late = due(Reports::Daily, 6, at("2026-12-07T23:59:59Z")).unwrap();
        assert_eq!(late, p);
        // Hour 0: due at midnight.
        let p0 = due(Reports::Daily, 0, at("2026-12-07T00:00:00Z")).unwrap();
        assert_eq!(p0, p);
        assert_eq!(due(Reports::Off, 0, at("2026-12-07T12:00:00Z")), None);
    }

    #[test]
    fn a_weekly_report_is_due_for_last_monday_to_sunday() {
        // 2026-12-07 is a Monday.
        assert_eq!(days_from_civil(2026, 12, 7).rem_euclid(7), 4);
        assert_eq!(due(Reports::Weekly, 6, at("2026-12-07T05:00:00Z")), None);
        let p = due(Reports::Weekly, 6, at("2026-12-07T06:00:00Z")).unwrap();
        assert_eq!((p.from, p.to), (at("2026-11-30"), at("2026-12-07")));
        // Any later day of the week: still that week.
        let p2 = due(Reports::Weekly, 6, at("2026-12-13T01:00:00Z")).unwrap();
        assert_eq!(p2, p);
        // Sunday before the send hour of the next Monday: the one before.
        let p3 = due(Reports::Weekly, 6, at("2026-12-06T23:00:00Z")).unwrap();
        assert_eq!((p3.from, p3.to), (at("2026-11-23"), at("2026-11-30")));
    }

    #[test]
    fn send_now_periods_end_at_today() {
        let now = at("2026-12-07T10:30:00Z");
        let d = Period::previous_day(now);
        assert_eq!((d.from, d.to), (at("2026-12-06"), at("2026-12-07")));
        let w = Period::previous_week(now);
        assert_eq!((w.from, w.to), (at("2026-11-30"), at("2026-12-07")));
        assert!(d.hourly());
        assert!(!w.hourly());
    }

    #[test]
    fn explicit_periods_are_whole_hours_or_whole_days() {
        let p = Period::explicit(at("2026-12-06T05:30:00Z"), at("2026-12-06T07:10:00Z")).unwrap();
        assert_eq!(
            (p.from, p.to),
            (at("2026-12-06T05:00:00Z"), at("2026-12-06T08:00:00Z"))
        );
        let p = Period::explicit(at("2026-12-01T05:30:00Z"), at("2026-12-06T07:10:00Z")).unwrap();
        assert_eq!((p.from, p.to), (at("2026-12-01"), at("2026-12-07")));
        assert!(Period::explicit(at("2026-12-06"), at("2026-12-06")).is_err());
        assert!(Period::explicit(at("2024-01-01"), at("2026-01-01")).is_err());
    }

    fn with(f: impl FnOnce(&mut EmailConfig)) -> Result<(), (String, String)> {
        let mut c = EmailConfig {
            smtp_host: Some("smtp.example.com".into()),
            from: Some("reports@example.com".into()),
            ..EmailConfig::default()
        };
        f(&mut c);
        c.validate()
    }

    #[test]
    fn alert_percents_are_checked() {
        assert!(check_percents(&[80, 100]).is_ok());
        assert!(check_percents(&[]).is_ok());
        assert!(check_percents(&[0]).is_err());
        assert!(check_percents(&[101]).is_err());
        assert!(check_percents(&[10, 20, 30, 40, 50, 60]).is_err());
        let c = EmailConfig {
            budget_alerts: vec![0],
            ..EmailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "email.budget_alerts");
    }

    #[test]
    fn validation_names_the_bad_key() {
        assert_eq!(EmailConfig::default().validate(), Ok(()));
        assert_eq!(with(|_| {}), Ok(()));
        let key = |r: Result<(), (String, String)>| r.unwrap_err().0;
        assert_eq!(key(with(|c| c.from = None)), "email.from");
        assert_eq!(key(with(|c| c.from = Some("nobody".into()))), "email.from");
        assert_eq!(
            key(with(|c| c.from = Some("a@b.com\r\nBcc: x@y".into()))),
            "email.from"
        );
        assert_eq!(key(with(|c| c.tls = TlsMode::None)), "email.tls");
        assert_eq!(key(with(|c| c.send_hour_utc = 24)), "email.send_hour_utc");
        assert_eq!(
            key(with(|c| c.check_every_secs = 0)),
            "email.check_every_secs"
        );
        assert_eq!(
            key(with(|c| c.smtp_host = Some("smtp://x".into()))),
            "email.smtp_host"
        );
        assert_eq!(
            key(with(|c| {
                c.smtp_host = None;
                c.reports = Reports::Daily;
            })),
            "email.reports"
        );
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.3.2.1"] {
            let h = host.to_string();
            assert_eq!(
                with(|c| {
                    c.smtp_host = Some(h);
                    c.tls = TlsMode::None;
                }),
                Ok(()),
                "{host}"
            );
        }
    }

    #[test]
    fn addresses() {
        for good in [
            "a@b.c",
            "reports@example.com",
            "x.y+z@mail.example.org",
            "a@localhost",
        ] {
            assert!(is_address(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b.c",
            "a@",
            "a b@c.d",
            "a@b..c",
            "<a@b.c>",
            "a@b.c,d@e.f",
            "a@@b.c",
            "é@b.c",
        ] {
            assert!(!is_address(bad), "{bad}");
        }
    }
}
