//! Rate cards, quotes and costs.
//!
//! A quote is the cost of the *largest* usage a request can produce (its
//! prompt, `max_tokens`, image count and size, seconds). Because cost is
//! monotonic in every usage figure, a quote is never below the charge for any
//! usage within those bounds; the wallet also caps a charge at its hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Credits;

/// What kind of output a provider produces. Decides which request fields
/// apply and which rate-card lines are charged.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Image,
    Audio,
    Video,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
            Modality::Video => "video",
        }
    }
}

/// Measured (or, for a quote, maximal) consumption of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Images generated.
    pub images: u64,
    pub seconds: u64,
    /// Images sent in a chat (priced by `per_input_image` where the rate
    /// card has it). Left out of stored records when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_images: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Prices of one provider. Every line is optional in config (zero).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateCard {
    /// Flat price of every request (a "clip" for audio and video).
    pub per_request: Credits,
    pub per_input_token: Credits,
    pub per_output_token: Credits,
    /// Price of one image when its size has no line in `per_image_size`.
    pub per_image: Credits,
    /// Price of one image by size, e.g. `"1024x1024" = 10`.
    pub per_image_size: BTreeMap<String, Credits>,
    /// Price per second of generated audio or video, or of a transcribed
    /// recording.
    pub per_second: Credits,
    /// Price of each image a chat sends, for providers that bill images by
    /// the piece; without it an image is quoted as input tokens.
    pub per_input_image: Credits,
}

/// Arithmetic overflow while pricing: only absurd inputs reach it, and they
/// are refused rather than wrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the price of this request is out of range")]
pub struct PriceOverflow;

impl RateCard {
    pub fn image_price(&self, size: Option<&str>) -> Credits {
        size.and_then(|s| self.per_image_size.get(s).copied())
            .unwrap_or(self.per_image)
    }

    /// The cost of `usage`, images priced at `size`.
    pub fn cost(&self, usage: &Usage, size: Option<&str>) -> Result<Credits, PriceOverflow> {
        let lines = [
            (self.per_request, 1),
            (self.per_input_token, usage.input_tokens),
            (self.per_output_token, usage.output_tokens),
            (self.image_price(size), usage.images),
            (self.per_second, usage.seconds),
            (self.per_input_image, usage.input_images),
        ];
        let mut total = Credits::ZERO;
        for (price, n) in lines {
            let line = price.checked_mul(n).ok_or(PriceOverflow)?;
            total = total.checked_add(line).ok_or(PriceOverflow)?;
        }
        Ok(total)
    }
}

/// Usage an upstream reported, held to the bound its quote assumed: a
/// figure above its bound (an upstream reporting 2^64-1 tokens, say) is
/// cut to the bound, and a text answer that came with no input or no output
/// tokens (usage missing, or a negative figure the adapter could not read)
/// is charged its bound, so a delivered answer is never free unless its
/// price is. Returns the usage to charge and whether any figure was out of
/// line (the request is then flagged `usage_anomaly`).
pub fn checked_usage(reported: Usage, bound: &Usage, answered_text: bool) -> (Usage, bool) {
    let mut anomaly = false;
    let mut fit = |got: u64, most: u64, missing: bool| {
        if got > most || (missing && most > 0) {
            anomaly = true;
            most
        } else {
            got
        }
    };
    let usage = Usage {
        input_tokens: fit(
            reported.input_tokens,
            bound.input_tokens,
            answered_text && reported.input_tokens == 0,
        ),
        output_tokens: fit(
            reported.output_tokens,
            bound.output_tokens,
            answered_text && reported.output_tokens == 0,
        ),
        images: fit(reported.images, bound.images, false),
        seconds: fit(reported.seconds, bound.seconds, false),
        // Known when it was quoted, and sent whatever the answer was.
        input_images: bound.input_images,
    };
    (usage, anomaly)
}

/// Tokens as the simulated providers count them: whitespace-separated words.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn card() -> RateCard {
        RateCard {
            per_request: Credits(7),
            per_input_token: Credits(3),
            per_output_token: Credits(5),
            per_image: Credits(100),
            per_image_size: [("1024x1024".to_string(), Credits(400))]
                .into_iter()
                .collect(),
            per_second: Credits(11),
            per_input_image: Credits(13),
        }
    }

    #[test]
    fn reported_usage_is_held_to_the_quote_bound_and_flagged_when_out_of_line() {
        let bound = Usage {
            input_tokens: 100,
            output_tokens: 50,
            ..Usage::default()
        };
        let ok = Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(checked_usage(ok, &bound, true), (ok, false));
        let huge = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(checked_usage(huge, &bound, true), (bound, true));
        // No usage at all for a text answer: charged the bound, flagged.
        assert_eq!(checked_usage(Usage::default(), &bound, true), (bound, true));
        // A non-text answer with no token lines is fine as it is.
        assert_eq!(
            checked_usage(Usage::default(), &bound, false),
            (Usage::default(), false)
        );
        // Whatever is reported, the charge stays within the quote.
        let card = card();
        let quote = card.cost(&bound, None).unwrap();
        for input in [0, 1, 100, 101, u64::MAX] {
            let r = Usage {
                input_tokens: input,
                output_tokens: input / 2,
                ..Usage::default()
            };
            let (u, _) = checked_usage(r, &bound, true);
            let cost = card.cost(&u, None).unwrap();
            assert!(cost > Credits::ZERO && cost <= quote, "{input}: {cost:?}");
        }
    }

    #[test]
    fn cost_adds_every_line() {
        let u = Usage {
            input_tokens: 2,
            output_tokens: 3,
            images: 2,
            seconds: 4,
            input_images: 3,
        };
        assert_eq!(
            card().cost(&u, None),
            Ok(Credits(7 + 6 + 15 + 200 + 44 + 39))
        );
        assert_eq!(
            card().cost(&u, Some("1024x1024")),
            Ok(Credits(7 + 6 + 15 + 800 + 44 + 39))
        );
        let huge = Usage {
            output_tokens: u64::MAX,
            ..u
        };
        assert_eq!(card().cost(&huge, None), Err(PriceOverflow));
    }

    #[test]
    fn words() {
        assert_eq!(count_words("  hello   brave\nnew world "), 4);
        assert_eq!(count_words(""), 0);
    }

    proptest! {
        /// Cost is monotonic: less usage never costs more, so a quote of the
        /// maximum usage bounds every charge.
        #[test]
        fn cost_is_monotonic(a in 0u64..10_000, b in 0u64..10_000, c in 0u64..50, d in 0u64..600, e in 0u64..20,
                             da in 0u64..10_000, db in 0u64..10_000, dc in 0u64..50, dd in 0u64..600, de in 0u64..20) {
            let small = Usage { input_tokens: a, output_tokens: b, images: c, seconds: d, input_images: e };
            let big = Usage { input_tokens: a + da, output_tokens: b + db, images: c + dc, seconds: d + dd, input_images: e + de };
            prop_assert!(card().cost(&small, None).unwrap() <= card().cost(&big, None).unwrap());
        }
    }
}
