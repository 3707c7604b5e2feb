//! Records waiting to be appended, grouped per partition into batches, and
//! the completions that senders wait on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::record::batch::BATCH_HEADER_LEN;
use crate::record::encode::encode_record;
use crate::storage::{AppendInfo, PartitionLog};

/// What a record's sender learns once its batch is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition the record went to.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp: its create time, or the append time on
    /// `LogAppendTime` topics.
    pub timestamp_ms: i64,
}

/// Called once with a record's outcome, on the producer's sender thread.
pub(crate) type Callback = Box<dyn FnOnce(Result<RecordMetadata>) + Send>;

/// The outcome of one batch, shared by the handles of its records.
pub(crate) struct BatchCompletion {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    outcome: Mutex<Option<Result<AppendInfo>>>,
    /// Set with the outcome, for waits to watch without the lock.
    completed: AtomicBool,
    done: Condvar,
}

impl BatchCompletion {
    pub(crate) fn new(topic: Arc<str>, partition: u32) -> Arc<Self> {
        Arc::new(BatchCompletion {
            topic,
            partition,
            outcome: Mutex::new(None),
            completed: AtomicBool::new(false),
            done: Condvar::new(),
        })
    }

    pub(crate) fn complete(&self, outcome: Result<AppendInfo>) {
        let mut slot = self.outcome.lock();
        if slot.is_none() {
            *slot = Some(outcome);
        }
        self.completed.store(true, Ordering::Release);
        self.done.notify_all();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }

    /// Blocks until the batch is appended (or failed).
    pub(crate) fn wait(&self) -> Result<AppendInfo> {
        let mut slot = self.outcome.lock();
        loop {
            match &*slot {
                Some(Ok(info)) => return Ok(*info),
                Some(Err(err)) => return Err(err.duplicate()),
                None => self.done.wait(&mut slot),
            }
        }
    }

    /// The metadata of the record at `index` in the batch.
    pub(crate) fn metadata(
        &self,
        info: &AppendInfo,
        index: u32,
        timestamp_ms: i64,
    ) -> RecordMetadata {
        RecordMetadata {
            topic: Arc::clone(&self.topic),
            partition: self.partition,
            offset: info.base_offset + i64::from(index),
            timestamp_ms: info.log_append_time_ms.unwrap_or(timestamp_ms),
        }
    }
}

/// How far ahead of its data a pending batch's buffer is kept written.
const TOUCH_AHEAD_BYTES: usize = 2048;

/// A batch being filled or waiting for the sender. Records are encoded into
/// it as they are sent (as Kafka's producer does), so the sender only fills
/// in the header, checksums and appends, and no record crosses threads.
pub(crate) struct PendingBatch {
    /// Room for the batch header, then the encoded records.
    pub(crate) bytes: Vec<u8>,
    pub(crate) record_count: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    /// What the batch counts against the producer's buffer memory.
    pub(crate) size_bytes: usize,
    pub(crate) created_ms: i64,
    pub(crate) completion: Arc<BatchCompletion>,
    pub(crate) callbacks: Vec<(u32, i64, Callback)>,
    /// How far the buffer has been written ahead of its data (see `push`).
    touched: usize,
}

impl PendingBatch {
    /// A batch to be encoded into `bytes` (empty, capacity reserved).
    pub(crate) fn new(
        mut bytes: Vec<u8>,
        created_ms: i64,
        completion: Arc<BatchCompletion>,
    ) -> Self {
        bytes.clear();
        bytes.resize(BATCH_HEADER_LEN, 0);
        PendingBatch {
            bytes,
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            size_bytes: 0,
            created_ms,
            completion,
            callbacks: Vec::new(),
            touched: 0,
        }
    }

    /// Encodes `record` (with its final timestamp) as the next one and
    /// returns its index in the batch.
    pub(crate) fn push(&mut self, record: &Record, timestamp_ms: i64) -> u32 {
        if self.record_count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let index = self.record_count;
        if self.bytes.len() + TOUCH_AHEAD_BYTES > self.touched {
            self.touch_ahead();
        }
        // Timestamps are checked non-negative, so the delta can not overflow.
        encode_record(
            &mut self.bytes,
            record,
            timestamp_ms - self.base_timestamp,
            i64::from(index),
        );
        self.record_count += 1;
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// Writes zeros over the next stretch of spare capacity. The buffer's
    /// memory was last held by the sender thread's core; a record written
    /// into lines not yet ours waits on each line in turn (the queue's
    /// unlock drains the stores), while one sweep ahead fetches many lines
    /// at once.
    #[cold]
    fn touch_ahead(&mut self) {
        let from = self.touched.max(self.bytes.len()) - self.bytes.len();
        let spare = self.bytes.spare_capacity_mut();
        let to = (from + TOUCH_AHEAD_BYTES * 2).min(spare.len());
        if from < to {
            spare[from..to].fill(std::mem::MaybeUninit::new(0));
        }
        self.touched = self.bytes.len() + to;
    }

    /// Removes the last record (it did not fit after all).
    pub(crate) fn pop_to(&mut self, len: usize, record_count: i32, max_timestamp: i64) {
        self.bytes.truncate(len);
        self.record_count = record_count;
        self.max_timestamp = max_timestamp;
    }
}

/// The queue of one partition.
pub(crate) struct QueueState {
    /// The batch new records go into.
    pub(crate) open: Option<PendingBatch>,
    /// Full batches, oldest first.
    pub(crate) ready: VecDeque<PendingBatch>,
    /// Whether the queue is on the sender's list of queues to visit.
    pub(crate) enlisted: bool,
    /// The batch the sender took last (completed or not), for `flush`.
    pub(crate) in_flight: Option<Arc<BatchCompletion>>,
}

impl QueueState {
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_none() && self.ready.is_empty()
    }
}

pub(crate) struct PartitionQueue {
    pub(crate) log: Arc<PartitionLog>,
    pub(crate) state: Mutex<QueueState>,
    /// Sequence number of the next batch's first record (idempotence).
    /// Only the sender thread reads and writes it.
    pub(crate) next_sequence: AtomicI32,
}

impl PartitionQueue {
    pub(crate) fn new(log: Arc<PartitionLog>) -> Self {
        PartitionQueue {
            log,
            state: Mutex::new(QueueState {
                open: None,
                ready: VecDeque::new(),
                enlisted: false,
                in_flight: None,
            }),
            next_sequence: AtomicI32::new(0),
        }
    }
}

/// Fails every batch still queued (the producer is closing after its
/// sender died, or the log went away).
pub(crate) fn fail_all(queue: &PartitionQueue, error: &Error) {
    let batches: Vec<PendingBatch> = {
        let mut state = queue.state.lock();
        let mut batches: Vec<_> = state.ready.drain(..).collect();
        batches.extend(state.open.take());
        batches
    };
    for batch in batches {
        batch.completion.complete(Err(error.duplicate()));
        for (_, _, callback) in batch.callbacks {
            callback(Err(error.duplicate()));
        }
    }
}
