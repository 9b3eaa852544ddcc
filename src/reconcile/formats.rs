//! Reading a provider's usage export into rows of (day, model, figures).
//!
//! Four formats (docs/reconcile.md names the fields each is read by):
//! OpenAI's organization usage and costs API pages (JSON) and the same
//! fields as CSV, Anthropic's Admin API usage and cost report pages
//! (JSON), and a generic CSV `day,model,input_tokens,output_tokens,cost`.
//! An export says nothing of which OneFlow provider it belongs to, except
//! the generic CSV's optional `provider` column; the request names it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::text::{CsvError, csv_rows, decimal};
use super::{CellKey, Day, MAX_DAYS, MAX_MODEL, MAX_ROWS, Tally, day_of};
use crate::money::Credits;
use crate::time::{days_from_civil, parse_time};

/// Which export a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// OpenAI's `/v1/organization/usage/completions` and
    /// `/v1/organization/costs` pages, one page, a list of pages or of
    /// buckets.
    OpenaiJson,
    /// The fields of those pages' results as CSV columns, with the
    /// bucket's `start_time`.
    OpenaiCsv,
    /// Anthropic's `/v1/organizations/usage_report/messages` and
    /// `/v1/organizations/cost_report` pages, one or a list.
    Anthropic,
    /// `day,model,input_tokens,output_tokens,cost`, and optionally
    /// `provider`.
    Csv,
}

/// Why an export was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Too many rows: the answer is 413.
    #[error("the export has more than {MAX_ROWS} rows")]
    TooManyRows,
    /// Its days are too far apart: 422.
    #[error("the export spans {0} days; at most {MAX_DAYS} at once")]
    TooManyDays(i64),
    /// Anything else about its text or shape: 422.
    #[error("{0}")]
    Malformed(String),
}

fn bad<T>(what: impl Into<String>) -> Result<T, ExportError> {
    Err(ExportError::Malformed(what.into()))
}

impl From<CsvError> for ExportError {
    fn from(e: CsvError) -> Self {
        match e {
            CsvError::TooManyRows(_) => ExportError::TooManyRows,
            e => ExportError::Malformed(e.to_string()),
        }
    }
}

/// One row of an export: a day and model's figures, maybe a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub day: Day,
    pub model: String,
    pub provider: Option<String>,
    pub tally: Tally,
}

/// Reads `body` as `format`, or as what its text looks like when no
/// format is named: JSON whose buckets have `start_time` is OpenAI's,
/// `starting_at` Anthropic's; CSV whose header has `start_time` is
/// OpenAI's, one with `day` the generic one.
pub fn read(format: Option<Format>, body: &[u8]) -> Result<(Format, Vec<Row>), ExportError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let text = std::str::from_utf8(body).or_else(|_| bad("the export is not UTF-8 text"))?;
    let json = text.trim_start().starts_with(['{', '[']);
    match format {
        Some(Format::OpenaiJson | Format::Anthropic) | None if json => {
            let v: Value = serde_json::from_str(text)
                .or_else(|e| bad(format!("the export is not valid JSON: {e}")))?;
            let buckets = buckets(&v)?;
            let found = match buckets.first() {
                Some(b) if b.contains_key("start_time") => Format::OpenaiJson,
                Some(b) if b.contains_key("starting_at") => Format::Anthropic,
                Some(_) => {
                    return bad(
                        "a bucket has neither `start_time` (OpenAI) nor `starting_at` (Anthropic)",
                    );
                }
                None => format.unwrap_or(Format::OpenaiJson),
            };
            if format.is_some_and(|f| f != found) {
                return bad(format!("the export does not look like `{}`", name(format)));
            }
            let rows = match found {
                Format::Anthropic => json_rows(&buckets, anthropic_bucket)?,
                _ => json_rows(&buckets, openai_bucket)?,
            };
            Ok((found, rows))
        }
        Some(Format::OpenaiCsv | Format::Csv) | None if !json => {
            let rows = csv_rows(text, MAX_ROWS + 1)?;
            let Some((head, lines)) = rows.split_first() else {
                return bad("the CSV export is empty: it needs a header line");
            };
            let head: Vec<String> = head.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
            let found = match format {
                Some(f) => f,
                None if head.iter().any(|h| h == "start_time") => Format::OpenaiCsv,
                None if head.iter().any(|h| h == "day") => Format::Csv,
                None => {
                    return bad(
                        "the CSV header has neither `day` (generic) nor `start_time` (OpenAI)",
                    );
                }
            };
            Ok((found, csv_export(found, &head, lines)?))
        }
        Some(f) => bad(format!(
            "the export is {}, not what `{}` is",
            if json { "JSON" } else { "not JSON" },
            name(Some(f))
        )),
        // Both guards above cover `None`.
        None => bad("the export's format is not recognised"),
    }
}

