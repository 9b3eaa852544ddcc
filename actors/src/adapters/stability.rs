//! Stability AI's REST image generation (v1 text-to-image). `base_url` is
//! the API root, e.g. `https://api.stability.ai`; the model is the engine id.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use oneflow::config::ProviderConfig;
use oneflow::pricing::Usage;

use super::{Adapter, CallError, CallRequest, CallResult, Operation, Output, malformed, url};

pub struct Stability {
    name: String,
    base: String,
    client: reqwest::Client,
    key: Option<String>,
    /// `limits.max_response_bytes`: the most read of one answer or event.
    max_body: u64,
}

impl Stability {
    pub fn new(cfg: &ProviderConfig, client: reqwest::Client, key: Option<String>) -> Stability {
        Stability {
            name: cfg.name.clone(),
            base: cfg.base_url.clone(),
            client,
            key,
            max_body: cfg.limits.max_response_bytes,
        }
    }
}

/// `"1024x768"` as (width, height).
fn dimensions(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

impl Adapter for Stability {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>> {
        let name = self.name.clone();
        let key = self.key.clone();
        let max_body = self.max_body;
        let built = match &req.op {
            Operation::Image {
                prompt, n, size, ..
            } => match dimensions(size) {
                Some((width, height)) => {
                    let body = json!({
                        "text_prompts": [{"text": prompt, "weight": 1}],
                        "samples": n,
                        "width": width,
                        "height": height,
                    });
                    let path = format!("v1/generation/{}/text-to-image", req.model);
                    let b = self
                        .client
                        .post(url(&self.base, &path))
                        .header(reqwest::header::ACCEPT, "application/json")
                        .json(&body);
                    Ok(match &self.key {
                        Some(k) => b.bearer_auth(k),
                        None => b,
                    })
                }
                None => Err(format!("make images of size `{size}`")),
            },
            other => Err(format!("serve {} requests", other.name())),
        };
        Box::pin(async move {
            let res = super::send(&name, key.as_deref(), built).await?;
            let bytes = super::read_body(&name, res, max_body).await?;
            let v: Value =
                serde_json::from_slice(&bytes).map_err(|_| malformed(&name, "not JSON"))?;
            let artifacts = v
                .get("artifacts")
                .and_then(|a| a.as_array())
                .ok_or_else(|| malformed(&name, "no artifacts"))?;
            let images: Vec<Value> = artifacts
                .iter()
                .filter(|a| a.get("finishReason").and_then(|f| f.as_str()) != Some("ERROR"))
                .filter_map(|a| a.get("base64").and_then(|b| b.as_str()))
                .map(|b| json!({"b64_json": b}))
                .collect();
            Ok(CallResult {
                usage: Usage {
                    images: images.len() as u64,
                    ..Usage::default()
                },
                output: Output::Images(images),
                model: req.model.clone(),
            })
        })
    }
}
