//! The redb store's batch and format behaviour.

use super::redb::{IDEMPOTENCY, META, TRANSACTIONS, WALLETS, enc};
use super::*;
use ::redb::{ReadableDatabase, ReadableTable};

use oneflow::Credits;
use oneflow::analytics::Bucket;
use oneflow::ledger::{EntryKind, Hold};
use oneflow::pricing::Usage;

fn hold(id: u64) -> WriteOp {
    let hold = Hold {
        user_id: "u".into(),
        id,
        request_id: format!("r{id}"),
        provider: "p".into(),
        amount: Credits(9),
        at: 0,
        spenders: vec!["usr_m".into()],
    };
    WriteOp::PutHold(Box::new(OpenHold {
        hold,
        model: "m".into(),
        modality: Modality::Text,
        prompt_preview: "x".into(),
    }))
}

fn request(id: &str, at: Millis, cost: i64) -> WriteOp {
    WriteOp::PutRequest(Box::new(RequestRecord {
        id: id.into(),
        user_id: "u".into(),
        model: "m".into(),
        modality: Modality::Text,
        provider: "p".into(),
        status: RequestStatus::Succeeded,
        prompt_preview: String::new(),
        response: None,
        usage: Usage {
            output_tokens: 3,
            ..Usage::default()
        },
        quote: Credits(cost),
        cost: Credits(cost),
        shortfall: Credits::ZERO,
        error: None,
        route: String::new(),
        created_at: at,
        latency_ms: 7,
        attempts: Vec::new(),
        usage_anomaly: false,
        member: None,
        cached: false,
        experiment: None,
        key_id: None,
    }))
}

fn entry(seq: u64) -> WriteOp {
    WriteOp::AppendEntry(LedgerEntry {
        user_id: "u".into(),
        seq,
        kind: EntryKind::Hold,
        amount: Credits(9),
        balance_after: Credits(0),
        available_after: Credits(0),
        hold_id: Some(seq),
        request_id: None,
        note: None,
        at: 0,
    })
}

fn wallet(v: u8) -> WriteOp {
    WriteOp::PutWallet {
        user_id: "u".into(),
        bytes: format!("{{\"v\":{v}}}").into_bytes(),
    }
}

fn batch() -> Vec<WriteOp> {
    vec![
        wallet(1),
        hold(1),
        entry(1),
        request("a", 10, 5),
        wallet(2),
        WriteOp::DeleteHold {
            user_id: "u".into(),
            id: 1,
        },
        hold(2),
        entry(2),
        request("b", 3_700_000, 4),
        request("c", 20, 6),
        wallet(3),
    ]
}

type Rollups = Vec<RollupRow>;

/// Wallet bytes, open holds, the user's and global rollups, entry count.
fn state(s: &RedbStore) -> (Vec<u8>, Vec<OpenHold>, Rollups, Rollups, usize) {
    let r = s.db.begin_read().unwrap();
    let w = r
        .open_table(WALLETS)
        .unwrap()
        .get("u")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    let tx = s.transactions_page("u", None, 100).unwrap().len();
    (
        w,
        s.open_holds().unwrap(),
        s.rollup_rows("u", Bucket::Hour, 0, i64::MAX).unwrap(),
        s.rollup_rows("", Bucket::Hour, 0, i64::MAX).unwrap(),
        tx,
    )
}

/// Coalescing a batch leaves exactly the state that applying each write
/// in its own commit leaves.
#[test]
fn a_coalesced_batch_equals_one_commit_per_write() {
    let dir = tempfile::tempdir().unwrap();
    let one_by_one = RedbStore::open(&dir.path().join("a.redb")).unwrap();
    for op in batch() {
        one_by_one.commit(vec![op]).unwrap();
    }
    let batched = RedbStore::open(&dir.path().join("b.redb")).unwrap();
    batched.commit(batch()).unwrap();
    let (a, b) = (state(&one_by_one), state(&batched));
    assert_eq!(a, b);
    assert_eq!(a.0, b"{\"v\":3}");
    assert_eq!(a.1.len(), 1, "hold 1 closed, hold 2 open");
    assert_eq!(a.2.len(), 2, "two hours");
    assert_eq!(a.2[0].2.count, 2);
    assert_eq!(a.2[0].2.cost, Credits(11));
    assert_eq!(a.4, 2);
    assert_eq!(batched.requests_page("u", None, 10).unwrap().len(), 3);
}

fn ledger_rows(s: &RedbStore) -> usize {
    let r = s.db.begin_read().unwrap();
    r.open_table(TRANSACTIONS).unwrap().iter().unwrap().count()
}

fn seqs(entries: &[LedgerEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[test]
fn one_commit_writes_one_ledger_row_per_user_and_pages_still_split_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(&dir.path().join("a.redb")).unwrap();
    s.commit((1..=3).map(entry).collect()).unwrap();
    s.commit((4..=7).map(entry).collect()).unwrap();
    assert_eq!(ledger_rows(&s), 2, "one row per user per commit");

    assert_eq!(
        seqs(&s.transactions_page("u", None, 100).unwrap()),
        [7, 6, 5, 4, 3, 2, 1]
    );
    // Pages of 3, each resuming below the last seq shown: the second
    // page starts inside the second row's entries and ends inside the
    // first's.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s.transactions_page("u", before, 3).unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        pages.push(seqs(&page));
    }
    assert_eq!(pages, [vec![7, 6, 5], vec![4, 3, 2], vec![1]]);
}