fn name(f: Option<Format>) -> &'static str {
    match f {
        Some(Format::OpenaiJson) => "openai_json",
        Some(Format::OpenaiCsv) => "openai_csv",
        Some(Format::Anthropic) => "anthropic",
        Some(Format::Csv) | None => "csv",
    }
}

/// The buckets of a page, a list of pages, a list of buckets or one bucket.
fn buckets(v: &Value) -> Result<Vec<&Map<String, Value>>, ExportError> {
    let mut out = Vec::new();
    let pages: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for page in pages {
        let Some(o) = page.as_object() else {
            return bad("the export's JSON must be a page object, or a list of pages or buckets");
        };
        match o.get("data") {
            Some(Value::Array(data)) => {
                for b in data {
                    let Some(b) = b.as_object() else {
                        return bad("every item of `data` must be a bucket object");
                    };
                    out.push(b);
                }
            }
            Some(_) => return bad("`data` must be a list of buckets"),
            None if o.contains_key("start_time") || o.contains_key("starting_at") => out.push(o),
            None => return bad("a page has no `data` list of buckets"),
        }
    }
    Ok(out)
}

/// A format's reader of one bucket: adds its rows.
type BucketReader = fn(&Map<String, Value>, &mut Vec<Row>) -> Result<(), ExportError>;

/// Rows of every bucket, through the format's reader of one bucket.
fn json_rows(buckets: &[&Map<String, Value>], one: BucketReader) -> Result<Vec<Row>, ExportError> {
    let mut rows = Vec::new();
    for b in buckets {
        one(b, &mut rows)?;
        if rows.len() > MAX_ROWS {
            return Err(ExportError::TooManyRows);
        }
    }
    Ok(rows)
}

fn results(b: &Map<String, Value>) -> Result<&Vec<Value>, ExportError> {
    // OpenAI's reference names the list `results`; some of its clients'
    // generated types say `result`.
    match b.get("results").or_else(|| b.get("result")) {
        Some(Value::Array(r)) => Ok(r),
        _ => bad("a bucket has no `results` list"),
    }
}

/// A token count: a whole number, not negative.
fn count(o: &Map<String, Value>, field: &str, required: bool) -> Result<Option<u64>, ExportError> {
    match o.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => bad(format!("a result has no `{field}`")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None if n.to_string().starts_with('-') => bad(format!("`{field}` is negative: {n}")),
            None => bad(format!("`{field}` is not a whole number: {n}")),
        },
        Some(Value::String(s)) => token_text(field, s).map(Some),
        Some(_) => bad(format!("`{field}` is not a number")),
    }
}

fn token_text(field: &str, s: &str) -> Result<u64, ExportError> {
    let s = s.trim();
    if s.starts_with('-') {
        return bad(format!("`{field}` is negative: {s}"));
    }
    s.parse()
        .or_else(|_| bad(format!("`{field}` is not a whole number: `{s}`")))
}

/// An amount of money, `shift` decimal places from micro-credits
/// (6: the text is in credits; 4: in cents of a credit); never negative.
fn money(field: &str, v: &Value, shift: i32) -> Result<Credits, ExportError> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return bad(format!("`{field}` is not a number")),
    };
    match decimal(&text, shift) {
        Some(m) if m < 0 => bad(format!("`{field}` is negative: {text}")),
        Some(m) if m <= crate::money::MAX_CREDITS.0 => Ok(Credits(m)),
        Some(_) => bad(format!("`{field}` is out of range: {text}")),
        None => bad(format!("`{field}` is not a decimal number: `{text}`")),
    }
}

