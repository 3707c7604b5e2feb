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
use crate::log::{Log, deadline_after};
use crate::notify::Notify;
use crate::record::Record;

pub use accumulator::RecordMetadata;
use accumulator::{BatchCompletion, Callback, PartitionQueue, PendingBatch};
pub use partitioner::{
    DefaultPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};

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

/// FNV-1a for the topic-name lookup on every send: a handful of short,
/// trusted keys, where SipHash's cost shows and its DoS resistance buys
/// nothing.
#[derive(Clone, Copy, Default)]
struct TopicNameHasher;

struct Fnv1a(u64);

impl std::hash::BuildHasher for TopicNameHasher {
    type Hasher = Fnv1a;
    fn build_hasher(&self) -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Sticky partition choice for records without a key (Kafka's uniform
/// sticky partitioner): stay on one partition for a batch's worth of bytes.
struct Sticky {
    partition: u32,
    bytes: usize,
}

struct TopicQueues {
    name: Arc<str>,
    max_batch_bytes: usize,
    /// The topic is compacted: every record needs a key.
    requires_keys: bool,
    queues: Vec<Arc<PartitionQueue>>,
    sticky: Mutex<Sticky>,
    /// The log's metadata version these queues were built at.
    version: u64,
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

fn record_size(record: &Record) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len) + 4)
        .sum();
    RECORD_OVERHEAD_BYTES
        + record.key.as_ref().map_or(0, Vec::len)
        + record.value.as_ref().map_or(0, Vec::len)
        + headers
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

