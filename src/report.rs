//! What a usage report says, from figures the runtime read: the subject,
//! a text and an HTML body, a bar chart of spend as SVG, and the name of
//! its CSV attachment. Pure, so every word and number is testable without
//! a store or an SMTP server.
//!
//! Amounts are shown as credits with all six decimals (`0.001500`), so a
//! reader can add them up to the micro-credit and compare with the ledger.

use crate::Credits;
use crate::analytics::{Point, Summary};
use crate::email::Period;
use crate::money::MICROS_PER_CREDIT;
use crate::time::{MS_PER_DAY, Millis, rfc3339};

/// Providers listed by name; the rest are summed in one line.
pub const TOP_PROVIDERS: usize = 5;

/// One provider's part of the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderLine {
    pub provider: String,
    pub spend: Credits,
    pub requests: u64,
}

/// One bar of the chart: spend in the hour or day starting at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub start: Millis,
    pub spend: Credits,
}

/// A user's report over one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub user_id: String,
    pub user_name: String,
    pub period: Period,
    pub spend: Credits,
    pub requests: u64,
    pub successes: u64,
    /// The providers with the most spend, at most [`TOP_PROVIDERS`].
    pub top: Vec<ProviderLine>,
    /// The other providers together, if any: how many, their spend.
    pub others: Option<(usize, Credits)>,
    /// Per hour for a period of up to two days, per day otherwise.
    pub bars: Vec<Bar>,
    /// Rows in the CSV attachment, and whether it was cut at its bound.
    pub csv_rows: u64,
    pub csv_truncated: bool,
}

impl Report {
    /// A report from the summary and the series of one user's period.
    pub fn new(
        user_id: &str,
        user_name: &str,
        period: Period,
        summary: &Summary,
        series: &[Point],
    ) -> Report {
        let mut providers: Vec<ProviderLine> = summary
            .providers
            .iter()
            .map(|(p, f)| ProviderLine {
                provider: p.clone(),
                spend: f.cost,
                requests: f.requests,
            })
            .collect();
        // Most spend first; ties by name, so the order never wobbles.
        providers.sort_by(|a, b| b.spend.cmp(&a.spend).then(a.provider.cmp(&b.provider)));
        let rest = providers.split_off(providers.len().min(TOP_PROVIDERS));
        let others = (!rest.is_empty()).then(|| (rest.len(), rest.iter().map(|p| p.spend).sum()));
        Report {
            user_id: user_id.to_string(),
            user_name: user_name.to_string(),
            period,
            spend: summary.total_cost,
            requests: summary.total_requests,
            successes: summary.total_successes,
            top: providers,
            others,
            bars: series
                .iter()
                .map(|p| Bar {
                    start: p.start,
                    spend: p.figures.cost,
                })
                .collect(),
            csv_rows: 0,
            csv_truncated: false,
        }
    }

    /// `2026-12-06`, or `2026-11-30 to 2026-12-06` (the last day included),
    /// or two times for a period that is not whole days.
    pub fn period_text(&self) -> String {
        let Period { from, to } = self.period;
        if from % MS_PER_DAY == 0 && to % MS_PER_DAY == 0 {
            let last = day(to - MS_PER_DAY);
            if to - from == MS_PER_DAY {
                last
            } else {
                format!("{} to {last}", day(from))
            }
        } else {
            format!("{} to {}", rfc3339(from), rfc3339(to))
        }
    }

    pub fn subject(&self) -> String {
        format!("OneFlow usage report: {}", self.period_text())
    }

    /// `oneflow-<user>-<from>-<to>.csv`: dates for whole days (`to` is the
    /// first day not included, as in the API's ranges), else UTC times.
    pub fn csv_name(&self) -> String {
        let stamp = |at: Millis| {
            if at % MS_PER_DAY == 0 {
                day(at)
            } else {
                // 2026-12-06T05:30:00.000Z -> 2026-12-06T053000Z
                let t = rfc3339(at);
                format!("{}{}{}Z", &t[..13], &t[14..16], &t[17..19])
            }
        };
        let user: String = self
            .user_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        format!(
            "oneflow-{user}-{}-{}.csv",
            stamp(self.period.from),
            stamp(self.period.to)
        )
    }

