//! Configuration of a [`Log`](crate::Log) and of its topics, with Kafka's
//! names and defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};

/// Kafka's `max.message.bytes` default: 1 MiB plus record batch overhead.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1_048_588;
/// Kafka's `segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u32 = 1 << 30;
/// Kafka's `segment.ms` default: 7 days.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `segment.index.bytes` default: 10 MiB.
pub const DEFAULT_SEGMENT_INDEX_BYTES: u32 = 10 * 1024 * 1024;
/// Kafka's `index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Kafka's `retention.ms` default: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `delete.retention.ms` default: 1 day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Kafka's upper bound on partitions per topic is the broker's memory; ours
/// is a named limit so a typo can not create a million directories.
pub const MAX_PARTITIONS: u32 = 10_000;
/// The smallest segment size accepted (Kafka's `segment.bytes` minimum is 14,
/// too small to hold a batch; 1 KiB keeps tests honest without nonsense).
pub const MIN_SEGMENT_BYTES: u32 = 1024;

/// When appended data is forced to disk (`fsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Leave it to the operating system, as Kafka does by default. A process
    /// crash loses nothing (the page cache survives it); a power failure can
    /// lose what the OS had not written back.
    #[default]
    Os,
    /// Flush before acknowledging each append (`flush.messages=1`).
    /// Concurrent appends to one partition share their flushes.
    EveryAppend,
    /// Flush in the background every interval, by the log's clock
    /// (`flush.ms`).
    Interval(Duration),
}

/// How a topic's records get their timestamps (`message.timestamp.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The record's own timestamp, or the append time if it has none.
    #[default]
    CreateTime,
    /// The time of the append, by the log's clock, for every record.
    LogAppendTime,
}

/// What the cleaner does with old data (`cleanup.policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Delete whole segments past the retention limits.
    #[default]
    Delete,
    /// Keep the last record per key.
    Compact,
    /// Both.
    CompactDelete,
}

/// Settings of one topic, applied to each of its partitions. Persisted with
/// the topic and restored on open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct TopicConfig {
    pub(crate) partitions: u32,
    pub(crate) segment_bytes: u32,
    pub(crate) segment_ms: i64,
    pub(crate) segment_index_bytes: u32,
    pub(crate) index_interval_bytes: u32,
    pub(crate) max_message_bytes: u32,
    pub(crate) durability: Durability,
    pub(crate) timestamp_type: TimestampType,
    pub(crate) cleanup_policy: CleanupPolicy,
    pub(crate) retention_ms: Option<i64>,
    pub(crate) retention_bytes: Option<u64>,
    pub(crate) delete_retention_ms: i64,
    pub(crate) min_cleanable_dirty_ratio_percent: u8,
    pub(crate) min_compaction_lag_ms: i64,
    pub(crate) max_compaction_lag_ms: Option<i64>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            segment_index_bytes: DEFAULT_SEGMENT_INDEX_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            durability: Durability::Os,
            timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio_percent: 50,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
        }
    }
}

