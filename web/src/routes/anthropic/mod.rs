//! The Anthropic-compatible API: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, so that Anthropic's SDKs and the tools
//! built on them work with their base URL set to OneFlow. The conversation
//! is read into the shared chat shape (`oneflow::chat`), so any text
//! provider can serve it, with the same wallet, budgets, holds and history
//! as every other route.
//!
//! `error` is Anthropic's error shape, `stream` its server-sent events; the
//! body, route wishes and answer headers are the `/v1` routes' own
//! (`routes::openai`).

mod blocks;
pub mod error;
pub mod messages;
pub mod stream;

pub use error::AnthropicError;