    /// The figures as lines of `label: value`, shared by both bodies.
    fn figures(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Period", self.period_text()),
            ("From", rfc3339(self.period.from)),
            ("To (not included)", rfc3339(self.period.to)),
            ("Spend", format!("{} credits", credits6(self.spend))),
            ("Requests", self.requests.to_string()),
            ("Successes", self.successes.to_string()),
            (
                "Failures",
                self.requests.saturating_sub(self.successes).to_string(),
            ),
        ]
    }

    fn provider_lines(&self) -> Vec<(String, String)> {
        let mut lines: Vec<(String, String)> = self
            .top
            .iter()
            .map(|p| {
                (
                    p.provider.clone(),
                    format!("{} credits, {} requests", credits6(p.spend), p.requests),
                )
            })
            .collect();
        if let Some((n, spend)) = self.others {
            lines.push((
                format!("{n} other providers"),
                format!("{} credits", credits6(spend)),
            ));
        }
        lines
    }

    fn csv_note(&self) -> String {
        if self.csv_truncated {
            format!(
                "The attached CSV holds the first {} requests only; GET /api/export/requests has them all.",
                self.csv_rows
            )
        } else {
            format!(
                "The attached CSV lists the period's {} requests.",
                self.csv_rows
            )
        }
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        let mut out = format!(
            "OneFlow usage report for {} ({})\n\n",
            self.user_name, self.user_id
        );
        for (k, v) in self.figures() {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push_str("\nTop providers by spend:\n");
        let lines = self.provider_lines();
        if lines.is_empty() {
            out.push_str("  (none)\n");
        }
        for (p, v) in lines {
            out.push_str(&format!("  {p}: {v}\n"));
        }
        out.push_str(&format!(
            "\nSpend per {}:\n",
            if self.period.hourly() { "hour" } else { "day" }
        ));
        for b in &self.bars {
            out.push_str(&format!("  {}  {}\n", rfc3339(b.start), credits6(b.spend)));
        }
        out.push('\n');
        out.push_str(&self.csv_note());
        out.push('\n');
        out
    }

    /// The HTML body; the chart is the image part `cid:<chart_cid>`.
    pub fn html(&self, chart_cid: &str) -> String {
        let mut out = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>");
        out.push_str(&escape(&self.subject()));
        out.push_str("</title></head><body style=\"font-family:sans-serif\">");
        out.push_str(&format!(
            "<h1>OneFlow usage report</h1><p>For {} ({})</p><table>",
            escape(&self.user_name),
            escape(&self.user_id)
        ));
        for (k, v) in self.figures() {
            out.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(k),
                escape(&v)
            ));
        }
        out.push_str("</table><h2>Top providers by spend</h2><table>");
        for (p, v) in self.provider_lines() {
            out.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(&p),
                escape(&v)
            ));
        }
        out.push_str(&format!(
            "</table><h2>Spend per {}</h2><img src=\"cid:{}\" alt=\"Spend per {}\" width=\"{W}\" height=\"{H}\">",
            if self.period.hourly() { "hour" } else { "day" },
            escape(chart_cid),
            if self.period.hourly() { "hour" } else { "day" },
        ));
        out.push_str(&format!(
            "<p>{}</p></body></html>",
            escape(&self.csv_note())
        ));
        out
    }

    /// A bar chart of spend per bucket, as a standalone SVG document.
    pub fn svg(&self) -> String {
        let max = self
            .bars
            .iter()
            .map(|b| b.spend.micros())
            .max()
            .unwrap_or(0)
            .max(1);
        let n = self.bars.len().max(1) as i64;
        let (left, top, bottom) = (70, 20, 30);
        let (plot_w, plot_h) = (W - left - 10, H - top - bottom);
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">"
        );
        out.push_str(&format!(
            "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#ffffff\"/>\
             <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
            top + plot_h,
            left + plot_w,
            top + plot_h,
            left - 4,
            top + 4,
            credits6(Credits(max)),
            left - 4,
            top + plot_h,
        ));
        for (i, b) in self.bars.iter().enumerate() {
            let i = i as i64;
            let x = left + plot_w * i / n;
            let w = (plot_w / n - 1).max(1);
            let h = plot_h * b.spend.micros().max(0) / max;
            out.push_str(&format!(
                "<rect x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"{h}\" fill=\"#3b7dd8\"><title>{} {}</title></rect>",
                top + plot_h - h,
                rfc3339(b.start),
                credits6(b.spend)
            ));
        }
        if let (Some(first), Some(last)) = (self.bars.first(), self.bars.last()) {
            out.push_str(&format!(
                "<text x=\"{left}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                H - 10,
                label(first.start, self.period.hourly()),
                left + plot_w,
                H - 10,
                label(last.start, self.period.hourly()),
            ));
        }
        out.push_str("</svg>");
        out
    }
}

