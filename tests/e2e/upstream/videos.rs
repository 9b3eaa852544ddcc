//! OpenAI's video job API as the mock speaks it: `POST /v1/videos` (a
//! form: `model`, `prompt`, `seconds` of 4, 8 or 12) answers a video object
//! `queued`; each `GET /v1/videos/{id}` moves it on (`in_progress` at 50%,
//! then `completed` with the seconds made); `GET /v1/videos/{id}/content`
//! serves its MP4 once completed; `DELETE /v1/videos/{id}` removes it.
//!
//! What a job does is fixed when it is created, by the mock's next
//! [`Behavior`]: `Ok` completes on the second poll; `Status` refuses the
//! create; `StreamError` fails on the first poll; `Usage(v)` completes
//! with `seconds: v` (a hostile count); `Endless` renders until the test
//! calls [`release`]; `Malformed` answers the create with an id that is a
//! path (`../`), as a hostile upstream might.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

use super::http::{Reply, Request};
use super::openai::error;
use super::{Behavior, Route, now_secs};

#[derive(Clone, Debug)]
enum Fate {
    /// Completed on the second poll, with these seconds.
    Complete(Value),
    Fail,
    /// Rendering until released.
    Gated,
}

#[derive(Clone, Debug)]
struct Video {
    /// The mock that made it, so that [`release`] touches its own only.
    base_url: String,
    object: Value,
    fate: Fate,
    polls: u32,
    deleted: bool,
}

static VIDEOS: LazyLock<Mutex<HashMap<String, Video>>> = LazyLock::new(Default::default);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The MP4 every completed job serves: the file-type box, then a
/// recognisable payload.
pub fn mp4() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&24u32.to_be_bytes());
    b.extend_from_slice(b"ftypisom");
    b.extend_from_slice(&0x200u32.to_be_bytes());
    b.extend_from_slice(b"isommp41");
    b.extend((0..64 * 1024).map(|i| (i % 251) as u8));
    b
}

/// Lets the gated jobs of the mock at `base_url` complete at their next
/// poll, with the seconds they were asked for.
pub fn release(base_url: &str) {
    for v in VIDEOS.lock().unwrap().values_mut() {
        if v.base_url == base_url && matches!(v.fate, Fate::Gated) {
            v.fate = Fate::Complete(v.object["seconds"].clone());
            v.polls = 1;
        }
    }
}

/// The ids of the jobs the mock at `base_url` deleted.
pub fn deleted(base_url: &str) -> Vec<String> {
    VIDEOS
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.base_url == base_url && v.deleted)
        .map(|(id, _)| id.clone())
        .collect()
}

/// A field of a `multipart/form-data` body, as text.
fn field(body: &str, name: &str) -> Option<String> {
    let head = format!("name=\"{name}\"\r\n\r\n");
    let at = body.find(&head)? + head.len();
    let end = body[at..].find("\r\n")?;
    Some(body[at..at + end].to_string())
}

pub fn route(
    req: &Request,
    key: &str,
    base_url: &str,
    behavior: impl FnOnce() -> Behavior,
) -> Route {
    if req.bearer() != Some(key) {
        return Route::Fixed(error(401, "Incorrect API key provided."));
    }
    let rest = req.path.trim_start_matches("/v1/videos");
    Route::Fixed(match (req.method.as_str(), rest) {
        ("POST", "") => create(req, base_url, behavior()),
        ("GET", id) if id.ends_with("/content") => content(&id[1..id.len() - "/content".len()]),
        ("GET", id) if !id.is_empty() => poll(&id[1..]),
        ("DELETE", id) if !id.is_empty() => delete(&id[1..]),
        _ => error(404, &format!("Invalid URL ({} {})", req.method, req.path)),
    })
}

fn create(req: &Request, base_url: &str, behavior: Behavior) -> Reply {
    let ct = req.header("content-type").unwrap_or_default();
    if !ct.starts_with("multipart/form-data; boundary=") {
        return error(400, "Expected multipart/form-data.");
    }
    let body = String::from_utf8_lossy(&req.body);
    let (Some(model), Some(prompt)) = (field(&body, "model"), field(&body, "prompt")) else {
        return error(400, "Missing required parameter: 'prompt'.");
    };
    let seconds = field(&body, "seconds").unwrap_or_else(|| "4".into());
    if !["4", "8", "12"].contains(&seconds.as_str()) {
        return error(
            400,
            &format!("Invalid value: '{seconds}'. Supported values are: '4', '8', and '12'."),
        );
    }
    let fate = match behavior.clone() {
        Behavior::Status(s, retry_after) => {
            let mut r = error(s, "The server had an error while processing your request.");
            if let Some(secs) = retry_after {
                r = r.with_header("retry-after", secs.to_string());
            }
            return r;
        }
        Behavior::StreamError { .. } => Fate::Fail,
        Behavior::Usage(v) => Fate::Complete(v),
        Behavior::Endless { .. } => Fate::Gated,
        _ => Fate::Complete(json!(seconds)),
    };
    if behavior == Behavior::Malformed {
        return Reply::json(
            200,
            &json!({"id": "../../files/secret", "object": "video", "status": "queued", "progress": 0}),
        );
    }
    let id = format!("video_mock{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let object = json!({
        "id": id, "object": "video", "model": model, "status": "queued", "progress": 0,
        "created_at": now_secs(), "completed_at": null, "expires_at": null,
        "seconds": seconds, "size": "720x1280", "quality": "standard",
        "remixed_from_video_id": null, "error": null, "prompt": prompt,
    });
    VIDEOS.lock().unwrap().insert(
        id,
        Video {
            base_url: base_url.to_string(),
            object: object.clone(),
            fate,
            polls: 0,
            deleted: false,
        },
    );
    Reply::json(200, &object)
}

fn not_found(id: &str) -> Reply {
    error(404, &format!("Video with id '{id}' not found."))
}

fn poll(id: &str) -> Reply {
    let mut videos = VIDEOS.lock().unwrap();
    let Some(v) = videos.get_mut(id).filter(|v| !v.deleted) else {
        return not_found(id);
    };
    v.polls += 1;
    let o = &mut v.object;
    match (&v.fate, v.polls) {
        (Fate::Fail, _) => {
            o["status"] = json!("failed");
            o["error"] = json!({"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."});
        }
        (Fate::Complete(seconds), n) if n >= 2 => {
            o["status"] = json!("completed");
            o["progress"] = json!(100);
            o["seconds"] = seconds.clone();
            o["completed_at"] = json!(now_secs());
            o["expires_at"] = json!(now_secs() + 3600);
        }
        _ => {
            o["status"] = json!("in_progress");
            o["progress"] = json!(50);
        }
    }
    Reply::json(200, o)
}

fn content(id: &str) -> Reply {
    let videos = VIDEOS.lock().unwrap();
    match videos.get(id).filter(|v| !v.deleted) {
        Some(v) if v.object["status"] == "completed" => Reply {
            status: 200,
            content_type: "video/mp4".into(),
            headers: Vec::new(),
            body: mp4(),
        },
        Some(_) => error(
            400,
            "Video is not ready yet, use GET /v1/videos/{video_id} to check status.",
        ),
        None => not_found(id),
    }
}

fn delete(id: &str) -> Reply {
    let mut videos = VIDEOS.lock().unwrap();
    let Some(v) = videos.get_mut(id).filter(|v| !v.deleted) else {
        return not_found(id);
    };
    v.deleted = true;
    Reply::json(
        200,
        &json!({"id": id, "object": "video.deleted", "deleted": true}),
    )
}
