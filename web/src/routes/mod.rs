//! One module per resource. Handlers are thin: extract, authenticate, call
//! one broker method, map the result.

pub mod analytics;
pub mod anthropic;
pub mod backup;
pub mod budget;
pub mod cached;
pub mod credits;
pub mod dashboard;
pub mod dashboards;
pub mod experiments;
pub mod export;
pub mod history;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod openai;
pub mod providers;
pub mod reconcile;
pub mod reports;
pub mod request;
pub mod routing;
pub mod signin;
pub mod status;
pub mod teams;
pub mod users;
pub mod webhooks;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use oneflow_actors::IdemKey;
use oneflow_actors::ids::body_hash;

use crate::error::ApiError;

/// `?user_id=` for admins acting on a user's data.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForUser {
    /// Whose data (default: the caller's): an admin's choice of user.
    /// Operations that read a wallet's figures also take a team's id, for
    /// those whose role in the team allows it (docs/auth.md).
    pub user_id: Option<String>,
}

/// What an `Idempotency-Key` may be: 1 to 255 printable ASCII characters
/// (HTTP has already stripped spaces at either end).
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$";

/// The `Idempotency-Key` header, checked, with the hash of the body it
/// came with. The body is hashed as parsed and serialised again, so the
/// same request spelled with other whitespace or key order is the same
/// request.
pub(crate) fn idempotency_key<T: Serialize + ?Sized>(
    req: &HttpRequest,
    body: &T,
) -> Result<Option<IdemKey>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    // HTTP strips the spaces around a header's value; inside it, only
    // printable ASCII (what `IDEMPOTENCY_KEY_PATTERN` says).
    let key = v.as_bytes();
    if key.is_empty() || key.len() > 255 || !key.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
        ));
    }
    let key = String::from_utf8_lossy(key);
    let canonical = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Some(IdemKey::new(key.to_string(), body_hash(&canonical))))
}

/// Reads a typed body; the 400 for one that breaks the schema names the
/// field, where serde alone would say only what it met.
pub(crate) fn typed<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(d).map_err(|e| {
        let at = e.path().to_string();
        match at.as_str() {
            "." => ApiError::BadRequest(format!("invalid JSON body: {}", e.inner())),
            _ => ApiError::BadRequest(format!("invalid JSON body: `{at}`: {}", e.inner())),
        }
    })
}

/// A JSON body that must be an object. serde alone also reads a struct
/// from an array of its fields in order (`[5, null]`), which no schema of
/// this API allows; the JSON layer's limits and errors are `web::Json`'s.
pub struct Object<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Object<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let v = json.await?.into_inner();
            if !v.is_object() {
                return Err(ApiError::BadRequest("the body must be a JSON object".into()).into());
            }
            typed(v).map(Object).map_err(Into::into)
        })
    }
}

impl<T> Object<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Object<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

// Nested fields whose type is a struct: serde's derive would also take an
// array of the struct's fields in order, so these read only a JSON object,
// with no detour through `serde_json::Value`.

/// A visitor that takes a JSON object and nothing else.
struct MapOnly<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for MapOnly<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

/// An optional nested object (null or absent: `None`).
pub(crate) fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Opt<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Opt<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            d.deserialize_map(MapOnly(std::marker::PhantomData))
                .map(Some)
        }
    }
    d.deserialize_option(Opt(std::marker::PhantomData))
}

/// A required nested object.
pub(crate) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_map(MapOnly(std::marker::PhantomData))
}

/// An optional array of nested objects (null or absent: `None`).
pub(crate) fn objects_or_null<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Many<T>>::deserialize(d).map(|o| o.map(|m| m.0))
}

/// An array of nested objects, as a type (for `Option`).
struct Many<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Many<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        objects(d).map(Many)
    }
}

/// A message's content in either format: a string, or an array of
/// objects (parts, blocks).
pub(crate) enum TextOr<T> {
    Text(String),
    Objects(Vec<T>),
}

/// Reads [`TextOr`] by hand, not as an untagged enum: that buffers the
/// value first, and the buffer refuses integers wider than 64 bits, which
/// a part's unknown fields may hold (numbers keep their precision here).
pub(crate) fn text_or_objects<'de, D, T>(d: D) -> Result<TextOr<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = TextOr<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or an array of JSON objects")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TextOr<T>, E> {
            Ok(TextOr::Text(v.to_string()))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<TextOr<T>, A::Error> {
            let d = serde::de::value::SeqAccessDeserializer::new(seq);
            objects(d).map(TextOr::Objects)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// An array of nested objects.
pub(crate) fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Seq<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Seq<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of JSON objects")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(v) = seq.next_element_seed(MapOnly(std::marker::PhantomData))? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Seq(std::marker::PhantomData))
}
