//! What a client asks for, checked against one provider's limits and turned
//! into the bounds that make its quote.

use serde::{Deserialize, Serialize};

use crate::choice::{Region, Strategy};
use crate::money::Credits;
use crate::pricing::{Modality, PriceOverflow, Usage, count_words};
use crate::provider::{ProviderConfig, ProviderKind};

/// An AI request as the native API takes it. Fields that do not apply to the
/// chosen model's modality are refused rather than silently ignored.
//
// Its doc comments are the OpenAPI document's descriptions. The bounds in
// its schema are those `validate` and `plan` check for every provider; the
// upper ones (prompt length, `max_tokens`, `n`, `seconds`) are each
// provider's configuration, so only the descriptions name them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "gpt", "prompt": "Say hello in French", "max_tokens": 50}))]
pub struct AiRequest {
    /// A provider name (`gpt`, `image`, `audio`, `video` by default) or a
    /// model name a provider lists (see `GET /v1/models`).
    pub model: String,
    /// Not blank; at most `[server] max_prompt_chars` characters.
    #[schema(min_length = 1)]
    pub prompt: String,
    /// Text: the most output tokens (the quote assumes all are used).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_u32"
    )]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// Image: one of the provider's sizes, e.g. `1024x1024`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Image: how many.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_u32"
    )]
    #[schema(minimum = 1)]
    pub n: Option<u32>,
    /// Audio and video: length in seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_u32"
    )]
    #[schema(minimum = 1)]
    pub seconds: Option<u32>,
    /// Only this provider may serve the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Only providers in this region may serve the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    /// Only providers whose quote is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<Credits>,
    /// Ranks providers this way instead of the user's or the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// Reads an optional count (`max_tokens`, `n`, `seconds`) from any JSON
/// number with a whole value: `213` and `213.0` alike, as JSON Schema's
/// `integer` (and Python's clients) mean them. A fraction or a value out of
/// range is refused.
pub fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(v) = Option::<serde_json::Value>::deserialize(d)? else {
        return Ok(None);
    };
    let n = match &v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                .map(|f| f as u64)
        }),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "expected a whole number from 0 to {}, got {v}",
                u32::MAX
            ))
        })
}

/// Why a request cannot be served as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("prompt must not be empty")]
    EmptyPrompt,
    #[error("prompt is longer than {0} characters")]
    PromptTooLong(usize),
    #[error("model `{0}` is unknown")]
    UnknownModel(String),
    #[error("provider `{0}` is unknown or does not serve this model")]
    UnknownProvider(String),
    #[error("no provider of model `{model}` is in region {region}")]
    NoProviderInRegion { model: String, region: String },
    #[error("field `{field}` does not apply to {modality} models")]
    NotApplicable {
        field: &'static str,
        modality: &'static str,
    },
    #[error("`{field}` must be between 1 and {max}")]
    OutOfBounds { field: &'static str, max: u32 },
    #[error("size `{0}` is not offered; choose one of {1}")]
    UnknownSize(String, String),
    #[error("no provider quotes at most {max}; the cheapest quotes {cheapest}")]
    OverMaxPrice { max: Credits, cheapest: Credits },
    #[error("every provider of model `{0}` is unavailable (circuit open); retry shortly")]
    NoProviderAvailable(String),
    /// A field of one wire format that the provider's format has no place
    /// for (an OpenAI `response_format` to an Anthropic provider).
    #[error("`{field}` cannot be carried to provider `{provider}`, which speaks another format")]
    CannotCarry { field: String, provider: String },
    #[error(transparent)]
    Price(#[from] PriceOverflow),
}

/// Tokens a chat message adds besides its text (role and separators), by
/// the tokenizers in use today; with one token per byte at most, a bound.
pub const MESSAGE_FRAMING_TOKENS: u64 = 4;
/// Tokens a chat prompt adds once (the reply's priming).
pub const PROMPT_FRAMING_TOKENS: u64 = 3;

/// The most tokens `text`, sent as one user message, can count as at a
/// provider of `kind`. The simulated providers count words; real tokenizers
/// never make more than one token of a byte of UTF-8, so bytes plus framing
/// is a bound the quote can rest on.
pub fn input_token_bound(kind: ProviderKind, text: &str) -> u64 {
    match kind {
        ProviderKind::Simulated => count_words(text),
        _ => text.len() as u64 + MESSAGE_FRAMING_TOKENS + PROMPT_FRAMING_TOKENS,
    }
}

/// Tokens `text` likely counts as at a provider of `kind`, for when the
/// upstream does not say (a stream cut before its usage came). Simulated
/// providers count words. For real tokenizers, about four characters a
/// token is the usual figure for English and code; words undercount text
/// without spaces (one 20,000-character word is thousands of tokens, not
/// one), so the estimate is the larger of the two.
pub fn token_estimate(kind: ProviderKind, text: &str) -> u64 {
    let words = count_words(text);
    match kind {
        ProviderKind::Simulated => words,
        _ => words.max((text.chars().count() as u64).div_ceil(4)),
    }
}

/// A request fitted to one provider: the largest usage it may produce, the
/// image size it is priced at, and the quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub provider: String,
    pub modality: Modality,
    pub max_usage: Usage,
    pub size: Option<String>,
    pub quote: Credits,
}

