//! The producer's sender thread: takes batches off the partition queues
//! and appends them, one at a time per partition, in order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::Error;
use crate::producer::Shared;
use crate::producer::accumulator::{PartitionQueue, PendingBatch, fail_all};
use crate::storage::{AppendOptions, ProducerBatch};

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
            for batch in taken.drain(..) {
                send_batch(shared, &queue, batch);
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

/// Appends one batch and completes its records, without taking the
/// queue's lock: each time the sender takes it, the sending threads find it
/// gone from their cache.
fn send_batch(shared: &Shared, queue: &Arc<PartitionQueue>, mut batch: PendingBatch) {
    let base_sequence = queue.next_sequence.load(Ordering::Relaxed);
    let record_count = batch.record_count;
    let mut options = AppendOptions::default();
    if let Some((producer_id, producer_epoch)) = shared.identity {
        options = options.producer(ProducerBatch {
            producer_id,
            producer_epoch,
            base_sequence,
        });
    }
    let outcome = queue.log.append_records(
        &mut batch.bytes,
        record_count,
        batch.base_timestamp,
        batch.max_timestamp,
        &options,
    );
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
        let next = if base_sequence > i32::MAX - record_count {
            record_count - (i32::MAX - base_sequence) - 1
        } else {
            base_sequence + record_count
        };
        queue.next_sequence.store(next, Ordering::Relaxed);
    }
    batch.completion.complete(outcome);
    shared.recycle(batch.bytes);
}
