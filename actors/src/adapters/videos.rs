//! OpenAI's video job API (`/videos`), as Sora serves it: a job is created
//! with a form, its state asked for until it is `completed` or `failed`,
//! and its file fetched from `/videos/{id}/content` when a client asks.
//! The call the dispatcher runs is the whole job, create to finish, under
//! `jobs.timeout_ms`; a job left unfinished (timed out, or its request
//! dropped) is deleted upstream so that it stops rendering.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use oneflow::pricing::Usage;

use super::form::Form;
use super::{CallError, CallRequest, CallResult, Content, Operation, Output, malformed, url};

/// One provider's video API.
pub(crate) struct Videos {
    pub(crate) name: String,
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) key: Option<String>,
    pub(crate) poll: Duration,
    /// The most read of one state answer.
    pub(crate) max_body: u64,
}

/// Polls in a row that may fail (a dropped connection, a 5xx) before the
/// job is given up: one bad answer must not throw away minutes of work.
const POLL_FAILURES: u32 = 3;

/// One exchange with the job API (a create, a poll, a delete; a file's
/// head, and each silence between its pieces): the job's own bound is
/// `jobs.timeout_ms`, far too long for one stalled answer.
const EXCHANGE: Duration = Duration::from_secs(60);

/// Whether an upstream id can go into a URL path as it is. Checked before
/// any use: an id holding `/`, `?` or `..` would point the broker's
/// requests, and its key, at another resource.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An answer the job API should never give: not worth creating the job
/// again for (a retry would render it twice), and the provider's fault.
fn broken(provider: &str, what: &str) -> CallError {
    CallError::Upstream {
        provider: provider.to_string(),
        status: None,
        message: format!("malformed response: {what}"),
        retry_after: None,
        transient: false,
    }
}

/// A job the upstream says failed. A refusal of the prompt (moderation,
/// an invalid request) is the request's doing, not the provider's: it must
/// not count towards opening the provider's circuit, or any user could
/// shut video off for everyone with a few refused prompts.
fn failed(provider: &str, id: &str, error: &Value) -> CallError {
    let code = error["code"].as_str().unwrap_or_default();
    let why = error["message"].as_str().unwrap_or("no reason given");
    let refused = ["moderation", "policy", "invalid", "safety"]
        .iter()
        .any(|k| code.contains(k));
    CallError::Upstream {
        provider: provider.to_string(),
        status: refused.then_some(400),
        message: format!("video job {id} failed: {}", super::truncate(why, 300)),
        retry_after: None,
        transient: false,
    }
}

