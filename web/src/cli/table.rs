//! Plain-text tables and the small formatting helpers the renderers share.

use serde_json::Value;

/// A table with a header row; columns as wide as their widest cell.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned right (numbers, money).
    right: Vec<bool>,
}

impl Table {
    /// `headers` ending in `>` are right-aligned (the `>` is not shown).
    pub fn new(headers: &[&str]) -> Table {
        Table {
            right: headers.iter().map(|h| h.ends_with('>')).collect(),
            headers: headers
                .iter()
                .map(|h| h.trim_end_matches('>').to_string())
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(width(c));
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = " ".repeat(w - width(c).min(*w));
                if i > 0 {
                    out.push_str("  ");
                }
                if self.right[i] {
                    out.push_str(&pad);
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    if i + 1 < n {
                        out.push_str(&pad);
                    }
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.headers);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Label/value lines for one object, labels aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

/// A JSON value as a cell: strings bare, numbers with the API's exact
/// text (money included), absent as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// At most `max` characters of `s` on one line, `…` where cut.
pub fn short(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A share from 0..1 as a percentage with one decimal.
pub fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return text(v);
    };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by
/// counting 400-year eras that start on 1 March (so leap days fall last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(time(&json!(951_782_400_000i64)), "2000-02-29 00:00:00");
        assert_eq!(time(&json!(1_795_654_799_000i64)), "2026-11-26 00:59:59");
        assert_eq!(time(&json!(-1000)), "1969-12-31 23:59:59");
    }

    #[test]
    fn tables_align_and_money_keeps_its_digits() {
        let mut t = Table::new(&["ID", "COST>"]);
        let cost: Value = serde_json::from_str("0.000150").unwrap();
        t.row(vec!["req_1".into(), text(&cost)]);
        t.row(vec!["req_22".into(), "12.5".into()]);
        assert_eq!(
            t.render(),
            "ID          COST\nreq_1   0.000150\nreq_22      12.5\n"
        );
    }

    #[test]
    fn long_text_is_cut_on_one_line() {
        assert_eq!(short("ab\ncd", 10), "ab cd");
        assert_eq!(short("abcdef", 4), "abc…");
    }
}
