//! The schemas of a Responses request's `input` items and `tool_choice`,
//! written with utoipa's builders: each is a `oneOf` tagged by `type`,
//! which no derive says. They describe what
//! `oneflow::chat::responses::read_request` takes (an item or part of
//! another type, or missing a field its type needs, is 400).

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// An object whose `type` is one of `tags` (required unless `optional`),
/// with these required string fields.
fn tagged(tags: &[&str], optional: bool, fields: &[&str]) -> ObjectBuilder {
    let mut o = ObjectBuilder::new().schema_type(Type::Object).property(
        "type",
        string().enum_values(Some(tags.iter().map(|t| t.to_string()))),
    );
    if !optional {
        o = o.required("type");
    }
    for f in fields {
        o = o.property(*f, string()).required(*f);
    }
    o
}

fn text_part() -> ObjectBuilder {
    tagged(&["input_text", "output_text"], false, &["text"])
}

/// A message's `content`: text, or `input_text`, `output_text` and
/// `input_image` (with an `image_url`) parts.
fn content() -> OneOfBuilder {
    let part =
        OneOfBuilder::new()
            .item(text_part())
            .item(tagged(&["input_image"], false, &["image_url"]));
    OneOfBuilder::new()
        .item(string())
        .item(ArrayBuilder::new().items(part))
}

/// `input`: text, or items: messages (`type` may be left out) of the
/// `user`, `assistant`, `system` or `developer` role, `function_call`
/// (`call_id`, `name`, `arguments` as JSON text) and
/// `function_call_output` (`call_id`, `output` as text or text parts).
pub fn input() -> Schema {
    let message = tagged(&["message"], true, &[])
        .property(
            "role",
            string().enum_values(Some(["user", "assistant", "system", "developer"])),
        )
        .required("role")
        .property("content", content())
        .required("content");
    let output = OneOfBuilder::new()
        .item(string())
        .item(ArrayBuilder::new().items(text_part()));
    let item = OneOfBuilder::new()
        .item(message)
        .item(tagged(
            &["function_call"],
            false,
            &["call_id", "name", "arguments"],
        ))
        .item(
            tagged(&["function_call_output"], false, &["call_id"])
                .property("output", output)
                .required("output"),
        );
    OneOfBuilder::new()
        .item(string())
        .item(ArrayBuilder::new().items(item))
        .into()
}

/// `tool_choice`: `auto`, `none`, `required`, `{"type": "function",
/// "name"}`, or null.
pub fn tool_choice() -> Schema {
    OneOfBuilder::new()
        .item(string().enum_values(Some(["auto", "none", "required"])))
        .item(tagged(&["function"], false, &["name"]))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// A flag taken only as `false` (or null): what a chat completion can do.
pub fn only_false() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([false])),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}
