//! The storage contract. Every test in `contract!` runs twice: against SQLite (a file in a
//! temporary directory) and against PostgreSQL (a fresh database on the local server, dropped
//! afterwards). PostgreSQL being unreachable fails the run; nothing is skipped.
#![cfg(all(feature = "sqlite", feature = "postgres"))]
// The contract functions are test bodies: `contract!` calls them from the generated
// `#[tokio::test]`s, which clippy cannot see through.
#![allow(clippy::unwrap_used)]

#[path = "store_contract/batches.rs"]
mod batches;
mod common;
#[path = "store_contract/mail.rs"]
mod mail;
#[path = "store_contract/profiles.rs"]
mod profiles;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use megatorrent::proto::{PublicKey, Signature};
use megatorrent::store::{
    self, ManifestRecord, PointerRecord, PutOutcome, Store, StoreError, StoreOptions, StoreStats,
};
use rand::seq::SliceRandom;

use batches::concurrent_manifest_batches_match_a_sequential_order;
use common::pg::PgTestDb;
use mail::{
    concurrent_mail_puts_respect_the_quota, mailbox_nonces_are_single_use,
    mailbox_quota_list_ack_and_purge,
};
use profiles::{concurrent_profile_puts_never_regress, profile_outcomes_and_expiry};

/// One backend under test: its URL, an open store, and what to clean up.
struct Harness {
    url: String,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgTestDb>,
}

fn opts() -> StoreOptions {
    StoreOptions::default()
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = store::open(&url, &opts()).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        Harness {
            url,
            store,
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres() -> Self {
        let db = PgTestDb::create().await;
        let store = store::open(&db.url, &opts()).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        Harness {
            url: db.url.clone(),
            store,
            _dir: None,
            pg: Some(db),
        }
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some(db) = self.pg {
            db.drop_db().await;
        }
    }
}

/// Declares one `#[tokio::test]` per backend for each contract function.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::postgres().await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

contract!(
    ping_and_empty_store,
    manifest_outcomes,
    high_water_survives_delete,
    pointers_have_their_own_sequence_space,
    stats_count_live_rows,
    extreme_values_round_trip,
    concurrent_manifest_puts_never_regress,
    concurrent_manifest_batches_match_a_sequential_order,
    concurrent_pointer_puts_never_regress,
    reopened_store_keeps_its_data,
    passkeys_add_remove_and_list,
    mailbox_quota_list_ack_and_purge,
    mailbox_nonces_are_single_use,
    concurrent_mail_puts_respect_the_quota,
    profile_outcomes_and_expiry,
    concurrent_profile_puts_never_regress,
);

fn key(n: u8) -> PublicKey {
    PublicKey::from([n; 32])
}

fn ts(sequence: u64) -> i64 {
    1_700_000_000_000 + i64::try_from(sequence % 1_000_000).unwrap()
}

fn manifest(k: u8, sequence: u64, body: &str) -> ManifestRecord {
    ManifestRecord {
        key: key(k),
        sequence,
        body: body.as_bytes().to_vec(),
        updated_at_ms: ts(sequence),
    }
}

fn pointer(k: u8, seq: u64, infohash: &str, sig: u8) -> PointerRecord {
    PointerRecord {
        key: key(k),
        public_key_text: key(k).to_hex().to_uppercase(),
        infohash_text: infohash.to_owned(),
        seq,
        signature: Signature::from([sig; 64]),
        updated_at_ms: ts(seq),
    }
}

async fn ping_and_empty_store(h: &Harness) {
    let s = &h.store;
    s.ping().await.unwrap();
    assert_eq!(s.stats().await.unwrap(), StoreStats::default());
    assert_eq!(s.get_manifest(&key(1)).await.unwrap(), None);
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), None);
    assert_eq!(s.get_pointer(&key(1)).await.unwrap(), None);
    assert!(!s.delete_manifest(&key(1)).await.unwrap());
    // Deleting a missing slot must not create a mark.
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), None);
}

