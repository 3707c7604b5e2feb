//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in brooklet, as values a caller can act on.
///
/// Bad input and bad disk contents are errors, never panics. Each variant
/// carries the context needed to understand it without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A topic name breaks Kafka's rules: `[A-Za-z0-9._-]`, 1 to 249
    /// characters, and neither `.` nor `..`.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// `create_topic` for a name that already exists.
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition} (it has {partition_count})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partition_count: u32,
    },
    /// A read asked for an offset below the log start or above the high
    /// watermark.
    #[error(
        "offset {requested} is out of range for {topic}-{partition}: valid offsets are {log_start_offset}..={high_watermark}"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        requested: i64,
        /// The first offset still in the log.
        log_start_offset: i64,
        /// The offset after the last readable record.
        high_watermark: i64,
    },
    /// A record batch is larger than the topic's `max_message_bytes` or its
    /// segment size. Nothing was appended.
    #[error("record batch of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    RecordTooLarge {
        /// The encoded size of the batch.
        size_bytes: usize,
        /// The limit it exceeds.
        max_bytes: usize,
    },
    /// A record or batch that can not be written as given (an empty batch,
    /// a negative timestamp, a field longer than the format allows).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A configuration value out of its allowed range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Bytes on disk (or handed in) that do not decode as what they should be.
    #[error("corrupt data in {}: {reason}", path.display())]
    Corrupt {
        /// The file, or a description of the buffer, holding the bad bytes.
        path: PathBuf,
        /// What is wrong with them.
        reason: String,
    },
    /// A record batch whose stored CRC-32C does not match its contents.
    #[error("record batch checksum mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    ChecksumMismatch {
        /// The CRC stored in the batch header.
        expected: u32,
        /// The CRC computed over the batch.
        actual: u32,
    },
    /// Record batches compressed with a codec brooklet does not implement yet.
    #[error("record batch uses compression codec {0}, which is not supported")]
    UnsupportedCompression(u8),
    /// A conditional append expected the partition to end at another
    /// offset. Nothing was appended.
    #[error("expected {topic}-{partition} to end at offset {expected}, but it ends at {actual}")]
    UnexpectedEndOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The end offset the append was conditional on.
        expected: i64,
        /// The partition's actual end offset.
        actual: i64,
    },
    /// An idempotent batch whose sequence number does not follow the
    /// producer's previous batch: a batch went missing in between.
    #[error("producer {producer_id} sent sequence {received}, expected {expected}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The sequence the partition expected.
        expected: i32,
        /// The sequence the batch carried.
        received: i32,
    },
    /// A batch from an older epoch of a producer id that has moved on: the
    /// sending producer was replaced and must stop.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newer epoch the partition has seen.
        current_epoch: i16,
    },
    /// A producer's buffer stayed full for its whole `max_block`.
    #[error("producer buffer of {buffer_memory_bytes} bytes stayed full for {max_block_ms} ms")]
    BufferExhausted {
        /// The producer's `buffer_memory`.
        buffer_memory_bytes: usize,
        /// How long `send` waited.
        max_block_ms: u64,
    },
    /// A consumer has no committed offset for a partition and its
    /// `auto_offset_reset` is `None`.
    #[error("no committed offset for {topic}-{partition} and auto_offset_reset is none")]
    NoOffsetForPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// An operation on a partition the consumer is not assigned.
    #[error("partition {topic}-{partition} is not assigned to this consumer")]
    NotAssigned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A subscription pattern that is not a valid regular expression.
    #[error("invalid subscription pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A consumer group member the coordinator no longer knows: it left,
    /// or was removed for missing its session time-out or poll interval.
    /// It must rejoin; its partitions may belong to others now.
    #[error("member {member_id:?} is not in group {group:?} (removed or never joined)")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member id.
        member_id: String,
    },
    /// A static member replaced by a newer consumer with the same
    /// `group_instance_id`.
    #[error("group {group:?} instance {instance_id:?} was taken over by a newer consumer")]
    FencedInstanceId {
        /// The group.
        group: String,
        /// The static instance id.
        instance_id: String,
    },
    /// A commit or sync from a member of an older generation of the group.
    #[error("group {group:?} is at generation {current}; generation {generation} is stale")]
    IllegalGeneration {
        /// The group.
        group: String,
        /// The generation the member acted in.
        generation: i32,
        /// The group's current generation.
        current: i32,
    },
    /// The group is rebalancing; the member must finish joining first.
    #[error("group {0:?} is rebalancing")]
    RebalanceInProgress(String),
    /// An administrative operation that needs a group without members.
    #[error("group {0:?} has active members")]
    GroupNotEmpty(String),
    /// A group that does not exist.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// A member asked for an assignment strategy other than the group's.
    #[error("group {group:?} uses strategy {current}; a member asked for {requested}")]
    InconsistentGroupProtocol {
        /// The group.
        group: String,
        /// The group's strategy.
        current: &'static str,
        /// The member's.
        requested: &'static str,
    },
    /// Another `Log`, in this process or another, holds the directory.
    #[error("log directory {} is already open elsewhere", path.display())]
    AlreadyOpen {
        /// The directory.
        path: PathBuf,
    },
    /// The log was closed; this handle can do nothing more.
    #[error("the log is closed")]
    Closed,
    /// An earlier failure left a partition in a state that is not safe to
    /// write to; reopening the log recovers it.
    #[error(
        "partition {topic}-{partition} failed earlier and refuses writes until reopened: {reason}"
    )]
    Poisoned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The failure that poisoned it.
        reason: String,
    },
    /// An operating-system I/O error, with the file it happened on.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// A copy of the error, for delivering one failure to several waiters
    /// (`io::Error` is not `Clone`: its kind and message are kept).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::InvalidTopicName { name, reason } => Error::InvalidTopicName {
                name: name.clone(),
                reason,
            },
            Error::TopicAlreadyExists(t) => Error::TopicAlreadyExists(t.clone()),
            Error::UnknownTopic(t) => Error::UnknownTopic(t.clone()),
            Error::UnknownPartition {
                topic,
                partition,
                partition_count,
            } => Error::UnknownPartition {
                topic: topic.clone(),
                partition: *partition,
                partition_count: *partition_count,
            },
            Error::RecordTooLarge {
                size_bytes,
                max_bytes,
            } => Error::RecordTooLarge {
                size_bytes: *size_bytes,
                max_bytes: *max_bytes,
            },
            Error::InvalidRecord(m) => Error::InvalidRecord(m.clone()),
            Error::Closed => Error::Closed,
            Error::Poisoned {
                topic,
                partition,
                reason,
            } => Error::Poisoned {
                topic: topic.clone(),
                partition: *partition,
                reason: reason.clone(),
            },
            Error::OutOfOrderSequence {
                producer_id,
                expected,
                received,
            } => Error::OutOfOrderSequence {
                producer_id: *producer_id,
                expected: *expected,
                received: *received,
            },
            Error::ProducerFenced {
                producer_id,
                epoch,
                current_epoch,
            } => Error::ProducerFenced {
                producer_id: *producer_id,
                epoch: *epoch,
                current_epoch: *current_epoch,
            },
            other => Error::InvalidRecord(other.to_string()),
        }
    }
}

/// `Result` with brooklet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