impl TopicConfig {
    /// Number of partitions. Defaults to 1.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }
    /// Roll a new segment when the active one would pass this size
    /// (`segment.bytes`). Defaults to 1 GiB.
    pub fn segment_bytes(mut self, bytes: u32) -> Self {
        self.segment_bytes = bytes;
        self
    }
    /// Roll a new segment when the active one's first record is this old,
    /// by the log's clock (`segment.ms`). Defaults to 7 days.
    pub fn segment_ms(mut self, ms: i64) -> Self {
        self.segment_ms = ms;
        self
    }
    /// Maximum size of each segment's offset index; a full index rolls the
    /// segment (`segment.index.bytes`). Defaults to 10 MiB.
    pub fn segment_index_bytes(mut self, bytes: u32) -> Self {
        self.segment_index_bytes = bytes;
        self
    }
    /// Bytes of log between two index entries (`index.interval.bytes`).
    /// Defaults to 4096.
    pub fn index_interval_bytes(mut self, bytes: u32) -> Self {
        self.index_interval_bytes = bytes;
        self
    }
    /// Largest record batch accepted, in bytes (`max.message.bytes`).
    /// Defaults to 1,048,588.
    pub fn max_message_bytes(mut self, bytes: u32) -> Self {
        self.max_message_bytes = bytes;
        self
    }
    /// When appends reach the disk. Defaults to [`Durability::Os`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Where record timestamps come from. Defaults to
    /// [`TimestampType::CreateTime`].
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }
    /// What the cleaner does with old data. Defaults to
    /// [`CleanupPolicy::Delete`].
    pub fn cleanup_policy(mut self, policy: CleanupPolicy) -> Self {
        self.cleanup_policy = policy;
        self
    }
    /// Delete segments whose newest record is older than this
    /// (`retention.ms`); `None` keeps them forever. Defaults to 7 days.
    pub fn retention_ms(mut self, ms: Option<i64>) -> Self {
        self.retention_ms = ms;
        self
    }
    /// Delete the oldest segments while a partition is larger than this
    /// (`retention.bytes`); `None` is unlimited. Defaults to unlimited.
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }
    /// How long a compacted tombstone stays readable
    /// (`delete.retention.ms`). Defaults to 1 day.
    pub fn delete_retention_ms(mut self, ms: i64) -> Self {
        self.delete_retention_ms = ms;
        self
    }
    /// The dirty share, in percent, above which a partition is compacted
    /// (`min.cleanable.dirty.ratio`). Defaults to 50.
    pub fn min_cleanable_dirty_ratio_percent(mut self, percent: u8) -> Self {
        self.min_cleanable_dirty_ratio_percent = percent;
        self
    }
    /// Records younger than this are never compacted
    /// (`min.compaction.lag.ms`). Defaults to 0.
    pub fn min_compaction_lag_ms(mut self, ms: i64) -> Self {
        self.min_compaction_lag_ms = ms;
        self
    }
    /// Dirty data older than this is compacted whatever the dirty ratio
    /// (`max.compaction.lag.ms`); `None` is no limit. Defaults to no limit.
    pub fn max_compaction_lag_ms(mut self, ms: Option<i64>) -> Self {
        self.max_compaction_lag_ms = ms;
        self
    }

    /// The number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions
    }
    /// The segment size limit in bytes.
    pub fn segment_size_bytes(&self) -> u32 {
        self.segment_bytes
    }
    /// The segment age limit in milliseconds.
    pub fn segment_age_ms(&self) -> i64 {
        self.segment_ms
    }
    /// The index interval in bytes.
    pub fn index_interval(&self) -> u32 {
        self.index_interval_bytes
    }
    /// The largest batch accepted, in bytes.
    pub fn max_batch_bytes(&self) -> u32 {
        self.max_message_bytes
    }
    /// The durability setting.
    pub fn durability_mode(&self) -> Durability {
        self.durability
    }
    /// The timestamp type.
    pub fn timestamp_kind(&self) -> TimestampType {
        self.timestamp_type
    }
    /// The cleanup policy.
    pub fn cleanup(&self) -> CleanupPolicy {
        self.cleanup_policy
    }

    /// Checks every value against its allowed range.
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::InvalidConfig(msg));
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return fail(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                self.partitions
            ));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES || self.segment_bytes > i32::MAX as u32 {
            return fail(format!(
                "segment.bytes must be between {MIN_SEGMENT_BYTES} and {}, got {}",
                i32::MAX,
                self.segment_bytes
            ));
        }
        if self.segment_ms < 1 {
            return fail(format!(
                "segment.ms must be positive, got {}",
                self.segment_ms
            ));
        }
        if self.segment_index_bytes < 4 * 12 {
            return fail(format!(
                "segment.index.bytes must be at least 48, got {}",
                self.segment_index_bytes
            ));
        }
        if self.max_message_bytes < 64 {
            return fail(format!(
                "max.message.bytes must be at least 64, got {}",
                self.max_message_bytes
            ));
        }
        if let Durability::Interval(interval) = self.durability
            && interval.is_zero()
        {
            return fail("flush.ms must be positive".into());
        }
        if matches!(self.retention_ms, Some(ms) if ms < 0) {
            return fail("retention.ms must not be negative".into());
        }
        if self.min_cleanable_dirty_ratio_percent > 100 {
            return fail("min.cleanable.dirty.ratio must be at most 100 percent".into());
        }
        if self.delete_retention_ms < 0 || self.min_compaction_lag_ms < 0 {
            return fail(
                "delete.retention.ms and min.compaction.lag.ms must not be negative".into(),
            );
        }
        Ok(())
    }
}

/// Settings of a whole [`Log`](crate::Log).
#[derive(Clone)]
#[must_use]
pub struct LogConfig {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) offsets_topic_partitions: u32,
    pub(crate) retention_check_interval: Duration,
    pub(crate) cleaner_backoff: Duration,
    pub(crate) cleaner_buffer_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            clock: Arc::new(SystemClock),
            offsets_topic_partitions: 50,
            retention_check_interval: Duration::from_secs(300),
            cleaner_backoff: Duration::from_secs(15),
            cleaner_buffer_bytes: 128 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConfig")
            .field("clock", &self.clock)
            .field("offsets_topic_partitions", &self.offsets_topic_partitions)
            .field("retention_check_interval", &self.retention_check_interval)
            .field("cleaner_backoff", &self.cleaner_backoff)
            .field("cleaner_buffer_bytes", &self.cleaner_buffer_bytes)
            .finish()
    }
}

impl LogConfig {
    /// The clock for timestamps, segment age, interval flushes and
    /// time-outs. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often the background cleaner applies retention, by the log's
    /// clock (`log.retention.check.interval.ms`). Defaults to 5 minutes.
    pub fn retention_check_interval(mut self, interval: Duration) -> Self {
        self.retention_check_interval = interval;
        self
    }

    /// How long the cleaner waits when no partition needs compaction, by
    /// the log's clock (`log.cleaner.backoff.ms`). Defaults to 15 s.
    pub fn cleaner_backoff(mut self, backoff: Duration) -> Self {
        self.cleaner_backoff = backoff;
        self
    }

    /// Memory for compaction's key map; a dirty section with more keys is
    /// cleaned in several passes (`log.cleaner.dedupe.buffer.size`).
    /// Defaults to 128 MiB.
    pub fn cleaner_buffer_bytes(mut self, bytes: usize) -> Self {
        self.cleaner_buffer_bytes = bytes.max(1024);
        self
    }

    /// Partitions of the `__consumer_offsets` topic, used when it is first
    /// created (`offsets.topic.num.partitions`). Defaults to 50.
    pub fn offsets_topic_partitions(mut self, partitions: u32) -> Self {
        self.offsets_topic_partitions = partitions.clamp(1, MAX_PARTITIONS);
        self
    }
}
