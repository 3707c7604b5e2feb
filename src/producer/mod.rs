//! [`Producer`]: batches records per partition, picks partitions, and
//! appends on a background thread, with idempotence on by default.
//!
//! ```
//! use brooklet::{Log, LogConfig, ProducerConfig, Record, TopicConfig};
//!
//! let log = Log::temporary(LogConfig::default())?;
//! log.create_topic("orders", TopicConfig::default().partitions(3))?;
//! let producer = log.producer(ProducerConfig::default())?;
//! let sent = producer.send("orders", Record::new("created").key("order-1"))?;
//! let metadata = sent.wait()?;
//! assert_eq!(metadata.offset, 0);
//! producer.flush()?;
//! # Ok::<(), brooklet::Error>(())
//! ```

mod accumulator;
mod partitioner;
mod send;
mod sender;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::log::Log;
use crate::notify::Notify;
use crate::record::Record;

pub use accumulator::RecordMetadata;
use accumulator::{BatchCompletion, PartitionQueue};
pub use partitioner::{
    DefaultPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};
use send::{TopicNameHasher, TopicQueues};

/// Kafka's `batch.size` default.
pub const DEFAULT_BATCH_SIZE_BYTES: usize = 16 * 1024;
/// Kafka's `buffer.memory` default.
pub const DEFAULT_BUFFER_MEMORY_BYTES: usize = 32 * 1024 * 1024;
/// Bytes a record costs in a batch beyond its key, value and headers
/// (length, attributes, deltas and length prefixes), for sizing batches.
const RECORD_OVERHEAD_BYTES: usize = 21;

/// Settings of a [`Producer`], with Kafka's defaults.
#[derive(Clone)]
#[must_use]
pub struct ProducerConfig {
    batch_size_bytes: usize,
    linger: Duration,
    buffer_memory_bytes: usize,
    max_block: Duration,
    idempotence: bool,
    partitioner: Arc<dyn Partitioner>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_size_bytes: DEFAULT_BATCH_SIZE_BYTES,
            linger: Duration::ZERO,
            buffer_memory_bytes: DEFAULT_BUFFER_MEMORY_BYTES,
            max_block: Duration::from_secs(60),
            idempotence: true,
            partitioner: Arc::new(DefaultPartitioner),
        }
    }
}

impl fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("batch_size_bytes", &self.batch_size_bytes)
            .field("linger", &self.linger)
            .field("buffer_memory_bytes", &self.buffer_memory_bytes)
            .field("max_block", &self.max_block)
            .field("idempotence", &self.idempotence)
            .field("partitioner", &self.partitioner)
            .finish()
    }
}

impl ProducerConfig {
    /// A batch is appended once it holds this many bytes (`batch.size`).
    /// Defaults to 16 KiB.
    pub fn batch_size_bytes(mut self, bytes: usize) -> Self {
        self.batch_size_bytes = bytes.max(1);
        self
    }
    /// How long a batch may wait for more records, by the log's clock
    /// (`linger.ms`). With zero the sender appends whatever has accumulated
    /// whenever it is free. Defaults to zero.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
    /// Bytes of records waiting to be appended before `send` blocks
    /// (`buffer.memory`). Defaults to 32 MiB.
    pub fn buffer_memory_bytes(mut self, bytes: usize) -> Self {
        self.buffer_memory_bytes = bytes;
        self
    }
    /// How long `send` blocks on a full buffer before failing with
    /// [`Error::BufferExhausted`] (`max.block.ms`), by the log's clock.
    /// Defaults to 60 s.
    pub fn max_block(mut self, max_block: Duration) -> Self {
        self.max_block = max_block;
        self
    }
    /// Idempotent appends: retried batches are never stored twice
    /// (`enable.idempotence`). Defaults to on.
    pub fn idempotence(mut self, on: bool) -> Self {
        self.idempotence = on;
        self
    }
    /// The partitioner for records sent without a partition. Defaults to
    /// [`DefaultPartitioner`].
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = partitioner;
        self
    }
}

/// State shared by the producer's handles and its sender thread.
pub(crate) struct Shared {
    pub(crate) log: Log,
    pub(crate) config: ProducerConfig,
    /// Producer id and epoch, with idempotence.
    pub(crate) identity: Option<(i64, i16)>,
    topics: RwLock<HashMap<String, Arc<TopicQueues>, TopicNameHasher>>,
    /// Queues with batches, for the sender.
    pub(crate) pending: Mutex<Vec<Arc<PartitionQueue>>>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) buffered_bytes: AtomicUsize,
    pub(crate) memory_freed: Arc<Notify>,
    pub(crate) flush_requests: AtomicUsize,
    pub(crate) closing: AtomicBool,
    sticky_seed: AtomicU64,
    /// Buffers of appended batches, for new batches to reuse (as Kafka's
    /// `BufferPool` keeps `batch.size` buffers).
    spare_buffers: Mutex<Vec<Vec<u8>>>,
}

/// Spare batch buffers kept for reuse: enough for the batches in flight
/// and the ones filling meanwhile.
const MAX_SPARE_BUFFERS: usize = 4;

impl Shared {
    /// An empty buffer of at least `capacity` bytes for a new batch.
    fn batch_buffer(&self, capacity: usize) -> Vec<u8> {
        if let Some(buffer) = self.spare_buffers.lock().pop()
            && buffer.capacity() >= capacity
        {
            return buffer;
        }
        Vec::with_capacity(capacity)
    }

