//! The profile part of the storage contract (run on both backends by `contract!`).

use std::sync::Arc;

use megatorrent::store::{ProfileRecord, PutOutcome};

use super::{key, race, Harness};

const NOW: i64 = 1_700_000_000_000;
const TTL: i64 = 7 * 86_400_000;

fn profile(k: u8, sequence: u64, body: &str, now: i64) -> ProfileRecord {
    ProfileRecord {
        key: key(k),
        sequence,
        body: body.as_bytes().to_vec(),
        updated_at_ms: now,
        expires_at_ms: now + TTL,
    }
}

pub(crate) async fn profile_outcomes_and_expiry(h: &Harness) {
    let s = &h.store;
    assert_eq!(s.get_profile(&key(1), NOW).await.unwrap(), None);
    assert_eq!(s.profile_high_water(&key(1)).await.unwrap(), None);
    let put = |rec: ProfileRecord| async move { s.put_profile(&rec).await.unwrap() };
    assert_eq!(put(profile(1, 2, "a", NOW)).await, PutOutcome::Created);
    assert_eq!(
        put(profile(1, 2, "a", NOW + 1)).await,
        PutOutcome::Unchanged
    );
    assert_eq!(
        put(profile(1, 2, "b", NOW)).await,
        PutOutcome::Conflict { current: 2 }
    );
    assert_eq!(
        put(profile(1, 1, "a", NOW)).await,
        PutOutcome::Conflict { current: 2 }
    );
    assert_eq!(put(profile(1, 3, "c", NOW + 10)).await, PutOutcome::Updated);
    let got = s.get_profile(&key(1), NOW + 10).await.unwrap().unwrap();
    assert_eq!(
        (got.sequence, got.body.as_slice(), got.updated_at_ms),
        (3, &b"c"[..], NOW + 10)
    );
    assert_eq!(got.expires_at_ms, NOW + 10 + TTL);
    // Another key is another slot; manifests are another sequence space.
    assert_eq!(put(profile(2, 1, "x", NOW)).await, PutOutcome::Created);
    assert_eq!(s.manifest_high_water(&key(1)).await.unwrap(), None);

    // Expired (not yet purged): invisible, and the same document is no longer "unchanged".
    let later = NOW + 10 + TTL;
    assert_eq!(s.get_profile(&key(1), later).await.unwrap(), None);
    assert_eq!(
        put(profile(1, 3, "c", later)).await,
        PutOutcome::Conflict { current: 3 }
    );
    assert_eq!(s.stats().await.unwrap().profiles, 2);
    // The purge drops the documents but keeps the marks.
    assert_eq!(s.purge_profiles(later).await.unwrap(), 2);
    assert_eq!(s.purge_profiles(later).await.unwrap(), 0);
    assert_eq!(s.stats().await.unwrap().profiles, 0);
    assert_eq!(s.get_profile(&key(1), NOW).await.unwrap(), None);
    assert_eq!(s.profile_high_water(&key(1)).await.unwrap(), Some(3));
    for seq in [1, 3] {
        assert_eq!(
            put(profile(1, seq, "c", later)).await,
            PutOutcome::Conflict { current: 3 }
        );
    }
    // A higher sequence brings it back as a new record with a fresh TTL.
    assert_eq!(put(profile(1, 4, "d", later)).await, PutOutcome::Created);
    let got = s.get_profile(&key(1), later).await.unwrap().unwrap();
    assert_eq!((got.sequence, got.expires_at_ms), (4, later + TTL));
    assert_eq!(s.stats().await.unwrap().profiles, 1);
}

pub(crate) async fn concurrent_profile_puts_never_regress(h: &Harness) {
    let (s1, s2) = (h.store.clone(), h.store.clone());
    race(
        Arc::new(move |k, seq| {
            let s = s1.clone();
            Box::pin(async move {
                let rec = profile(k, seq, &format!("p{seq}"), NOW);
                s.put_profile(&rec).await.unwrap()
            })
        }),
        Arc::new(move |k| {
            let s = s2.clone();
            Box::pin(async move { s.profile_high_water(&key(k)).await.unwrap() })
        }),
    )
    .await;
    for k in 200..204 {
        let got = h.store.get_profile(&key(k), NOW).await.unwrap().unwrap();
        assert_eq!((got.sequence, got.body), (64, b"p64".to_vec()));
    }
}
