//! The storage engine: segments, indexes, partitions, recovery and
//! checkpoint files.
//!
//! **Architecture invariant:** nothing here knows of producers, consumer
//! groups or replication, and nothing here spawns a thread.

pub(crate) mod checkpoint;
pub(crate) mod compaction;
pub(crate) mod fetch;
mod flush;
pub(crate) mod group;
pub(crate) mod index;
mod load;
#[cfg(test)]
pub(crate) mod lock_tests;
pub(crate) mod partition;
pub(crate) mod producer_state;
mod read;
mod retention;
pub(crate) mod scan;
pub(crate) mod segment;
mod truncate;
mod verify;

pub use compaction::CompactionStats;
pub use fetch::{Batches, Fetch, Records};
pub(crate) use load::{LoadHints, PartitionContext};
pub(crate) use partition::PartitionLog;
pub use partition::{AppendInfo, AppendOptions, ProducerBatch};
pub use read::TimestampOffset;