    /// Takes back the buffer of an appended batch.
    pub(crate) fn recycle(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 2 * self.config.batch_size_bytes {
            return;
        }
        buffer.clear();
        let mut spare = self.spare_buffers.lock();
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(buffer);
        }
    }

    pub(crate) fn all_queues(&self) -> Vec<Arc<PartitionQueue>> {
        self.topics
            .read()
            .values()
            .flat_map(|topic| topic.queues.iter().cloned())
            .collect()
    }
}

struct ProducerInner {
    shared: Arc<Shared>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

/// Sends records to a log's topics, batching them per partition. Cheap to
/// clone and safe to share across threads; closes (sending what is
/// pending) when the last clone is dropped.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("identity", &self.inner.shared.identity)
            .finish_non_exhaustive()
    }
}

/// A sent record's future metadata.
#[derive(Clone)]
pub struct SendHandle {
    completion: Arc<BatchCompletion>,
    index: u32,
    timestamp_ms: i64,
}

impl fmt::Debug for SendHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHandle")
            .field("topic", &self.completion.topic)
            .field("partition", &self.completion.partition)
            .field("done", &self.is_done())
            .finish()
    }
}

impl SendHandle {
    /// Blocks until the record is appended; returns where it went.
    pub fn wait(&self) -> Result<RecordMetadata> {
        let info = self.completion.wait()?;
        Ok(self
            .completion
            .metadata(&info, self.index, self.timestamp_ms))
    }

    /// Whether the record's batch was appended (or failed).
    pub fn is_done(&self) -> bool {
        self.completion.is_done()
    }
}

impl Log {
    /// A producer for this log's topics.
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        let identity = if config.idempotence {
            Some(self.init_producer_id()?)
        } else {
            None
        };
        let clock = Arc::clone(self.clock());
        let shared = Arc::new(Shared {
            log: self.clone(),
            identity,
            topics: RwLock::new(HashMap::default()),
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(&*clock),
            buffered_bytes: AtomicUsize::new(0),
            memory_freed: Notify::new(&*clock),
            flush_requests: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            sticky_seed: AtomicU64::new(identity.map_or(0, |(id, _)| id as u64)),
            spare_buffers: Mutex::new(Vec::new()),
            config,
        });
        let thread_shared = Arc::clone(&shared);
        let sender = std::thread::Builder::new()
            .name("brooklet-producer".into())
            .spawn(move || sender::run(&thread_shared))
            .map_err(|source| Error::Io {
                path: self.dir().to_owned(),
                source,
            })?;
        Ok(Producer {
            inner: Arc::new(ProducerInner {
                shared,
                sender: Mutex::new(Some(sender)),
            }),
        })
    }
}

impl Producer {
    /// The producer id and epoch of an idempotent producer.
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.inner.shared.identity
    }

    /// Queues `record` for `topic`; its partition comes from the
    /// partitioner. Returns a handle to wait on. Blocks only while the
    /// buffer is full.
    ///
    /// The record is encoded into its batch before `send` returns, so it
    /// can be passed by reference and reused: `send(topic, &record)`.
    pub fn send(&self, topic: &str, record: impl Borrow<Record>) -> Result<SendHandle> {
        self.enqueue(topic, None, record.borrow(), None)
    }

    /// Queues `record` for one partition of `topic`.
    pub fn send_to(
        &self,
        topic: &str,
        partition: u32,
        record: impl Borrow<Record>,
    ) -> Result<SendHandle> {
        self.enqueue(topic, Some(partition), record.borrow(), None)
    }

    /// Queues `record` and calls `callback` with its outcome, on the
    /// producer's sender thread, once its batch is appended.
    pub fn send_with_callback(
        &self,
        topic: &str,
        record: impl Borrow<Record>,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        self.enqueue(topic, None, record.borrow(), Some(Box::new(callback)))
            .map(|_| ())
    }

    /// Appends everything sent so far and waits until it is in the log.
    /// Returns the first error any of those records met.
    pub fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        shared.flush_requests.fetch_add(1, Ordering::SeqCst);
        let completions: Vec<Arc<BatchCompletion>> = shared
            .all_queues()
            .iter()
            .flat_map(|queue| {
                let state = queue.state.lock();
                state
                    .ready
                    .iter()
                    .chain(state.open.iter())
                    .map(|batch| Arc::clone(&batch.completion))
                    .chain(state.in_flight.iter().cloned())
                    .collect::<Vec<_>>()
            })
            .collect();
        shared.wake.signal();
        let mut first_error = None;
        for completion in completions {
            if let Err(err) = completion.wait() {
                first_error.get_or_insert(err);
            }
        }
        shared.flush_requests.fetch_sub(1, Ordering::SeqCst);
        first_error.map_or(Ok(()), Err)
    }

    /// Sends what is pending, then stops the sender thread. Later sends
    /// fail with [`Error::Closed`].
    pub fn close(self) -> Result<()> {
        self.inner.close();
        Ok(())
    }
}

impl ProducerInner {
    fn close(&self) {
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        shared.wake.signal();
        shared.memory_freed.notify();
        if let Some(sender) = self.sender.lock().take() {
            // A panicked sender already failed every pending batch.
            let _ = sender.join();
        }
    }
}

impl Drop for ProducerInner {
    fn drop(&mut self) {
        self.close();
    }
}
