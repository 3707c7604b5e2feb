//! The send path: the topic's queues, checks, buffer memory, the
//! partition, and the record encoded into its partition's open batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::log::deadline_after;
use crate::producer::accumulator::{BatchCompletion, Callback, PartitionQueue, PendingBatch};
use crate::producer::{Producer, RECORD_OVERHEAD_BYTES, SendHandle};
use crate::record::Record;

/// FNV-1a for the topic-name lookup on every send: a handful of short,
/// trusted keys, where SipHash's cost shows and its DoS resistance buys
/// nothing.
#[derive(Clone, Copy, Default)]
pub(super) struct TopicNameHasher;

pub(super) struct Fnv1a(u64);

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
pub(super) struct Sticky {
    partition: u32,
    bytes: usize,
}

pub(super) struct TopicQueues {
    name: Arc<str>,
    max_batch_bytes: usize,
    /// The topic is compacted: every record needs a key.
    requires_keys: bool,
    pub(super) queues: Vec<Arc<PartitionQueue>>,
    sticky: Mutex<Sticky>,
    /// The log's metadata version these queues were built at.
    version: u64,
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

    pub(super) fn enqueue(
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
}
