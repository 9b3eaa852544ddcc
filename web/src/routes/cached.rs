//! The response cache's headers (docs/cache.md), shared by the routes it
//! serves (`/v1/chat/completions`, `/api/request`): `x-oneflow-cache` in,
//! `use` or `bypass`, and out, `hit`, `miss` or `bypass`.

use std::time::Duration;

use actix_web::HttpRequest;

use oneflow::cache::CacheMode;
use oneflow_actors::CacheResult;

use crate::error::ApiError;

/// The header's name, both ways.
pub const CACHE_HEADER: &str = "x-oneflow-cache";
/// How long this request's answer may be served from the cache.
pub const TTL_HEADER: &str = "x-oneflow-cache-ttl";

/// The request's `x-oneflow-cache-ttl`: absent, or whole seconds above
/// zero, at most nine digits (a life longer than `[cache] ttl_seconds` is
/// cut to it); zero, a negative number or anything else is a 400, as its
/// documented pattern says, checked whether or not the cache is on, like `x-oneflow-cache`.
pub(crate) fn asked_ttl(req: &HttpRequest) -> Result<Option<Duration>, ApiError> {
    let Some(v) = req.headers().get(TTL_HEADER) else {
        return Ok(None);
    };
    // Exactly the documented pattern: digits, no sign, no leading zero.
    v.to_str()
        .ok()
        .filter(|t| {
            (1..=9).contains(&t.len())
                && !t.starts_with('0')
                && t.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|t| t.parse::<u64>().ok())
        .map(|n| Some(Duration::from_secs(n)))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "`x-oneflow-cache-ttl` must be a whole number of seconds above 0".into(),
            )
        })
}

/// The request's `x-oneflow-cache`: absent, `use` or `bypass`; anything
/// else is a 400, as its documented pattern says.
pub(crate) fn asked(req: &HttpRequest) -> Result<Option<CacheMode>, ApiError> {
    let Some(v) = req.headers().get(CACHE_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(CacheMode::parse)
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest("`x-oneflow-cache` must be `use` or `bypass`".into()))
}

/// Tells the client what the cache did.
pub(crate) fn tell(res: &mut actix_web::HttpResponseBuilder, result: Option<CacheResult>) {
    if let Some(r) = result {
        res.insert_header((CACHE_HEADER, r.as_str()));
    }
}

/// The cache's request header, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub struct CacheHeader {
    /// `use` answers from the response cache when it holds this request's
    /// answer (and stores a fresh one); `bypass` goes upstream and stores
    /// nothing. Without it, the key's setting, then `[cache] default`. A
    /// key that says `bypass` wins over `use` here. Ignored while the cache
    /// is off.
    #[param(
        rename = "x-oneflow-cache",
        required = false,
        pattern = r"^(use|bypass)$"
    )]
    pub cache: String,
    /// Seconds this request's answer may be served from the cache, when
    /// it is stored: less than `[cache] ttl_seconds` (a longer life is cut
    /// to it). Zero, negative or not a whole number: 400.
    #[param(
        rename = "x-oneflow-cache-ttl",
        required = false,
        pattern = r"^[1-9][0-9]{0,8}$"
    )]
    pub cache_ttl: String,
}
