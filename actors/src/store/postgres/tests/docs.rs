//! The document contract (`store/docs.rs`) on both backends: the same
//! writes give the same answers and the same reads, and of many writers
//! naming one version exactly one wins.

use std::sync::Arc;

use super::{TestPg, redb};
use crate::store::{Doc, DocWrite, Store};

fn put(kind: &str, id: &str, expected: u64, body: &str) -> DocWrite {
    DocWrite {
        kind: kind.into(),
        id: id.into(),
        expected,
        body: Some(body.as_bytes().to_vec()),
    }
}

/// Runs one script of writes and reads, returning everything observed.
fn script(s: &dyn Store) -> Vec<String> {
    let mut seen = Vec::new();
    let mut note = |what: &str, v: String| seen.push(format!("{what}: {v}"));
    note(
        "create",
        s.write_docs(vec![put("k", "a", 0, "1")])
            .unwrap()
            .to_string(),
    );
    note(
        "create again",
        s.write_docs(vec![put("k", "a", 0, "2")])
            .unwrap()
            .to_string(),
    );
    note(
        "stale",
        s.write_docs(vec![put("k", "a", 2, "2")])
            .unwrap()
            .to_string(),
    );
    note(
        "replace",
        s.write_docs(vec![put("k", "a", 1, "2")])
            .unwrap()
            .to_string(),
    );
    note("read", format!("{:?}", s.doc("k", "a").unwrap()));
    // A batch with one stale write writes nothing at all.
    let half = vec![put("k", "b", 0, "b"), put("k", "a", 1, "3")];
    note("half-stale batch", s.write_docs(half).unwrap().to_string());
    note("b after it", format!("{:?}", s.doc("k", "b").unwrap()));
    // Writes within one batch see the ones before them.
    let twice = vec![put("k", "b", 0, "b1"), put("k", "b", 1, "b2")];
    note("twice in a batch", s.write_docs(twice).unwrap().to_string());
    for id in ["ab", "abc", "ac", "b0", "a\u{e9}"] {
        s.write_docs(vec![put("k", id, 0, id)]).unwrap();
    }
    s.write_docs(vec![put("other", "a", 0, "x")]).unwrap();
    let ids = |v: Vec<(String, Doc)>| {
        v.into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
            .join(",")
    };
    note("all", ids(s.docs("k", "", None, 100).unwrap()));
    note("prefix a", ids(s.docs("k", "a", None, 100).unwrap()));
    note(
        "prefix a after ab",
        ids(s.docs("k", "a", Some("ab"), 100).unwrap()),
    );
    note("limit 2", ids(s.docs("k", "", None, 2).unwrap()));
    note(
        "after the end",
        ids(s.docs("k", "", Some("zzz"), 10).unwrap()),
    );
    note(
        "delete stale",
        s.write_docs(vec![DocWrite::delete("k", "a", 1)])
            .unwrap()
            .to_string(),
    );
    note(
        "delete",
        s.write_docs(vec![DocWrite::delete("k", "a", 2)])
            .unwrap()
            .to_string(),
    );
    note("gone", format!("{:?}", s.doc("k", "a").unwrap()));
    note(
        "absent delete",
        s.write_docs(vec![DocWrite::delete("k", "zz", 0)])
            .unwrap()
            .to_string(),
    );
    let refused = s.write_docs(vec![put("k", "nul\0", 0, "x")]).is_err();
    note("NUL id refused", refused.to_string());
    seen
}

#[test]
fn documents_behave_the_same_on_both_backends() {
    let (_dir, r) = redb();
    let db = TestPg::new();
    let p = db.open("n1");
    let on_redb = script(&r);
    assert_eq!(on_redb, script(&*p));
    // Spot checks, so that the two cannot agree on something wrong.
    let expect = [
        "create: true",
        "create again: false",
        "stale: false",
        "replace: true",
        "half-stale batch: false",
        "b after it: None",
        "twice in a batch: true",
        "all: a,ab,abc,ac,a\u{e9},b,b0",
        "prefix a: a,ab,abc,ac,a\u{e9}",
        "prefix a after ab: abc,ac,a\u{e9}",
        "limit 2: a,ab",
        "after the end: ",
        "delete stale: false",
        "delete: true",
        "gone: None",
        "absent delete: true",
        "NUL id refused: true",
    ];
    for e in expect {
        assert!(on_redb.iter().any(|s| s == e), "{e} not in {on_redb:#?}");
    }
    let read = on_redb.iter().find(|s| s.starts_with("read")).unwrap();
    assert!(read.contains("version: 2"), "{read}");
}

#[test]
fn of_many_writers_naming_one_version_exactly_one_wins() {
    let (_dir, r) = redb();
    let db = TestPg::new();
    let p = db.open("n1");
    let stores: [Arc<dyn Store>; 2] = [Arc::new(r), p];
    for s in stores {
        s.write_docs(vec![put("race", "x", 0, "start")]).unwrap();
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = &s;
                    sc.spawn(move || {
                        usize::from(
                            s.write_docs(vec![put("race", "x", 1, &format!("w{i}"))])
                                .unwrap(),
                        )
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(s.doc("race", "x").unwrap().unwrap().version, 2);
    }
}
