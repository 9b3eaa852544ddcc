//! What the mocks answer around tools, the same in every protocol: the words
//! an answer is made of, a call of one offered tool with arguments built
//! from its JSON Schema, and the text that answers a tool's result.

use serde_json::{Map, Value};

use super::{DEFAULT_ANSWER_WORDS, answer_word};

/// The words an answer is made of, in order: a plain answer joins them with
/// single spaces, a stream sends one a piece (the first bare, the rest with
/// a leading space), and each is one completion token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// `mock answer w2 w3 ...`: [`DEFAULT_ANSWER_WORDS`] of them unless a
    /// behaviour asks for another number.
    Answer,
    /// These words: a tool call's arguments, a JSON object, the answer to a
    /// tool's result. A behaviour that asks for more words than there are
    /// gets answer words after them.
    Fixed(Vec<String>),
}

impl Content {
    /// `text` cut at its whitespace.
    pub fn of(text: &str) -> Content {
        Content::Fixed(text.split_whitespace().map(str::to_string).collect())
    }

    /// How many words the answer has when nothing cuts it short.
    pub fn natural_len(&self) -> usize {
        match self {
            Content::Answer => DEFAULT_ANSWER_WORDS,
            Content::Fixed(w) => w.len(),
        }
    }

    fn word(&self, i: usize) -> String {
        match self {
            Content::Fixed(w) if i < w.len() => w[i].clone(),
            _ => answer_word(i),
        }
    }

    /// The `i`-th piece of a stream.
    pub fn piece(&self, i: usize) -> String {
        if i == 0 {
            self.word(0)
        } else {
            format!(" {}", self.word(i))
        }
    }

    /// Every word, when nothing cuts the answer short.
    pub fn whole(&self) -> String {
        self.text(self.natural_len())
    }

    /// The first `n` words, as a plain answer carries them.
    pub fn text(&self, n: usize) -> String {
        (0..n).map(|i| self.piece(i)).collect()
    }
}

/// A value that `schema` accepts in which every required property is
/// present: `"mock"` for a string, `1` for an integer or a number, `true`
/// for a boolean, the first value of an `enum`, `[]` for an array, an
/// object built the same way, `null` for anything else.
pub fn value_for(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(s) => s.as_str(),
        // `["string", "null"]`: the first type.
        Value::Array(types) => types.first().and_then(Value::as_str).unwrap_or(""),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    };
    match kind {
        "string" => Value::String("mock".into()),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "array" => Value::Array(Vec::new()),
        "object" => {
            let mut o = Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    o.insert(name.into(), value_for(&schema["properties"][name]));
                }
            }
            Value::Object(o)
        }
        _ => Value::Null,
    }
}

/// `v` as JSON text with a space after every `:` and `,` (as Python's
/// `json.dumps` writes it), so that its words are the pieces a stream sends.
pub fn spaced(v: &Value) -> String {
    match v {
        Value::Object(o) if !o.is_empty() => {
            let fields: Vec<String> = o
                .iter()
                .map(|(k, x)| format!("{}: {}", Value::String(k.clone()), spaced(x)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(a) if !a.is_empty() => {
            let items: Vec<String> = a.iter().map(spaced).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The arguments the mocks send for a tool whose parameters are `schema`:
/// [`value_for`] as [`spaced`] text, normalised to single spaces (the text
/// a stream's pieces concatenate to). Their words are the call's
/// completion tokens.
pub fn arguments_for(schema: &Value) -> String {
    Content::of(&spaced(&value_for(schema))).whole()
}

/// The answer to a conversation whose last turn is a tool's `result`:
/// `tool result:` and the result's words.
pub fn tool_answer(result: &str) -> String {
    let mut out = String::from("tool result:");
    for w in result.split_whitespace() {
        out.push(' ');
        out.push_str(w);
    }
    out
}

/// A `json_object` answer: `{"answer": "mock answer w2 w3"}`.
pub fn json_answer() -> String {
    spaced(&serde_json::json!({"answer": super::answer_text(4)}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::upstream::words;

    #[test]
    fn arguments_hold_every_required_property() {
        let schema = json!({"type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                "metric": {"type": "boolean"}, "unit": {"type": "string", "enum": ["c", "f"]},
                "at": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                "optional": {"type": "string"}},
            "required": ["city", "days", "metric", "unit", "at"]});
        let args = arguments_for(&schema);
        let v: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(
            v,
            json!({"city": "mock", "days": 1, "metric": true, "unit": "c", "at": {"lat": 1}})
        );
        assert!(args.contains(", "), "{args}");
        assert_eq!(arguments_for(&json!({"type": "object"})), "{}");
        assert_eq!(arguments_for(&Value::Null), "null");
    }

    #[test]
    fn pieces_concatenate_to_the_text() {
        for c in [Content::Answer, Content::of(&json_answer())] {
            let n = c.natural_len();
            let joined: String = (0..n).map(|i| c.piece(i)).collect();
            assert_eq!(joined, c.text(n));
            assert_eq!(words(&joined), n as u64);
        }
        assert_eq!(
            tool_answer("Sunny,  21 degrees"),
            "tool result: Sunny, 21 degrees"
        );
    }
}
