//! The schemas of a Messages request's content blocks, system prompt and
//! tool choice, written with utoipa's builders: each is a `oneOf` tagged
//! by `type`, which no derive says. They describe exactly what
//! `oneflow::chat::anthropic::parse_request` takes (a block of another
//! type, or missing a field its type needs, is 400), so the document
//! refuses what the server refuses.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

/// An object whose `type` is one of `tags`, with these required fields.
fn tagged(tags: &[&str], required: Vec<(&str, Schema)>) -> ObjectBuilder {
    let mut o = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "type",
            string().enum_values(Some(tags.iter().map(|t| t.to_string()))),
        )
        .required("type");
    for (name, schema) in required {
        o = o.property(name, schema).required(name);
    }
    o
}

fn text_block() -> ObjectBuilder {
    tagged(&["text"], vec![("text", string().into())])
}

/// Text, or text blocks (`system`, a tool result's `content`).
fn text_or_text_blocks() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(string())
        .item(ArrayBuilder::new().items(text_block()))
}

fn image_block() -> ObjectBuilder {
    let source = OneOfBuilder::new()
        .item(tagged(
            &["base64"],
            vec![("media_type", string().into()), ("data", string().into())],
        ))
        .item(tagged(&["url"], vec![("url", string().into())]));
    tagged(&["image"], vec![("source", source.into())])
}

fn tool_use_block() -> ObjectBuilder {
    tagged(
        &["tool_use"],
        vec![
            ("id", string().into()),
            ("name", string().into()),
            (
                "input",
                ObjectBuilder::new().schema_type(Type::Object).into(),
            ),
        ],
    )
}

fn tool_result_block() -> ObjectBuilder {
    tagged(&["tool_result"], vec![("tool_use_id", string().into())])
        .property("content", text_or_text_blocks().item(null()))
        .property(
            "is_error",
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Boolean))
                .item(null()),
        )
}

/// A message's `content`: text, or at least one block of `text`, `image`,
/// `tool_use` or `tool_result`.
pub fn content() -> Schema {
    let block = OneOfBuilder::new()
        .item(text_block())
        .item(image_block())
        .item(tool_use_block())
        .item(tool_result_block());
    OneOfBuilder::new()
        .item(string())
        .item(ArrayBuilder::new().items(block).min_items(Some(1)))
        .into()
}

/// `system`: text, text blocks, or null.
pub fn system() -> Schema {
    text_or_text_blocks().item(null()).into()
}

/// `tool_choice`: `auto`, `any` or `none`, or `tool` with the tool's
/// `name`; each may say `disable_parallel_tool_use`. Or null.
pub fn tool_choice() -> Schema {
    let parallel = || {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(null())
    };
    OneOfBuilder::new()
        .item(
            tagged(&["auto", "any", "none"], vec![])
                .property("disable_parallel_tool_use", parallel()),
        )
        .item(
            tagged(&["tool"], vec![("name", string().into())])
                .property("disable_parallel_tool_use", parallel()),
        )
        .item(null())
        .into()
}
