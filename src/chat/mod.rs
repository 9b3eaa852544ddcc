//! One shape for a chat conversation, whatever format it came in: OpenAI's
//! chat completions (`openai.rs`) and Anthropic's Messages (`anthropic.rs`)
//! are each read into it and written from it (OpenAI's Responses format,
//! `responses.rs`, is read as a chat completions request), so a request that arrives in
//! one format can go to a provider that speaks the other.
//!
//! The shape keeps what both formats can carry: a system prompt, turns of
//! text, images, tool calls and tool results, function tools with JSON
//! Schema parameters, the tool choice, stop sequences and the sampling
//! settings both share. What only one format has is refused by the reader
//! of the other with the field's name (`TranslateError`), never dropped,
//! with one exception: Anthropic's thinking blocks, which a conversation
//! carries so that they can go back to Anthropic, are left out of requests
//! to OpenAI-compatible upstreams (they would refuse them, and a model that
//! did not write them cannot use them).
//!
//! A conversation here is normalised as Anthropic requires and OpenAI
//! allows: turns alternate, the first is the user's, a user turn starts
//! with the results of the tool calls the turn before made.

pub mod anthropic;
pub mod openai;
pub mod responses;

use serde_json::Value;

/// A chat request in the shape both formats share.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// The system prompt: OpenAI's leading `system`/`developer` messages,
    /// Anthropic's `system`.
    pub system: Option<String>,
    pub turns: Vec<Turn>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// `false` forbids more than one tool call per answer.
    pub parallel_tool_calls: Option<bool>,
    pub stream: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One side's turn: its parts in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// The assistant asks for a tool to be run; `input` is a JSON object.
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    /// What a tool call gave (in a user turn).
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
    /// The model's reasoning before its answer (Anthropic's extended
    /// thinking), with the signature that lets it be sent back: in a tool
    /// loop Anthropic requires the last assistant turn's thinking to come
    /// back as it was given. Only Anthropic's format carries it; OpenAI's
    /// answers show it as `reasoning_content` and `thinking_blocks`, and
    /// requests to OpenAI-compatible upstreams leave it out, as those
    /// upstreams would refuse it and could not use it.
    Thinking {
        text: String,
        signature: String,
    },
    /// Reasoning the provider encrypted; sent back as it came.
    RedactedThinking {
        data: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    /// An http(s) address.
    Url(String),
    /// Inline bytes, base64-encoded.
    Base64 { media_type: String, data: String },
}

/// A function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema object.
    pub parameters: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// No tool may be called.
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Named(String),
}

/// Why an answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model finished (or met a stop sequence).
    EndTurn,
    /// `max_tokens` (or the hold) cut it.
    MaxTokens,
    /// It asks for tool calls.
    ToolUse,
    /// The provider's filter withheld it.
    Refused,
}

/// A whole answer in the shape both formats share.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Text and tool calls, in order.
    pub parts: Vec<Part>,
    pub stop: StopReason,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A field or value one format has and the other cannot carry, or a
/// request that is not well formed; names what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(pub String);

pub(crate) fn bad(why: impl Into<String>) -> TranslateError {
    TranslateError(why.into())
}

/// Sets each field that has a value; a field without one is left out (both
/// formats read absent as "the default").
pub(crate) fn insert_present<const N: usize>(
    out: &mut serde_json::Map<String, Value>,
    fields: [(&str, Option<Value>); N],
) {
    for (k, v) in fields {
        if let Some(v) = v {
            out.insert(k.into(), v);
        }
    }
}

impl ChatRequest {
    /// The request's text as a reader would see it: the system prompt,
    /// every text, tool result and tool call input, one per line. For
    /// previews, the simulated provider and counting a prompt.
    pub fn text(&self) -> String {
        let mut out: Vec<String> = self.system.iter().cloned().collect();
        for p in self.turns.iter().flat_map(|t| &t.parts) {
            match p {
                Part::Text(t) => out.push(t.clone()),
                Part::ToolResult { content, .. } => out.push(content.clone()),
                Part::ToolCall { input, .. } => out.push(input.to_string()),
                // Sent back, it is input the provider reads and counts.
                Part::Thinking { text, .. } => out.push(text.clone()),
                Part::Image(_) | Part::RedactedThinking { .. } => {}
            }
        }
        out.join("\n")
    }

