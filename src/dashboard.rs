//! Saved dashboards: a user's or a team's named set of chart panels, each
//! one query of the grouped analytics series (a metric, a grouping, a
//! window and a bucket) and how to draw it. Here: their shape, their
//! bounds, and the checks a body must pass before anything is stored.
//!
//! A body's choices arrive as text and are read here rather than by serde,
//! so that an unknown metric, grouping, window or chart is refused with
//! the field it came in (422) instead of a generic parse error.

use serde::{Deserialize, Serialize};

use crate::analytics::{Bucket, Figures, GroupBy};
use crate::time::{MS_PER_DAY, MS_PER_HOUR, Millis};

/// Longest dashboard name: names are path segments and document ids.
pub const MAX_NAME: usize = 64;
/// Longest title, of a dashboard or a panel, in characters.
pub const MAX_TITLE: usize = 200;
/// Panels one dashboard may hold.
pub const MAX_PANELS: usize = 16;
/// Dashboards one user or team may keep: all of them live in one document
/// (see `usecase/dashboards.rs`), which this bounds well under its 1 MiB.
pub const MAX_DASHBOARDS: usize = 50;
/// A name: lowercase letters, digits, `-` and `_`, starting with a letter
/// or digit (the pattern the API document gives).
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// Whether `name` may name a dashboard.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_NAME
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Which figure a panel shows: the names of the analytics series' fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Requests,
    Successes,
    /// Requests that failed: the errors.
    Failures,
    SuccessRate,
    Cost,
    InputTokens,
    OutputTokens,
    MeanLatencyMs,
    LatencyP50Ms,
    LatencyP95Ms,
    LatencyP99Ms,
}

impl Metric {
    pub const ALL: [Metric; 11] = [
        Metric::Requests,
        Metric::Successes,
        Metric::Failures,
        Metric::SuccessRate,
        Metric::Cost,
        Metric::InputTokens,
        Metric::OutputTokens,
        Metric::MeanLatencyMs,
        Metric::LatencyP50Ms,
        Metric::LatencyP95Ms,
        Metric::LatencyP99Ms,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Successes => "successes",
            Metric::Failures => "failures",
            Metric::SuccessRate => "success_rate",
            Metric::Cost => "cost",
            Metric::InputTokens => "input_tokens",
            Metric::OutputTokens => "output_tokens",
            Metric::MeanLatencyMs => "mean_latency_ms",
            Metric::LatencyP50Ms => "latency_p50_ms",
            Metric::LatencyP95Ms => "latency_p95_ms",
            Metric::LatencyP99Ms => "latency_p99_ms",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The figure's value exactly as the analytics API writes it (through
    /// the same serialisation, so a panel can never differ from it).
    pub fn of(self, f: &Figures) -> serde_json::Value {
        serde_json::to_value(f)
            .ok()
            .and_then(|mut v| v.get_mut(self.name()).map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null)
    }
}

/// The time a panel covers: a span up to now, or a fixed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PanelWindow {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
    #[serde(rename = "90d")]
    Quarter,
    /// The panel's own `from` and `to`.
    #[serde(rename = "range")]
    Range,
}

impl PanelWindow {
    pub const ALL: [PanelWindow; 6] = [
        PanelWindow::Hour,
        PanelWindow::Day,
        PanelWindow::Week,
        PanelWindow::Month,
        PanelWindow::Quarter,
        PanelWindow::Range,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PanelWindow::Hour => "1h",
            PanelWindow::Day => "24h",
            PanelWindow::Week => "7d",
            PanelWindow::Month => "30d",
            PanelWindow::Quarter => "90d",
            PanelWindow::Range => "range",
        }
    }

    pub fn parse(s: &str) -> Option<PanelWindow> {
        PanelWindow::ALL.into_iter().find(|w| w.name() == s)
    }

    /// How far back a span reaches; `None` for a fixed range.
    pub fn span(self) -> Option<Millis> {
        match self {
            PanelWindow::Hour => Some(MS_PER_HOUR),
            PanelWindow::Day => Some(MS_PER_DAY),
            PanelWindow::Week => Some(7 * MS_PER_DAY),
            PanelWindow::Month => Some(30 * MS_PER_DAY),
            PanelWindow::Quarter => Some(90 * MS_PER_DAY),
            PanelWindow::Range => None,
        }
    }

    /// The bucket a panel without one is drawn in: a few dozen points.
    pub fn default_bucket(self) -> Bucket {
        match self {
            PanelWindow::Hour => Bucket::Minute,
            PanelWindow::Day | PanelWindow::Week | PanelWindow::Range => Bucket::Hour,
            PanelWindow::Month | PanelWindow::Quarter => Bucket::Day,
        }
    }
}

/// How a panel is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Chart {
    Line,
    Bar,
    Area,
    Table,
}

