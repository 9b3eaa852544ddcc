//! Money as integer micro-credits.
//!
//! Every amount in OneFlow is an `i64` count of micro-credits (1 credit =
//! 1,000,000). Floats never touch money: the API reads and writes credits as
//! decimal text (a JSON number or string) with at most six places, and
//! [`Credits::parse`] is exact.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Micro-credits per credit.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;

/// The largest amount the API accepts: one trillion credits. Far below
/// `i64::MAX` micro-credits so that sums of many amounts cannot overflow.
pub const MAX_CREDITS: Credits = Credits(1_000_000_000_000 * MICROS_PER_CREDIT);

/// An amount of money in micro-credits. Signed so that ledger arithmetic and
/// deltas are natural; the ledger enforces non-negativity where it matters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credits(pub i64);

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount `{0}` is not a decimal number")]
    NotANumber(String),
    #[error("amount `{0}` has more than 6 decimal places")]
    TooPrecise(String),
    #[error("amount `{0}` is out of range (at most 1000000000000 credits)")]
    OutOfRange(String),
    #[error("amount `{0}` must not be negative")]
    Negative(String),
    #[error("amount `{0}` must be greater than zero")]
    NotPositive(String),
}

impl Credits {
    pub const ZERO: Credits = Credits(0);

    /// Whole credits, for defaults and tests.
    pub const fn from_credits(c: i64) -> Credits {
        Credits(c * MICROS_PER_CREDIT)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, o: Credits) -> Option<Credits> {
        self.0.checked_add(o.0).map(Credits)
    }

    pub fn checked_mul(self, n: u64) -> Option<Credits> {
        i64::try_from(n)
            .ok()
            .and_then(|n| self.0.checked_mul(n))
            .map(Credits)
    }

    /// A JSON number with more than six places that is a whole number of
    /// micro-credits but for floating-point rounding (`0.29999899999999997`,
    /// what a client computing 299,999 micro-credits as a double writes):
    /// that amount, if the number is within two units in the last place of
    /// its decimal value; `None` for a true seventh place (`0.1234567`).
    /// JSON Schema's `multipleOf: 0.000001` means the same of a number.
    fn from_float_text(text: &str) -> Option<Credits> {
        let x: f64 = text.trim().parse().ok()?;
        if !x.is_finite() || x.abs() > 1e12 {
            return None;
        }
        let micros = (x * MICROS_PER_CREDIT as f64).round();
        if micros == 0.0 {
            // Nothing is within rounding of zero but zero.
            return None;
        }
        let exact = micros / MICROS_PER_CREDIT as f64;
        let ulp = f64::EPSILON * exact.abs().max(f64::MIN_POSITIVE);
        ((x - exact).abs() <= 2.0 * ulp).then_some(Credits(micros as i64))
    }