fn bounded(
    field: &'static str,
    v: Option<u32>,
    default: u32,
    max: u32,
) -> Result<u32, RequestError> {
    let v = v.unwrap_or(default);
    if v == 0 || v > max {
        return Err(RequestError::OutOfBounds { field, max });
    }
    Ok(v)
}

impl AiRequest {
    /// Checks that do not depend on the provider.
    pub fn validate(&self, max_prompt_chars: usize) -> Result<(), RequestError> {
        if self.prompt.trim().is_empty() {
            return Err(RequestError::EmptyPrompt);
        }
        if self.prompt.chars().count() > max_prompt_chars {
            return Err(RequestError::PromptTooLong(max_prompt_chars));
        }
        Ok(())
    }

    /// Fits the request to `p` and prices its largest possible usage.
    pub fn plan(&self, p: &ProviderConfig) -> Result<Plan, RequestError> {
        let m = p.modality;
        let na = |field| RequestError::NotApplicable {
            field,
            modality: m.name(),
        };
        let q = &p.request;
        let mut usage = Usage::default();
        let mut size = None;
        match m {
            Modality::Text => {
                if self.size.is_some() {
                    return Err(na("size"));
                }
                if self.n.is_some() {
                    return Err(na("n"));
                }
                if self.seconds.is_some() {
                    return Err(na("seconds"));
                }
                usage.input_tokens = input_token_bound(p.kind, &self.prompt);
                usage.output_tokens = u64::from(bounded(
                    "max_tokens",
                    self.max_tokens,
                    q.default_max_tokens,
                    q.max_tokens,
                )?);
            }
            Modality::Image => {
                if self.max_tokens.is_some() {
                    return Err(na("max_tokens"));
                }
                if self.seconds.is_some() {
                    return Err(na("seconds"));
                }
                usage.images = u64::from(bounded("n", self.n, 1, q.max_images)?);
                let s = self.size.clone().unwrap_or_else(|| q.default_size.clone());
                if !q.sizes.contains(&s) {
                    return Err(RequestError::UnknownSize(s, q.sizes.join(", ")));
                }
                size = Some(s);
            }
            Modality::Audio | Modality::Video => {
                if self.max_tokens.is_some() {
                    return Err(na("max_tokens"));
                }
                if self.size.is_some() {
                    return Err(na("size"));
                }
                if self.n.is_some() {
                    return Err(na("n"));
                }
                usage.seconds = u64::from(bounded(
                    "seconds",
                    self.seconds,
                    q.default_seconds,
                    q.max_seconds,
                )?);
            }
        }
        let quote = p.rates.cost(&usage, size.as_deref())?;
        Ok(Plan {
            provider: p.name.clone(),
            modality: m,
            max_usage: usage,
            size,
            quote,
        })
    }
}