fn model_name(s: &str) -> Result<String, ExportError> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_MODEL || s.chars().any(char::is_control) {
        return bad(format!(
            "a model name must be 1 to {MAX_MODEL} printable characters"
        ));
    }
    Ok(s.to_string())
}

/// The model of a result: its `model`, else (a cost result grouped by
/// line item, e.g. `gpt-4o-mini, input`) its `line_item` up to a comma.
fn result_model(r: &Map<String, Value>) -> Result<String, ExportError> {
    if let Some(Value::String(m)) = r.get("model") {
        return model_name(m);
    }
    if let Some(Value::String(item)) = r.get("line_item") {
        return model_name(item.split(',').next().unwrap_or(item));
    }
    bad("a result names no model: export usage grouped by `model` (costs by `line_item`)")
}

fn openai_bucket(b: &Map<String, Value>, rows: &mut Vec<Row>) -> Result<(), ExportError> {
    let start = match b.get("start_time") {
        Some(Value::Number(n)) => n.as_i64().filter(|s| *s >= 0),
        _ => None,
    }
    .map_or_else(|| bad("`start_time` must be Unix seconds"), Ok)?;
    let day = day_of(start.saturating_mul(1000));
    for r in results(b)? {
        let Some(r) = r.as_object() else {
            return bad("every result must be an object");
        };
        let costs = r.get("object").and_then(Value::as_str) == Some("organization.costs.result")
            || r.contains_key("amount");
        let tally = if costs {
            let value = match r.get("amount") {
                Some(Value::Object(a)) => a.get("value"),
                _ => None,
            };
            let Some(value) = value else {
                return bad("a costs result has no `amount.value`");
            };
            Tally {
                cost: Some(money("amount.value", value, 6)?),
                ..Tally::default()
            }
        } else {
            Tally {
                input_tokens: count(r, "input_tokens", true)?,
                output_tokens: count(r, "output_tokens", true)?,
                cost: None,
            }
        };
        rows.push(Row {
            day,
            model: result_model(r)?,
            provider: None,
            tally,
        });
    }
    Ok(())
}

fn anthropic_bucket(b: &Map<String, Value>, rows: &mut Vec<Row>) -> Result<(), ExportError> {
    let Some(Value::String(start)) = b.get("starting_at") else {
        return bad("`starting_at` must be an RFC 3339 time");
    };
    let at =
        parse_time(start).or_else(|_| bad(format!("`starting_at` is not a time: `{start}`")))?;
    let day = day_of(at);
    for r in results(b)? {
        let Some(r) = r.as_object() else {
            return bad("every result must be an object");
        };
        let tally = if let Some(amount) = r.get("amount") {
            // The cost report's amounts are decimal text in cents.
            Tally {
                cost: Some(money("amount", amount, 4)?),
                ..Tally::default()
            }
        } else {
            // Every input token is billed, cached or not, at its own rate:
            // all of them are the request's input as its usage reports it.
            let mut input = count(r, "uncached_input_tokens", true)?.unwrap_or(0);
            let mut more = vec![
                count(r, "cache_read_input_tokens", false)?,
                count(r, "cache_creation_5m_input_tokens", false)?,
                count(r, "cache_creation_1h_input_tokens", false)?,
            ];
            if let Some(Value::Object(c)) = r.get("cache_creation") {
                more.push(count(c, "ephemeral_5m_input_tokens", false)?);
                more.push(count(c, "ephemeral_1h_input_tokens", false)?);
            }
            for n in more.into_iter().flatten() {
                input = input
                    .checked_add(n)
                    .map_or_else(|| bad("input tokens out of range"), Ok)?;
            }
            Tally {
                input_tokens: Some(input),
                output_tokens: count(r, "output_tokens", true)?,
                cost: None,
            }
        };
        let Some(Value::String(model)) = r.get("model") else {
            return bad("a result names no model: ask for the report grouped by `model`");
        };
        rows.push(Row {
            day,
            model: model_name(model)?,
            provider: None,
            tally,
        });
    }
    Ok(())
}