impl Videos {
    fn keyed(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => b.bearer_auth(k),
            None => b,
        }
    }

    async fn object(&self, b: reqwest::RequestBuilder) -> Result<Value, CallError> {
        let b = self.keyed(b).timeout(EXCHANGE);
        let res = super::send(&self.name, self.key.as_deref(), Ok(b)).await?;
        let bytes = super::read_body(&self.name, res, self.max_body).await?;
        serde_json::from_slice(&bytes).map_err(|_| malformed(&self.name, "not JSON"))
    }

    /// Runs one job: create, poll until it ends, and the seconds it made.
    pub(crate) async fn make(self: Arc<Self>, req: CallRequest) -> Result<CallResult, CallError> {
        let Operation::Clip {
            prompt,
            seconds,
            progress,
        } = &req.op
        else {
            return Err(CallError::Unsupported {
                provider: self.name.clone(),
                what: format!("make a video from a {} request", req.op.name()),
            });
        };
        let mut form = Form::new(prompt.len());
        form.field("model", &req.model);
        form.field("prompt", prompt);
        form.field("seconds", &seconds.to_string());
        let post = form.send_with(self.client.post(url(&self.base, "videos")));
        let mut v = self.object(post).await?;
        let id = v["id"]
            .as_str()
            .filter(|id| plain_id(id))
            .ok_or_else(|| broken(&self.name, "a video job without a plain id"))?
            .to_string();
        if let Some(p) = progress {
            p.started(&self.name, &id);
        }
        let mut unfinished = Unfinished(Some((self.clone(), id.clone())));
        let mut failures = 0;
        let mut wait = self.poll;
        loop {
            if let Some(p) = progress {
                p.advanced(v["progress"].as_u64().unwrap_or(0));
            }
            match v["status"].as_str() {
                Some("completed") => break,
                Some("failed") => {
                    unfinished.0 = None;
                    return Err(failed(&self.name, &id, &v["error"]));
                }
                Some("queued" | "in_progress") => {}
                _ => return Err(broken(&self.name, "a video job of unknown status")),
            }
            tokio::time::sleep(wait).await;
            wait = self.poll;
            let get = self.client.get(url(&self.base, &format!("videos/{id}")));
            match self.object(get).await {
                Ok(next) => {
                    v = next;
                    failures = 0;
                }
                // Asked to slow down: not a failure of the job.
                Err(e) if e.code() == "upstream_rate_limited" => {
                    let secs = e.retry_after().unwrap_or(1).min(60);
                    wait = self.poll.max(Duration::from_secs(secs));
                }
                Err(e) if e.is_transient() && failures + 1 < POLL_FAILURES => failures += 1,
                Err(e) => return Err(e),
            }
        }
        unfinished.0 = None;
        // Billed by the seconds made, which the quote's seconds bound.
        let made = match &v["seconds"] {
            Value::String(s) => s.trim().parse::<u64>().ok(),
            n => n.as_u64(),
        }
        .unwrap_or(u64::from(*seconds));
        Ok(CallResult {
            output: Output::Clip(id),
            usage: Usage {
                seconds: made,
                ..Usage::default()
            },
            model: v["model"].as_str().unwrap_or(&req.model).to_string(),
        })
    }

    /// Deletes a job upstream (it stops rendering), if its id is plain.
    pub(crate) async fn delete(&self, id: &str) {
        if plain_id(id) {
            let delete = self.keyed(self.client.delete(url(&self.base, &format!("videos/{id}"))));
            let _ = tokio::time::timeout(EXCHANGE, delete.send()).await;
        }
    }

    /// The file of a finished job, passed on as it comes, at most `limit`
    /// bytes of it.
    pub(crate) async fn content(&self, id: &str, limit: u64) -> Result<Content, CallError> {
        if !plain_id(id) {
            return Err(CallError::Unsupported {
                provider: self.name.clone(),
                what: "serve content it did not make".into(),
            });
        }
        let get = self
            .client
            .get(url(&self.base, &format!("videos/{id}/content")));
        let head = super::send(&self.name, self.key.as_deref(), Ok(self.keyed(get)));
        let timeout = |name: &str| CallError::Timeout {
            provider: name.to_string(),
            ms: EXCHANGE.as_millis() as u64,
        };
        let res = tokio::time::timeout(EXCHANGE, head)
            .await
            .map_err(|_| timeout(&self.name))??;
        if res.content_length().is_some_and(|n| n > limit) {
            return Err(CallError::TooLarge {
                provider: self.name.clone(),
                limit,
            });
        }
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("video/mp4")
            .to_string();
        let length = res.content_length();
        let name = self.name.clone();
        // Each piece must come within `EXCHANGE` of the last, so a stalled
        // upstream cannot keep the client waiting without end; an error or
        // the bound ends the file.
        let pieces = res.bytes_stream().boxed();
        let body = futures_util::stream::unfold(Some((pieces, 0u64)), move |state| {
            let name = name.clone();
            async move {
                let (mut pieces, sent) = state?;
                let piece = match tokio::time::timeout(EXCHANGE, pieces.next()).await {
                    Err(_) => Err(timeout(&name)),
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => Err(super::transport_error(&name, &e)),
                    Ok(Some(Ok(b))) => Ok(b),
                };
                match piece {
                    Ok(b) if sent + b.len() as u64 > limit => Some((
                        Err(CallError::TooLarge {
                            provider: name,
                            limit,
                        }),
                        None,
                    )),
                    Ok(b) => {
                        let sent = sent + b.len() as u64;
                        Some((Ok(b), Some((pieces, sent))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
        .boxed();
        Ok(Content {
            content_type,
            length,
            body,
        })
    }
}

/// A job created upstream and not yet seen to end: dropped so (the call
/// timed out, or its task went away), it deletes the job, so that the
/// upstream stops rendering what nobody will pay for.
struct Unfinished(Option<(Arc<Videos>, String)>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some((v, id)) = self.0.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move { v.delete(&id).await });
    }
}
