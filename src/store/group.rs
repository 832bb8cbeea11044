//! Group commit for manifest writes.
//!
//! Every [`Store::put_manifest`](super::Store::put_manifest) call is queued to one writer
//! task per store. Whenever that task is free it takes whatever is queued (at most
//! [`MAX_BATCH_WRITES`] writes and [`MAX_BATCH_BYTES`] of bodies) and applies it in **one**
//! transaction with one commit (one fsync), then answers each caller with its own outcome.
//! Nothing waits for a batch to fill: when the server is idle a batch is the single write
//! that just arrived, so an idle write costs what it did before.
//!
//! Per-write semantics are those of a sequential `put_manifest`: the writes of a batch are
//! classified one after the other in arrival order ([`plan_batch`]), so two writes for the
//! same key in one batch behave exactly as if the second came after the first committed.
//!
//! A caller is answered only after the batch's commit returned. If the batch transaction
//! fails, nothing in it was committed and nothing is acknowledged from it: every write of
//! the failed batch is retried on its own (one transaction each), so one bad write cannot
//! fail its neighbours, and each caller gets the outcome (or error) of its own retry.
//!
//! The queue holds at most [`QUEUE_CAPACITY`] writes. A caller finding it full waits for
//! room up to the store's acquire timeout (`database.acquire_timeout_secs`) and then fails
//! with [`StoreError::Busy`] (HTTP `503` with error code `store-busy`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, oneshot};

use super::slot::{gave_up, plan, seq_to_db, Plan, Slot};
use super::{ManifestRecord, PutOutcome, StoreError};
use crate::proto::PublicKey;

/// Most writes applied in one transaction.
pub const MAX_BATCH_WRITES: usize = 256;
/// Most manifest body bytes applied in one transaction (a single larger write still goes
/// through, alone).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most writes waiting for the writer task.
pub const QUEUE_CAPACITY: usize = 4096;
/// Attempts of one batch when a slot changed between the read and the write (only a
/// foreign writer, such as another replica on the same PostgreSQL, can cause that).
const BATCH_ATTEMPTS: usize = 3;

/// A stored manifest row as read inside the batch transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    /// The high-water mark.
    pub(super) sequence: u64,
    /// The live body, `None` for a tombstone.
    pub(super) body: Option<Vec<u8>>,
}

/// What one batch has to do, decided from the rows its keys had when it started.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BatchPlan {
    /// One outcome per record, in order.
    pub(super) outcomes: Vec<PutOutcome>,
    /// Records (indexes) to insert: keys without a row. At most one per key, key order.
    pub(super) inserts: Vec<usize>,
    /// Records (indexes) that overwrite an existing row. At most one per key, key order.
    pub(super) updates: Vec<usize>,
}

/// Classify `recs` in order against `rows` (the rows of their keys, absent = never
/// written), as if each were a separate `put_manifest` after the previous one.
pub(super) fn plan_batch(recs: &[ManifestRecord], rows: &HashMap<PublicKey, Row>) -> BatchPlan {
    struct State<'a> {
        sequence: u64,
        body: Option<&'a [u8]>,
        had_row: bool,
        winner: Option<usize>,
    }
    let mut state: HashMap<PublicKey, State<'_>> = HashMap::with_capacity(recs.len());
    let mut outcomes = Vec::with_capacity(recs.len());
    for (i, rec) in recs.iter().enumerate() {
        let st = state
            .entry(rec.key)
            .or_insert_with(|| match rows.get(&rec.key) {
                Some(r) => State {
                    sequence: r.sequence,
                    body: r.body.as_deref(),
                    had_row: true,
                    winner: None,
                },
                None => State {
                    sequence: 0,
                    body: None,
                    had_row: false,
                    winner: None,
                },
            });
        let slot = (st.had_row || st.winner.is_some()).then(|| Slot {
            sequence: st.sequence,
            live: st.body.is_some(),
            same: st.body == Some(&rec.body[..]),
        });
        let outcome = match plan(rec.sequence, slot) {
            Plan::Insert => PutOutcome::Created,
            Plan::Replace { was_live: true } => PutOutcome::Updated,
            Plan::Replace { was_live: false } => PutOutcome::Created,
            Plan::Done(outcome) => outcome,
        };
        if matches!(outcome, PutOutcome::Created | PutOutcome::Updated) {
            st.sequence = rec.sequence;
            st.body = Some(&rec.body);
            st.winner = Some(i);
        }
        outcomes.push(outcome);
    }
    let mut winners: Vec<(PublicKey, bool, usize)> = state
        .into_iter()
        .filter_map(|(key, st)| st.winner.map(|w| (key, st.had_row, w)))
        .collect();
    winners.sort_unstable_by_key(|w| w.0);
    let (mut inserts, mut updates) = (Vec::new(), Vec::new());
    for (_, had_row, i) in winners {
        if had_row { &mut updates } else { &mut inserts }.push(i);
    }
    BatchPlan {
        outcomes,
        inserts,
        updates,
    }
}

