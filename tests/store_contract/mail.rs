//! The mailbox part of the storage contract (run on both backends by `contract!`).

use std::sync::Arc;

use megatorrent::store::{MailPut, MailQuota, MailRecord};

use super::{key, Harness};

fn mail(to: u8, n: u8, len: usize, now: i64, ttl: i64) -> MailRecord {
    MailRecord {
        recipient: key(to),
        id: format!("{n:02x}").repeat(16),
        envelope: vec![n; len],
        received_at_ms: now + i64::from(n),
        expires_at_ms: now + i64::from(n) + ttl,
    }
}

pub(crate) async fn mailbox_quota_list_ack_and_purge(h: &Harness) {
    let s = &h.store;
    let now = 1_700_000_000_000;
    let quota = MailQuota {
        max_messages: 3,
        max_bytes: 100,
    };
    assert_eq!(
        s.put_mail(&mail(1, 1, 40, now, 1000), &quota, now)
            .await
            .unwrap(),
        MailPut::Stored
    );
    assert_eq!(
        s.put_mail(&mail(1, 2, 40, now, 10), &quota, now)
            .await
            .unwrap(),
        MailPut::Stored
    );
    // 80 + 40 bytes is over the byte quota.
    assert_eq!(
        s.put_mail(&mail(1, 3, 40, now, 1000), &quota, now)
            .await
            .unwrap(),
        MailPut::Full
    );
    assert_eq!(
        s.put_mail(&mail(1, 3, 20, now, 1000), &quota, now)
            .await
            .unwrap(),
        MailPut::Stored
    );
    // Three messages is the count quota; another recipient is unaffected.
    assert_eq!(
        s.put_mail(&mail(1, 4, 1, now, 1000), &quota, now)
            .await
            .unwrap(),
        MailPut::Full
    );
    assert_eq!(
        s.put_mail(&mail(2, 5, 1, now, 1000), &quota, now)
            .await
            .unwrap(),
        MailPut::Stored
    );
    // Totals over every mailbox: 40 + 40 + 20 + 1 bytes in four messages; at now + 20 the
    // second message (ttl 10) has expired.
    let t = s.mail_totals(now).await.unwrap();
    assert_eq!((t.messages, t.bytes), (4, 101));
    let t = s.mail_totals(now + 20).await.unwrap();
    assert_eq!((t.messages, t.bytes), (3, 61));
    let listed = s.list_mail(&key(1), now).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, vec!["01".repeat(16), "02".repeat(16), "03".repeat(16)]);
    assert_eq!(listed[0].size, 40);
    assert_eq!(listed[0].received_at_ms, now + 1);
    assert_eq!(listed[0].expires_at_ms, now + 1001);
    assert_eq!(
        s.get_mail(&key(1), &"02".repeat(16), now).await.unwrap(),
        Some(vec![2; 40])
    );
    assert_eq!(
        s.get_mail(&key(2), &"02".repeat(16), now).await.unwrap(),
        None
    );
    // Message 2 expires at now + 12: invisible after, and expired messages leave the quota.
    let later = now + 100;
    assert_eq!(
        s.get_mail(&key(1), &"02".repeat(16), later).await.unwrap(),
        None
    );
    assert_eq!(s.list_mail(&key(1), later).await.unwrap().len(), 2);
    assert_eq!(
        s.put_mail(&mail(1, 6, 1, later, 1000), &quota, later)
            .await
            .unwrap(),
        MailPut::Stored
    );
    assert_eq!(s.purge_mail(later).await.unwrap(), 1);
    assert_eq!(s.list_mail(&key(1), i64::MIN).await.unwrap().len(), 3);
    // Ack deletes, once, and only in the right mailbox.
    assert!(!s.ack_mail(&key(2), &"01".repeat(16)).await.unwrap());
    assert!(s.ack_mail(&key(1), &"01".repeat(16)).await.unwrap());
    assert!(!s.ack_mail(&key(1), &"01".repeat(16)).await.unwrap());
    assert_eq!(s.list_mail(&key(1), later).await.unwrap().len(), 2);
    assert_eq!(s.purge_mail(i64::MAX).await.unwrap(), 3);
    assert!(s.list_mail(&key(2), i64::MIN).await.unwrap().is_empty());
}

pub(crate) async fn mailbox_nonces_are_single_use(h: &Harness) {
    let s = &h.store;
    let n = "0123456789abcdef";
    assert!(s.use_mail_nonce(&key(1), n, 2000).await.unwrap());
    assert!(!s.use_mail_nonce(&key(1), n, 2000).await.unwrap());
    assert!(s.use_mail_nonce(&key(2), n, 2000).await.unwrap());
    // Purging forgets expired nonces only.
    s.purge_mail(1999).await.unwrap();
    assert!(!s.use_mail_nonce(&key(1), n, 2000).await.unwrap());
    s.purge_mail(2000).await.unwrap();
    assert!(s.use_mail_nonce(&key(1), n, 3000).await.unwrap());
}

pub(crate) async fn concurrent_mail_puts_respect_the_quota(h: &Harness) {
    let quota = MailQuota {
        max_messages: 5,
        max_bytes: 1 << 20,
    };
    let now = 1_700_000_000_000;
    let mut tasks = Vec::new();
    for n in 0..20u8 {
        let s = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            s.put_mail(&mail(9, n, 8, now, 1000), &quota, now)
                .await
                .unwrap()
        }));
    }
    let mut stored = 0;
    for t in tasks {
        if t.await.unwrap() == MailPut::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 5);
    assert_eq!(h.store.list_mail(&key(9), now).await.unwrap().len(), 5);
}
