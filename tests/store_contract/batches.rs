//! Group commit in the storage contract (run on both backends by `contract!`): many
//! concurrent manifest writes, same-key conflicts included, must each get an outcome that
//! some sequential order of the same writes would give, and leave the state that order
//! leaves.

use std::collections::HashMap;

use megatorrent::store::{PutOutcome, StoreError};
use rand::seq::SliceRandom;

use super::{key, manifest, Harness};

/// Keys under test; the odd ones start as a tombstone at sequence 5.
const KEYS: std::ops::Range<u8> = 100..108;
/// Sequences offered per key (each with two bodies, one of them twice).
const TOP: u64 = 24;

/// A sequential reference of one slot.
#[derive(Default)]
struct Model {
    mark: Option<u64>,
    live: Option<(u64, Vec<u8>)>,
}

impl Model {
    fn put(&mut self, seq: u64, body: &[u8]) -> PutOutcome {
        match self.mark {
            Some(m)
                if seq < m || (seq == m && self.live.as_ref().map(|l| &l.1[..]) != Some(body)) =>
            {
                PutOutcome::Conflict { current: m }
            }
            Some(m) if seq == m => PutOutcome::Unchanged,
            mark => {
                let was_live = self.live.is_some();
                self.mark = Some(seq);
                self.live = Some((seq, body.to_vec()));
                match (mark, was_live) {
                    (Some(_), true) => PutOutcome::Updated,
                    _ => PutOutcome::Created,
                }
            }
        }
    }
}

/// A witness order for one key's writes: the accepted ones by sequence, each refusal and
/// no-op right after the accepted write it names. Replaying it through [`Model`] must give
/// every write its observed outcome.
fn check_key(k: u8, start: Model, writes: &[(u64, Vec<u8>, PutOutcome)]) -> Model {
    let mut accepted: Vec<&(u64, Vec<u8>, PutOutcome)> = writes
        .iter()
        .filter(|w| matches!(w.2, PutOutcome::Created | PutOutcome::Updated))
        .collect();
    accepted.sort_by_key(|w| w.0);
    let after = |seq: u64| {
        writes.iter().filter(move |w| match w.2 {
            PutOutcome::Conflict { current } => current == seq,
            PutOutcome::Unchanged => w.0 == seq,
            _ => false,
        })
    };
    let mut order: Vec<&(u64, Vec<u8>, PutOutcome)> =
        start.mark.map_or_else(Vec::new, |m| after(m).collect());
    for w in &accepted {
        order.push(w);
        order.extend(after(w.0));
    }
    assert_eq!(
        order.len(),
        writes.len(),
        "key {k}: an outcome names no accepted write"
    );
    let mut model = start;
    for (seq, body, observed) in order {
        let expected = model.put(*seq, body);
        assert_eq!(*observed, expected, "key {k}: sequence {seq}");
    }
    model
}

pub(crate) async fn concurrent_manifest_batches_match_a_sequential_order(h: &Harness) {
    let s = &h.store;
    let mut starts: HashMap<u8, Model> = HashMap::new();
    for k in KEYS {
        let mut m = Model::default();
        if k % 2 == 1 {
            let rec = manifest(k, 5, "old");
            assert_eq!(s.put_manifest(&rec).await.unwrap(), m.put(5, b"old"));
            assert!(s.delete_manifest(&key(k)).await.unwrap());
            m.live = None;
        }
        starts.insert(k, m);
    }
    let before = s.group_commit_stats().unwrap();

    let mut recs = Vec::new();
    for k in KEYS {
        for seq in 1..=TOP {
            recs.push(manifest(k, seq, &format!("a{seq}")));
            recs.push(manifest(k, seq, &format!("a{seq}")));
            recs.push(manifest(k, seq, &format!("b{seq}")));
        }
    }
    // Unencodable sequences fail their own write (and any batch they are in, whose other
    // writes must then still get their own outcomes).
    for _ in 0..4 {
        recs.push(manifest(99, u64::MAX, "too big"));
    }
    recs.shuffle(&mut rand::thread_rng());
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(recs.len()));
    let tasks: Vec<_> = recs
        .into_iter()
        .map(|rec| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let out = s.put_manifest(&rec).await;
                (rec, out)
            })
        })
        .collect();
    let mut per_key: HashMap<u8, Vec<(u64, Vec<u8>, PutOutcome)>> = HashMap::new();
    for t in tasks {
        let (rec, out) = t.await.unwrap();
        let k = rec.key.as_bytes()[0];
        if k == 99 {
            assert!(matches!(out, Err(StoreError::Database(_))), "{out:?}");
            continue;
        }
        per_key
            .entry(k)
            .or_default()
            .push((rec.sequence, rec.body, out.unwrap()));
    }
    assert_eq!(s.manifest_high_water(&key(99)).await.unwrap(), None);

    for k in KEYS {
        let model = check_key(k, starts.remove(&k).unwrap(), &per_key[&k]);
        let (seq, body) = model.live.unwrap();
        assert_eq!(seq, TOP, "key {k}");
        let got = s.get_manifest(&key(k)).await.unwrap().unwrap();
        assert_eq!((got.sequence, got.body), (seq, body), "key {k}");
        assert_eq!(s.manifest_high_water(&key(k)).await.unwrap(), Some(TOP));
    }

    // The writes were committed in batches: fewer transactions than writes.
    let after = s.group_commit_stats().unwrap();
    let (writes, batches) = (after.writes - before.writes, after.batches - before.batches);
    assert!(
        writes >= u64::from(KEYS.end - KEYS.start) * TOP,
        "{after:?}"
    );
    assert!(batches < writes, "no batching at all: {after:?}");
}
