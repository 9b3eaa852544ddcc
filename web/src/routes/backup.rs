//! `GET /api/backup`: a consistent copy of the running broker's redb file,
//! for `oneflow backup` (docs/deploy.md). The copy is made before the first
//! byte is sent, so a client that sees 200 gets a whole, committed state;
//! a blocking task reads it into a small bounded channel, so memory stays
//! flat however large the file is and a slow client slows the reader.

use std::io::Read;

use actix_web::body::SizedStream;
use actix_web::http::header::{CONTENT_DISPOSITION, HeaderValue};
use actix_web::{HttpResponse, get, web};
use bytes::Bytes;

use crate::access::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// Bytes per chunk read from the copy.
const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the client.
const AHEAD: usize = 4;

#[get("/api/backup")]
pub async fn backup(s: web::Data<AppState>, _c: AdminCaller) -> Result<HttpResponse, ApiError> {
    let made = s.broker.backup().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(AHEAD);
    let mut file = made.file;
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let item = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // A client gone closes the channel: stop reading.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    });
    let name = format!(
        "attachment; filename=\"oneflow-{}.redb\"",
        oneflow_actors::ids::now_ms()
    );
    let mut res = HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("x-oneflow-backup-rows", made.copy.rows.to_string()))
        // The length is known: a client can tell a cut download from a whole one.
        .body(SizedStream::new(made.bytes, body));
    if let Ok(v) = HeaderValue::from_str(&name) {
        res.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
