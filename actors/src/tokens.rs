//! Counting tokens when an upstream never said how many it used: a stream
//! cut before its usage event (the client left or stalled, the hold ran
//! out, the upstream broke off) is charged for its prompt and for what was
//! delivered as the provider's own tokenizer would count them.
//!
//! OpenAI's tokenizers are public (tiktoken's tables, in `tiktoken-rs`):
//! a model whose family tiktoken knows (o200k for gpt-4o and later, cl100k
//! for gpt-4 and gpt-3.5, ...) is counted exactly. Anthropic's tokenizer is
//! not public, nor are most local models': those are counted as the larger
//! of their words and a quarter of their characters
//! (`oneflow::request::token_estimate`), the usual figure for English and
//! code, which never counts a long run without spaces as one. Simulated
//! providers count words, as their quotes do.
//!
//! A table is loaded the first time it is needed (about 0.2 s and 25 to
//! 50 MB, kept for the life of the process), so [`count`] blocks: call it
//! off the async threads.
//!
//! A leaf: names nothing else in the crate.

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

use oneflow::config::ProviderKind;
use oneflow::request::token_estimate;

/// Tokens `text` counts as for `model` (the name sent upstream) at a
/// provider of `kind`.
pub fn count(kind: ProviderKind, model: &str, text: &str) -> u64 {
    match (kind, tokenizer(model)) {
        (ProviderKind::Openai, Some(bpe)) => bpe.encode_ordinary(text).len() as u64,
        _ => token_estimate(kind, text),
    }
}

/// Whether `model` is counted by a real tokenizer at a provider of `kind`
/// (rather than estimated).
pub fn exact(kind: ProviderKind, model: &str) -> bool {
    kind == ProviderKind::Openai && get_tokenizer(model).is_some()
}

fn tokenizer(model: &str) -> Option<&'static CoreBPE> {
    use tiktoken_rs::{
        cl100k_base_singleton, o200k_base_singleton, o200k_harmony_singleton, p50k_base_singleton,
        p50k_edit_singleton, r50k_base_singleton,
    };
    Some(match get_tokenizer(model)? {
        Tokenizer::O200kHarmony => o200k_harmony_singleton(),
        Tokenizer::O200kBase => o200k_base_singleton(),
        Tokenizer::Cl100kBase => cl100k_base_singleton(),
        Tokenizer::P50kBase => p50k_base_singleton(),
        Tokenizer::P50kEdit => p50k_edit_singleton(),
        Tokenizer::R50kBase | Tokenizer::Gpt2 => r50k_base_singleton(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_models_are_counted_by_their_own_tokenizer() {
        assert!(exact(ProviderKind::Openai, "gpt-4o-mini"));
        // o200k: "Hello" "," " world" "!" ; words would say 2.
        assert_eq!(
            count(ProviderKind::Openai, "gpt-4o-mini", "Hello, world!"),
            4
        );
        // A run without spaces is many tokens, never one word.
        let run = "x".repeat(20_000);
        assert!(count(ProviderKind::Openai, "gpt-4o", &run) >= 1_000);
        assert!(count(ProviderKind::Openai, "gpt-4", "Hello, world!") >= 3);
    }

    #[test]
    fn models_without_a_public_tokenizer_take_the_length_bound() {
        for (kind, model) in [
            (ProviderKind::Anthropic, "claude-3-5-haiku"),
            (ProviderKind::Openai, "llama-3-8b"),
        ] {
            assert!(!exact(kind, model));
            assert_eq!(count(kind, model, &"y".repeat(400)), 100);
            assert_eq!(count(kind, model, "a b c d e"), 5);
        }
        assert_eq!(count(ProviderKind::Simulated, "gpt", "one two three"), 3);
    }
}