    /// What the prompt is counted from: its text, then each tool's
    /// definition as JSON (providers count the tools they are sent as
    /// input).
    pub fn counted(&self) -> Vec<String> {
        let mut out = vec![self.text()];
        out.extend(self.tools.iter().map(|t| {
            serde_json::json!({"name": t.name, "description": t.description, "parameters": t.parameters})
                .to_string()
        }));
        out
    }

    /// The largest inline image's size in bytes, as decoded (an address
    /// counts as its length: the provider fetches it).
    pub fn largest_image(&self) -> usize {
        self.turns
            .iter()
            .flat_map(|t| &t.parts)
            .filter_map(|p| match p {
                Part::Image(Image::Base64 { data, .. }) => Some(data.len() / 4 * 3),
                Part::Image(Image::Url(u)) => Some(u.len()),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// How many image parts the conversation holds.
    pub fn images(&self) -> usize {
        self.turns
            .iter()
            .flat_map(|t| &t.parts)
            .filter(|p| matches!(p, Part::Image(_)))
            .count()
    }

    /// Checks the normalised shape: turns alternate starting with the
    /// user's, tool results open a user turn and answer the calls of the
    /// turn before, every tool has a name.
    pub fn check(&self) -> Result<(), TranslateError> {
        let mut want = Role::User;
        let mut calls: Vec<&str> = Vec::new();
        for (i, t) in self.turns.iter().enumerate() {
            if t.role != want {
                return Err(bad(format!(
                    "turn {i} should be the {}'s: turns alternate, starting with the user's",
                    if want == Role::User {
                        "user"
                    } else {
                        "assistant"
                    }
                )));
            }
            if t.parts.is_empty() {
                return Err(bad(format!("turn {i} is empty")));
            }
            let mut results_done = false;
            for p in &t.parts {
                match (t.role, p) {
                    (Role::User, Part::ToolResult { call_id, .. }) => {
                        if !calls.contains(&call_id.as_str()) {
                            return Err(bad(format!(
                                "turn {i}: a tool result for `{call_id}`, which the turn before did not call"
                            )));
                        }
                        if results_done {
                            return Err(bad(format!(
                                "turn {i}: tool results come before anything else in a turn"
                            )));
                        }
                    }
                    (Role::User, Part::ToolCall { .. }) => {
                        return Err(bad(format!("turn {i}: only the assistant calls tools")));
                    }
                    (Role::User, Part::Thinking { .. } | Part::RedactedThinking { .. }) => {
                        return Err(bad(format!("turn {i}: only the assistant thinks")));
                    }
                    (Role::Assistant, Part::ToolResult { .. } | Part::Image(_)) => {
                        return Err(bad(format!(
                            "turn {i}: the assistant's turn holds thinking, text and tool calls only"
                        )));
                    }
                    _ => results_done = true,
                }
            }
            calls = t
                .parts
                .iter()
                .filter_map(|p| match p {
                    Part::ToolCall { id, .. } => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            want = if want == Role::User {
                Role::Assistant
            } else {
                Role::User
            };
        }
        for t in &self.tools {
            if t.name.is_empty() {
                return Err(bad("every tool needs a `name`"));
            }
            if !t.parameters.is_object() {
                return Err(bad(format!(
                    "tool `{}`: `parameters` must be a JSON Schema object",
                    t.name
                )));
            }
        }
        if let Some(ToolChoice::Named(n)) = &self.tool_choice {
            if !self.tools.iter().any(|t| &t.name == n) {
                return Err(bad(format!(
                    "`tool_choice` names `{n}`, which is not a tool"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