/// Tokens an image part is quoted at, whichever format it came in (it may
/// go to a provider of either): the larger of OpenAI's largest (a
/// high-detail image is scaled to fit 2048×2048, then its short side to
/// 768, so at most 2×4 tiles of 512: 85 + 170 × 8 = 1,445) and
/// Anthropic's (images are scaled to at most 1.15 megapixels, a token per
/// 750 pixels: about 1,600).
pub const IMAGE_TOKENS: u64 = 1_600;

/// An OpenAI-style request reduced to what pricing needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Chat: each message's text (and the tools' schemas), how many image
    /// parts it sends, and how many answers, each up to `max_tokens`.
    Chat {
        contents: Vec<String>,
        max_tokens: Option<u32>,
        images: u64,
        n: u32,
    },
    Completion {
        prompt: String,
        max_tokens: Option<u32>,
    },
    Embedding {
        inputs: Vec<String>,
    },
    Image {
        n: Option<u32>,
        size: Option<String>,
    },
    /// Text to speech, billed by input character.
    Speech {
        input: String,
    },
    /// Speech to text (or to English), billed by the recording's seconds.
    Transcription {
        seconds: u64,
    },
}

impl Ask {
    fn modality(&self) -> Modality {
        match self {
            Ask::Chat { .. } | Ask::Completion { .. } | Ask::Embedding { .. } => Modality::Text,
            Ask::Image { .. } => Modality::Image,
            Ask::Speech { .. } | Ask::Transcription { .. } => Modality::Audio,
        }
    }

    /// Fits the request to `p` and prices its largest possible usage.
    pub fn plan(&self, p: &ProviderConfig) -> Result<Plan, RequestError> {
        let want = self.modality();
        if p.modality != want {
            return Err(RequestError::NotApplicable {
                field: "model",
                modality: p.modality.name(),
            });
        }
        let q = &p.request;
        let sim = p.kind == ProviderKind::Simulated;
        let mut usage = Usage::default();
        let mut size = None;
        match self {
            Ask::Chat {
                contents,
                max_tokens,
                images,
                n,
            } => {
                // Images by the piece where the rate card prices them so,
                // else as the tokens of the largest image.
                let by_piece = p.rates.per_input_image != Credits::ZERO;
                if by_piece {
                    usage.input_images = *images;
                }
                usage.input_tokens = if sim {
                    contents.iter().map(|c| count_words(c)).sum()
                } else {
                    contents
                        .iter()
                        .map(|c| c.len() as u64 + MESSAGE_FRAMING_TOKENS)
                        .sum::<u64>()
                        + PROMPT_FRAMING_TOKENS
                        + if by_piece { 0 } else { images * IMAGE_TOKENS }
                };
                let each = u64::from(bounded(
                    "max_tokens",
                    *max_tokens,
                    q.default_max_tokens,
                    q.max_tokens,
                )?);
                usage.output_tokens = each * u64::from((*n).max(1));
            }
            Ask::Completion { prompt, max_tokens } => {
                usage.input_tokens = if sim {
                    count_words(prompt)
                } else {
                    prompt.len() as u64 + PROMPT_FRAMING_TOKENS
                };
                usage.output_tokens = u64::from(bounded(
                    "max_tokens",
                    *max_tokens,
                    q.default_max_tokens,
                    q.max_tokens,
                )?);
            }
            Ask::Embedding { inputs } => {
                usage.input_tokens = inputs
                    .iter()
                    .map(|i| {
                        if sim {
                            count_words(i)
                        } else {
                            i.len() as u64 + 1
                        }
                    })
                    .sum();
            }
            Ask::Image { n, size: s } => {
                usage.images = u64::from(bounded("n", *n, 1, q.max_images)?);
                let s = s.clone().unwrap_or_else(|| q.default_size.clone());
                if !q.sizes.contains(&s) {
                    return Err(RequestError::UnknownSize(s, q.sizes.join(", ")));
                }
                size = Some(s);
            }
            Ask::Speech { input } => {
                usage.input_tokens = input.chars().count() as u64;
                usage.seconds = u64::from(q.default_seconds);
            }
            Ask::Transcription { seconds } => usage.seconds = *seconds,
        }
        let quote = p.rates.cost(&usage, size.as_deref())?;
        Ok(Plan {
            provider: p.name.clone(),
            modality: p.modality,
            max_usage: usage,
            size,
            quote,
        })
    }
}