/// A backend's batch write.
#[async_trait]
pub(super) trait ManifestWriter: Send + Sync + 'static {
    /// Apply `recs` in order in one transaction: `Ok(Some(outcomes))` (one per record) once
    /// committed, `Ok(None)` if a slot changed under the transaction and it was rolled back
    /// (try again), `Err` if it failed (nothing committed).
    async fn write_manifests(
        &self,
        recs: &[ManifestRecord],
    ) -> Result<Option<Vec<PutOutcome>>, StoreError>;
}

/// Group-commit counters, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batch transactions committed (including single-write retries).
    pub batches: u64,
    /// Writes committed by them.
    pub writes: u64,
    /// Batches that failed and were retried one write at a time.
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    failed_batches: AtomicU64,
}

type Reply = oneshot::Sender<Result<PutOutcome, StoreError>>;

struct Job {
    rec: ManifestRecord,
    reply: Reply,
}

/// The handle the store keeps: queues writes to its writer task.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    wait: Duration,
    counters: Arc<Counters>,
}

impl GroupCommit {
    /// Start the writer task (on the current Tokio runtime). A caller waits at most `wait`
    /// for room in a full queue.
    pub(super) fn spawn<W: ManifestWriter>(writer: W, wait: Duration) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::<Counters>::default();
        tokio::spawn(run(writer, jobs, Arc::clone(&counters)));
        Self {
            queue,
            wait,
            counters,
        }
    }

    /// Queue `rec` and wait for its committed outcome.
    pub(super) async fn put(&self, rec: &ManifestRecord) -> Result<PutOutcome, StoreError> {
        // A sequence the database cannot hold fails here, on its own, not its whole batch.
        seq_to_db(rec.sequence)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            rec: rec.clone(),
            reply,
        };
        match self.queue.send_timeout(job, self.wait).await {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => return Err(StoreError::Busy),
            Err(SendTimeoutError::Closed(_)) => return Err(StoreError::WriterStopped),
        }
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// The counters so far.
    pub(super) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// The writer task: until every handle is dropped, take what is queued and commit it.
async fn run<W: ManifestWriter>(writer: W, mut jobs: mpsc::Receiver<Job>, counters: Arc<Counters>) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut bytes = first.rec.body.len();
        let (mut recs, mut replies) = (vec![first.rec], vec![first.reply]);
        while recs.len() < MAX_BATCH_WRITES {
            let Ok(job) = jobs.try_recv() else { break };
            bytes = bytes.saturating_add(job.rec.body.len());
            if bytes > MAX_BATCH_BYTES {
                carried = Some(job);
                break;
            }
            recs.push(job.rec);
            replies.push(job.reply);
        }
        commit(&writer, &recs, replies, &counters).await;
    }
}

/// Commit one batch and answer its callers; on failure retry each write on its own.
async fn commit<W: ManifestWriter>(
    writer: &W,
    recs: &[ManifestRecord],
    replies: Vec<Reply>,
    counters: &Counters,
) {
    match attempt(writer, recs, counters).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The caller may have gone away (client disconnected): the write stands.
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) if recs.len() == 1 => {
            let _ = replies.into_iter().next().map(|r| r.send(Err(e)));
        }
        Err(e) => {
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, writes = recs.len(), "manifest batch failed; retrying its writes one by one");
            for (rec, reply) in recs.iter().zip(replies) {
                let one = attempt(writer, std::slice::from_ref(rec), counters).await;
                let _ = reply.send(one.and_then(|mut o| o.pop().ok_or_else(lost)));
            }
        }
    }
}

