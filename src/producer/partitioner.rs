//! Choosing a partition for a record: Kafka's murmur2 hash of the key, a
//! round-robin, or a user's own [`Partitioner`].

use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;

/// Picks the partition of a record that names none.
pub trait Partitioner: Send + Sync + fmt::Debug {
    /// The partition (below `partition_count`) for this record, or `None`
    /// to let the producer keep filling its current batch on one partition
    /// (the uniform sticky behaviour Kafka uses for records without a key).
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition_count: u32,
    ) -> Option<u32>;
}

/// Kafka's default: records with a key go to
/// `(murmur2(key) & 0x7fffffff) % partitions`, the partition a Java Kafka
/// client would pick; records without one stick to a partition until its
/// batch is full, then move on.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPartitioner;

impl Partitioner for DefaultPartitioner {
    fn partition(
        &self,
        _topic: &str,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partition_count: u32,
    ) -> Option<u32> {
        // With one partition every key lands on it: skip the hash.
        key.map(|key| {
            if partition_count == 1 {
                0
            } else {
                partition_for_key(key, partition_count)
            }
        })
    }
}

/// Kafka's `RoundRobinPartitioner`: every record, keyed or not, goes to the
/// next partition in turn.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: Mutex<HashMap<String, u32>>,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &self,
        topic: &str,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partition_count: u32,
    ) -> Option<u32> {
        let mut next = self.next.lock();
        let counter = next.entry(topic.to_owned()).or_insert(0);
        let partition = *counter % partition_count.max(1);
        *counter = counter.wrapping_add(1);
        Some(partition)
    }
}

/// The partition Kafka's default partitioner gives `key`.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    // Kafka's `Utils.toPositive`: clear the sign bit, then take the modulo.
    (murmur2(key) & 0x7fff_ffff) as u32 % partition_count.max(1)
}

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`),
/// seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Java hashes the length as an int; longer inputs wrap the same way.
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_utils_test() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for &(key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let partitioner = RoundRobinPartitioner::default();
        let picks: Vec<_> = (0..5)
            .map(|_| partitioner.partition("a", None, None, 3))
            .collect();
        assert_eq!(picks, vec![Some(0), Some(1), Some(2), Some(0), Some(1)]);
        assert_eq!(partitioner.partition("b", None, None, 3), Some(0));
    }
}