#[cfg(test)]
mod tests {

    /// Counts arrive as JSON Schema's integers: `213` and `213.0` alike; a
    /// fraction, a negative or an overflow is refused.
    #[test]
    fn whole_numbers_are_counts_however_written() {
        #[derive(serde::Deserialize)]
        struct C {
            #[serde(default, deserialize_with = "whole_u32")]
            n: Option<u32>,
        }
        let n = |t: &str| serde_json::from_str::<C>(t).map(|c| c.n);
        assert_eq!(n(r#"{"n": 213}"#).unwrap(), Some(213));
        assert_eq!(n(r#"{"n": 213.0}"#).unwrap(), Some(213));
        assert_eq!(n(r#"{"n": 2.13e2}"#).unwrap(), Some(213));
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n("{}").unwrap(), None);
        for bad in [
            r#"{"n": 2.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": "3"}"#,
        ] {
            assert!(n(bad).is_err(), "{bad}");
        }
    }
    use super::*;
    use crate::provider::default_providers;

    fn req(model: &str) -> AiRequest {
        AiRequest {
            model: model.into(),
            prompt: "tell me a story".into(),
            max_tokens: None,
            size: None,
            n: None,
            seconds: None,
            provider: None,
            region: None,
            max_price: None,
            strategy: None,
        }
    }

    #[test]
    fn a_token_estimate_never_counts_a_long_word_as_one() {
        let spaceless = "x".repeat(20_000);
        assert_eq!(token_estimate(ProviderKind::Openai, &spaceless), 5_000);
        assert_eq!(token_estimate(ProviderKind::Openai, "a b c d e"), 5);
        // The simulated providers count words, as their quotes do.
        assert_eq!(token_estimate(ProviderKind::Simulated, &spaceless), 1);
    }

    #[test]
    fn default_quotes_follow_the_original_prices() {
        let ps = default_providers();
        let text = AiRequest {
            max_tokens: Some(10),
            ..req("gpt")
        }
        .plan(&ps[0])
        .unwrap();
        assert_eq!(text.quote, Credits::from_credits(10));
        assert_eq!(text.max_usage.input_tokens, 4);
        let img = AiRequest {
            n: Some(2),
            ..req("image")
        }
        .plan(&ps[1])
        .unwrap();
        assert_eq!(img.quote, Credits::from_credits(20));
        assert_eq!(
            req("audio").plan(&ps[2]).unwrap().quote,
            Credits::from_credits(5)
        );
        assert_eq!(
            req("video").plan(&ps[3]).unwrap().quote,
            Credits::from_credits(20)
        );
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let ps = default_providers();
        assert!(matches!(
            AiRequest {
                size: Some("1x1".into()),
                ..req("gpt")
            }
            .plan(&ps[0]),
            Err(RequestError::NotApplicable { field: "size", .. })
        ));
        assert!(matches!(
            AiRequest {
                max_tokens: Some(0),
                ..req("gpt")
            }
            .plan(&ps[0]),
            Err(RequestError::OutOfBounds {
                field: "max_tokens",
                ..
            })
        ));
        assert!(matches!(
            AiRequest {
                size: Some("3x3".into()),
                ..req("image")
            }
            .plan(&ps[1]),
            Err(RequestError::UnknownSize(..))
        ));
        assert_eq!(
            AiRequest {
                prompt: "  ".into(),
                ..req("gpt")
            }
            .validate(10),
            Err(RequestError::EmptyPrompt)
        );
        assert_eq!(
            AiRequest {
                prompt: "x".repeat(11),
                ..req("gpt")
            }
            .validate(10),
            Err(RequestError::PromptTooLong(10))
        );
    }
}
