//! [`Log`]: a directory of topics, each split into partitions, each
//! partition an append-only log of segments.
//!
//! ```
//! use brooklet::{Log, LogConfig, Record, TopicConfig};
//!
//! let log = Log::temporary(LogConfig::default())?;
//! log.create_topic("events", TopicConfig::default().partitions(2))?;
//! let appended = log.append("events", 1, &[Record::new("hello").key("k")])?;
//! let fetch = log.read("events", 1, appended.base_offset, 1 << 20)?;
//! let record = fetch.records().next().expect("one record")?;
//! assert_eq!(record.value, Some(&b"hello"[..]));
//! # Ok::<(), brooklet::Error>(())
//! ```

mod admin;
mod flusher;
mod lifecycle;
mod producer_ids;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::clock::Clock;
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::notify::Notify;
use crate::reader::{DEFAULT_MAX_FETCH_BYTES, PartitionReader};
use crate::record::Record;
use crate::storage::{AppendInfo, AppendOptions, Fetch, PartitionLog, TimestampOffset};

pub use admin::{PartitionDescription, TopicDescription};
pub use lifecycle::TailLoss;

/// A topic: its configuration and partitions.
pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) config: Arc<TopicConfig>,
    pub(crate) partitions: RwLock<Vec<Arc<PartitionLog>>>,
}

/// What the log and its background thread share.
pub(crate) struct Registry {
    pub(crate) dir: PathBuf,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Wakes the background flusher: rolls, interval flushes, shutdown.
    pub(crate) background: Arc<Notify>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) producer_ids: producer_ids::ProducerIdAllocator,
    /// Bumped whenever topics or partition counts change, so clients can
    /// cache what they looked up.
    pub(crate) metadata_version: AtomicU64,
    pub(crate) offsets_topic_partitions: u32,
    pub(crate) offset_store: crate::consumer::offsets::OffsetStore,
    pub(crate) group_coordinator: crate::group::coordinator::GroupCoordinator,
    /// Wakes the cleaner thread.
    pub(crate) cleaner_wake: Arc<Notify>,
    pub(crate) retention_check_interval_ms: i64,
    pub(crate) cleaner_backoff_ms: i64,
    pub(crate) cleaner_buffer_bytes: usize,
    /// Serialises writers of the directory's checkpoint files.
    pub(crate) checkpoint_lock: Mutex<()>,
    /// Woken when topics or partition counts change.
    pub(crate) metadata_watchers: Mutex<Vec<std::sync::Weak<Notify>>>,
}

impl Registry {
    /// Every partition of every topic.
    pub(crate) fn all_partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.topics
            .read()
            .values()
            .flat_map(|topic| topic.partitions.read().clone())
            .collect()
    }
}

pub(crate) struct LogInner {
    pub(crate) registry: Arc<Registry>,
    /// Serialises topic creation, deletion and partition changes.
    pub(crate) admin_lock: Mutex<()>,
    /// Held (with an exclusive OS lock) while the log is open.
    pub(crate) lock_file: Mutex<Option<std::fs::File>>,
    pub(crate) flusher: Mutex<Option<JoinHandle<()>>>,
    pub(crate) cleaner: Mutex<Option<JoinHandle<()>>>,
    pub(crate) closed: AtomicBool,
    /// Remove the directory when the log is dropped (`Log::temporary`).
    pub(crate) remove_on_drop: bool,
}

/// An open log directory: topics, partitions, appends and reads.
///
/// `Log` is a cheap handle: clones share one open log, and every method
/// takes `&self`, so threads can share it. The log closes cleanly when the
/// last handle is dropped or when [`Log::close`] is called; either way
/// its background thread is joined.
///
/// **Durability.** An append is in the operating system's page cache when
/// it returns; a process crash loses nothing acknowledged. Whether it
/// survives a power failure is the topic's [`Durability`](crate::Durability):
/// with `EveryAppend` every acknowledged append is on disk; otherwise what
/// [`Log::flush`] (or the interval flusher, or the operating system) has
/// written. After any crash, opening the log keeps every whole batch up to
/// the first damaged one and drops the rest of that partition's tail.
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.registry.dir)
            .finish_non_exhaustive()
    }
}

/// The offsets that bound a partition's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset still in the log (Kafka's "earliest").
    pub log_start_offset: i64,
    /// Readers see offsets below it (Kafka's "latest").
    pub high_watermark: i64,
    /// The offset the next record will get.
    pub log_end_offset: i64,
}

