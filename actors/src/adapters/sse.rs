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
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    last_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

/// An event larger than this is an upstream fault, not memory to spend.
pub const MAX_LINE: usize = 4 << 20;

impl Parser {
    /// Parses `bytes`, appending finished events to `out`. Errors on a line
    /// longer than [`MAX_LINE`].
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
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
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err("an event line is too long".into());
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

/// Turns a response body into a stream of events (or transport errors).
pub fn events(
    body: BoxStream<'static, Result<Bytes, reqwest::Error>>,
) -> BoxStream<'static, Result<Event, String>> {
    let state = (body, Parser::default(), std::collections::VecDeque::new());
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
                    return Some((Err(msg), (body, parser, ready)));
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
        let mut p = Parser::default();
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
    fn an_unfinished_event_is_not_emitted() {
        assert!(parse_in_pieces("data: half", 3).is_empty());
    }
}
