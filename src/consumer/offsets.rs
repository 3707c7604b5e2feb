//! Committed offsets, kept in the log itself: the internal topic
//! `__consumer_offsets`, keyed by (group, topic, partition) in Kafka's own
//! record formats, so a consumer group resumes where it committed after a
//! close, a restart or a crash.

use parking_lot::Mutex;
use std::collections::HashMap;

use crate::config::{CleanupPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::record::Record;

/// Kafka's internal topic of committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.num.partitions` default.
pub const DEFAULT_OFFSETS_TOPIC_PARTITIONS: u32 = 50;
/// Kafka's `offsets.topic.segment.bytes` default.
const OFFSETS_TOPIC_SEGMENT_BYTES: u32 = 100 * 1024 * 1024;
/// Version prefix of an offset commit key (Kafka's `OffsetCommitKey`).
const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Version prefix of the offset commit values brooklet writes (v3: with
/// leader epoch, not flexible).
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;

/// A topic and partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A committed offset: the next offset the group will read, with the
/// caller's metadata string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to consume.
    pub offset: i64,
    /// Free-form text stored with the commit.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// An offset with empty metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
        }
    }
}

type CommitKey = (String, String, u32);

/// The committed offsets of every group, loaded from the internal topic on
/// first use and kept in step with every commit.
#[derive(Default)]
pub(crate) struct OffsetStore {
    /// `None` until loaded.
    cache: Mutex<Option<HashMap<CommitKey, OffsetAndMetadata>>>,
}

/// Java's `String.hashCode`, over UTF-16 code units.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The partition of the offsets topic that holds a group's commits
/// (Kafka's `Utils.abs(groupId.hashCode()) % partitions`).
pub(crate) fn partition_for_group(group: &str, partitions: u32) -> u32 {
    let hash = java_string_hash(group);
    let positive = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    positive % partitions.max(1)
}

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = i16::try_from(s.len()).map_err(|_| {
        Error::InvalidRecord(format!("string of {} bytes is too long to commit", s.len()))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn encode_key(group: &str, topic: &str, partition: u32) -> Result<Vec<u8>> {
    let mut key = Vec::with_capacity(10 + group.len() + topic.len());
    key.extend_from_slice(&OFFSET_COMMIT_KEY_VERSION.to_be_bytes());
    put_string(&mut key, group)?;
    put_string(&mut key, topic)?;
    key.extend_from_slice(&(partition as i32).to_be_bytes());
    Ok(key)
}

fn encode_value(commit: &OffsetAndMetadata, timestamp_ms: i64) -> Result<Vec<u8>> {
    let mut value = Vec::with_capacity(24 + commit.metadata.len());
    value.extend_from_slice(&OFFSET_COMMIT_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&commit.offset.to_be_bytes());
    value.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch: unknown
    put_string(&mut value, &commit.metadata)?;
    value.extend_from_slice(&timestamp_ms.to_be_bytes());
    Ok(value)
}

/// A cursor over big-endian fields; `None` when the bytes run out.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        let raw = self.bytes.get(..len)?;
        self.bytes = &self.bytes[len..];
        String::from_utf8(raw.to_vec()).ok()
    }
}

/// Decodes an offset commit key; `None` for other record kinds (group
/// metadata) or malformed keys.
fn decode_key(key: &[u8]) -> Option<CommitKey> {
    let mut reader = Reader { bytes: key };
    let version = reader.i16()?;
    if version != 0 && version != 1 {
        return None;
    }
    let group = reader.string()?;
    let topic = reader.string()?;
    let partition = u32::try_from(reader.i32()?).ok()?;
    Some((group, topic, partition))
}

/// Decodes an offset commit value, versions 0 to 3.
fn decode_value(value: &[u8]) -> Option<OffsetAndMetadata> {
    let mut reader = Reader { bytes: value };
    let version = reader.i16()?;
    // Version 4 and later are flexible (compact strings, tagged fields),
    // which brooklet neither writes nor reads yet.
    if !(0..=3).contains(&version) {
        return None;
    }
    let offset = reader.i64()?;
    if version >= 3 {
        reader.i32()?; // leader epoch
    }
    let metadata = reader.string()?;
    Some(OffsetAndMetadata { offset, metadata })
}

impl OffsetStore {
    /// Runs `f` on the loaded cache, loading it from the log first if
    /// needed.
    fn with_cache<T>(
        &self,
        log: &Log,
        f: impl FnOnce(&mut HashMap<CommitKey, OffsetAndMetadata>) -> T,
    ) -> Result<T> {
        let mut cache = self.cache.lock();
        if cache.is_none() {
            *cache = Some(load(log)?);
        }
        match cache.as_mut() {
            Some(cache) => Ok(f(cache)),
            None => Err(Error::Closed),
        }
    }