/// The chart's size in pixels.
const W: i64 = 640;
const H: i64 = 220;

/// An amount as credits with six decimals: `1.500000`, `-0.000001`.
pub fn credits6(c: Credits) -> String {
    let m = c.micros();
    let sign = if m < 0 { "-" } else { "" };
    let a = m.unsigned_abs();
    let per = MICROS_PER_CREDIT.unsigned_abs();
    format!("{sign}{}.{:06}", a / per, a % per)
}

fn day(at: Millis) -> String {
    rfc3339(at)[..10].to_string()
}

fn label(at: Millis, hourly: bool) -> String {
    let t = rfc3339(at);
    if hourly {
        format!("{} {}", &t[..10], &t[11..16])
    } else {
        t[..10].to_string()
    }
}

/// Text for HTML and SVG: the five characters that could open markup.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::{Figures, Summary};
    use crate::time::parse_time;

    fn figures(requests: u64, cost: i64) -> Figures {
        Figures {
            requests,
            successes: requests,
            cost: Credits(cost),
            ..Figures::default()
        }
    }

    fn report() -> Report {
        let mut summary = Summary {
            total_requests: 9,
            total_successes: 8,
            total_cost: Credits(1_234_567),
            ..Summary::default()
        };
        for (i, p) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            summary
                .providers
                .insert(p.to_string(), figures(1, 100 * (i as i64 + 1)));
        }
        let from = parse_time("2026-12-06").unwrap();
        let series: Vec<Point> = (0..24)
            .map(|h| Point {
                start: from + h * 3_600_000,
                figures: figures(1, h * 1000),
            })
            .collect();
        Report::new(
            "u_1",
            "Ada <&>",
            Period {
                from,
                to: from + MS_PER_DAY,
            },
            &summary,
            &series,
        )
    }

    #[test]
    fn amounts_show_six_decimals() {
        assert_eq!(credits6(Credits(1_234_567)), "1.234567");
        assert_eq!(credits6(Credits(1500)), "0.001500");
        assert_eq!(credits6(Credits(-1)), "-0.000001");
        assert_eq!(credits6(Credits::from_credits(3)), "3.000000");
    }

    #[test]
    fn the_top_five_providers_by_spend_and_the_rest_summed() {
        let r = report();
        let names: Vec<&str> = r.top.iter().map(|p| p.provider.as_str()).collect();
        assert_eq!(names, ["g", "f", "e", "d", "c"]);
        assert_eq!(r.others, Some((2, Credits(300))));
        let text = r.text();
        assert!(text.contains("Spend: 1.234567 credits\n"), "{text}");
        assert!(text.contains("Requests: 9\n"));
        assert!(text.contains("Successes: 8\n"));
        assert!(text.contains("  g: 0.000700 credits, 1 requests\n"));
        assert!(text.contains("  2 other providers: 0.000300 credits\n"));
    }

    #[test]
    fn names_subject_and_markup() {
        let r = report();
        assert_eq!(r.subject(), "OneFlow usage report: 2026-12-06");
        assert_eq!(r.csv_name(), "oneflow-u_1-2026-12-06-2026-12-07.csv");
        let odd = Report {
            user_id: "a/b".into(),
            period: Period {
                from: parse_time("2026-12-06T05:30:00Z").unwrap(),
                to: parse_time("2026-12-07").unwrap(),
            },
            ..r.clone()
        };
        assert_eq!(
            odd.csv_name(),
            "oneflow-a-b-2026-12-06T053000Z-2026-12-07.csv"
        );
        let html = r.html("chart@oneflow");
        assert!(html.contains("Ada &lt;&amp;&gt;"));
        assert!(!html.contains("Ada <"));
        assert!(html.contains("src=\"cid:chart@oneflow\""));
        let svg = r.svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("fill=\"#3b7dd8\"").count(), 24);
        assert!(svg.ends_with("</svg>"));
    }
}
