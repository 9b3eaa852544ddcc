//! Reconciliation: what a provider bills, from its usage export, against
//! what OneFlow's records say it should bill, per UTC day x provider x
//! model (docs/reconcile.md).
//!
//! OneFlow's side is computed from the records of requests that reached
//! their provider and were answered (`succeeded`): their usage, and the
//! cost that usage comes to at the provider's own prices
//! (`upstream_rates` in the provider's configuration)
//! or, when the configuration does not know them, at the rates OneFlow
//! charged (`cost + shortfall`: the price before any hold cap), which are
//! the provider's own when there is no markup. [`formats`] reads the
//! provider's side; [`compare`] puts the two together under a
//! [`Tolerance`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::time::{MS_PER_DAY, civil_from_days};

pub mod formats;
pub mod text;

/// Most rows (lines, or results) one export may have.
pub const MAX_ROWS: usize = 100_000;
/// Most UTC days one export may span, first to last: a quarter. Our side is
/// read from every record of those days.
pub const MAX_DAYS: i64 = 93;
/// Most cells in one report: it is kept whole in one stored document.
pub const MAX_CELLS: usize = 2_000;
/// Longest model name read from an export.
pub const MAX_MODEL: usize = 200;

/// One UTC day, as days since 1970-01-01.
pub type Day = i64;

/// `YYYY-MM-DD` of a day.
pub fn day_name(day: Day) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day a time (milliseconds since the epoch) falls on, in UTC.
pub fn day_of(at_ms: i64) -> Day {
    at_ms.div_euclid(MS_PER_DAY)
}

/// Where one cell's figures are added up: day, provider, model.
pub type CellKey = (Day, String, String);

/// What one side says of one cell. A figure the export does not carry
/// (an Anthropic usage report has no cost) is `None` and not compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost: Option<Credits>,
}

impl Tally {
    /// Adds a row's figures; `None` if a sum leaves its range.
    pub fn add(&mut self, o: &Tally) -> Option<()> {
        fn sum<T: Copy>(
            a: Option<T>,
            b: Option<T>,
            f: impl Fn(T, T) -> Option<T>,
        ) -> Option<Option<T>> {
            match (a, b) {
                (Some(x), Some(y)) => f(x, y).map(Some),
                (x, None) => Some(x),
                (None, y) => Some(y),
            }
        }
        self.input_tokens = sum(self.input_tokens, o.input_tokens, u64::checked_add)?;
        self.output_tokens = sum(self.output_tokens, o.output_tokens, u64::checked_add)?;
        self.cost = sum(self.cost, o.cost, Credits::checked_add)?;
        Some(())
    }
}

/// How far apart the two sides may be and still match. Ratios are in
/// parts per million of our figure; a cost matches when within either
/// bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tolerance {
    /// Tokens: 0 (the default) asks for the exact count.
    pub tokens_ppm: u64,
    /// Cost, relative: 5,000 ppm (0.5%) by default, room for a provider's
    /// rounding of fractions of a cent.
    pub cost_ppm: u64,
    /// Cost, absolute: 0.000001 credits (one micro-credit) by default.
    pub cost_abs: Credits,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            tokens_ppm: 0,
            cost_ppm: 5_000,
            cost_abs: Credits(1),
        }
    }
}

/// Whether `theirs` is within `ppm` of `ours` (or `abs` of it).
fn within(ours: i64, theirs: i64, ppm: u64, abs: i64) -> bool {
    let d = (i128::from(theirs) - i128::from(ours)).abs();
    d <= i128::from(abs) || d * 1_000_000 <= i128::from(ours).abs() * i128::from(ppm)
}

/// Drift relative to our figure, `(theirs - ours) / ours`; 1 when we have
/// nothing and they have something (all of theirs unexplained).
fn relative(ours: i64, theirs: i64) -> f64 {
    if ours == 0 {
        return if theirs == 0 { 0.0 } else { 1.0 };
    }
    let r = (theirs as f64 - ours as f64) / ours as f64;
    (r * 1e6).round() / 1e6
}

/// A cell's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Every figure the export carries is within tolerance.
    Match,
    /// Both sides have the cell and some figure is out of tolerance.
    Drift,
    /// Our records have it; the export does not.
    OnlyOurs,
    /// The export has it; no record of ours does.
    OnlyTheirs,
}

