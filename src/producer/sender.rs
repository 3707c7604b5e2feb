//! The producer's sender thread: takes batches off the partition queues
//! and appends them, in order per partition.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::producer::Shared;
use crate::producer::accumulator::{PartitionQueue, PendingBatch, fail_all};
use crate::storage::group::GroupBatch;
use crate::storage::producer_state::sequence_after;
use crate::storage::{AppendInfo, ProducerBatch};

/// Bytes of full batches the sender takes from one partition per visit,
/// as Kafka's sender packs at most `max.request.size` (1 MiB) into one
/// request: other partitions get their turn in between.
const MAX_BYTES_PER_VISIT: usize = 1 << 20;

pub(crate) fn run(shared: &Shared) {
    // If this thread dies, nobody may wait forever on a batch.
    struct FailPending<'a>(&'a Shared);
    impl Drop for FailPending<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.closing.store(true, Ordering::SeqCst);
                let error = Error::Closed;
                for queue in self.0.all_queues() {
                    fail_all(&queue, &error);
                }
            }
        }
    }
    let _guard = FailPending(shared);
    let linger_ms = i64::try_from(shared.config.linger.as_millis()).unwrap_or(i64::MAX);
    // The list of queues to visit changes hands with the shared one each
    // round, so neither side allocates a list per batch.
    let mut queues: Vec<Arc<PartitionQueue>> = Vec::new();
    let mut still_pending: Vec<Arc<PartitionQueue>> = Vec::new();
    let mut taken: Vec<PendingBatch> = Vec::new();
    loop {
        shared.wake.take_signal();
        let closing = shared.closing.load(Ordering::SeqCst);
        let flushing = closing || shared.flush_requests.load(Ordering::SeqCst) > 0;
        let now_ms = shared.log.clock().now_ms();
        std::mem::swap(&mut queues, &mut *shared.pending.lock());
        let mut next_deadline_ms = i64::MAX;
        let mut sent_any = false;
        for queue in queues.drain(..) {
            let keep = {
                let mut state = queue.state.lock();
                // The full batches waiting, oldest first, up to a request's
                // worth (Kafka's `max.request.size`), then the open one if
                // it is due: one turn of the lock for a backlog.
                let mut bytes = 0;
                while bytes < MAX_BYTES_PER_VISIT
                    && let Some(batch) = state.ready.pop_front()
                {
                    bytes += batch.bytes.len();
                    taken.push(batch);
                }
                if state.ready.is_empty() && bytes < MAX_BYTES_PER_VISIT {
                    let due = state.open.as_ref().is_some_and(|open| {
                        flushing
                            || linger_ms == 0
                            || now_ms >= open.created_ms.saturating_add(linger_ms)
                    });
                    if due {
                        taken.extend(state.open.take());
                    }
                }
                if let Some(open) = &state.open {
                    next_deadline_ms =
                        next_deadline_ms.min(open.created_ms.saturating_add(linger_ms));
                }
                if let Some(last) = taken.last() {
                    // The batches go in order, so the last one completing
                    // means they all did. Left in place once appended:
                    // waiting on a completed batch returns at once, and
                    // clearing it would cost another turn of this lock.
                    state.in_flight = Some(Arc::clone(&last.completion));
                }
                // A queue that just gave a batch likely has the next one
                // filling: keeping it listed spares the sending thread
                // listing it again.
                let keep = !taken.is_empty() || !state.is_empty();
                state.enlisted = keep;
                keep
            };
            if !taken.is_empty() {
                send_batches(shared, &queue, &mut taken);
                sent_any = true;
            }
            if keep {
                still_pending.push(queue);
            }
        }
        if !still_pending.is_empty() {
            shared.pending.lock().append(&mut still_pending);
        }
        if sent_any {
            continue;
        }
        if closing && shared.pending.lock().is_empty() {
            return;
        }
        let clock = shared.log.clock();
        shared.wake.wait_until(&**clock, next_deadline_ms, || {
            shared.wake.is_signalled() || shared.closing.load(Ordering::SeqCst)
        });
    }
}

/// Appends the batches taken from one partition, in order, with one write
/// where the log can (see `storage::group`), and completes their records.
/// No queue lock is taken: each time the sender takes it, the sending
/// threads find it gone from their cache.
fn send_batches(shared: &Shared, queue: &Arc<PartitionQueue>, batches: &mut Vec<PendingBatch>) {
    // Each batch numbered as if the ones before it were appended; if one is
    // refused, the ones after it are refused as out of order, and the next
    // round numbers from the refused one again.
    let mut sequence = queue.next_sequence.load(Ordering::Relaxed);
    let mut sequences = Vec::with_capacity(batches.len());
    let mut group: Vec<GroupBatch<'_>> = batches
        .iter_mut()
        .map(|batch| {
            sequences.push(sequence);
            let producer = shared
                .identity
                .map(|(producer_id, producer_epoch)| ProducerBatch {
                    producer_id,
                    producer_epoch,
                    base_sequence: sequence,
                });
            sequence = sequence_after(sequence, batch.record_count);
            GroupBatch {
                bytes: &mut batch.bytes,
                record_count: batch.record_count,
                base_timestamp: batch.base_timestamp,
                max_timestamp: batch.max_timestamp,
                producer,
            }
        })
        .collect();
    let outcomes = queue.log.append_records_group(&mut group);
    drop(group);
    for ((batch, outcome), base_sequence) in batches.drain(..).zip(outcomes).zip(sequences) {
        complete_batch(shared, queue, batch, base_sequence, outcome);
    }
}

/// Releases an appended (or refused) batch's memory and completes its
/// records.
fn complete_batch(
    shared: &Shared,
    queue: &PartitionQueue,
    mut batch: PendingBatch,
    base_sequence: i32,
    outcome: Result<AppendInfo>,
) {
    shared
        .buffered_bytes
        .fetch_sub(batch.size_bytes, Ordering::SeqCst);
    shared.memory_freed.notify();
    match &outcome {
        Ok(info) => {
            for (index, timestamp_ms, callback) in batch.callbacks.drain(..) {
                callback(Ok(batch.completion.metadata(info, index, timestamp_ms)));
            }
        }
        Err(err) => {
            for (_, _, callback) in batch.callbacks.drain(..) {
                callback(Err(err.duplicate()));
            }
        }
    }
    if outcome.is_ok() {
        // Sequences advance only for batches the partition took, so a
        // refused batch leaves no gap.
        queue.next_sequence.store(
            sequence_after(base_sequence, batch.record_count),
            Ordering::Relaxed,
        );
    }
    batch.completion.complete(outcome);
    shared.recycle(batch.bytes);
}