    fn topic_queues(&self, topic: &str) -> Result<Arc<TopicQueues>> {
        let shared = &self.inner.shared;
        let version = shared.log.metadata_version();
        if let Some(queues) = shared.topics.read().get(topic)
            && queues.version == version
        {
            return Ok(Arc::clone(queues));
        }
        let mut topics = shared.topics.write();
        let previous = topics.get(topic).cloned();
        let partitions = shared.log.partition_handles(topic)?;
        let name: Arc<str> = Arc::from(topic);
        let queues = partitions
            .into_iter()
            .enumerate()
            .map(|(i, log)| {
                // Keep existing queues (and their sequence numbers) when
                // only the partition count changed.
                previous
                    .as_ref()
                    .and_then(|p| p.queues.get(i))
                    .filter(|q| Arc::ptr_eq(&q.log, &log))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(PartitionQueue::new(log)))
            })
            .collect::<Vec<_>>();
        let max_batch_bytes = queues.first().map_or(usize::MAX, |q| {
            (q.log.config.max_message_bytes as usize).min(q.log.config.segment_bytes as usize)
        });
        let requires_keys = queues
            .first()
            .is_some_and(|q| q.log.config.cleanup_policy != crate::config::CleanupPolicy::Delete);
        let seed = shared.sticky_seed.fetch_add(1, Ordering::Relaxed);
        let count = queues.len().max(1) as u64;
        let built = Arc::new(TopicQueues {
            name,
            max_batch_bytes,
            requires_keys,
            sticky: Mutex::new(Sticky {
                partition: (seed % count) as u32,
                bytes: 0,
            }),
            queues,
            version,
        });
        topics.insert(topic.to_owned(), Arc::clone(&built));
        Ok(built)
    }

    /// Counts `size` bytes against the buffer memory if they fit.
    fn try_reserve_memory(&self, size: usize) -> bool {
        let shared = &self.inner.shared;
        let limit = shared.config.buffer_memory_bytes;
        shared
            .buffered_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used + size <= limit).then_some(used + size)
            })
            .is_ok()
    }

    fn reserve_memory(&self, size: usize) -> Result<()> {
        let shared = &self.inner.shared;
        let limit = shared.config.buffer_memory_bytes;
        if size > limit {
            return Err(Error::RecordTooLarge {
                size_bytes: size,
                max_bytes: limit,
            });
        }
        let try_reserve = || self.try_reserve_memory(size);
        if try_reserve() {
            return Ok(());
        }
        let clock = Arc::clone(shared.log.clock());
        let deadline_ms = deadline_after(&*clock, shared.config.max_block);
        let mut reserved = false;
        shared.memory_freed.wait_until(&*clock, deadline_ms, || {
            reserved = try_reserve();
            reserved || shared.closing.load(Ordering::SeqCst)
        });
        if reserved {
            Ok(())
        } else if shared.closing.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Err(Error::BufferExhausted {
                buffer_memory_bytes: limit,
                max_block_ms: u64::try_from(shared.config.max_block.as_millis())
                    .unwrap_or(u64::MAX),
            })
        }
    }

    fn enqueue(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        callback: Option<Callback>,
    ) -> Result<SendHandle> {
        let shared = &self.inner.shared;
        if shared.closing.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let mut callback = callback;
        // The common case works on the cached queues under the read lock,
        // without taking a reference to them; it gives up rather than wait
        // for buffer memory with the lock held.
        let version = shared.log.metadata_version();
        {
            let topics = shared.topics.read();
            if let Some(queues) = topics.get(topic)
                && queues.version == version
                && let Some(handle) =
                    self.enqueue_to(queues, topic, partition, record, &mut callback, false)?
            {
                return Ok(handle);
            }
        }
        let queues = self.topic_queues(topic)?;
        self.enqueue_to(&queues, topic, partition, record, &mut callback, true)?
            .ok_or(Error::Closed)
    }

    /// Queues `record` on `topic_queues`. `None` if buffer memory is short
    /// and `may_block` is false.
    fn enqueue_to(
        &self,
        topic_queues: &TopicQueues,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        callback: &mut Option<Callback>,
        may_block: bool,
    ) -> Result<Option<SendHandle>> {
        let shared = &self.inner.shared;
        let partition_count = u32::try_from(topic_queues.queues.len()).unwrap_or(u32::MAX);
        let size = record_size(record);
        let batch_limit = shared
            .config
            .batch_size_bytes
            .min(topic_queues.max_batch_bytes);
        if size + crate::record::BATCH_HEADER_LEN > topic_queues.max_batch_bytes {
            return Err(Error::RecordTooLarge {
                size_bytes: size + crate::record::BATCH_HEADER_LEN,
                max_bytes: topic_queues.max_batch_bytes,
            });
        }
        // Kafka's producer stamps the send time on records without one. One
        // clock read serves that and the batch's linger.
        let now_ms = shared.log.clock().now_ms();
        let timestamp_ms = record.timestamp_ms.unwrap_or(now_ms);
        if timestamp_ms < 0 {
            return Err(Error::InvalidRecord(format!(
                "timestamp {timestamp_ms} is negative"
            )));
        }
        if topic_queues.requires_keys && record.key.is_none() {
            return Err(Error::InvalidRecord(format!(
                "topic {topic} is compacted and every record needs a key"
            )));
        }
        let chosen = match partition {
            Some(partition) => Some(partition),
            None => shared.config.partitioner.partition(
                topic,
                record.key.as_deref(),
                record.value.as_deref(),
                partition_count,
            ),
        };
        let sticky = chosen.is_none();
        let partition = match chosen {
            Some(partition) => partition,
            None => topic_queues.sticky.lock().partition,
        };
        let queue =
            topic_queues
                .queues
                .get(partition as usize)
                .ok_or_else(|| Error::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                    partition_count,
                })?;
        if may_block {
            self.reserve_memory(size)?;
        } else if !self.try_reserve_memory(size) {
            return Ok(None);
        }
        let (completion, index, enlist) = {
            let mut state = queue.state.lock();
            let new_batch = || {
                PendingBatch::new(
                    shared.batch_buffer(batch_limit.saturating_add(size)),
                    now_ms,
                    BatchCompletion::new(Arc::clone(&topic_queues.name), partition),
                )
            };
            let open = state.open.get_or_insert_with(new_batch);
            let (len, count, max_timestamp) =
                (open.bytes.len(), open.record_count, open.max_timestamp);
            let mut index = open.push(record, timestamp_ms);
            if open.bytes.len() > batch_limit && count > 0 {
                // It does not fit: the batch goes as it was, and the record
                // starts the next one.
                open.pop_to(len, count, max_timestamp);
                let full = state.open.take();
                state.ready.extend(full);
                let open = state.open.insert(new_batch());
                index = open.push(record, timestamp_ms);
            }
            let Some(open) = state.open.as_mut() else {
                return Err(Error::Closed);
            };
            open.size_bytes += size;
            if let Some(callback) = callback.take() {
                open.callbacks.push((index, timestamp_ms, callback));
            }
            let completion = Arc::clone(&open.completion);
            if open.bytes.len() >= batch_limit {
                let full = state.open.take();
                state.ready.extend(full);
            }
            let enlist = !state.enlisted;
            state.enlisted = true;
            (completion, index, enlist)
        };
        if enlist {
            shared.pending.lock().push(Arc::clone(queue));
        }
        if enlist || index == 0 {
            shared.wake.signal();
        }
        if sticky {
            let mut sticky = topic_queues.sticky.lock();
            sticky.bytes += size;
            if sticky.bytes >= shared.config.batch_size_bytes {
                sticky.bytes = 0;
                sticky.partition = (sticky.partition + 1) % partition_count.max(1);
            }
        }
        Ok(Some(SendHandle {
            completion,
            index,
            timestamp_ms,
        }))
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
