//! History: a user's requests and ledger entries, newest first, a page at a
//! time, and one request by id.

use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;

use super::keys::Principal;
use super::{Services, blocking, membership};
use crate::error::BrokerError;
use crate::store::RequestCursor;
use crate::views::Page;

/// A user's requests, newest first.
pub(crate) async fn requests(
    s: &Services,
    user_id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<RequestRecord>, BrokerError> {
    let before = match cursor {
        Some(c) => Some(parse_request_cursor(c)?),
        None => None,
    };
    let (store, id) = (s.store.clone(), user_id.to_string());
    let items = blocking(move || store.requests_page(&id, before.as_ref(), limit)).await?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|r| format!("{}.{}", r.created_at, r.id)))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// One request, only if the caller may see it (`membership::sees`: their
/// own, one they sent from a team's wallet, a team's they read for, any
/// for an admin); anyone else's is "not found".
pub(crate) async fn request(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<RequestRecord, BrokerError> {
    let (store, rid) = (s.store.clone(), id.to_string());
    let rec = blocking(move || store.request(&rid)).await?;
    match rec {
        Some(r) if membership::sees(s, who, &r.user_id, r.member.as_deref()).await => Ok(r),
        _ => Err(BrokerError::NotFound("request")),
    }
}

/// A user's ledger entries, newest first.
pub(crate) async fn transactions(
    s: &Services,
    user_id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<LedgerEntry>, BrokerError> {
    let before = match cursor {
        Some(c) => Some(c.parse::<u64>().map_err(|_| bad_cursor())?),
        None => None,
    };
    let (store, id) = (s.store.clone(), user_id.to_string());
    let items = blocking(move || store.transactions_page(&id, before, limit)).await?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Page { items, next_cursor })
}

fn bad_cursor() -> BrokerError {
    BrokerError::BadInput("`cursor` is not a cursor this API gave".into())
}

/// A requests cursor is `created_at.id` of the last request of a page.
fn parse_request_cursor(c: &str) -> Result<RequestCursor, BrokerError> {
    let (at, id) = c.split_once('.').ok_or_else(bad_cursor)?;
    Ok(RequestCursor {
        created_at: at.parse().map_err(|_| bad_cursor())?,
        id: id.to_string(),
    })
}
