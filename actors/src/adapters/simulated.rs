//! The built-in offline provider: deterministic output derived from the
//! prompt, real usage figures within the plan, a configurable latency and a
//! reproducible failure rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;

use oneflow::config::SimulatedSettings;
use oneflow::pricing::{Modality, Usage, count_words};

use super::{Adapter, CallError, CallRequest, CallResult, Chunk, ChunkStream, Operation, Output};

pub struct Simulated {
    name: String,
    settings: SimulatedSettings,
    draws: AtomicU64,
}

impl Simulated {
    pub fn new(name: &str, settings: SimulatedSettings) -> Simulated {
        Simulated {
            name: name.to_string(),
            settings,
            draws: AtomicU64::new(0),
        }
    }

    /// SplitMix64 over (seed, call number): uniform in [0, 1).
    fn draw(&self) -> f64 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .settings
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fails(&self) -> bool {
        self.settings.failure_rate > 0.0 && self.draw() < self.settings.failure_rate
    }
}

fn fingerprint(s: &str) -> u64 {
    // FNV-1a: stable across builds, unlike the std hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The simulated answer to `req`, without latency or failures.
pub fn simulate(req: &CallRequest) -> CallResult {
    let plan = &req.plan;
    let prompt = req.op.prompt_text();
    let id = fingerprint(&prompt);
    let (output, usage) = match (&req.op, plan.modality) {
        (Operation::Embedding { input, .. }, _) => {
            let data = input
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let f = fingerprint(text);
                    let v: Vec<f64> = (0..8)
                        .map(|k| ((f >> (k * 8)) & 0xff) as f64 / 255.0)
                        .collect();
                    serde_json::json!({"object": "embedding", "index": i, "embedding": v})
                })
                .collect();
            let usage = Usage {
                input_tokens: input.iter().map(|t| count_words(t)).sum(),
                ..Usage::default()
            };
            (Output::Embeddings(data), usage)
        }
        (_, Modality::Text) => {
            let words: Vec<&str> = prompt.split_whitespace().collect();
            let limit = usize::try_from(plan.max_usage.output_tokens).unwrap_or(usize::MAX);
            let n = (words.len() + 2).min(limit);
            let mut out: Vec<String> = vec!["Simulated".into(), "answer:".into()];
            out.extend(words.iter().rev().map(|w| w.to_string()));
            let finish = if out.len() > n { "length" } else { "stop" };
            out.truncate(n);
            let text = out.join(" ");
            let usage = Usage {
                input_tokens: count_words(&prompt),
                output_tokens: count_words(&text),
                ..Usage::default()
            };
            (
                Output::Text {
                    text,
                    finish_reason: finish.into(),
                },
                usage,
            )
        }
        (_, Modality::Image) => {
            let size = plan.size.clone().unwrap_or_default();
            let n = plan.max_usage.images;
            let data = (0..n)
                .map(|i| serde_json::json!({"url": format!("sim://image/{id:016x}/{i}?size={size}")}))
                .collect();
            let usage = Usage {
                images: n,
                ..Usage::default()
            };
            (Output::Images(data), usage)
        }
        (_, Modality::Audio | Modality::Video) => {
            let s = plan.max_usage.seconds;
            let kind = plan.modality.name();
            let usage = Usage {
                seconds: s,
                ..Usage::default()
            };
            (
                Output::Clip(format!("sim://{kind}/{id:016x}?seconds={s}")),
                usage,
            )
        }
    };
    CallResult {
        output,
        usage,
        model: req.model.clone(),
    }
}

impl Adapter for Simulated {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>> {
        let latency = Duration::from_millis(self.settings.latency_ms);
        let fail = self.fails();
        let name = self.name.clone();
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if fail {
                return Err(CallError::upstream(&name, "simulated failure"));
            }
            Ok(simulate(&req))
        })
    }

    /// Streams the simulated text word by word, usage last.
    fn stream(&self, req: CallRequest) -> BoxFuture<'static, Result<ChunkStream, CallError>> {
        let call = self.call(req);
        Box::pin(async move {
            let r = call.await?;
            let (text, finish) = match r.output {
                Output::Text {
                    text,
                    finish_reason,
                } => (text, finish_reason),
                other => (other.summary(), "stop".into()),
            };
            let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
            let mut chunks: Vec<Result<Chunk, CallError>> =
                words.into_iter().map(|w| Ok(Chunk::Delta(w))).collect();
            chunks.push(Ok(Chunk::Usage(r.usage)));
            chunks.push(Ok(Chunk::Finish(finish)));
            Ok(futures_util::stream::iter(chunks).boxed())
        })
    }
}