/// `YYYY-MM-DD`, a date the calendar has.
fn day_text(s: &str) -> Option<Day> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..].parse().ok()?;
    let day = days_from_civil(y, m, d);
    (super::day_name(day) == s).then_some(day)
}

fn csv_export(
    format: Format,
    head: &[String],
    lines: &[Vec<String>],
) -> Result<Vec<Row>, ExportError> {
    let col = |names: &[&str]| head.iter().position(|h| names.contains(&h.as_str()));
    let need = |names: &[&str]| {
        col(names).map_or_else(
            || bad(format!("the CSV header has no `{}` column", names[0])),
            Ok,
        )
    };
    let (day_col, model_col, cost_col) = match format {
        Format::Csv => (need(&["day"])?, need(&["model"])?, need(&["cost"])?),
        _ => (
            need(&["start_time"])?,
            col(&["model"]).map_or_else(|| need(&["line_item"]), Ok)?,
            need(&["amount_value", "amount.value", "amount", "cost"])?,
        ),
    };
    let input_col = need(&["input_tokens"])?;
    let output_col = need(&["output_tokens"])?;
    let provider_col = (format == Format::Csv)
        .then(|| col(&["provider"]))
        .flatten();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let at = |c: usize| line.get(c).map(|s| s.trim()).unwrap_or("");
        let line_no = i + 2;
        let day_cell = at(day_col);
        let day = if format == Format::Csv {
            day_text(day_cell)
        } else if let Ok(secs) = day_cell.parse::<i64>() {
            (secs >= 0).then(|| day_of(secs.saturating_mul(1000)))
        } else {
            parse_time(day_cell).ok().map(day_of)
        };
        let Some(day) = day else {
            return bad(format!("CSV line {line_no}: `{day_cell}` is not a day"));
        };
        let tokens = |c: usize, name: &str| -> Result<Option<u64>, ExportError> {
            match at(c) {
                "" => Ok(None),
                s => token_text(name, s)
                    .map(Some)
                    .map_err(|e| ExportError::Malformed(format!("CSV line {line_no}: {e}"))),
            }
        };
        let cost = match at(cost_col) {
            "" => None,
            s => Some(
                money("cost", &Value::String(s.to_string()), 6)
                    .map_err(|e| ExportError::Malformed(format!("CSV line {line_no}: {e}")))?,
            ),
        };
        let model = at(model_col);
        let model = if format == Format::OpenaiCsv && col(&["model"]).is_none() {
            model.split(',').next().unwrap_or(model)
        } else {
            model
        };
        let provider = provider_col
            .map(at)
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        rows.push(Row {
            day,
            model: model_name(model)
                .map_err(|e| ExportError::Malformed(format!("CSV line {line_no}: {e}")))?,
            provider,
            tally: Tally {
                input_tokens: tokens(input_col, "input_tokens")?,
                output_tokens: tokens(output_col, "output_tokens")?,
                cost,
            },
        });
    }
    Ok(rows)
}

/// An export's cells, and its first and last day (none when empty).
pub type Cells = (BTreeMap<CellKey, Tally>, Option<(Day, Day)>);

/// The rows summed per cell, each row's provider being its own or
/// `provider`. Refuses rows with neither, and exports whose days are more
/// than [`MAX_DAYS`] apart. Returns the cells and the first and last day.
pub fn cells(rows: &[Row], provider: Option<&str>) -> Result<Cells, ExportError> {
    let mut out: BTreeMap<CellKey, Tally> = BTreeMap::new();
    let mut span: Option<(Day, Day)> = None;
    for r in rows {
        let Some(p) = r.provider.as_deref().or(provider) else {
            return bad("name the provider: `?provider=` or a `provider` column");
        };
        let key = (r.day, p.to_string(), r.model.clone());
        out.entry(key)
            .or_default()
            .add(&r.tally)
            .map_or_else(|| bad("a sum of the export's figures is out of range"), Ok)?;
        span = Some(match span {
            None => (r.day, r.day),
            Some((a, b)) => (a.min(r.day), b.max(r.day)),
        });
    }
    if let Some((a, b)) = span {
        if b - a + 1 > MAX_DAYS {
            return Err(ExportError::TooManyDays(b - a + 1));
        }
    }
    Ok((out, span))
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
