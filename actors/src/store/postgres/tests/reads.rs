//! Every read of the `Store` trait, as text, to compare two stores.

use super::*;

// ------------------------------------------------------------------- reads

/// Every read of the trait over the workload's users, keys and times, as
/// labelled text (a failure names the read that differs).
pub(super) fn reads(s: &dyn Store) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |label: String, v: &dyn Debug| out.push((label, format!("{v:#?}")));
    put("users".into(), &s.users().unwrap());
    put("api_keys".into(), &s.api_keys().unwrap());
    put("has_admin_key".into(), &s.has_admin_key().unwrap());
    put("open_holds".into(), &s.open_holds().unwrap());
    put("budgets".into(), &s.budgets().unwrap());
    put("providers".into(), &s.providers().unwrap());
    let mut wallets = Vec::new();
    s.each_wallet(&mut |u, b| {
        // Byte for byte: the copy between stores passes these bytes on.
        wallets.push((u, String::from_utf8(b).unwrap()));
        Ok(true)
    })
    .unwrap();
    put("each_wallet".into(), &wallets);
    let mut idem = Vec::new();
    s.each_idempotency(&mut |u, k, r| {
        idem.push((u, k, r));
        Ok(true)
    })
    .unwrap();
    put("each_idempotency".into(), &idem);

    let mut all = Vec::new();
    s.each_request(None, Millis::MIN, Millis::MAX, &mut |r| {
        all.push(r);
        Ok(true)
    })
    .unwrap();
    put("each_request(all)".into(), &all);
    let mut ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    ids.push("missing".into());
    for id in ids.iter().step_by(7) {
        put(format!("request({id})"), &s.request(id).unwrap());
    }
    let window = (START + 3 * 3_600_000, START + 30 * 3_600_000);
    let mut some = Vec::new();
    s.each_request(None, window.0, window.1, &mut |r| {
        some.push(r.id);
        Ok(some.len() < 1500)
    })
    .unwrap();
    put("each_request(window)".into(), &some);
    let mut entries = Vec::new();
    s.each_entry(None, &mut |e| {
        entries.push(e);
        Ok(true)
    })
    .unwrap();
    put("each_entry(all)".into(), &entries);

    let users: Vec<&str> = USERS.iter().copied().chain(["nobody"]).collect();
    for u in users {
        put(format!("user({u})"), &s.user(u).unwrap());
        put(format!("wallet({u})"), &s.wallet(u).unwrap());
        put(format!("budget({u})"), &s.budget(u).unwrap());
        for k in 0..40 {
            let key = format!("k{k}");
            put(
                format!("idempotency({u},{key})"),
                &s.idempotency(u, &key).unwrap(),
            );
        }
        // Newest first, seven at a time, each page resuming at the last.
        let mut pages = Vec::new();
        let mut before: Option<RequestCursor> = None;
        loop {
            let page = s.requests_page(u, before.as_ref(), 7).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(RequestCursor {
                created_at: last.created_at as u64,
                id: last.id.clone(),
            });
            pages.push(page.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        }
        put(format!("requests_page({u})"), &pages);
        put(
            format!("requests_page({u}, all)"),
            &s.requests_page(u, None, 10_000).unwrap(),
        );
        let mut tx = Vec::new();
        let mut before = None;
        loop {
            let page = s.transactions_page(u, before, 5).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            tx.push(page);
        }
        put(format!("transactions_page({u})"), &tx);
        let mut mine = Vec::new();
        s.each_request(Some(u), window.0, window.1, &mut |r| {
            mine.push(r.id);
            Ok(mine.len() < 4)
        })
        .unwrap();
        put(format!("each_request({u}, window, stop at 4)"), &mine);
        let mut mine = Vec::new();
        s.each_entry(Some(u), &mut |e| {
            mine.push(e.seq);
            Ok(true)
        })
        .unwrap();
        put(format!("each_entry({u})"), &mine);
    }
    let hour0 = Bucket::Hour.floor(START);
    for scope in USERS.iter().copied().chain([""]) {
        for b in Bucket::ALL {
            put(
                format!("rollup_rows({scope}, {b:?})"),
                &s.rollup_rows(scope, b, 0, Millis::MAX).unwrap(),
            );
        }
        put(
            format!("rollup_rows({scope}, hour, window)"),
            &s.rollup_rows(scope, Bucket::Hour, window.0, window.1)
                .unwrap(),
        );
        let mut stopped = Vec::new();
        s.each_rollup(scope, Bucket::Minute, 0, Millis::MAX, &mut |t, p, r| {
            stopped.push((t, p.to_string(), r.count));
            stopped.len() < 3
        })
        .unwrap();
        put(format!("each_rollup({scope}, stop at 3)"), &stopped);
        for provider in [None, Some("p1")] {
            put(
                format!("series({scope}, hour, {provider:?})"),
                &s.series(scope, Bucket::Hour, hour0, hour0 + 30 * 3_600_000, provider)
                    .unwrap(),
            );
            put(
                format!("series({scope}, minute, {provider:?})"),
                &s.series(
                    scope,
                    Bucket::Minute,
                    hour0 + 3_600_000,
                    hour0 + 3 * 3_600_000,
                    provider,
                )
                .unwrap(),
            );
        }
        put(
            format!("summary({scope})"),
            &s.summary(scope, None).unwrap(),
        );
        let minutes = (
            Bucket::Minute.floor(window.0) + 17 * 60_000,
            Bucket::Minute.floor(window.1),
        );
        put(
            format!("summary({scope}, window)"),
            &s.summary(scope, Some(minutes)).unwrap(),
        );
    }
    out
}

pub(super) fn assert_same_reads(a: &dyn Store, b: &dyn Store) {
    let (a, b) = (reads(a), reads(b));
    assert_eq!(a.len(), b.len());
    for ((la, va), (lb, vb)) in a.iter().zip(&b) {
        assert_eq!(la, lb);
        assert_eq!(va, vb, "{la} differs");
    }
}

pub(super) fn commit_all(s: &dyn Store, batches: Vec<Vec<WriteOp>>) {
    for b in batches {
        s.commit(b).unwrap();
    }
}