/// One batch transaction, retried while a foreign writer changes its slots.
async fn attempt<W: ManifestWriter>(
    writer: &W,
    recs: &[ManifestRecord],
    counters: &Counters,
) -> Result<Vec<PutOutcome>, StoreError> {
    for _ in 0..BATCH_ATTEMPTS {
        if let Some(outcomes) = writer.write_manifests(recs).await? {
            if outcomes.len() != recs.len() {
                return Err(lost());
            }
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters
                .writes
                .fetch_add(recs.len() as u64, Ordering::Relaxed);
            return Ok(outcomes);
        }
    }
    Err(gave_up("manifest", BATCH_ATTEMPTS))
}

fn lost() -> StoreError {
    StoreError::Corrupt("a manifest batch returned the wrong number of outcomes".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: u8, sequence: u64, body: &[u8]) -> ManifestRecord {
        ManifestRecord {
            key: PublicKey::from([k; 32]),
            sequence,
            body: body.to_vec(),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_batch_classifies_in_arrival_order() {
        let mut rows = HashMap::new();
        rows.insert(
            PublicKey::from([2; 32]),
            Row {
                sequence: 5,
                body: Some(b"five".to_vec()),
            },
        );
        rows.insert(
            PublicKey::from([3; 32]),
            Row {
                sequence: 7,
                body: None,
            },
        );
        let recs = [
            rec(1, 1, b"a"),    // new key
            rec(1, 1, b"a"),    // same again: unchanged
            rec(1, 1, b"b"),    // same sequence, other bytes
            rec(2, 5, b"five"), // stored: unchanged
            rec(2, 6, b"six"),  // above: updated
            rec(2, 8, b"8"),    // above again: updated (the winner)
            rec(2, 7, b"7"),    // now below
            rec(3, 7, b"x"),    // tombstone mark
            rec(3, 9, b"x"),    // over a tombstone: created
            rec(1, 2, b"c"),    // updated (the winner for key 1)
        ];
        let p = plan_batch(&recs, &rows);
        use PutOutcome::*;
        assert_eq!(
            p.outcomes,
            vec![
                Created,
                Unchanged,
                Conflict { current: 1 },
                Unchanged,
                Updated,
                Updated,
                Conflict { current: 8 },
                Conflict { current: 7 },
                Created,
                Updated,
            ]
        );
        assert_eq!(p.inserts, vec![9]);
        assert_eq!(p.updates, vec![5, 8]);
    }

    /// Fails every batch holding a body `bad`, records each transaction's size.
    struct Flaky(Arc<std::sync::Mutex<Vec<usize>>>);

    #[async_trait]
    impl ManifestWriter for Flaky {
        async fn write_manifests(
            &self,
            recs: &[ManifestRecord],
        ) -> Result<Option<Vec<PutOutcome>>, StoreError> {
            if recs.iter().any(|r| r.body == b"bad") {
                return Err(StoreError::Corrupt("bad".into()));
            }
            self.0.lock().unwrap().push(recs.len());
            Ok(Some(vec![PutOutcome::Created; recs.len()]))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_acknowledges_nothing_and_retries_singly() {
        let sizes = Arc::<std::sync::Mutex<Vec<usize>>>::default();
        let g = GroupCommit::spawn(Flaky(Arc::clone(&sizes)), Duration::from_secs(600));
        let start = Arc::new(tokio::sync::Barrier::new(300));
        let tasks: Vec<_> = (0..300u32)
            .map(|i| {
                let (g, start) = (g.clone(), Arc::clone(&start));
                let body: &[u8] = if i == 150 { b"bad" } else { b"ok" };
                let r = rec(u8::try_from(i % 200).unwrap(), u64::from(i), body);
                tokio::spawn(async move {
                    start.wait().await;
                    (i, g.put(&r).await)
                })
            })
            .collect();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            match i {
                150 => assert!(matches!(out, Err(StoreError::Corrupt(_))), "{out:?}"),
                _ => assert_eq!(out.unwrap(), PutOutcome::Created),
            }
        }
        let stats = g.stats();
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 299, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= MAX_BATCH_WRITES));
        assert_eq!(stats.writes, 299);
        assert_eq!(stats.batches, sizes.len() as u64);
    }
}