    /// Parses decimal text exactly: optional sign, digits, optional fraction of
    /// at most six digits, optionally an exponent (JSON allows `1e2`). Anything
    /// else, including NaN and infinities, is refused.
    pub fn parse(text: &str) -> Result<Credits, MoneyError> {
        let bad = || MoneyError::NotANumber(text.to_string());
        let s = text.trim();
        let (neg, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => {
                let e: i32 = body[i + 1..].parse().map_err(|_| bad())?;
                (&body[..i], e)
            }
            None => (body, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        // All digits, and where the decimal point sits after the exponent.
        let digits: String = format!("{int_part}{frac_part}");
        let point = i64::try_from(int_part.len()).map_err(|_| bad())? + i64::from(exp);
        let digits = digits.trim_start_matches('0');
        let point = point - i64::try_from(mantissa_leading_zeros(int_part, frac_part)).unwrap_or(0);
        // Value = 0.digits * 10^point. Fraction digits after the point:
        let digits = digits.trim_end_matches('0');
        if digits.is_empty() {
            return Ok(Credits::ZERO);
        }
        let n_digits = i64::try_from(digits.len()).map_err(|_| bad())?;
        let frac_digits = n_digits - point;
        if frac_digits > 6 {
            return Err(MoneyError::TooPrecise(text.to_string()));
        }
        // micros = digits * 10^(6 - frac_digits)
        let scale = 6 - frac_digits;
        if n_digits + scale > 19 {
            return Err(MoneyError::OutOfRange(text.to_string()));
        }
        let mut v: i128 = 0;
        for b in digits.bytes() {
            v = v * 10 + i128::from(b - b'0');
        }
        for _ in 0..scale {
            v *= 10;
        }
        if v > i128::from(MAX_CREDITS.0) {
            return Err(MoneyError::OutOfRange(text.to_string()));
        }
        let v = i64::try_from(v).map_err(|_| MoneyError::OutOfRange(text.to_string()))?;
        Ok(Credits(if neg { -v } else { v }))
    }

    /// Parses an amount that must be zero or more.
    pub fn parse_non_negative(text: &str) -> Result<Credits, MoneyError> {
        let c = Credits::parse(text)?;
        if c.is_negative() {
            return Err(MoneyError::Negative(text.to_string()));
        }
        Ok(c)
    }

    /// Parses an amount that must be more than zero.
    pub fn parse_positive(text: &str) -> Result<Credits, MoneyError> {
        let c = Credits::parse(text)?;
        if c.0 <= 0 {
            return Err(MoneyError::NotPositive(text.to_string()));
        }
        Ok(c)
    }
}

/// How many leading zeros of `int_part ++ frac_part` were stripped, so the
/// decimal point can be shifted to match.
fn mantissa_leading_zeros(int_part: &str, frac_part: &str) -> usize {
    int_part
        .bytes()
        .chain(frac_part.bytes())
        .take_while(|b| *b == b'0')
        .count()
}

impl Credits {
    /// The shortest exact decimal text, written into `buf` (no allocation:
    /// every answer and stored record writes several amounts).
    fn decimal(self, buf: &mut [u8; 28]) -> &str {
        let abs = self.0.unsigned_abs();
        let unit = MICROS_PER_CREDIT.unsigned_abs();
        let (mut whole, mut frac) = (abs / unit, abs % unit);
        let mut at = buf.len();
        let mut push = |b: u8, at: &mut usize| {
            *at -= 1;
            buf[*at] = b;
        };
        if frac != 0 {
            let mut digits = 6;
            while frac % 10 == 0 {
                frac /= 10;
                digits -= 1;
            }
            for _ in 0..digits {
                push(b'0' + (frac % 10) as u8, &mut at);
                frac /= 10;
            }
            push(b'.', &mut at);
        }
        loop {
            push(b'0' + (whole % 10) as u8, &mut at);
            whole /= 10;
            if whole == 0 {
                break;
            }
        }
        if self.0 < 0 {
            push(b'-', &mut at);
        }
        // Only ASCII digits, '.' and '-' were written.
        std::str::from_utf8(&buf[at..]).unwrap_or("0")
    }
}

impl fmt::Display for Credits {
    /// Shortest exact decimal: `12`, `0.5`, `-3.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.decimal(&mut [0; 28]))
    }
}

impl FromStr for Credits {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Credits::parse(s)
    }
}

impl Serialize for Credits {
    /// A JSON number with the exact decimal text (never through f64).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % MICROS_PER_CREDIT == 0 {
            return s.serialize_i64(self.0 / MICROS_PER_CREDIT);
        }
        let mut buf = [0; 28];
        let text = self.decimal(&mut buf);
        match serde_json::Number::from_str(text) {
            Ok(n) => n.serialize(s),
            Err(_) => s.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for Credits {
    /// Accepts a JSON number or a string holding a decimal number.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                return match Credits::parse(&text) {
                    Err(MoneyError::TooPrecise(_)) => {
                        Credits::from_float_text(&text).ok_or_else(|| {
                            serde::de::Error::custom(MoneyError::TooPrecise(text.clone()))
                        })
                    }
                    other => other.map_err(serde::de::Error::custom),
                };
            }
            // A string is plain decimal text, as the document's pattern
            // says: no spaces, sign `+` or exponent (a JSON number may
            // have an exponent; text people write does not).
            serde_json::Value::String(s) if !plain_decimal(s) => {
                return Err(serde::de::Error::custom(format!(
                    "amount `{s}` must be a plain decimal number like 12.5"
                )));
            }
            serde_json::Value::String(s) => s.clone(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "amount must be a decimal number, got {other}"
                )));
            }
        };
        Credits::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Credits {
    /// Amounts written as text people type (`"12.5"`, a header): exactly
    /// `^-?[0-9]{1,12}(\.[0-9]{1,6})?$`, the pattern the document gives
    /// them; `None` for anything else.
    pub fn parse_plain(s: &str) -> Option<Credits> {
        plain_decimal(s).then(|| Credits::parse(s).ok()).flatten()
    }
}

fn plain_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let digits =
        |t: &[u8], most: usize| (1..=most).contains(&t.len()) && t.iter().all(u8::is_ascii_digit);
    match body.iter().position(|b| *b == b'.') {
        Some(dot) => digits(&body[..dot], 12) && digits(&body[dot + 1..], 6),
        None => digits(body, 12),
    }
}

/// In the OpenAPI document: what [`Serialize`] writes and [`Deserialize`]
/// reads, which no derive can say.
impl utoipa::PartialSchema for Credits {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Number, Type::String]))
            // What `Credits::parse` takes: at most 1e12 either way, and a
            // string only in decimal notation (keywords apply to their own
            // type: the bounds to numbers, the pattern to strings).
            .minimum(Some(-1e12))
            .maximum(Some(1e12))
            .pattern(Some(r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"))
            .description(Some(
                "Credits as a decimal number with at most 6 places (1 credit = 1,000,000 \
                 micro-credits); a string holding such a number is accepted too.",
            ))
            .examples([serde_json::json!(12.5)])
            .into()
    }
}

