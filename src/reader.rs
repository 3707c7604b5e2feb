//! [`PartitionReader`]: walks a partition in order, one fetch at a time,
//! continuing where the last fetch ended without searching the index again.
//!
//! ```
//! use brooklet::{Fetch, Log, LogConfig, Record, TopicConfig};
//!
//! let log = Log::temporary(LogConfig::default())?;
//! log.create_topic("t", TopicConfig::default())?;
//! for i in 0..10 {
//!     log.append("t", 0, &[Record::new(format!("v{i}"))])?;
//! }
//! let mut reader = log.reader("t", 0, 3)?;
//! let mut fetch = Fetch::new();
//! let mut seen = Vec::new();
//! while reader.next_into(&mut fetch)? {
//!     for record in fetch.records() {
//!         seen.push(record?.offset);
//!     }
//! }
//! assert_eq!(seen, (3..10).collect::<Vec<i64>>());
//! # Ok::<(), brooklet::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::log::deadline_after;
use crate::storage::fetch::ReadCursor;
use crate::storage::{Fetch, PartitionLog};

/// Bytes per fetch unless set otherwise: Kafka's
/// `max.partition.fetch.bytes`.
pub const DEFAULT_MAX_FETCH_BYTES: usize = 1 << 20;

/// A position in one partition that reads forward from it.
pub struct PartitionReader {
    partition: Arc<PartitionLog>,
    position: i64,
    max_bytes: usize,
    cursor: Option<ReadCursor>,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("topic", &self.partition.topic)
            .field("partition", &self.partition.partition)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    pub(crate) fn new(partition: Arc<PartitionLog>, position: i64, max_bytes: usize) -> Self {
        PartitionReader {
            partition,
            position,
            max_bytes,
            cursor: None,
        }
    }

    /// The offset the next fetch starts at.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Moves the reader to `offset`.
    pub fn seek(&mut self, offset: i64) {
        self.position = offset;
        self.cursor = None;
    }

    /// Sets the byte budget of each fetch (the first batch is returned
    /// whole even if larger).
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// Reads the next batches into `fetch`, reusing its buffer, and moves
    /// past them. Returns false when the reader has caught up with the high
    /// watermark (the fetch is then empty).
    pub fn next_into(&mut self, fetch: &mut Fetch) -> Result<bool> {
        self.partition
            .read_into(self.position, self.max_bytes, self.cursor.as_ref(), fetch)?;
        if fetch.is_empty() {
            return Ok(false);
        }
        self.position = fetch.next_offset();
        self.cursor = fetch.cursor().cloned();
        Ok(true)
    }

    /// Reads the next batches; `None` when caught up.
    pub fn next_fetch(&mut self) -> Result<Option<Fetch>> {
        let mut fetch = Fetch::new();
        Ok(self.next_into(&mut fetch)?.then_some(fetch))
    }

    /// Blocks until there is data at the reader's position or `timeout`
    /// passes on the log's clock; returns whether data is there.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let deadline_ms = deadline_after(&*self.partition.clock, timeout);
        self.partition.wait_for_data(self.position, deadline_ms)
    }
}
