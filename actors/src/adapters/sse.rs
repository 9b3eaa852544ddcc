//! Server-sent events: an incremental parser for upstream streams and a
//! turn of a byte stream into events.

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

/// One event: its `event:` name (if any) and its `data:` lines joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

/// Feeds on bytes as they arrive; yields each event once its blank line
/// has come. Lines may end in `\n`, `\r\n` or `\r`.
#[derive(Debug)]
pub struct Parser {
    line: Vec<u8>,
    last_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// Most bytes of one line, and of one event's data.
    max: usize,
}

/// Why an event stream cannot be read on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A line or an event's data grew past the limit (in bytes).
    #[error("an event larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Broken(String),
}

impl Parser {
    /// A parser that refuses any line or event's data over `max` bytes.
    pub fn new(max: u64) -> Parser {
        Parser {
            line: Vec::new(),
            last_cr: false,
            event: None,
            data: None,
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }

    fn too_large(&self) -> Fault {
        Fault::TooLarge(self.max as u64)
    }

    /// Parses `bytes`, appending finished events to `out`. Errors on a line,
    /// or an event's data, longer than the parser's bound.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), Fault> {
        for &b in bytes {
            if self.last_cr {
                self.last_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.last_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, out);
                    if self.data.as_ref().is_some_and(|d| d.len() > self.max) {
                        return Err(self.too_large());
                    }
                }
                _ => {
                    if self.line.len() >= self.max {
                        return Err(self.too_large());
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(Event {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
    }
}

/// Turns a response body into a stream of events (or faults), no line or
/// event over `max` bytes.
pub fn events(
    body: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    max: u64,
) -> BoxStream<'static, Result<Event, Fault>> {
    let state = (body, Parser::new(max), std::collections::VecDeque::new());
    futures_util::stream::unfold(state, |(mut body, mut parser, mut ready)| async move {
        loop {
            if let Some(e) = ready.pop_front() {
                return Some((Ok(e), (body, parser, ready)));
            }
            match body.next().await {
                Some(Ok(bytes)) => {
                    let mut out = Vec::new();
                    if let Err(e) = parser.push(&bytes, &mut out) {
                        return Some((Err(e), (body, parser, ready)));
                    }
                    ready.extend(out);
                }
                Some(Err(e)) => {
                    let msg = if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        "connection broke mid-stream".to_string()
                    };
                    return Some((Err(Fault::Broken(msg)), (body, parser, ready)));
                }
                None => return None,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &str, piece: usize) -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(piece) {
            p.push(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_survive_any_split_and_line_ending() {
        let input = "event: message_start\ndata: {\"a\":1}\n\n: comment\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\r\r";
        for piece in 1..input.len() {
            let got = parse_in_pieces(input, piece);
            assert_eq!(
                got,
                vec![
                    Event {
                        event: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        event: None,
                        data: "x\ny".into()
                    },
                    Event {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn a_long_line_or_an_event_of_many_lines_is_refused_at_the_bound() {
        let mut out = Vec::new();
        let long = "data: ".to_string() + &"x".repeat(100);
        assert_eq!(
            Parser::new(64).push(long.as_bytes(), &mut out),
            Err(Fault::TooLarge(64))
        );
        // Many short data lines that never end the event.
        let mut p = Parser::new(64);
        let many = "data: 0123456789\n".repeat(10);
        assert_eq!(p.push(many.as_bytes(), &mut out), Err(Fault::TooLarge(64)));
        assert!(out.is_empty());
    }

    #[test]
    fn an_unfinished_event_is_not_emitted() {
        assert!(parse_in_pieces("data: half", 3).is_empty());
    }
}