impl Chart {
    pub const ALL: [Chart; 4] = [Chart::Line, Chart::Bar, Chart::Area, Chart::Table];

    pub fn name(self) -> &'static str {
        match self {
            Chart::Line => "line",
            Chart::Bar => "bar",
            Chart::Area => "area",
            Chart::Table => "table",
        }
    }

    pub fn parse(s: &str) -> Option<Chart> {
        Chart::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One panel as stored and shown. Fields left out of the body stay out,
/// so a dashboard reads back exactly as it was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Panel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub metric: Metric,
    pub group_by: GroupBy,
    pub window: PanelWindow,
    /// With `window: range`: its start, milliseconds since 1970.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub from: Option<Millis>,
    /// With `window: range`: its end, milliseconds since 1970.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub to: Option<Millis>,
    /// Left out: the window's own (1h by minute, 24h and 7d by hour, 30d
    /// and 90d by day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Bucket>,
    pub chart: Chart,
}

impl Panel {
    /// The bucket the panel is drawn in.
    pub fn bucket(&self) -> Bucket {
        self.bucket.unwrap_or(self.window.default_bucket())
    }
}

/// A panel as a body sends it: its choices as text, read by
/// [`PanelSpec::read`].
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PanelSpec {
    #[schema(max_length = 200)]
    pub title: Option<String>,
    #[schema(value_type = Metric)]
    pub metric: String,
    #[schema(value_type = GroupBy)]
    pub group_by: String,
    #[schema(value_type = PanelWindow)]
    pub window: String,
    /// Required with `window: range` (and only then): milliseconds since 1970.
    #[serde(default, deserialize_with = "whole_ms")]
    #[schema(minimum = 0, maximum = 253402300799999.0)]
    pub from: Option<i64>,
    /// Required with `window: range` (and only then): after `from`.
    #[serde(default, deserialize_with = "whole_ms")]
    #[schema(minimum = 0, maximum = 253402300799999.0)]
    pub to: Option<i64>,
    #[schema(value_type = Option<Bucket>)]
    pub bucket: Option<String>,
    #[schema(value_type = Chart)]
    pub chart: String,
}

/// The latest time a panel may name: the end of year 9999, as the
/// document's `maximum` says.
const MAX_MS: i64 = 253_402_300_799_999;

/// Reads a time in milliseconds written as a JSON integer or as a whole
/// number with a fraction of zero (`5.0`), which JSON Schema counts as an
/// integer too; anything else is not the documented body (400).
fn whole_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(v) = Option::<serde_json::Value>::deserialize(d)? else {
        return Ok(None);
    };
    let n = match &v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_MS as f64)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    n.filter(|n| (0..=MAX_MS).contains(n))
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "expected a whole number from 0 to {MAX_MS}, got {v}"
            ))
        })
}

/// A body that cannot be a dashboard: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn choice<T>(
    at: &str,
    field: &str,
    v: &str,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<T, Invalid> {
    parse(v).ok_or_else(|| {
        Invalid(format!(
            "`{at}.{field}`: `{}` is not one of {}",
            v.chars().take(64).collect::<String>(),
            names.join(", ")
        ))
    })
}

fn title(at: &str, t: Option<&str>) -> Result<(), Invalid> {
    match t {
        Some(t) if t.chars().count() > MAX_TITLE => {
            Err(Invalid(format!("`{at}`: at most {MAX_TITLE} characters")))
        }
        Some(t) if t.chars().any(char::is_control) => {
            Err(Invalid(format!("`{at}`: no control characters")))
        }
        _ => Ok(()),
    }
}

impl PanelSpec {
    /// The panel, or what is wrong with it; `i` is its place, for the
    /// message.
    pub fn read(&self, i: usize) -> Result<Panel, Invalid> {
        let at = format!("panels[{i}]");
        title(&format!("{at}.title"), self.title.as_deref())?;
        let names = |n: &[&'static str]| n.to_vec();
        let metric = choice(
            &at,
            "metric",
            &self.metric,
            Metric::parse,
            &names(&Metric::ALL.map(Metric::name)),
        )?;
        let group_by = choice(
            &at,
            "group_by",
            &self.group_by,
            GroupBy::parse,
            &names(&GroupBy::ALL.map(GroupBy::name)),
        )?;
        let window = choice(
            &at,
            "window",
            &self.window,
            PanelWindow::parse,
            &names(&PanelWindow::ALL.map(PanelWindow::name)),
        )?;
        let chart = choice(
            &at,
            "chart",
            &self.chart,
            Chart::parse,
            &names(&Chart::ALL.map(Chart::name)),
        )?;
        let bucket = self
            .bucket
            .as_deref()
            .map(|b| {
                choice(
                    &at,
                    "bucket",
                    b,
                    Bucket::parse,
                    &names(&Bucket::ALL.map(Bucket::name)),
                )
            })
            .transpose()?;
        match (window, self.from, self.to) {
            (PanelWindow::Range, Some(f), Some(t)) if f >= 0 && f < t => {}
            (PanelWindow::Range, Some(_), Some(_)) => {
                return Err(Invalid(format!(
                    "`{at}.from` must be at least 0 and before `{at}.to`"
                )));
            }
            (PanelWindow::Range, _, _) => {
                return Err(Invalid(format!(
                    "`{at}.window`: `range` needs both `from` and `to`"
                )));
            }
            (_, None, None) => {}
            _ => {
                return Err(Invalid(format!(
                    "`{at}.from`/`to` apply only to `window: range`"
                )));
            }
        }
        Ok(Panel {
            title: self.title.clone(),
            metric,
            group_by,
            window,
            from: self.from,
            to: self.to,
            bucket,
            chart,
        })
    }
}

/// A dashboard as stored: what its owner wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub title: String,
    pub panels: Vec<Panel>,
}