async fn passkeys_add_remove_and_list(h: &Harness) {
    let s = &h.store;
    assert!(s.list_passkeys().await.unwrap().is_empty());
    assert!(!s.passkey_exists("abcdefghijklmnop").await.unwrap());
    // Byte order, whatever the database's collation.
    for pk in [
        "b-passkey-000000000",
        "B_passkey_000000000",
        "a".repeat(64).as_str(),
    ] {
        assert!(s.add_passkey(pk, ts(1)).await.unwrap(), "{pk}");
    }
    assert!(!s.add_passkey("b-passkey-000000000", ts(2)).await.unwrap());
    assert!(s.passkey_exists("b-passkey-000000000").await.unwrap());
    assert!(!s.passkey_exists("B-PASSKEY-000000000").await.unwrap());
    assert_eq!(
        s.list_passkeys().await.unwrap(),
        vec![
            "B_passkey_000000000".to_owned(),
            "a".repeat(64),
            "b-passkey-000000000".to_owned()
        ]
    );
    assert!(s.remove_passkey("b-passkey-000000000").await.unwrap());
    assert!(!s.remove_passkey("b-passkey-000000000").await.unwrap());
    assert!(!s.passkey_exists("b-passkey-000000000").await.unwrap());
    // Longer than the schema allows: refused by the database, never truncated.
    assert!(s.add_passkey(&"x".repeat(65), ts(1)).await.is_err());
    assert_eq!(s.list_passkeys().await.unwrap().len(), 2);
}

async fn manifest_outcomes(h: &Harness) {
    let s = &h.store;
    assert_eq!(
        s.put_manifest(&manifest(1, 5, "five")).await.unwrap(),
        PutOutcome::Created
    );
    let got = s.get_manifest(&key(1)).await.unwrap().unwrap();
    assert_eq!(
        (got.sequence, got.body.as_slice(), got.updated_at_ms),
        (5, &b"five"[..], ts(5))
    );

    // Same sequence, same bytes: nothing changes, not even the timestamp.
    let mut again = manifest(1, 5, "five");
    again.updated_at_ms += 1;
    assert_eq!(s.put_manifest(&again).await.unwrap(), PutOutcome::Unchanged);
    assert_eq!(s.get_manifest(&key(1)).await.unwrap().unwrap(), got);

    // Same sequence, other bytes; lower sequence: both conflict with the mark.
    for rec in [
        manifest(1, 5, "FIVE"),
        manifest(1, 4, "four"),
        manifest(1, 0, ""),
    ] {
        assert_eq!(
            s.put_manifest(&rec).await.unwrap(),
            PutOutcome::Conflict { current: 5 }
        );
    }
    assert_eq!(s.get_manifest(&key(1)).await.unwrap().unwrap(), got);

    assert_eq!(
        s.put_manifest(&manifest(1, 9, "nine")).await.unwrap(),
        PutOutcome::Updated
    );
    let got = s.get_manifest(&key(1)).await.unwrap().unwrap();
    assert_eq!((got.sequence, got.body.as_slice()), (9, &b"nine"[..]));
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), Some(9));

    // Other slots are independent.
    assert_eq!(s.get_manifest(&key(2)).await.unwrap(), None);
    assert_eq!(
        s.put_manifest(&manifest(2, 1, "one")).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), Some(9));
}

async fn high_water_survives_delete(h: &Harness) {
    let s = &h.store;
    s.put_manifest(&manifest(1, 3, "three")).await.unwrap();
    assert!(s.delete_manifest(&key(1)).await.unwrap());
    assert!(!s.delete_manifest(&key(1)).await.unwrap());
    assert_eq!(s.get_manifest(&key(1)).await.unwrap(), None);
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), Some(3));

    // A replay of the deleted record, or anything older, is refused.
    for rec in [manifest(1, 3, "three"), manifest(1, 2, "two")] {
        assert_eq!(
            s.put_manifest(&rec).await.unwrap(),
            PutOutcome::Conflict { current: 3 }
        );
    }
    assert_eq!(s.get_manifest(&key(1)).await.unwrap(), None);

    // A newer one fills the empty slot again.
    assert_eq!(
        s.put_manifest(&manifest(1, 4, "four")).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(s.get_manifest(&key(1)).await.unwrap().unwrap().sequence, 4);
    assert_eq!(
        s.put_manifest(&manifest(1, 5, "five")).await.unwrap(),
        PutOutcome::Updated
    );
}

