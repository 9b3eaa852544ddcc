//! The outbox on a real redb file.

use super::*;
use crate::store::RedbStore;
use oneflow::webhook::WebhookSettings;

fn hook(store: &RedbStore) -> Stored {
    let h = Stored {
        id: "wh_1".into(),
        user_id: "u".into(),
        settings: WebhookSettings {
            url: "http://127.0.0.1:9/".into(),
            events: vec![EventKind::KeyRevoked],
            balance_below: None,
            failure_rate: 0.5,
            failure_window_minutes: 5,
        },
        secret: "whsec_x".into(),
        previous: None,
        created_at: 0,
    };
    assert!(
        store
            .write_docs(vec![DocWrite::create(KIND, &h.id, &h).unwrap()])
            .unwrap()
    );
    h
}

fn event() -> Event {
    Event {
        kind: EventKind::KeyRevoked,
        data: json!({"key_id": "key_1"}),
    }
}

#[test]
fn of_two_claims_of_one_attempt_one_lands_and_its_outcome_closes_the_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let h = hook(&store);
    assert!(enqueue(&store, 10, "u", &[&h], event(), Vec::new()).unwrap());
    let due = store.docs(PENDING_KIND, "", None, 10).unwrap();
    assert_eq!(due.len(), 1);
    let (id, doc) = &due[0];
    // Two nodes read the same due delivery; both try to claim it.
    let first = claim(&store, id, doc.version, 3_600_000).unwrap();
    let second = claim(&store, id, doc.version, 3_600_000).unwrap();
    let c = first.expect("the first claim lands");
    assert!(second.is_none(), "the second claim must lose");
    assert_eq!(c.delivery.view.attempts, 1);
    // Its lease is not due now: nobody else sends it meanwhile.
    let leased = store.docs(PENDING_KIND, "", None, 10).unwrap();
    assert_eq!(leased.len(), 1);
    assert!(due_of(&leased[0].0).unwrap() > now_ms());
    record(&store, c, Outcome::Answered(204), 3_600_000).unwrap();
    assert!(store.docs(PENDING_KIND, "", None, 10).unwrap().is_empty());
    assert_eq!(read_backlog(&store, "u").unwrap().1.pending, 0);
    let log = log(&store, "wh_1").unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].status, log[0].attempts, log[0].last_status),
        (DeliveryStatus::Delivered, 1, Some(204))
    );
}

#[test]
fn a_failed_attempt_is_due_again_after_its_backoff_and_past_the_bound_new_events_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let h = hook(&store);
    assert!(enqueue(&store, 1, "u", &[&h], event(), Vec::new()).unwrap());
    // The bound is one pending delivery: the next event is dropped.
    assert!(enqueue(&store, 1, "u", &[&h], event(), Vec::new()).unwrap());
    assert_eq!(log(&store, "wh_1").unwrap().len(), 1);
    let (id, doc) = store.docs(PENDING_KIND, "", None, 10).unwrap().remove(0);
    let c = claim(&store, &id, doc.version, 3_600_000).unwrap().unwrap();
    let before = now_ms();
    record(&store, c, Outcome::NoAnswer("refused".into()), 3_600_000).unwrap();
    let again = store.docs(PENDING_KIND, "", None, 10).unwrap();
    let due = due_of(&again[0].0).unwrap();
    assert!((before + 800..=now_ms() + 1000).contains(&due), "{due}");
    let l = log(&store, "wh_1").unwrap();
    assert_eq!(l[0].status, DeliveryStatus::Pending);
    assert_eq!(l[0].last_error.as_deref(), Some("refused"));
    assert_eq!(read_backlog(&store, "u").unwrap().1.pending, 1);
    // Past retry_for, the next failure gives up and frees the slot.
    let (id, doc) = again.into_iter().next().unwrap();
    let c = claim(&store, &id, doc.version, 3_600_000).unwrap().unwrap();
    record(&store, c, Outcome::Answered(500), 0).unwrap();
    let l = log(&store, "wh_1").unwrap();
    assert_eq!((l[0].status, l[0].attempts), (DeliveryStatus::Failed, 2));
    assert_eq!(read_backlog(&store, "u").unwrap().1.pending, 0);
    assert!(store.docs(PENDING_KIND, "", None, 10).unwrap().is_empty());
}

#[test]
fn pending_ids_sort_by_due_time_and_records_newest_first() {
    let (a, b) = (pending_id(5_000, "dlv_b"), pending_id(40_000, "dlv_a"));
    assert!(a < b);
    assert_eq!(due_of(&a), Some(5_000));
    let (old, new) = (
        record_id("wh_1", 1_000, "dlv_x"),
        record_id("wh_1", 2_000, "dlv_y"),
    );
    assert!(new < old);
    assert!(old.starts_with("wh_1/"));
}

#[test]
fn a_deleted_webhooks_pending_delivery_is_closed_unsent_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let h = hook(&store);
    assert!(enqueue(&store, 10, "u", &[&h], event(), Vec::new()).unwrap());
    let v = store.doc(KIND, &h.id).unwrap().unwrap().version;
    assert!(
        store
            .write_docs(vec![DocWrite::delete(KIND, &h.id, v)])
            .unwrap()
    );
    let (id, doc) = store.docs(PENDING_KIND, "", None, 10).unwrap().remove(0);
    assert!(
        claim(&store, &id, doc.version, 3_600_000)
            .unwrap()
            .is_none()
    );
    assert!(store.docs(PENDING_KIND, "", None, 10).unwrap().is_empty());
    assert!(log(&store, "wh_1").unwrap().is_empty());
    assert_eq!(read_backlog(&store, "u").unwrap().1.pending, 0);
}