impl utoipa::ToSchema for Credits {}

impl Add for Credits {
    type Output = Credits;
    fn add(self, o: Credits) -> Credits {
        Credits(self.0.saturating_add(o.0))
    }
}
impl Sub for Credits {
    type Output = Credits;
    fn sub(self, o: Credits) -> Credits {
        Credits(self.0.saturating_sub(o.0))
    }
}
impl AddAssign for Credits {
    fn add_assign(&mut self, o: Credits) {
        *self = *self + o;
    }
}
impl SubAssign for Credits {
    fn sub_assign(&mut self, o: Credits) {
        *self = *self - o;
    }
}
impl Neg for Credits {
    type Output = Credits;
    fn neg(self) -> Credits {
        Credits(self.0.saturating_neg())
    }
}
impl Sum for Credits {
    fn sum<I: Iterator<Item = Credits>>(iter: I) -> Credits {
        iter.fold(Credits::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Credits::parse("1"), Ok(Credits(1_000_000)));
        assert_eq!(Credits::parse("0.000001"), Ok(Credits(1)));
        assert_eq!(Credits::parse("12.5"), Ok(Credits(12_500_000)));
        assert_eq!(Credits::parse("-3.25"), Ok(Credits(-3_250_000)));
        assert_eq!(Credits::parse("1e2"), Ok(Credits(100_000_000)));
        assert_eq!(
            Credits::parse("1.5E-6"),
            Err(MoneyError::TooPrecise("1.5E-6".into()))
        );
        assert_eq!(
            Credits::parse("2.5e-6"),
            Err(MoneyError::TooPrecise("2.5e-6".into()))
        );
        assert_eq!(Credits::parse("1e-6"), Ok(Credits(1)));
        assert_eq!(Credits::parse("007.100"), Ok(Credits(7_100_000)));
        assert_eq!(Credits::parse("0.0"), Ok(Credits(0)));
        assert_eq!(Credits::parse(".5"), Ok(Credits(500_000)));
        assert_eq!(Credits::parse("5."), Ok(Credits(5_000_000)));
    }

    /// A JSON number that is a whole number of micro-credits but for the
    /// rounding of a double is that amount; a true seventh place is not.
    #[test]
    fn json_numbers_are_read_to_the_micro_credit_through_float_noise() {
        let read = |t: &str| serde_json::from_str::<Credits>(t);
        assert_eq!(read("0.29999899999999997").unwrap(), Credits(299_999));
        assert_eq!(read("0.30000000000000004").unwrap(), Credits(300_000));
        assert_eq!(read("1.0000000000000002").unwrap(), Credits(1_000_000));
        assert!(read("0.1234567").is_err());
        assert!(read("0.0000005").is_err());
        assert!(read("5e-324").is_err_and(|e| e.to_string().contains("6 decimal")));
        // Strings stay exact: what people write is what they mean.
        assert!(read("\"0.29999899999999997\"").is_err());
        for k in [1i64, 7, 299_999, 123_456_789, 999_999_999_999] {
            let x = k as f64 * 1e-6;
            assert_eq!(read(&format!("{x:?}")).unwrap(), Credits(k), "{x:?}");
        }
    }

    #[test]
    fn refuses_bad_amounts() {
        assert!(matches!(
            Credits::parse("0.0000001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            Credits::parse("NaN"),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            Credits::parse("inf"),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(Credits::parse(""), Err(MoneyError::NotANumber(_))));
        assert!(matches!(
            Credits::parse("."),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            Credits::parse("1.2.3"),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            Credits::parse("1e999999999999"),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            Credits::parse("1e30"),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(matches!(
            Credits::parse("1000000000000.000001"),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(matches!(
            Credits::parse_non_negative("-1"),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            Credits::parse_positive("0"),
            Err(MoneyError::NotPositive(_))
        ));
    }

    #[test]
    fn json_round_trip_is_exact() {
        let c: Credits = serde_json::from_str("0.1").unwrap();
        assert_eq!(c, Credits(100_000));
        assert_eq!(serde_json::to_string(&Credits(100_000)).unwrap(), "0.1");
        assert_eq!(serde_json::to_string(&Credits(-1)).unwrap(), "-0.000001");
        let c: Credits = serde_json::from_str("\"42.000001\"").unwrap();
        assert_eq!(c, Credits(42_000_001));
        assert!(serde_json::from_str::<Credits>("0.12345678").is_err());
        assert!(serde_json::from_str::<Credits>("true").is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(m in -MAX_CREDITS.0..=MAX_CREDITS.0) {
            let c = Credits(m);
            prop_assert_eq!(Credits::parse(&c.to_string()), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            prop_assert_eq!(serde_json::from_str::<Credits>(&json).unwrap(), c);
        }
    }
}