async fn pointers_have_their_own_sequence_space(h: &Harness) {
    let s = &h.store;
    let ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    let p1 = pointer(1, 1, ih, 7);
    assert_eq!(s.put_pointer(&p1).await.unwrap(), PutOutcome::Created);
    assert_eq!(s.get_pointer(&key(1)).await.unwrap(), Some(p1.clone()));
    assert_eq!(s.put_pointer(&p1).await.unwrap(), PutOutcome::Unchanged);

    // Identical means same info-hash text and signature.
    for other in [pointer(1, 1, ih, 8), pointer(1, 1, &ih.to_uppercase(), 7)] {
        assert_eq!(
            s.put_pointer(&other).await.unwrap(),
            PutOutcome::Conflict { current: 1 }
        );
    }
    assert_eq!(
        s.put_pointer(&pointer(1, 0, ih, 7)).await.unwrap(),
        PutOutcome::Conflict { current: 1 }
    );

    // A manifest far ahead for the same key neither blocks nor moves the pointer's mark.
    s.put_manifest(&manifest(1, 100, "m")).await.unwrap();
    let p2 = pointer(1, 2, ih, 9);
    assert_eq!(s.put_pointer(&p2).await.unwrap(), PutOutcome::Updated);
    assert_eq!(s.get_pointer(&key(1)).await.unwrap(), Some(p2));
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), Some(100));
    // ... and the pointer's mark does not block manifests.
    assert_eq!(
        s.put_manifest(&manifest(3, 1, "m")).await.unwrap(),
        PutOutcome::Created
    );
    s.put_pointer(&pointer(3, 50, ih, 1)).await.unwrap();
    assert_eq!(
        s.put_manifest(&manifest(3, 2, "m2")).await.unwrap(),
        PutOutcome::Updated
    );
    // A manifest delete leaves the pointer alone.
    assert!(s.delete_manifest(&key(1)).await.unwrap());
    assert_eq!(s.get_pointer(&key(1)).await.unwrap().unwrap().seq, 2);
}

async fn stats_count_live_rows(h: &Harness) {
    let s = &h.store;
    for k in 1..=3 {
        s.put_manifest(&manifest(k, 1, "m")).await.unwrap();
    }
    for k in 1..=2 {
        s.put_pointer(&pointer(k, 1, "ih", k)).await.unwrap();
    }
    s.put_manifest(&manifest(1, 2, "m2")).await.unwrap();
    let expect = |manifests, pointers| StoreStats {
        manifests,
        pointers,
        profiles: 0,
    };
    assert_eq!(s.stats().await.unwrap(), expect(3, 2));
    assert!(s.delete_manifest(&key(2)).await.unwrap());
    assert_eq!(s.stats().await.unwrap(), expect(2, 2));
    s.put_manifest(&manifest(2, 5, "back")).await.unwrap();
    assert_eq!(s.stats().await.unwrap(), expect(3, 2));
}

