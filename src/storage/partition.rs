//! One partition's log: an ordered list of segments, the last one active.
//! The state, appends (with idempotence and conditional checks) and rolls
//! live here; flushing and closing in `flush.rs`, truncation in
//! `truncate.rs`, reads in `read.rs`, opening and crash recovery in
//! `load.rs`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};

use crate::clock::Clock;
use crate::config::{CleanupPolicy, Durability, TimestampType, TopicConfig};
use crate::error::{Error, IoContext, Result};
use crate::notify::Notify;
use crate::record::BatchHeader;
use crate::record::Record;
use crate::record::batch::{
    BATCH_HEADER_LEN, LOG_APPEND_TIME_FLAG, LOG_OVERHEAD, MAGIC_V2, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE,
};
use crate::record::encode::{
    BatchSpec, encode_batch, encoded_size, set_base_offset, set_partition_leader_epoch,
    size_lower_bound, write_header,
};

use crate::storage::index::{IndexEntry, OffsetEntry, TimeEntry};
use crate::storage::producer_state::{
    ProducerStateTable, SequenceCheck, last_sequence, write_snapshot,
};
use crate::storage::segment::{Segment, SegmentIndexes};

/// Name of the leader-epoch checkpoint in a partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Encode buffers larger than this are released after use rather than kept
/// per thread.
const MAX_RETAINED_ENCODE_BUFFER_BYTES: usize = 4 << 20;

thread_local! {
    /// Reused across appends so the hot path does not allocate per batch.
    static ENCODE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The idempotent-producer fields of a batch: who sent it and its place
/// in that producer's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer id, from [`Log::init_producer_id`](crate::Log::init_producer_id).
    pub producer_id: i64,
    /// The producer's epoch; a higher epoch fences lower ones.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record, counted per partition
    /// from 0.
    pub base_sequence: i32,
}

/// Conditions and identity of one append.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct AppendOptions {
    pub(crate) producer: Option<ProducerBatch>,
    pub(crate) expected_end_offset: Option<i64>,
}

impl AppendOptions {
    /// Appends as an idempotent producer: a batch whose sequence was
    /// already appended returns the original offsets
    /// ([`AppendInfo::duplicate`]) instead of being written again; a gap in
    /// the sequence is [`Error::OutOfOrderSequence`]; an old epoch is
    /// [`Error::ProducerFenced`].
    pub fn producer(mut self, producer: ProducerBatch) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Appends only if the partition's log end offset is `offset` (for
    /// optimistic concurrency); otherwise fails with
    /// [`Error::UnexpectedEndOffset`] and appends nothing.
    pub fn expect_end_offset(mut self, offset: i64) -> Self {
        self.expected_end_offset = Some(offset);
        self
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The append time given to the records, for `LogAppendTime` topics.
    pub log_append_time_ms: Option<i64>,
    /// The partition's log start offset at the time of the append.
    pub log_start_offset: i64,
    /// The batch had been appended before (an idempotent retry); these are
    /// its original offsets and nothing was written.
    pub duplicate: bool,
}

/// Mutable state of a partition, behind its one lock.
pub(crate) struct PartitionState {
    /// All segments in base-offset order; the last is active. Replaced, not
    /// mutated, so readers can hold a snapshot without the lock.
    pub(crate) segments: Arc<Vec<Arc<Segment>>>,
    /// The log end offset: the offset the next record gets.
    pub(crate) next_offset: i64,
    pub(crate) log_start_offset: i64,
    /// Readers see offsets below it. Equal to the log end until replication
    /// moves it separately.
    pub(crate) high_watermark: i64,
    /// Everything below this offset is on disk.
    pub(crate) recovery_point: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) epoch_entries: Vec<(i32, i64)>,
    /// Clock time at which the active segment was created (or loaded).
    pub(crate) active_created_ms: i64,
    /// Max timestamp of the active segment's first batch: what its age is
    /// measured from, as in Kafka.
    pub(crate) active_first_timestamp: Option<i64>,
    /// The active segment's index has no room for another entry.
    pub(crate) active_index_full: bool,
    /// Files were created or removed since the directory was last `fsync`ed.
    pub(crate) directory_dirty: bool,
    /// Set when a failed write or flush left the files in a state that is
    /// not safe to append to.
    pub(crate) poisoned: Option<String>,
    pub(crate) closed: bool,
    /// Idempotent producers' recent batches.
    pub(crate) producers: ProducerStateTable,
    /// Compaction has cleaned everything below this offset.
    pub(crate) first_dirty_offset: i64,
}