impl Log {
    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.registry.dir
    }

    /// The clock the log reads time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.registry.clock
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.check_open()?;
        self.inner
            .registry
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))
    }

    /// Bumped on every topic or partition-count change.
    pub(crate) fn metadata_version(&self) -> u64 {
        self.inner.registry.metadata_version.load(Ordering::Acquire)
    }

    pub(crate) fn offsets_topic_partitions(&self) -> u32 {
        self.inner.registry.offsets_topic_partitions
    }

    pub(crate) fn offset_store(&self) -> &crate::consumer::offsets::OffsetStore {
        &self.inner.registry.offset_store
    }

    pub(crate) fn group_coordinator(&self) -> &crate::group::coordinator::GroupCoordinator {
        &self.inner.registry.group_coordinator
    }

    /// Wakes `notify` whenever topics or partition counts change.
    pub(crate) fn watch_metadata(&self, notify: &Arc<Notify>) {
        let mut watchers = self.inner.registry.metadata_watchers.lock();
        watchers.retain(|w| w.strong_count() > 0);
        watchers.push(Arc::downgrade(notify));
    }

    pub(crate) fn bump_metadata_version(&self) {
        let registry = &self.inner.registry;
        registry.metadata_version.fetch_add(1, Ordering::AcqRel);
        let watchers: Vec<_> = registry
            .metadata_watchers
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for watcher in watchers {
            watcher.notify();
        }
    }

    /// Every partition of a topic, in order.
    pub(crate) fn partition_handles(&self, topic: &str) -> Result<Vec<Arc<PartitionLog>>> {
        Ok(self.topic(topic)?.partitions.read().clone())
    }

    /// The number of partitions of a topic.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(u32::try_from(self.topic(topic)?.partitions.read().len()).unwrap_or(u32::MAX))
    }

    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<PartitionLog>> {
        self.check_open()?;
        // Under the registry's read lock rather than through a clone of the
        // topic: this runs on every append.
        let topics = self.inner.registry.topics.read();
        let topic = topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_owned()))?;
        let partitions = topic.partitions.read();
        partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.name.clone(),
                partition,
                partition_count: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
            })
    }

    /// Appends `records` to one partition as a single record batch and
    /// returns the offsets they got. A batch larger than the topic's
    /// `max_message_bytes` is refused whole with
    /// [`Error::RecordTooLarge`].
    pub fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<AppendInfo> {
        self.partition(topic, partition)?
            .append(records, &AppendOptions::default())
    }

    /// Appends `records` as one batch only if the partition's log end
    /// offset is `expected_end_offset`; otherwise fails with
    /// [`Error::UnexpectedEndOffset`], which carries the actual end offset,
    /// and appends nothing. Among racing appenders with the same
    /// expectation exactly one wins: the building block of optimistic
    /// concurrency for event sourcing.
    pub fn append_if(
        &self,
        topic: &str,
        partition: u32,
        expected_end_offset: i64,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let options = AppendOptions::default().expect_end_offset(expected_end_offset);
        self.partition(topic, partition)?.append(records, &options)
    }

    /// Appends `records` as one batch with the given options: idempotent
    /// producer fields, an expected end offset, or both.
    pub fn append_with(
        &self,
        topic: &str,
        partition: u32,
        records: &[Record],
        options: &AppendOptions,
    ) -> Result<AppendInfo> {
        self.partition(topic, partition)?.append(records, options)
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes`
    /// (the first batch is returned whole even if larger). Reading at the
    /// high watermark returns an empty fetch; outside
    /// `log_start_offset..=high_watermark` it is
    /// [`Error::OffsetOutOfRange`].
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Fetch> {
        let mut fetch = Fetch::new();
        self.partition(topic, partition)?
            .read_into(offset, max_bytes, None, &mut fetch)?;
        Ok(fetch)
    }

    /// A reader that walks a partition from `offset`, fetching
    /// [`DEFAULT_MAX_FETCH_BYTES`] at a time.
    pub fn reader(&self, topic: &str, partition: u32, offset: i64) -> Result<PartitionReader> {
        let partition = self.partition(topic, partition)?;
        Ok(PartitionReader::new(
            partition,
            offset,
            DEFAULT_MAX_FETCH_BYTES,
        ))
    }

    /// The log start offset, high watermark and log end offset.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        let (log_start_offset, high_watermark, log_end_offset) =
            self.partition(topic, partition)?.offsets();
        Ok(PartitionOffsets {
            log_start_offset,
            high_watermark,
            log_end_offset,
        })
    }

    /// The first record, in offset order, whose timestamp is at or after
    /// `timestamp_ms`; `None` if there is none (Kafka's `offsetsForTimes`).
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>> {
        self.partition(topic, partition)?
            .offset_for_timestamp(timestamp_ms)
    }

    /// Blocks until the partition has a record at or after `offset`, or
    /// `timeout` passes on the log's clock. Woken by the append itself.
    /// Returns whether data is there.
    pub fn wait_for_data(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        timeout: Duration,
    ) -> Result<bool> {
        let partition = self.partition(topic, partition)?;
        let deadline_ms = deadline_after(&*self.inner.registry.clock, timeout);
        partition.wait_for_data(offset, deadline_ms)
    }

    /// Forces everything appended so far, in every partition, to disk.
    pub fn flush(&self) -> Result<()> {
        self.check_open()?;
        for partition in self.inner.registry.all_partitions() {
            let (_, _, log_end) = partition.offsets();
            partition.flush_to(log_end)?;
        }
        Ok(())
    }

    /// Removes every record at or after `offset` from a partition. Used by
    /// replication when a follower diverged from its leader.
    #[allow(dead_code)]
    pub(crate) fn truncate_to(&self, topic: &str, partition: u32, offset: i64) -> Result<()> {
        self.partition(topic, partition)?.truncate_to(offset)
    }
}

/// The clock time `timeout` from now, saturating.
pub(crate) fn deadline_after(clock: &dyn Clock, timeout: Duration) -> i64 {
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    clock.now_ms().saturating_add(timeout_ms)
}