/// One figure of a cell on both sides. `theirs`, `drift` and `relative`
/// are absent when the export does not carry the figure. (Described in
/// the OpenAPI document as an object: utoipa's generics would name a
/// schema per `T`.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure<T> {
    pub ours: T,
    pub theirs: Option<T>,
    /// `theirs - ours`.
    pub drift: Option<T>,
    /// `drift / ours` (1 when ours is zero and theirs is not).
    pub relative: Option<f64>,
    pub within: bool,
}

/// Token counts compared.
pub type TokenFigure = Figure<i64>;
/// Costs compared.
pub type CostFigure = Figure<Credits>;

/// One day x provider x model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cell {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub provider: String,
    pub model: String,
    pub status: CellStatus,
    /// Succeeded requests of ours in the cell.
    pub requests: u64,
    #[schema(value_type = Object)]
    pub input_tokens: TokenFigure,
    #[schema(value_type = Object)]
    pub output_tokens: TokenFigure,
    #[schema(value_type = Object)]
    pub cost: CostFigure,
}

/// Our side of one cell: its tally and how many requests made it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ours {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Credits,
}

fn tokens(ours: u64, theirs: Option<u64>, ppm: u64) -> TokenFigure {
    let o = i64::try_from(ours).unwrap_or(i64::MAX);
    let t = theirs.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
    Figure {
        ours: o,
        theirs: t,
        drift: t.map(|t| t.saturating_sub(o)),
        relative: t.map(|t| relative(o, t)),
        within: t.is_none_or(|t| within(o, t, ppm, 0)),
    }
}

fn cost(ours: Credits, theirs: Option<Credits>, tol: &Tolerance) -> CostFigure {
    Figure {
        ours,
        theirs,
        drift: theirs.map(|t| Credits(t.0.saturating_sub(ours.0))),
        relative: theirs.map(|t| relative(ours.0, t.0)),
        within: theirs.is_none_or(|t| within(ours.0, t.0, tol.cost_ppm, tol.cost_abs.0)),
    }
}

/// Every cell either side has, in day, provider, model order.
pub fn compare(
    ours: &BTreeMap<CellKey, Ours>,
    theirs: &BTreeMap<CellKey, Tally>,
    tol: &Tolerance,
) -> Vec<Cell> {
    let keys: BTreeSet<&CellKey> = ours.keys().chain(theirs.keys()).collect();
    keys.into_iter()
        .map(|key| {
            let o = ours.get(key);
            let t = theirs.get(key);
            let mine = o.cloned().unwrap_or_default();
            let of = t.cloned().unwrap_or_default();
            let input_tokens = tokens(mine.input_tokens, of.input_tokens, tol.tokens_ppm);
            let output_tokens = tokens(mine.output_tokens, of.output_tokens, tol.tokens_ppm);
            let cost = cost(mine.cost, of.cost, tol);
            let status = match (o.is_some_and(|o| o.requests > 0), t.is_some()) {
                (true, false) => CellStatus::OnlyOurs,
                (false, true) => CellStatus::OnlyTheirs,
                _ if input_tokens.within && output_tokens.within && cost.within => {
                    CellStatus::Match
                }
                _ => CellStatus::Drift,
            };
            Cell {
                day: day_name(key.0),
                provider: key.1.clone(),
                model: key.2.clone(),
                status,
                requests: mine.requests,
                input_tokens,
                output_tokens,
                cost,
            }
        })
        .collect()
}

/// Counts and sums over a report's cells.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    pub cells: u64,
    pub matched: u64,
    pub drifted: u64,
    pub only_ours: u64,
    pub only_theirs: u64,
    /// Our cost over every cell.
    pub ours_cost: Credits,
    /// The export's cost over the cells that carry one.
    pub theirs_cost: Credits,
}

impl Totals {
    pub fn of(cells: &[Cell]) -> Totals {
        let mut t = Totals::default();
        for c in cells {
            t.cells += 1;
            match c.status {
                CellStatus::Match => t.matched += 1,
                CellStatus::Drift => t.drifted += 1,
                CellStatus::OnlyOurs => t.only_ours += 1,
                CellStatus::OnlyTheirs => t.only_theirs += 1,
            }
            t.ours_cost = Credits(t.ours_cost.0.saturating_add(c.cost.ours.0));
            if let Some(x) = c.cost.theirs {
                t.theirs_cost = Credits(t.theirs_cost.0.saturating_add(x.0));
            }
        }
        t
    }
}