impl PartitionState {
    pub(crate) fn active(&self) -> &Arc<Segment> {
        // Invariant: a partition always has at least one segment.
        &self.segments[self.segments.len() - 1]
    }
}

pub(crate) struct FlushState {
    pub(crate) durable_offset: i64,
    pub(crate) in_progress: bool,
}

/// One partition of a topic.
pub(crate) struct PartitionLog {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) dir: PathBuf,
    pub(crate) config: Arc<TopicConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) state: Mutex<PartitionState>,
    pub(crate) flush: Mutex<FlushState>,
    pub(crate) flush_done: Condvar,
    /// Woken by every append (and by close) for readers waiting for data.
    pub(crate) data_arrived: Arc<Notify>,
    /// Copy of the high watermark that waiters read without the lock.
    pub(crate) high_watermark: AtomicI64,
    pub(crate) closed: AtomicBool,
    /// Set on roll; the log's background flusher then makes the sealed
    /// segment durable and moves the recovery point.
    pub(crate) needs_background_flush: AtomicBool,
    /// Clock time of the last completed flush.
    pub(crate) last_flush_ms: AtomicI64,
    pub(crate) background: Arc<Notify>,
    /// Consumers waiting on several partitions at once register here.
    pub(crate) watchers: Mutex<Vec<Weak<Notify>>>,
    pub(crate) watcher_count: AtomicUsize,
    /// Held by a compaction pass from start to finish.
    pub(crate) compaction_pass: Mutex<()>,
}

