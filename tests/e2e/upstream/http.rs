//! Just enough HTTP/1.1 for the mock upstreams, written by hand so a test
//! controls every byte: when headers go out, where a body is cut, when the
//! connection closes, and whether the client went away.
//!
//! Requests: `Content-Length` or chunked bodies, `Expect: 100-continue`,
//! keep-alive (clients pool connections). Responses: a whole body with
//! `Content-Length`, or a chunked stream with one HTTP chunk per SSE frame.
//! While a response is in progress the read side is watched, so a client that
//! closes its connection is noticed at once, not only at the next failed
//! write.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Headers larger than this are a broken client, not a test.
const MAX_HEAD: usize = 64 << 10;
/// Request bodies larger than this are refused.
const MAX_BODY: usize = 16 << 20;

/// One parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    /// Header names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token after `Bearer ` in `Authorization`.
    pub fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A whole response, written at once.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, v: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: v.to_string().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Why a response ended early.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The client closed its connection (or a write to it failed).
    Gone,
    /// We cut the connection on purpose (a scripted reset).
    Cut,
}

/// How a finished exchange leaves the connection.
pub type Outcome = Result<(), Stop>;

/// One client connection.
pub struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    /// Bytes read but not yet parsed (the start of the next request).
    pending: Vec<u8>,
    /// The request being answered asked for `Connection: close`.
    close_after: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body at the start of `buf`: the body and how many bytes
/// it took, or `None` if more bytes are needed.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "bad chunk size")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        at += eol + 2;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let Some(end) = find(&buf[at..], b"\r\n") else {
                return Ok(None);
            };
            return Ok(Some((body, at + end + 2)));
        }
        if body.len() + size > MAX_BODY {
            return Err("body too large".into());
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Conn {
            reader,
            writer,
            pending: Vec::new(),
            close_after: false,
        }
    }

    /// Reads more bytes into `pending`; `false` at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 8192];
        let n = self.reader.read(&mut buf).await?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// The next request, or `None` when the client closed an idle
    /// connection. `Err` is a request we cannot parse (answer 400 and close).
    pub async fn read_request(&mut self) -> Result<Option<Request>, String> {
        let head_end = loop {
            if let Some(i) = find(&self.pending, b"\r\n\r\n") {
                break i;
            }
            if self.pending.len() > MAX_HEAD {
                return Err("request head too large".into());
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) | Err(_) if self.pending.is_empty() => return Ok(None),
                Ok(false) | Err(_) => return Err("connection closed mid-request".into()),
            }
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let (Some(method), Some(target), Some(_version)) =
            (first.next(), first.next(), first.next())
        else {
            return Err("bad request line".into());
        };
        let path = target.split('?').next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                return Err("bad header line".into());
            };
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut req = Request {
            method: method.to_string(),
            path,
            headers,
            body: Vec::new(),
        };
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            self.writer
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
        }
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                if let Some((body, used)) = dechunk(&self.pending)? {
                    req.body = body;
                    self.pending.drain(..used);
                    break;
                }
                if !self.fill().await.map_err(|e| e.to_string())? {
                    return Err("connection closed mid-body".into());
                }
            }
        } else if let Some(len) = req.header("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length")?;
            if len > MAX_BODY {
                return Err("body too large".into());
            }
            while self.pending.len() < len {
                if !self.fill().await.map_err(|e| e.to_string())? {
                    return Err("connection closed mid-body".into());
                }
            }
            req.body = self.pending.drain(..len).collect();
        }
        self.close_after = req.wants_close();
        Ok(Some(req))
    }

    /// Whether the connection may carry another request.
    pub fn keep_alive(&self) -> bool {
        !self.close_after
    }

    /// Writes `bytes`, watching the read side meanwhile: a client that
    /// closes (or resets) its end is [`Stop::Gone`].
    pub async fn send(&mut self, bytes: &[u8]) -> Outcome {
        let Conn {
            reader,
            writer,
            pending,
            ..
        } = self;
        let write = writer.write_all(bytes);
        tokio::pin!(write);
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                r = &mut write => return r.map_err(|_| Stop::Gone),
                r = reader.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return Err(Stop::Gone),
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                },
            }
        }
    }

    /// Waits `d`, or less if the client goes away first.
    pub async fn pause(&mut self, d: Duration) -> Outcome {
        if d.is_zero() {
            return Ok(());
        }
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                () = &mut sleep => return Ok(()),
                r = self.reader.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return Err(Stop::Gone),
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                },
            }
        }
    }

    /// Never answers; returns [`Stop::Gone`] once the client gives up.
    pub async fn hang(&mut self) -> Outcome {
        loop {
            self.pause(Duration::from_secs(3600)).await?;
        }
    }

    fn head(
        status: u16,
        content_type: &str,
        headers: &[(String, String)],
        length: Option<usize>,
    ) -> String {
        let mut h = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\n",
            reason(status)
        );
        match length {
            Some(n) => h.push_str(&format!("content-length: {n}\r\n")),
            None => h.push_str("transfer-encoding: chunked\r\ncache-control: no-cache\r\n"),
        }
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        h
    }

    /// Writes a whole response.
    pub async fn reply(&mut self, r: &Reply) -> Outcome {
        let mut bytes =
            Self::head(r.status, &r.content_type, &r.headers, Some(r.body.len())).into_bytes();
        bytes.extend_from_slice(&r.body);
        self.send(&bytes).await
    }

    /// Writes the head and about half of the body (never all of it), then
    /// cuts the connection: the client sees a body shorter than its
    /// `Content-Length`.
    pub async fn reply_cut(&mut self, r: &Reply) -> Outcome {
        let mut bytes =
            Self::head(r.status, &r.content_type, &r.headers, Some(r.body.len())).into_bytes();
        let half = r.body.len() / 2;
        bytes.extend_from_slice(&r.body[..half]);
        self.send(&bytes).await?;
        self.cut().await
    }

    /// Starts a chunked 200 response of server-sent events.
    pub async fn start_events(&mut self, headers: &[(String, String)]) -> Outcome {
        let head = Self::head(200, "text/event-stream; charset=utf-8", headers, None);
        self.send(head.as_bytes()).await
    }

    /// Starts a chunked 200 response of `content_type`, for a body written
    /// with [`Conn::chunk`].
    pub async fn start_chunked(&mut self, content_type: &str) -> Outcome {
        let head = Self::head(200, content_type, &[], None);
        self.send(head.as_bytes()).await
    }

    /// Sends `bytes` as one HTTP chunk.
    pub async fn chunk(&mut self, bytes: &[u8]) -> Outcome {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        self.send(&out).await
    }

    /// Sends one SSE frame as one HTTP chunk.
    pub async fn frame(&mut self, frame: &str) -> Outcome {
        if frame.is_empty() {
            return Ok(());
        }
        let mut bytes = format!("{:x}\r\n", frame.len()).into_bytes();
        bytes.extend_from_slice(frame.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes).await
    }

    /// Ends a chunked response properly.
    pub async fn end_events(&mut self) -> Outcome {
        self.send(b"0\r\n\r\n").await
    }

    /// Ends the connection mid-response: no terminating chunk, no more
    /// bytes. Every HTTP client reports the body as broken.
    pub async fn cut(&mut self) -> Outcome {
        let _ = self.writer.shutdown().await;
        Err(Stop::Cut)
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies_decode_only_when_complete() {
        let full = b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\nNEXT";
        let (body, used) = dechunk(full).unwrap().unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(&full[used..], b"NEXT");
        for cut in 0..full.len() - 4 {
            assert!(dechunk(&full[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }
}
