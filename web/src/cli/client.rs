//! The CLI's HTTP client: one reqwest client on a current-thread tokio
//! runtime, blocking calls for the command code, the API's error shape
//! turned into a message a person can act on.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The broker answered with an error.
    #[error("{message} ({status}, {code}){hint}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// What to try, where the error alone does not say.
        hint: String,
        /// The body as the broker sent it, for `--json`.
        body: String,
    },
    /// No answer: the broker is down, the address is wrong, a timeout.
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The command line itself is wrong; nothing was sent.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// The process exit status: 2 for a wrong command line, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Api { .. } | CliError::Unreachable { .. } => 1,
        }
    }
}

/// An answer: the body's exact text (for `--json`) and its parsed value
/// (numbers keep their decimal text: `serde_json` has
/// `arbitrary_precision`).
pub struct Answer {
    pub text: String,
    pub value: Value,
}

/// A connection to one broker with one key.
pub struct Client {
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    base: String,
    key: Option<String>,
}

/// Whether requests to `url` should skip any proxy from the environment:
/// a broker on this machine is never behind one.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(h) => h.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

impl Client {
    pub fn new(url: &str, key: Option<String>) -> Result<Client, CliError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--url must start with http:// or https://, got `{url}`"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Video requests may take minutes; a hung broker must not hang
            // a script for ever.
            .timeout(Duration::from_secs(900));
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| CliError::Usage(format!("cannot make an HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
        Ok(Client {
            http,
            rt,
            base,
            key,
        })
    }

    pub fn get(&self, path: &str) -> Result<Answer, CliError> {
        self.call(Method::GET, path, None, false)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Answer, CliError> {
        self.call(Method::POST, path, Some(body), false)
    }

    pub fn delete(&self, path: &str) -> Result<Answer, CliError> {
        self.call(Method::DELETE, path, None, false)
    }

    /// `GET /health`, which needs no key: whether the broker answers.
    pub fn health(&self) -> Result<Answer, CliError> {
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let url = format!("{}/health", self.base);
        let (status, text) = self.rt.block_on(async {
            let res = self.http.get(url).send().await.map_err(unreachable)?;
            let status = res.status();
            Ok::<_, CliError>((status, res.text().await.map_err(unreachable)?))
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Answer { text, value });
        }
        Err(api_error(status, text, &value))
    }

    /// GETs `path` and writes the body to `out` as it arrives, however
    /// large; the bytes written. A body shorter than its Content-Length is
    /// an error, not a short file.
    pub fn download(&self, path: &str, out: &mut dyn Write) -> Result<u64, CliError> {
        let key = self
            .key
            .as_deref()
            .ok_or_else(|| CliError::Usage("no API key: pass --key or set ONEFLOW_KEY".into()))?;
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let written = |e: std::io::Error| CliError::Usage(format!("cannot write the file: {e}"));
        let rb = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key);
        self.rt.block_on(async {
            let mut res = rb.send().await.map_err(unreachable)?;
            let status = res.status();
            if !status.is_success() {
                let text = res.text().await.map_err(unreachable)?;
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                return Err(api_error(status, text, &value));
            }
            let expected = res.content_length();
            let mut n = 0u64;
            while let Some(chunk) = res.chunk().await.map_err(unreachable)? {
                out.write_all(&chunk).map_err(written)?;
                n += chunk.len() as u64;
            }
            match expected {
                Some(len) if len != n => Err(CliError::Unreachable {
                    url: self.base.clone(),
                    reason: format!("the download broke off after {n} of {len} bytes"),
                }),
                _ => Ok(n),
            }
        })
    }

    /// `POST /api/request`, which may take a while: a spinner turns on
    /// stderr meanwhile, when stderr is a terminal.
    pub fn request(&self, body: &Value, idempotency_key: Option<&str>) -> Result<Answer, CliError> {
        let spin = std::io::stderr().is_terminal();
        self.send(
            Method::POST,
            "/api/request",
            Some(body),
            spin,
            idempotency_key,
        )
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        spinner: bool,
    ) -> Result<Answer, CliError> {
        self.send(method, path, body, spinner, None)
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        spinner: bool,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, CliError> {
        let key = self
            .key
            .as_deref()
            .ok_or_else(|| CliError::Usage("no API key: pass --key or set ONEFLOW_KEY".into()))?;
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        if let Some(k) = idempotency_key {
            rb = rb.header("Idempotency-Key", k);
        }
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let work = async {
            let res = rb.send().await.map_err(unreachable)?;
            let status = res.status();
            let text = res.text().await.map_err(unreachable)?;
            Ok::<_, CliError>((status, text))
        };
        let (status, text) = self.rt.block_on(async {
            if spinner {
                with_spinner(work).await
            } else {
                work.await
            }
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Answer { text, value });
        }
        Err(api_error(status, text, &value))
    }
}

fn api_error(status: StatusCode, body: String, v: &Value) -> CliError {
    let field = |k: &str| v["error"][k].as_str().map(str::to_string);
    let code = field("code").unwrap_or_else(|| "http_error".into());
    let message = field("message").unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("error");
        format!("the broker answered {reason}")
    });
    let hint = match status {
        StatusCode::UNAUTHORIZED => "; check --key or ONEFLOW_KEY".to_string(),
        StatusCode::FORBIDDEN => "; use an admin key".to_string(),
        _ => String::new(),
    };
    CliError::Api {
        status: status.as_u16(),
        code,
        message,
        hint,
        body,
    }
}

/// Runs `work`, turning a spinner on stderr every 100 ms until it ends,
/// then clears the spinner's line.
async fn with_spinner<T>(work: impl std::future::Future<Output = T>) -> T {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(work);
    let mut frame = 0usize;
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick() => {
                let secs = started.elapsed().as_secs_f32();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{} waiting for the broker… {secs:.1}s", FRAMES[frame % FRAMES.len()]);
                let _ = err.flush();
                frame += 1;
            }
        }
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost/api"));
        assert!(is_loopback("http://[::1]:80"));
        assert!(!is_loopback("https://broker.example.com"));
        assert!(!is_loopback("http://10.0.0.1:8080"));
    }
}