/// The columns of a report as CSV, one cell a line.
pub const CSV_COLUMNS: &[&str] = &[
    "day",
    "provider",
    "model",
    "status",
    "requests",
    "ours_input_tokens",
    "theirs_input_tokens",
    "input_tokens_drift",
    "ours_output_tokens",
    "theirs_output_tokens",
    "output_tokens_drift",
    "ours_cost",
    "theirs_cost",
    "cost_drift",
    "cost_drift_relative",
];

/// A CSV field: quoted when it holds a comma, quote or line end, and
/// marked with `'` when a spreadsheet would run it as a formula (model
/// names come from an uploaded file).
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) && v.parse::<f64>().is_err() {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The cells as CSV with a header line.
pub fn cells_csv(cells: &[Cell]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for c in cells {
        let status = match c.status {
            CellStatus::Match => "match",
            CellStatus::Drift => "drift",
            CellStatus::OnlyOurs => "only_ours",
            CellStatus::OnlyTheirs => "only_theirs",
        };
        let fields = [
            c.day.clone(),
            c.provider.clone(),
            c.model.clone(),
            status.to_string(),
            c.requests.to_string(),
            c.input_tokens.ours.to_string(),
            opt(c.input_tokens.theirs),
            opt(c.input_tokens.drift),
            c.output_tokens.ours.to_string(),
            opt(c.output_tokens.theirs),
            opt(c.output_tokens.drift),
            c.cost.ours.to_string(),
            opt(c.cost.theirs),
            opt(c.cost.drift),
            opt(c.cost.relative),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(day: Day, model: &str) -> CellKey {
        (day, "p".into(), model.into())
    }

    #[test]
    fn cells_match_drift_or_stand_alone() {
        let mut ours = BTreeMap::new();
        let mut theirs = BTreeMap::new();
        let o = Ours {
            requests: 2,
            input_tokens: 10,
            output_tokens: 20,
            cost: Credits(1_000_000),
        };
        ours.insert(key(1, "a"), o.clone());
        ours.insert(key(1, "b"), o.clone());
        ours.insert(key(2, "a"), o.clone());
        let same = Tally {
            input_tokens: Some(10),
            output_tokens: Some(20),
            cost: Some(Credits(1_000_000)),
        };
        theirs.insert(key(1, "a"), same.clone());
        theirs.insert(
            key(1, "b"),
            Tally {
                cost: Some(Credits(1_030_000)),
                ..same.clone()
            },
        );
        theirs.insert(key(3, "a"), same.clone());
        let cells = compare(&ours, &theirs, &Tolerance::default());
        let status: Vec<_> = cells.iter().map(|c| c.status).collect();
        assert_eq!(
            status,
            [
                CellStatus::Match,
                CellStatus::Drift,
                CellStatus::OnlyOurs,
                CellStatus::OnlyTheirs
            ]
        );
        assert_eq!(cells[1].cost.drift, Some(Credits(30_000)));
        assert_eq!(cells[1].cost.relative, Some(0.03));
        assert_eq!(cells[3].cost.relative, Some(1.0));
        assert_eq!(cells[0].day, "1970-01-02");
        let t = Totals::of(&cells);
        assert_eq!(
            (t.matched, t.drifted, t.only_ours, t.only_theirs),
            (1, 1, 1, 1)
        );
        // One token off is drift by default, and a match with room for it.
        theirs.insert(
            key(1, "a"),
            Tally {
                input_tokens: Some(11),
                ..same
            },
        );
        let strict = compare(&ours, &theirs, &Tolerance::default());
        assert_eq!(strict[0].status, CellStatus::Drift);
        let loose = Tolerance {
            tokens_ppm: 100_000,
            ..Tolerance::default()
        };
        assert_eq!(compare(&ours, &theirs, &loose)[0].status, CellStatus::Match);
    }

    #[test]
    fn cost_tolerance_is_relative_or_absolute() {
        let t = Tolerance::default();
        assert!(within(1_000_000, 1_005_000, t.cost_ppm, t.cost_abs.0));
        assert!(!within(1_000_000, 1_005_001, t.cost_ppm, t.cost_abs.0));
        assert!(within(0, 1, t.cost_ppm, t.cost_abs.0));
        assert!(!within(0, 2, t.cost_ppm, t.cost_abs.0));
    }

    #[test]
    fn csv_neutralises_formulas_from_the_upload() {
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("-0.5"), "-0.5");
    }
}
