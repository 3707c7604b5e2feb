//! brooklet is Kafka's log model as an embeddable Rust library: topics split
//! into partitions, each partition an append-only log of segment files in
//! Kafka's own record batch format, with offset and time indexes and crash
//! recovery. No server, no JVM: link it and get a durable, ordered,
//! replayable event log.
//!
//! ```
//! use brooklet::{Log, LogConfig, Record, TopicConfig};
//!
//! let log = Log::temporary(LogConfig::default())?; // or Log::open("data", ...)
//! log.create_topic("orders", TopicConfig::default().partitions(3))?;
//! let info = log.append("orders", 0, &[Record::new("created").key("order-1")])?;
//! let fetch = log.read("orders", 0, info.base_offset, 1 << 20)?;
//! for record in fetch.records() {
//!     let record = record?;
//!     println!("{}: {:?}", record.offset, record.value);
//! }
//! # Ok::<(), brooklet::Error>(())
//! ```
//!
//! **Durability contract.** An append returns once its batch is written to
//! the operating system. A crash of the process loses nothing that was
//! acknowledged. A crash of the machine loses nothing that was flushed:
//! every append on topics with [`Durability::EveryAppend`], and everything
//! before the last [`Log::flush`] (or interval flush) otherwise. Reopening
//! after any crash keeps every whole, checksummed batch up to the first
//! damaged one in each partition and rebuilds the indexes.
//!
//! The on-disk format is documented byte by byte in `docs/format.md`; the
//! code's structure in `ARCHITECTURE.md`.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

mod cleaner;
mod clock;
mod config;
mod consumer;
mod error;
mod group;
mod log;
mod notify;
mod producer;
mod reader;
mod record;
mod storage;
mod topics;
mod wall_clock;

pub use clock::{Clock, ClockListener, ManualClock, SystemClock};
pub use config::{
    CleanupPolicy, DEFAULT_DELETE_RETENTION_MS, DEFAULT_INDEX_INTERVAL_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RETENTION_MS, DEFAULT_SEGMENT_BYTES,
    DEFAULT_SEGMENT_INDEX_BYTES, DEFAULT_SEGMENT_MS, Durability, LogConfig, MAX_PARTITIONS,
    MIN_SEGMENT_BYTES, TimestampType, TopicConfig,
};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, ConsumerRecords, ConsumerRecordsIter,
    DEFAULT_OFFSETS_TOPIC_PARTITIONS, OFFSETS_TOPIC, OffsetAndMetadata, OffsetReset,
    RebalanceListener, TopicPartition,
};
pub use error::{Error, Result};
pub use group::{
    Assignment, AssignmentStrategy, GroupDescription, GroupState, MemberDescription,
    MemberSubscription, OffsetSpec, PartitionLag, assign,
};
pub use log::{Log, PartitionDescription, PartitionOffsets, TailLoss, TopicDescription};
pub use producer::{
    DEFAULT_BATCH_SIZE_BYTES, DEFAULT_BUFFER_MEMORY_BYTES, DefaultPartitioner, Partitioner,
    Producer, ProducerConfig, RecordMetadata, RoundRobinPartitioner, SendHandle, murmur2,
    partition_for_key,
};
pub use reader::{DEFAULT_MAX_FETCH_BYTES, PartitionReader};
pub use record::{
    BATCH_HEADER_LEN, BatchHeader, BatchView, Header, HeaderIter, HeaderView, HeadersView, Record,
    RecordIter, RecordView,
};
pub use storage::{
    AppendInfo, AppendOptions, Batches, CompactionStats, Fetch, ProducerBatch, Records,
    TimestampOffset,
};
pub use topics::{MAX_TOPIC_NAME_LEN, validate_topic_name};