    /// Commits offsets for a group: one batch, so they land together.
    pub(crate) fn commit(
        &self,
        log: &Log,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let now_ms = log.clock().now_ms();
        let records = offsets
            .iter()
            .map(|(tp, commit)| {
                Ok(Record {
                    key: Some(encode_key(group, &tp.topic, tp.partition)?),
                    value: Some(encode_value(commit, now_ms)?),
                    headers: Vec::new(),
                    timestamp_ms: Some(now_ms),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Holding the cache lock orders commits and cache updates alike.
        self.with_cache(log, |cache| {
            let partitions = ensure_offsets_topic(log)?;
            log.append(
                OFFSETS_TOPIC,
                partition_for_group(group, partitions),
                &records,
            )?;
            for (tp, commit) in offsets {
                cache.insert(
                    (group.to_owned(), tp.topic.clone(), tp.partition),
                    commit.clone(),
                );
            }
            Ok(())
        })?
    }

    /// The committed offset of a group for a partition.
    pub(crate) fn committed(
        &self,
        log: &Log,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>> {
        self.with_cache(log, |cache| {
            cache
                .get(&(group.to_owned(), tp.topic.clone(), tp.partition))
                .cloned()
        })
    }

    /// Every partition a group has committed offsets for.
    pub(crate) fn group_offsets(
        &self,
        log: &Log,
        group: &str,
    ) -> Result<Vec<(TopicPartition, OffsetAndMetadata)>> {
        self.with_cache(log, |cache| {
            let mut offsets: Vec<_> = cache
                .iter()
                .filter(|((g, _, _), _)| g == group)
                .map(|((_, topic, partition), commit)| {
                    (
                        TopicPartition::new(topic.clone(), *partition),
                        commit.clone(),
                    )
                })
                .collect();
            offsets.sort_by(|a, b| a.0.cmp(&b.0));
            offsets
        })
    }

    /// Removes every commit of a group (tombstones in the offsets topic).
    pub(crate) fn delete_group(&self, log: &Log, group: &str) -> Result<()> {
        let now_ms = log.clock().now_ms();
        self.with_cache(log, |cache| {
            let keys: Vec<CommitKey> = cache
                .keys()
                .filter(|(g, _, _)| g == group)
                .cloned()
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            let records = keys
                .iter()
                .map(|(g, t, p)| {
                    Ok(Record {
                        key: Some(encode_key(g, t, *p)?),
                        value: None,
                        headers: Vec::new(),
                        timestamp_ms: Some(now_ms),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let partitions = ensure_offsets_topic(log)?;
            log.append(
                OFFSETS_TOPIC,
                partition_for_group(group, partitions),
                &records,
            )?;
            for key in keys {
                cache.remove(&key);
            }
            Ok(())
        })?
    }

    /// Every group with committed offsets.
    pub(crate) fn groups(&self, log: &Log) -> Result<Vec<String>> {
        self.with_cache(log, |cache| {
            let mut groups: Vec<String> = cache.keys().map(|(g, _, _)| g.clone()).collect();
            groups.sort();
            groups.dedup();
            groups
        })
    }
}

/// Creates the offsets topic if it does not exist; returns its partition
/// count.
fn ensure_offsets_topic(log: &Log) -> Result<u32> {
    match log.partition_count(OFFSETS_TOPIC) {
        Ok(count) => Ok(count),
        Err(Error::UnknownTopic(_)) => {
            let config = TopicConfig::default()
                .partitions(log.offsets_topic_partitions())
                .cleanup_policy(CleanupPolicy::Compact)
                .segment_bytes(OFFSETS_TOPIC_SEGMENT_BYTES);
            match log.create_topic(OFFSETS_TOPIC, config) {
                Ok(()) | Err(Error::TopicAlreadyExists(_)) => log.partition_count(OFFSETS_TOPIC),
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

/// Reads every commit in the offsets topic; later commits win, tombstones
/// delete.
fn load(log: &Log) -> Result<HashMap<CommitKey, OffsetAndMetadata>> {
    let mut cache = HashMap::new();
    let partitions = match log.partition_count(OFFSETS_TOPIC) {
        Ok(count) => count,
        Err(Error::UnknownTopic(_)) => return Ok(cache),
        Err(err) => return Err(err),
    };
    for partition in 0..partitions {
        let start = log.offsets(OFFSETS_TOPIC, partition)?.log_start_offset;
        let mut reader = log.reader(OFFSETS_TOPIC, partition, start)?;
        let mut fetch = crate::Fetch::new();
        while reader.next_into(&mut fetch)? {
            for record in fetch.records() {
                let record = record?;
                let Some(key) = record.key.and_then(decode_key) else {
                    continue;
                };
                match record.value.map(decode_value) {
                    None => {
                        cache.remove(&key);
                    }
                    Some(Some(commit)) => {
                        cache.insert(key, commit);
                    }
                    Some(None) => {}
                }
            }
        }
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partitions_follow_javas_string_hash() {
        // Java: "".hashCode() == 0, "a".hashCode() == 97, "hello".hashCode() == 99162322.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(partition_for_group("a", 50), 47);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
    }

    #[test]
    fn keys_and_values_round_trip_in_kafkas_layout() {
        let key = encode_key("g", "t", 3).expect("key");
        assert_eq!(key, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        assert_eq!(decode_key(&key), Some(("g".into(), "t".into(), 3)));
        let commit = OffsetAndMetadata {
            offset: 42,
            metadata: "m".into(),
        };
        let value = encode_value(&commit, 7).expect("value");
        assert_eq!(value.len(), 2 + 8 + 4 + 2 + 1 + 8);
        assert_eq!(decode_value(&value), Some(commit));
    }
}