impl PartitionLog {
    pub(crate) fn new(
        topic: &str,
        partition: u32,
        dir: PathBuf,
        config: Arc<TopicConfig>,
        clock: Arc<dyn Clock>,
        state: PartitionState,
        background: Arc<Notify>,
    ) -> PartitionLog {
        let now_ms = clock.now_ms();
        let high_watermark = state.high_watermark;
        let durable = state.recovery_point;
        PartitionLog {
            topic: topic.to_owned(),
            partition,
            dir,
            data_arrived: Notify::new(&*clock),
            config,
            clock,
            state: Mutex::new(state),
            flush: Mutex::new(FlushState {
                durable_offset: durable,
                in_progress: false,
            }),
            flush_done: Condvar::new(),
            high_watermark: AtomicI64::new(high_watermark),
            closed: AtomicBool::new(false),
            needs_background_flush: AtomicBool::new(false),
            last_flush_ms: AtomicI64::new(now_ms),
            background,
            watchers: Mutex::new(Vec::new()),
            watcher_count: AtomicUsize::new(0),
            compaction_pass: Mutex::new(()),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Whether every offset between the log start and end belongs to a
    /// record: true unless compaction may have removed some.
    pub(crate) fn offsets_contiguous(&self) -> bool {
        self.config.cleanup_policy == CleanupPolicy::Delete
    }

    pub(crate) fn interval_bytes(&self) -> u64 {
        u64::from(self.config.index_interval_bytes)
    }

    /// Encodes `records` as one batch and appends it.
    pub(crate) fn append(&self, records: &[Record], options: &AppendOptions) -> Result<AppendInfo> {
        if matches!(
            self.config.cleanup_policy,
            CleanupPolicy::Compact | CleanupPolicy::CompactDelete
        ) && records.iter().any(|r| r.key.is_none())
        {
            return Err(Error::InvalidRecord(format!(
                "topic {} is compacted and every record needs a key",
                self.topic
            )));
        }
        let now_ms = self.clock.now_ms();
        let mut spec = BatchSpec::plain(self.config.timestamp_type, now_ms);
        if let Some(producer) = options.producer {
            spec.producer_id = producer.producer_id;
            spec.producer_epoch = producer.producer_epoch;
            spec.base_sequence = producer.base_sequence;
        }
        // Refuse a batch over the limit before encoding it when a cheap lower
        // bound already shows it (the error reports the exact size).
        if self.check_batch_size(size_lower_bound(records)).is_err() {
            self.check_batch_size(encoded_size(records, &spec))?;
        }
        ENCODE_BUFFER.with(|cell| {
            let mut buffer = cell.borrow_mut();
            buffer.clear();
            let result = encode_batch(&mut buffer, records, &spec).and_then(|header| {
                self.check_batch_size(header.size_bytes())?;
                self.append_encoded(&mut buffer, header, options)
            });
            if buffer.capacity() > MAX_RETAINED_ENCODE_BUFFER_BYTES {
                *buffer = Vec::new();
            }
            result.map(|mut info| {
                if self.config.timestamp_type == TimestampType::LogAppendTime {
                    info.log_append_time_ms = Some(now_ms);
                }
                info
            })
        })
    }

    /// Appends a batch whose records the caller has encoded already, after
    /// a `BATCH_HEADER_LEN` placeholder at the start of `batch` (as a
    /// producer does at send time): fills in the header and CRC, then
    /// appends it like any other batch.
    pub(crate) fn append_records(
        &self,
        batch: &mut [u8],
        record_count: i32,
        base_timestamp: i64,
        max_timestamp: i64,
        options: &AppendOptions,
    ) -> Result<AppendInfo> {
        let now_ms = self.clock.now_ms();
        let header = self.seal_batch(
            batch,
            record_count,
            base_timestamp,
            max_timestamp,
            options.producer,
            now_ms,
        )?;
        let mut info = self.append_encoded(batch, header, options)?;
        if self.config.timestamp_type == TimestampType::LogAppendTime {
            info.log_append_time_ms = Some(now_ms);
        }
        Ok(info)
    }

    /// Fills in the header of a batch encoded after a `BATCH_HEADER_LEN`
    /// placeholder, CRC included, and returns it (offsets still to come).
    pub(crate) fn seal_batch(
        &self,
        batch: &mut [u8],
        record_count: i32,
        base_timestamp: i64,
        max_timestamp: i64,
        producer: Option<ProducerBatch>,
        now_ms: i64,
    ) -> Result<BatchHeader> {
        if record_count <= 0 || batch.len() <= BATCH_HEADER_LEN {
            return Err(Error::InvalidRecord(
                "a record batch needs at least one record".into(),
            ));
        }
        self.check_batch_size(batch.len())?;
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        let mut header = BatchHeader {
            base_offset: 0,
            batch_length: i32::try_from(batch.len() - LOG_OVERHEAD).map_err(|_| {
                Error::RecordTooLarge {
                    size_bytes: batch.len(),
                    max_bytes: i32::MAX as usize,
                }
            })?,
            partition_leader_epoch: 0,
            magic: MAGIC_V2,
            crc: 0,
            attributes: if log_append_time {
                LOG_APPEND_TIME_FLAG
            } else {
                0
            },
            last_offset_delta: record_count - 1,
            base_timestamp,
            max_timestamp: if log_append_time {
                now_ms
            } else {
                max_timestamp
            },
            producer_id: producer.map_or(NO_PRODUCER_ID, |p| p.producer_id),
            producer_epoch: producer.map_or(NO_PRODUCER_EPOCH, |p| p.producer_epoch),
            base_sequence: producer.map_or(NO_SEQUENCE, |p| p.base_sequence),
            record_count,
        };
        header.crc = write_header(batch, &header);
        Ok(header)
    }

    fn check_batch_size(&self, size: usize) -> Result<()> {
        let max_bytes =
            (self.config.max_message_bytes as usize).min(self.config.segment_bytes as usize);
        if size > max_bytes {
            return Err(Error::RecordTooLarge {
                size_bytes: size,
                max_bytes,
            });
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self, state: &PartitionState) -> Result<()> {
        if state.closed {
            return Err(Error::Closed);
        }
        if let Some(reason) = &state.poisoned {
            return Err(Error::Poisoned {
                topic: self.topic.clone(),
                partition: self.partition,
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// Appends one encoded batch, giving it the next offsets. The batch's
    /// CRC was computed by the encoder; the fields rewritten here lie
    /// outside it.
    fn append_encoded(
        &self,
        batch: &mut [u8],
        mut header: BatchHeader,
        options: &AppendOptions,
    ) -> Result<AppendInfo> {
        let last_offset_delta = header.last_offset_delta;
        let mut state = self.state.lock();
        self.check_writable(&state)?;
        if let Some(producer) = &options.producer {
            let last = last_sequence(producer.base_sequence, last_offset_delta);
            let check = state.producers.check(
                producer.producer_id,
                producer.producer_epoch,
                producer.base_sequence,
                last,
            )?;
            if let SequenceCheck::Duplicate(original) = check {
                return Ok(AppendInfo {
                    base_offset: original.base_offset,
                    last_offset: original.last_offset,
                    log_append_time_ms: None,
                    log_start_offset: state.log_start_offset,
                    duplicate: true,
                });
            }
        }
        if let Some(expected) = options.expected_end_offset
            && expected != state.next_offset
        {
            return Err(Error::UnexpectedEndOffset {
                topic: self.topic.clone(),
                partition: self.partition,
                expected,
                actual: state.next_offset,
            });
        }
        let base_offset = state.next_offset;
        let last_offset = base_offset + i64::from(last_offset_delta);
        set_base_offset(batch, base_offset);
        set_partition_leader_epoch(batch, state.leader_epoch);
        header.base_offset = base_offset;
        header.partition_leader_epoch = state.leader_epoch;
        self.roll_if_needed(
            &mut state,
            batch.len() as u64,
            header.max_timestamp,
            last_offset,
        )?;
        self.write_batch(&mut state, batch, &header)?;
        state.producers.observe(&header);
        let info = AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: None,
            log_start_offset: state.log_start_offset,
            duplicate: false,
        };
        drop(state);
        self.wake_readers();
        if self.config.durability == Durability::EveryAppend {
            self.flush_to(last_offset + 1)?;
        }
        Ok(info)
    }

    /// Writes a batch with its final offsets at the end of the active
    /// segment and publishes it to readers.
    fn write_batch(
        &self,
        state: &mut PartitionState,
        batch: &[u8],
        header: &BatchHeader,
    ) -> Result<()> {
        // Borrowed through the segment list's own field, so the state's
        // other fields stay writable: no reference count to bump per append.
        let active = &state.segments[state.segments.len() - 1];
        let position = active.size();
        if let Err(source) = active.write_at(batch, position) {
            return Err(undo_failed_write(state, position, source));
        }
        self.publish_written(state, position, std::slice::from_ref(header));
        Ok(())
    }

    /// Indexes batches just written one after another from `position` in
    /// the active segment and publishes them to readers: the new size, the
    /// next offset and the high watermark.
    pub(crate) fn publish_written(
        &self,
        state: &mut PartitionState,
        mut position: u64,
        headers: &[BatchHeader],
    ) {
        let active = &state.segments[state.segments.len() - 1];
        state.active_index_full = {
            let mut indexes = active.indexes.lock();
            for header in headers {
                indexes.on_batch(
                    active.base_offset(),
                    position,
                    header,
                    self.interval_bytes(),
                );
                position += header.size_bytes() as u64;
            }
            indexes_full(&mut indexes, self.config.segment_index_bytes)
        };
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return;
        };
        if state.active_first_timestamp.is_none() {
            state.active_first_timestamp = Some(first.max_timestamp);
        }
        active.set_size(position);
        state.next_offset = last.last_offset() + 1;
        state.high_watermark = state.next_offset;
        self.high_watermark
            .store(state.high_watermark, Ordering::Release);
    }

    /// Rolls a new segment if the batch would not fit the active one by
    /// size, age, index capacity or relative offset range (Kafka's
    /// `LogSegment.shouldRoll`).
    fn roll_if_needed(
        &self,
        state: &mut PartitionState,
        batch_size: u64,
        max_timestamp: i64,
        last_offset: i64,
    ) -> Result<()> {
        if self.needs_roll(state, batch_size, max_timestamp, last_offset) {
            self.roll(state)?;
        }
        Ok(())
    }

    /// Whether `batch_size` more bytes, up to `max_timestamp` and
    /// `last_offset`, need a new segment first.
    pub(crate) fn needs_roll(
        &self,
        state: &PartitionState,
        batch_size: u64,
        max_timestamp: i64,
        last_offset: i64,
    ) -> bool {
        let active = state.active();
        let size = active.size();
        if size == 0 {
            return false;
        }
        let config = &self.config;
        let waited_ms = match state.active_first_timestamp {
            Some(first) if first >= 0 => max_timestamp.saturating_sub(first),
            _ => self.clock.now_ms().saturating_sub(state.active_created_ms),
        };
        let index_full = state.active_index_full;
        let too_big = size + batch_size > u64::from(config.segment_bytes);
        let too_old = waited_ms > config.segment_ms;
        let offsets_overflow = last_offset - active.base_offset() > i64::from(i32::MAX);
        too_big || too_old || index_full || offsets_overflow
    }

    /// Seals the active segment and starts a new one at the log end.
    pub(crate) fn roll(&self, state: &mut PartitionState) -> Result<()> {
        let active = Arc::clone(state.active());
        if active.base_offset() == state.next_offset {
            return Ok(());
        }
        active.seal()?;
        // The producer state as of the new segment's start, so recovery
        // never has to read further back than one segment.
        state.producers.expire(self.clock.now_ms());
        write_snapshot(&self.dir, state.next_offset, &state.producers).at(&self.dir)?;
        let segment = Arc::new(Segment::create(&self.dir, state.next_offset)?);
        let mut segments = Vec::with_capacity(state.segments.len() + 1);
        segments.extend(state.segments.iter().cloned());
        segments.push(segment);
        state.segments = Arc::new(segments);
        state.active_created_ms = self.clock.now_ms();
        state.active_first_timestamp = None;
        state.active_index_full = false;
        state.directory_dirty = true;
        self.needs_background_flush.store(true, Ordering::Release);
        self.background.signal();
        Ok(())
    }
}

/// After a failed write at `position` in the active segment: part of it may
/// have reached the file, so cut it off and the next append starts at a
/// batch boundary. If even that fails the file's tail is unknown, and only
/// recovery may touch it again: the partition is poisoned. Returns the
/// write's error.
pub(crate) fn undo_failed_write(
    state: &mut PartitionState,
    position: u64,
    source: std::io::Error,
) -> Error {
    let active = &state.segments[state.segments.len() - 1];
    let path = active.log_path().to_owned();
    if let Err(cut) = active.truncate_file(position) {
        state.poisoned = Some(format!(
            "write failed ({source}) and could not be undone ({cut})"
        ));
    }
    Error::Io { path, source }
}

/// Whether a segment's indexes are full (Kafka rolls then). One time index
/// slot stays free for the entry added when the segment is sealed.
pub(crate) fn indexes_full(indexes: &mut SegmentIndexes, segment_index_bytes: u32) -> bool {
    let index_bytes = segment_index_bytes as usize;
    let offsets_full = indexes.offsets.len().unwrap_or(0) >= index_bytes / OffsetEntry::LEN;
    let times_full = indexes.times.len().unwrap_or(0) + 1 >= index_bytes / TimeEntry::LEN;
    offsets_full || times_full
}
