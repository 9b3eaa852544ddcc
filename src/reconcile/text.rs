//! The two kinds of text an invoice export is made of that the rest of the
//! domain has no reader for: CSV, and decimal amounts with more places (or
//! an exponent) than a credit amount may have.

/// Most fields in one CSV row: an export wider than this is not one we read.
const MAX_FIELDS: usize = 64;
/// Longest field, in bytes.
const MAX_FIELD: usize = 1024;

/// Why a CSV text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("CSV line {0}: a quoted field is not closed")]
    Unclosed(usize),
    #[error("CSV line {0}: text after a closing quote")]
    AfterQuote(usize),
    #[error("CSV line {0}: more than {MAX_FIELDS} fields")]
    TooWide(usize),
    #[error("CSV line {0}: a field longer than {MAX_FIELD} bytes")]
    FieldTooLong(usize),
    #[error("more than {0} CSV rows")]
    TooManyRows(usize),
}

/// Reads RFC 4180 CSV (commas, optional double quotes with `""` inside,
/// CRLF or LF line ends) into rows of fields; blank lines are skipped.
/// At most `max_rows` rows, header included, so a huge upload costs a
/// bounded amount of memory past its bytes.
pub fn csv_rows(text: &str, max_rows: usize) -> Result<Vec<Vec<String>>, CsvError> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    // The field began with a quote and it is still open.
    let mut quoted = false;
    // The current field was quoted and has been closed.
    let mut closed = false;
    let push_field = |row: &mut Vec<String>, field: &mut String, line: usize| {
        if row.len() >= MAX_FIELDS {
            return Err(CsvError::TooWide(line));
        }
        row.push(std::mem::take(field));
        Ok(())
    };
    loop {
        let c = chars.next();
        if quoted {
            match c {
                None => return Err(CsvError::Unclosed(line)),
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                Some('"') => {
                    quoted = false;
                    closed = true;
                }
                Some(ch) => {
                    if ch == '\n' {
                        line += 1;
                    }
                    field.push(ch);
                }
            }
        } else {
            match c {
                Some(',') => {
                    push_field(&mut row, &mut field, line)?;
                    closed = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') | None => {
                    let blank = row.is_empty() && field.trim().is_empty() && !closed;
                    if !blank {
                        push_field(&mut row, &mut field, line)?;
                        if rows.len() >= max_rows {
                            return Err(CsvError::TooManyRows(max_rows));
                        }
                        rows.push(std::mem::take(&mut row));
                    }
                    field.clear();
                    closed = false;
                    if c.is_none() {
                        break;
                    }
                    line += 1;
                }
                Some('"') if field.is_empty() && !closed => quoted = true,
                Some(_) if closed => return Err(CsvError::AfterQuote(line)),
                Some(ch) => field.push(ch),
            }
        }
        if field.len() > MAX_FIELD {
            return Err(CsvError::FieldTooLong(line));
        }
    }
    Ok(rows)
}

/// A decimal number (`12`, `-0.5`, `6e-05`, `1.2E3`) times `10^shift`,
/// rounded half away from zero to a whole number: `decimal("0.06", 6)` is
/// 60,000 micro-credits. Exact (no float), so an invoice's `0.1` is 100,000
/// micro-credits, not 99,999. `None` for anything else, or past `i64`.
pub fn decimal(text: &str, shift: i32) -> Option<i64> {
    let s = text.trim();
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits of the whole value, and where the point sits after scaling.
    let all: String = int.chars().chain(frac.chars()).collect();
    let digits = all.trim_start_matches('0');
    let leading_zeros = (all.len() - digits.len()) as i64;
    let point = int.len() as i64 + i64::from(exp) + i64::from(shift) - leading_zeros;
    // `digits` with the point `point` places from its left.
    let len = digits.len() as i64;
    if len == 0 {
        return Some(0);
    }
    let (whole, first_dropped) = if point >= len {
        if point - len > 19 {
            return None;
        }
        let mut w = digits.parse::<i128>().ok()?;
        for _ in 0..(point - len) {
            w = w.checked_mul(10)?;
        }
        (w, 0)
    } else if point <= 0 {
        let first = if point == 0 {
            digits.as_bytes()[0] - b'0'
        } else {
            0
        };
        (0, first)
    } else {
        let (keep, drop) = digits.split_at(point as usize);
        (keep.parse::<i128>().ok()?, drop.as_bytes()[0] - b'0')
    };
    let rounded = if first_dropped >= 5 { whole + 1 } else { whole };
    let v = i64::try_from(rounded).ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_scale_exactly_and_round_half_away_from_zero() {
        assert_eq!(decimal("0.06", 6), Some(60_000));
        assert_eq!(decimal("0.1", 6), Some(100_000));
        assert_eq!(decimal("6e-05", 6), Some(60));
        assert_eq!(decimal("1.2E3", 0), Some(1200));
        assert_eq!(decimal("12", 6), Some(12_000_000));
        assert_eq!(decimal("0.0000005", 6), Some(1));
        assert_eq!(decimal("0.0000004999", 6), Some(0));
        assert_eq!(decimal("-1.5", 0), Some(-2));
        assert_eq!(decimal("123.45", 4), Some(1_234_500));
        assert_eq!(decimal("007.50", 2), Some(750));
        assert_eq!(decimal("0", 6), Some(0));
        assert_eq!(decimal(".5", 1), Some(5));
        for bad in ["", ".", "abc", "1.2.3", "1e", "--1", "1,5", "1e99999999999"] {
            assert_eq!(decimal(bad, 6), None, "{bad}");
        }
        assert_eq!(decimal("1e30", 6), None);
    }

    #[test]
    fn csv_reads_quotes_line_ends_and_refuses_what_is_broken() {
        let rows = csv_rows("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\n1,\n", 10).unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["x, y".into(), "say \"hi\"".into()],
                vec!["1".into(), "".into()],
            ]
        );
        assert_eq!(csv_rows("a,\"b\n", 10), Err(CsvError::Unclosed(2)));
        assert_eq!(csv_rows("a,\"b\"c\n", 10), Err(CsvError::AfterQuote(1)));
        assert_eq!(csv_rows("a\nb\nc\n", 2), Err(CsvError::TooManyRows(2)));
        assert!(matches!(
            csv_rows(&",".repeat(100), 10),
            Err(CsvError::TooWide(1))
        ));
    }
}
