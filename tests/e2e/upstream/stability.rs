//! Stability AI's v1 REST text-to-image as the mock speaks it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::http::{Reply, Request};
use super::{PNG_1X1, Route, Work, base64};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Stability's error body: `{"id", "name", "message"}`.
pub fn error(status: u16, message: &str) -> Reply {
    let name = match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "permission_denied",
        404 => "not_found",
        429 => "rate_limit_exceeded",
        500 => "internal_error",
        s if s >= 500 => "server_error",
        _ => "bad_request",
    };
    let id = format!("{:032x}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    Reply::json(status, &json!({"id": id, "name": name, "message": message}))
}

fn bad(message: &str) -> Route {
    Route::Fixed(error(400, message))
}

fn dimension(body: &Value, key: &str) -> Result<u64, String> {
    let v = body.get(key).map_or(Some(512), |v| v.as_u64());
    match v {
        Some(x) if (128..=2048).contains(&x) && x % 64 == 0 => Ok(x),
        _ => Err(format!(
            "{key}: must be a multiple of 64 between 128 and 2048"
        )),
    }
}

pub fn route(req: &Request, key: &str) -> Route {
    match req.bearer() {
        Some(k) if k == key => {}
        Some(_) => return Route::Fixed(error(401, "Incorrect API key provided")),
        None => return Route::Fixed(error(401, "missing authorization header")),
    }
    let engine = req
        .path
        .strip_prefix("/v1/generation/")
        .and_then(|p| p.strip_suffix("/text-to-image"))
        .filter(|e| !e.is_empty() && !e.contains('/'));
    if req.method != "POST" || engine.is_none() {
        return Route::Fixed(error(404, "Not Found"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bad("body: could not parse the JSON body");
    };
    let prompts_ok = body
        .get("text_prompts")
        .and_then(|t| t.as_array())
        .filter(|t| !t.is_empty())
        .is_some_and(|t| {
            t.iter().all(|p| {
                p.get("text")
                    .and_then(|x| x.as_str())
                    .is_some_and(|x| !x.trim().is_empty())
            })
        });
    if !prompts_ok {
        return bad("text_prompts: must be a non-empty array of prompts with text");
    }
    if let Err(e) = dimension(&body, "width").and_then(|_| dimension(&body, "height")) {
        return bad(&e);
    }
    let samples = body.get("samples").and_then(|s| s.as_u64()).unwrap_or(1);
    if !(1..=10).contains(&samples) {
        return bad("samples: must be between 1 and 10");
    }
    let seed = body.get("seed").and_then(|s| s.as_u64()).unwrap_or(0);
    let wants_png = req
        .header("accept")
        .is_some_and(|a| a.contains("image/png"));
    let reply = if wants_png {
        Reply {
            status: 200,
            content_type: "image/png".into(),
            headers: vec![
                ("finish-reason".into(), "SUCCESS".into()),
                ("seed".into(), seed.to_string()),
            ],
            body: PNG_1X1.to_vec(),
        }
    } else {
        let artifacts: Vec<Value> = (0..samples)
            .map(
                |i| json!({"base64": base64(PNG_1X1), "seed": seed + i, "finishReason": "SUCCESS"}),
            )
            .collect();
        Reply::json(200, &json!({"artifacts": artifacts}))
    };
    Route::Work(Work::Reply(reply))
}