#[test]
fn a_file_of_the_first_format_opens_and_reads_its_single_entry_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    {
        // What version 1 wrote: one row per entry, a JSON object each.
        let s = RedbStore::open(&path).unwrap();
        let txn = s.db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("schema_version", b"1".as_slice()).unwrap();
            let mut t = txn.open_table(TRANSACTIONS).unwrap();
            for seq in 1..=2 {
                let WriteOp::AppendEntry(e) = entry(seq) else {
                    unreachable!()
                };
                t.insert(("u", seq), enc(&e).unwrap().as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    s.commit(vec![entry(3), entry(4)]).unwrap();
    assert_eq!(
        seqs(&s.transactions_page("u", None, 10).unwrap()),
        [4, 3, 2, 1]
    );
    assert_eq!(seqs(&s.transactions_page("u", Some(4), 2).unwrap()), [3, 2]);
    let r = s.db.begin_read().unwrap();
    let v = r
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(
        v,
        SCHEMA_VERSION.to_string().as_bytes(),
        "marked current on open"
    );
}

#[test]
fn a_file_of_a_later_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        let txn = s.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", b"99".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Schema { found: 99 })
    ));
}

/// An idempotency record as this store wrote it when the outcome was
/// kept as a JSON value reads as the typed outcome, and writes back as
/// the same JSON: files written before keep replaying.
#[test]
fn an_idempotency_record_in_the_earlier_json_still_reads() {
    use crate::views::{ErrorCode, RequestOutcome};
    let hash: Vec<String> = (0..32).map(|i| i.to_string()).collect();
    let old = format!(
        r#"{{"body_hash":[{}],"result":{{"available":41.5,"balance":42,"cost":0.000123,"created_at":1700000000000,"latency_ms":12,"model":"gpt-4o-mini","provider":"openai","quote":0.5,"request_id":"req_1","response":"hi","route":"cheapest of 2","status":"succeeded","usage":{{"images":0,"input_tokens":3,"output_tokens":1,"seconds":0}}}}}}"#,
        hash.join(",")
    );
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    let txn = s.db.begin_write().unwrap();
    txn.open_table(IDEMPOTENCY)
        .unwrap()
        .insert(("u", "k"), old.as_bytes())
        .unwrap();
    txn.commit().unwrap();
    let rec = s.idempotency("u", "k").unwrap().expect("stored");
    assert_eq!(rec.body_hash, std::array::from_fn(|i| i as u8));
    let o: &RequestOutcome = rec.result.as_ref().expect("a request's record");
    assert_eq!(
        (rec.answer.as_deref(), rec.answered_at()),
        (None, 1_700_000_000_000)
    );
    assert_eq!(o.request_id, "req_1");
    assert_eq!(o.status, RequestStatus::Succeeded);
    assert_eq!(o.response.as_deref(), Some("hi"));
    assert_eq!(o.usage.input_tokens, 3);
    assert_eq!(o.cost, Credits(123));
    assert_eq!(o.balance, Credits::from_credits(42));
    assert_eq!(o.available, Credits(41_500_000));
    assert_eq!((o.error_code, o.error.as_deref()), (None, None));
    let again: serde_json::Value = serde_json::from_slice(&enc(&rec).unwrap()).unwrap();
    let was: serde_json::Value = serde_json::from_str(&old).unwrap();
    assert_eq!(again, was);
    // A failed outcome's code reads as the typed code.
    let failed = r#"{"request_id":"r","status":"failed","model":"m","provider":"p","usage":{"input_tokens":0,"output_tokens":0,"images":0,"seconds":0},"quote":1,"cost":0,"balance":0,"available":0,"route":"","error_code":"provider_timeout","error":"slow","retry_after_secs":2,"latency_ms":1,"created_at":1}"#;
    let o: RequestOutcome = serde_json::from_str(failed).unwrap();
    assert_eq!(o.error_code, Some(ErrorCode::ProviderTimeout));
    assert_eq!(
        serde_json::to_value(&o).unwrap(),
        serde_json::from_str::<serde_json::Value>(failed).unwrap()
    );
}

/// Key records written before scopes existed read as unscoped keys; a
/// scoped record round-trips.
#[test]
fn key_records_without_a_scope_still_read() {
    let old = r#"{"user_id":"usr_1","role":"member","prefix":"of_ab","created_at":5}"#;
    let r: ApiKeyRecord = serde_json::from_str(old).unwrap();
    assert_eq!(r.scope, KeyScope::default());
    assert_eq!(r.team, None);
    assert!(!serde_json::to_string(&r).unwrap().contains("scope"));
    let mut scoped = r.clone();
    scoped.scope.models = Some(vec!["gpt".into()]);
    scoped.scope.expires_at = Some(9);
    scoped.scope.budget = Some(oneflow::budget::SpenderBudget {
        daily: Some(Credits::from_credits(3)),
        ..Default::default()
    });
    let text = serde_json::to_string(&scoped).unwrap();
    assert_eq!(serde_json::from_str::<ApiKeyRecord>(&text).unwrap(), scoped);
}
