//! What [`Consumer::poll`](crate::Consumer::poll) returns: records that
//! borrow their bytes from the fetched batches, decoded as they are
//! iterated.

use std::sync::Arc;

use crate::error::Result;
use crate::record::{HeadersView, RecordView};
use crate::storage::{Fetch, Records};

/// Records at or after `from`, up to `max` of them, in a fetch whose
/// batches were checked: how many there are and the offset after the last.
/// Batch headers suffice where a batch has no gaps; only a batch compaction
/// thinned out, and only when the count ends inside it, is decoded.
pub(crate) fn count_records(fetch: &Fetch, from: i64, max: usize) -> Result<(usize, i64)> {
    let mut count = 0usize;
    for batch in fetch.batches() {
        let batch = batch?;
        let header = batch.header();
        if header.last_offset() < from || header.is_control() || header.record_count == 0 {
            continue;
        }
        let first = from.max(header.base_offset);
        let gapless = i64::from(header.record_count) == i64::from(header.last_offset_delta) + 1;
        if gapless {
            let available = usize::try_from(header.last_offset() - first + 1).unwrap_or(0);
            if count + available >= max {
                let end = first + i64::try_from(max - count).unwrap_or(0);
                return Ok((max, end));
            }
            count += available;
        } else {
            for record in batch.records() {
                let record = record?;
                if record.offset < from {
                    continue;
                }
                count += 1;
                if count == max {
                    return Ok((max, record.offset + 1));
                }
            }
        }
    }
    Ok((count, fetch.next_offset()))
}

fn view<'a>(topic: &'a str, partition: u32, record: RecordView<'a>) -> ConsumerRecord<'a> {
    ConsumerRecord {
        topic,
        partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        value: record.value,
        headers: record.headers(),
    }
}

/// One record returned by a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerRecord<'a> {
    /// The record's topic.
    pub topic: &'a str,
    /// The record's partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub value: Option<&'a [u8]>,
    headers: HeadersView<'a>,
}

impl<'a> ConsumerRecord<'a> {
    /// The record's headers.
    pub fn headers(&self) -> HeadersView<'a> {
        self.headers
    }
}

/// The records of one partition in a poll: those of a checked fetch from
/// `from` up to (not including) `end`, decoded as they are iterated.
#[derive(Debug)]
pub(crate) struct PartitionRecords {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) fetch: Arc<Fetch>,
    pub(crate) from: i64,
    pub(crate) end: i64,
    pub(crate) count: usize,
}

/// The records returned by one poll: in offset order within each
/// partition, partitions one after another.
#[derive(Debug, Default)]
pub struct ConsumerRecords {
    pub(crate) parts: Vec<PartitionRecords>,
}

impl ConsumerRecords {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.count).sum()
    }

    /// Whether the poll returned nothing.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.count == 0)
    }

    /// Every record, partition by partition.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            parts: &self.parts,
            part: 0,
            current: None,
        }
    }

    /// The records of one partition.
    pub fn records(&self, topic: &str, partition: u32) -> impl Iterator<Item = ConsumerRecord<'_>> {
        self.iter()
            .filter(move |r| r.topic == topic && r.partition == partition)
    }
}

impl<'a> IntoIterator for &'a ConsumerRecords {
    type Item = ConsumerRecord<'a>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the records of a [`ConsumerRecords`].
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    parts: &'a [PartitionRecords],
    part: usize,
    current: Option<Records<'a>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ConsumerRecord<'a>;

    #[inline]
    fn next(&mut self) -> Option<ConsumerRecord<'a>> {
        loop {
            let part = self.parts.get(self.part)?;
            let records = self
                .current
                .get_or_insert_with(|| part.fetch.records_checked_from(part.from));
            match records.next_view() {
                Some(record) if record.offset < part.end => {
                    return Some(view(&part.topic, part.partition, record));
                }
                // The poll counted these records, so a decoding error here
                // means a batch that passed its CRC yet does not decode
                // (written by a faulty producer): the rest of it is skipped.
                _ => {
                    self.current = None;
                    self.part += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{CleanupPolicy, LogConfig, TopicConfig};
    use crate::consumer::{ConsumerConfig, OffsetReset, TopicPartition};
    use crate::log::Log;
    use crate::record::Record;
    use crate::storage::Fetch;

    /// Polls cut batches at every size, in gapless and compacted (gappy)
    /// batches alike, and still return each record once, in order, as a
    /// plain read of the partition sees them.
    #[test]
    fn polls_of_any_size_return_what_a_read_returns() {
        let log = Log::temporary(
            LogConfig::default()
                .cleaner_backoff(Duration::from_secs(1 << 30))
                .retention_check_interval(Duration::from_secs(1 << 30)),
        )
        .expect("open");
        log.create_topic(
            "t",
            TopicConfig::default()
                .cleanup_policy(CleanupPolicy::Compact)
                .segment_bytes(2048),
        )
        .expect("create");
        for round in 0..40 {
            let batch: Vec<Record> = (0..7)
                .map(|i| {
                    Record::new(format!("v{round}-{i}")).key(format!("k{}", (round * 7 + i) % 23))
                })
                .collect();
            log.append("t", 0, &batch).expect("append");
        }
        log.compact_now("t", 0).expect("compact");
        let mut expected = Vec::new();
        let mut reader = log.reader("t", 0, 0).expect("reader");
        let mut fetch = Fetch::new();
        while reader.next_into(&mut fetch).expect("read") {
            for record in fetch.records() {
                let record = record.expect("record");
                expected.push((record.offset, record.value.map(<[u8]>::to_vec)));
            }
        }
        assert!(expected.len() < 280, "compaction removed records");
        for max in [1, 2, 3, 5, 7, 11, 500] {
            let mut consumer = log.consumer(
                ConsumerConfig::default()
                    .auto_offset_reset(OffsetReset::Earliest)
                    .max_poll_records(max),
            );
            consumer
                .assign(&[TopicPartition::new("t", 0)])
                .expect("assign");
            let mut seen = Vec::new();
            loop {
                let records = consumer.poll(Duration::ZERO).expect("poll");
                if records.is_empty() {
                    break;
                }
                assert!(records.len() <= max);
                let before = seen.len();
                seen.extend(
                    records
                        .iter()
                        .map(|r| (r.offset, r.value.map(<[u8]>::to_vec))),
                );
                assert_eq!(
                    seen.len() - before,
                    records.len(),
                    "len() matches the iteration"
                );
            }
            assert_eq!(seen, expected, "max_poll_records {max}");
        }
    }
}