/// A dashboard's body, as `PUT /api/dashboards/{name}` takes it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "Spend",
    "panels": [{"title": "Cost by model", "metric": "cost", "group_by": "model", "window": "7d", "chart": "bar"}]
}))]
pub struct DashboardSpec {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(max_items = 16)]
    pub panels: Vec<PanelSpec>,
}

impl DashboardSpec {
    /// The dashboard, or the first thing wrong with it.
    pub fn read(&self) -> Result<Dashboard, Invalid> {
        if self.title.is_empty() {
            return Err(Invalid("`title` must not be empty".into()));
        }
        title("title", Some(&self.title))?;
        if self.panels.len() > MAX_PANELS {
            return Err(Invalid(format!(
                "`panels`: at most {MAX_PANELS}, not {}",
                self.panels.len()
            )));
        }
        let panels = self
            .panels
            .iter()
            .enumerate()
            .map(|(i, p)| p.read(i))
            .collect::<Result<_, _>>()?;
        Ok(Dashboard {
            title: self.title.clone(),
            panels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(metric: &str, group_by: &str, window: &str, chart: &str) -> PanelSpec {
        PanelSpec {
            title: None,
            metric: metric.into(),
            group_by: group_by.into(),
            window: window.into(),
            from: None,
            to: None,
            bucket: None,
            chart: chart.into(),
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("spend-2026_q4"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("Spend"));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(valid_name(&"a".repeat(64)));
    }

    #[test]
    fn each_unknown_choice_names_its_field() {
        for (p, field) in [
            (spec("bogus", "model", "24h", "line"), "metric"),
            (spec("cost", "colour", "24h", "line"), "group_by"),
            (spec("cost", "model", "2w", "line"), "window"),
            (spec("cost", "model", "24h", "pie"), "chart"),
        ] {
            let e = p.read(3).unwrap_err();
            assert!(e.0.contains(&format!("panels[3].{field}")), "{e}");
        }
        assert!(
            spec("latency_p95_ms", "key", "90d", "table")
                .read(0)
                .is_ok()
        );
    }

    #[test]
    fn times_are_whole_numbers_however_written() {
        let p: PanelSpec = serde_json::from_str(
            r#"{"metric":"cost","group_by":"model","window":"range","from":5.0,"to":7,"chart":"bar"}"#,
        )
        .unwrap();
        assert_eq!((p.from, p.to), (Some(5), Some(7)));
        for bad in ["5.5", "-1", "\"5\"", "1e300"] {
            let body = format!(
                r#"{{"metric":"cost","group_by":"model","window":"range","from":{bad},"chart":"bar"}}"#
            );
            assert!(serde_json::from_str::<PanelSpec>(&body).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let mut p = spec("cost", "model", "range", "line");
        assert!(p.read(0).is_err());
        p.from = Some(10);
        p.to = Some(5);
        assert!(p.read(0).is_err());
        p.to = Some(20);
        assert_eq!(p.read(0).unwrap().from, Some(10));
        let mut q = spec("cost", "model", "24h", "line");
        q.from = Some(1);
        assert!(q.read(0).is_err());
    }

    #[test]
    fn a_metric_reads_the_field_the_api_writes() {
        let f = Figures {
            requests: 3,
            cost: crate::Credits(1_500_000),
            ..Figures::default()
        };
        assert_eq!(Metric::Requests.of(&f), serde_json::json!(3));
        assert_eq!(Metric::Cost.of(&f), serde_json::json!(1.5));
        assert_eq!(Metric::LatencyP50Ms.of(&f), serde_json::Value::Null);
        for m in Metric::ALL {
            assert!(serde_json::to_value(&f).unwrap().get(m.name()).is_some());
        }
    }
}