async fn extreme_values_round_trip(h: &Harness) {
    let s = &h.store;
    const MAX_SAFE: u64 = (1 << 53) - 1;
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let rec = ManifestRecord {
        key: key(1),
        sequence: MAX_SAFE,
        body: body.clone(),
        updated_at_ms: i64::MAX,
    };
    assert_eq!(s.put_manifest(&rec).await.unwrap(), PutOutcome::Created);
    let got = s.get_manifest(&key(1)).await.unwrap().unwrap();
    assert_eq!(
        (got.sequence, got.body, got.updated_at_ms),
        (MAX_SAFE, body, i64::MAX)
    );
    assert_eq!(s.put_manifest(&rec).await.unwrap(), PutOutcome::Unchanged);

    // Sequence 0 is a valid first write; an empty body is still a live body.
    assert_eq!(
        s.put_manifest(&manifest(2, 0, "")).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(s.get_manifest(&key(2)).await.unwrap().unwrap().body, b"");
    assert_eq!(
        s.put_manifest(&manifest(2, 0, "")).await.unwrap(),
        PutOutcome::Unchanged
    );

    // Out of range for the database: an error, never a panic or a wrapped value.
    let err = s
        .put_manifest(&manifest(3, u64::MAX, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    let err = s
        .put_pointer(&pointer(3, u64::MAX, "x", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(s.manifest_high_water(&key(3)).await.unwrap(), None);
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Races `2 × 64` tasks putting sequences 1..=64 (each twice, shuffled) into one empty slot,
/// for a few rounds, and checks that acknowledged writes never go backwards.
async fn race(
    put: Arc<dyn Fn(u8, u64) -> BoxFut<PutOutcome> + Send + Sync>,
    mark: Arc<dyn Fn(u8) -> BoxFut<Option<u64>> + Send + Sync>,
) {
    const TOP: u64 = 64;
    for round in 0..4u8 {
        let k = 200 + round;
        let mut seqs: Vec<u64> = (1..=TOP).chain(1..=TOP).collect();
        seqs.shuffle(&mut rand::thread_rng());
        let acked = Arc::new(AtomicU64::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(seqs.len()));
        let tasks: Vec<_> = seqs
            .into_iter()
            .map(|seq| {
                let (put, mark, acked, start) =
                    (put.clone(), mark.clone(), acked.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    // Every sequence acknowledged before this put started is a floor the
                    // store had already reached.
                    let floor = acked.load(Ordering::SeqCst);
                    let out = put(k, seq).await;
                    match out {
                        PutOutcome::Created | PutOutcome::Updated => {
                            assert!(seq > floor, "{out:?} for {seq} after {floor} was acked");
                            let now = mark(k).await.unwrap();
                            assert!(now >= seq, "mark {now} fell below acked {seq}");
                            acked.fetch_max(seq, Ordering::SeqCst);
                        }
                        PutOutcome::Unchanged => assert!(seq >= floor),
                        PutOutcome::Conflict { current } => {
                            assert!(current >= seq && current >= floor, "{out:?} for {seq}");
                        }
                    }
                    (seq, out)
                })
            })
            .collect();
        let mut written: HashMap<u64, usize> = HashMap::new();
        let mut created = 0;
        for t in tasks {
            let (seq, out) = t.await.unwrap();
            match out {
                PutOutcome::Created => {
                    created += 1;
                    *written.entry(seq).or_default() += 1;
                }
                PutOutcome::Updated => *written.entry(seq).or_default() += 1,
                PutOutcome::Unchanged | PutOutcome::Conflict { .. } => {}
            }
        }
        assert_eq!(created, 1, "exactly one write fills the empty slot");
        assert!(
            written.values().all(|&n| n == 1),
            "a sequence written twice"
        );
        assert!(written.contains_key(&TOP));
        assert_eq!(mark(k).await, Some(TOP));
    }
}

async fn concurrent_manifest_puts_never_regress(h: &Harness) {
    let (s1, s2, s3) = (h.store.clone(), h.store.clone(), h.store.clone());
    race(
        Arc::new(move |k, seq| {
            let s = s1.clone();
            Box::pin(async move {
                let rec = manifest(k, seq, &format!("body {seq}"));
                s.put_manifest(&rec).await.unwrap()
            })
        }),
        Arc::new(move |k| {
            let s = s2.clone();
            Box::pin(async move { s.manifest_high_water(&key(k)).await.unwrap() })
        }),
    )
    .await;
    for k in 200..204 {
        let got = s3.get_manifest(&key(k)).await.unwrap().unwrap();
        assert_eq!((got.sequence, got.body), (64, b"body 64".to_vec()));
    }
}

async fn concurrent_pointer_puts_never_regress(h: &Harness) {
    let (s1, s2) = (h.store.clone(), h.store.clone());
    race(
        Arc::new(move |k, seq| {
            let s = s1.clone();
            Box::pin(async move {
                let rec = pointer(k, seq, &format!("ih{seq}"), seq as u8);
                s.put_pointer(&rec).await.unwrap()
            })
        }),
        Arc::new(move |k| {
            let s = s2.clone();
            Box::pin(async move { s.get_pointer(&key(k)).await.unwrap().map(|p| p.seq) })
        }),
    )
    .await;
    let got = h.store.get_pointer(&key(200)).await.unwrap().unwrap();
    assert_eq!(got, pointer(200, 64, "ih64", 64));
}

async fn reopened_store_keeps_its_data(h: &Harness) {
    // A second store on the same database, dropped without `close()`: what it acknowledged
    // must be there for the next opener (which also re-runs the migrations).
    let first = store::open(&h.url, &opts()).await.unwrap();
    first.put_manifest(&manifest(1, 7, "seven")).await.unwrap();
    first.put_manifest(&manifest(2, 3, "gone")).await.unwrap();
    assert!(first.delete_manifest(&key(2)).await.unwrap());
    first.put_pointer(&pointer(1, 4, "ih", 4)).await.unwrap();
    drop(first);

    let second = store::open(&h.url, &opts()).await.unwrap();
    let got = second.get_manifest(&key(1)).await.unwrap().unwrap();
    assert_eq!((got.sequence, got.body), (7, b"seven".to_vec()));
    assert_eq!(second.manifest_high_water(&key(2)).await.unwrap(), Some(3));
    assert_eq!(
        second.put_manifest(&manifest(2, 3, "gone")).await.unwrap(),
        PutOutcome::Conflict { current: 3 }
    );
    assert_eq!(
        second.get_pointer(&key(1)).await.unwrap(),
        Some(pointer(1, 4, "ih", 4))
    );
    second.close().await;

    // The harness's own store sees the same data.
    assert_eq!(h.store.stats().await.unwrap().manifests, 1);
}

#[tokio::test]
async fn open_rejects_unknown_schemes() {
    for url in ["mysql://u:secret@localhost/db", "", "file:///tmp/x.db"] {
        let err = store::open(url, &opts()).await.err().unwrap();
        assert!(matches!(err, StoreError::BadUrl(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"));
    }
}

#[tokio::test]
async fn postgres_errors_never_echo_the_url() {
    // Malformed (bad port) and unreachable (port 1): neither message may carry the password.
    for url in [
        "postgres://mt:hunter2secret@127.0.0.1:notaport/db",
        "postgres://mt:hunter2secret@127.0.0.1:1/db",
    ] {
        let err = store::open(url, &opts()).await.err().unwrap();
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(e) = source {
            assert!(!e.to_string().contains("hunter2"), "{e}");
            source = e.source();
        }
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
}

#[tokio::test]
async fn sqlite_in_memory_store_works() {
    let s = store::open("sqlite::memory:", &opts()).await.unwrap();
    assert_eq!(
        s.put_manifest(&manifest(1, 1, "m")).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(s.get_manifest(&key(1)).await.unwrap().unwrap().sequence, 1);
    assert_eq!(s.stats().await.unwrap().manifests, 1);
    s.close().await;
}

#[tokio::test]
async fn sqlite_lookups_agree_on_the_serving_thread_and_through_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let open = |inline: bool| {
        let url = url.clone();
        async move {
            let opts = StoreOptions {
                sqlite_inline_lookups: inline,
                ..opts()
            };
            store::open(&url, &opts).await.unwrap()
        }
    };
    let a = open(true).await;
    a.put_manifest(&manifest(1, 5, "five")).await.unwrap();
    a.put_manifest(&manifest(2, 1, "gone")).await.unwrap();
    assert!(a.delete_manifest(&key(2)).await.unwrap());
    let inline_view = (
        a.get_manifest(&key(1)).await.unwrap(),
        a.get_manifest(&key(2)).await.unwrap(),
        a.get_manifest(&key(3)).await.unwrap(),
    );
    assert_eq!(inline_view.0.as_ref().unwrap().body, b"five");
    assert_eq!((&inline_view.1, &inline_view.2), (&None, &None));
    a.close().await;

    let b = open(false).await;
    let pool_view = (
        b.get_manifest(&key(1)).await.unwrap(),
        b.get_manifest(&key(2)).await.unwrap(),
        b.get_manifest(&key(3)).await.unwrap(),
    );
    assert_eq!(pool_view, inline_view);
    b.put_manifest(&manifest(1, 6, "six")).await.unwrap();
    assert_eq!(b.get_manifest(&key(1)).await.unwrap().unwrap().body, b"six");
    b.close().await;

    // A write is visible to the inline readers as soon as it is acknowledged.
    let c = open(true).await;
    assert_eq!(c.get_manifest(&key(1)).await.unwrap().unwrap().body, b"six");
    for seq in 7..40 {
        c.put_manifest(&manifest(1, seq, "n")).await.unwrap();
        assert_eq!(
            c.get_manifest(&key(1)).await.unwrap().unwrap().sequence,
            seq
        );
    }
    c.close().await;
}
