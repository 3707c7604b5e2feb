//! Appending several producer batches of one partition with one write: a
//! producer's sender that finds a backlog hands it over at once, and each
//! `pwrite` call costs microseconds whatever its size.
//!
//! Only the plain case takes this path: consecutive sequence numbers of one
//! producer that follow what the partition has, and room for all of them
//! in the active segment and its indexes. Anything else (a duplicate, a
//! gap, a roll, a closed or poisoned partition) goes batch by batch through
//! [`PartitionLog::append_records`], which has the rules for each case.

use crate::config::{Durability, TimestampType};
use crate::error::Result;
use crate::record::encode::{set_base_offset, set_partition_leader_epoch};
use crate::storage::partition::{
    AppendInfo, AppendOptions, PartitionLog, ProducerBatch, undo_failed_write,
};
use crate::storage::producer_state::{SequenceCheck, last_sequence, sequence_after};
use crate::storage::segment::SegmentIndexes;

/// One batch of a group: encoded after a `BATCH_HEADER_LEN` placeholder,
/// as [`PartitionLog::append_records`] takes it.
pub(crate) struct GroupBatch<'a> {
    pub(crate) bytes: &'a mut [u8],
    pub(crate) record_count: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer: Option<ProducerBatch>,
}

impl PartitionLog {
    /// Appends `batches` in order and returns each one's outcome, as that
    /// many [`PartitionLog::append_records`] calls would.
    pub(crate) fn append_records_group(
        &self,
        batches: &mut [GroupBatch<'_>],
    ) -> Vec<Result<AppendInfo>> {
        if batches.len() > 1
            && let Some(infos) = self.try_append_group(batches)
        {
            return infos;
        }
        batches
            .iter_mut()
            .map(|batch| {
                let options = batch.producer.map_or_else(AppendOptions::default, |p| {
                    AppendOptions::default().producer(p)
                });
                self.append_records(
                    batch.bytes,
                    batch.record_count,
                    batch.base_timestamp,
                    batch.max_timestamp,
                    &options,
                )
            })
            .collect()
    }

    /// The one-write path; `None` (nothing written) when the group is not
    /// the plain case.
    fn try_append_group(&self, batches: &mut [GroupBatch<'_>]) -> Option<Vec<Result<AppendInfo>>> {
        let first = batches[0].producer?;
        // One producer, consecutive sequences.
        let mut expected = first.base_sequence;
        for batch in batches.iter() {
            let producer = batch.producer?;
            if producer.producer_id != first.producer_id
                || producer.producer_epoch != first.producer_epoch
                || producer.base_sequence != expected
                || batch.record_count <= 0
            {
                return None;
            }
            expected = sequence_after(producer.base_sequence, batch.record_count);
        }
        let now_ms = self.clock.now_ms();
        let mut headers = Vec::with_capacity(batches.len());
        for batch in batches.iter_mut() {
            headers.push(
                self.seal_batch(
                    batch.bytes,
                    batch.record_count,
                    batch.base_timestamp,
                    batch.max_timestamp,
                    batch.producer,
                    now_ms,
                )
                .ok()?,
            );
        }
        let total_bytes: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
        let total_records: i64 = batches.iter().map(|b| i64::from(b.record_count)).sum();
        let max_timestamp = headers.iter().map(|h| h.max_timestamp).max()?;

        let mut guard = self.state.lock();
        // A plain reference, so the borrow of the active segment below and
        // writes to the state's other fields can overlap.
        let state = &mut *guard;
        if self.check_writable(state).is_err() {
            return None;
        }
        let last_first = last_sequence(first.base_sequence, batches[0].record_count - 1);
        match state.producers.check(
            first.producer_id,
            first.producer_epoch,
            first.base_sequence,
            last_first,
        ) {
            Ok(SequenceCheck::Append) => {}
            _ => return None,
        }
        let base_offset = state.next_offset;
        let last_offset = base_offset + total_records - 1;
        let active = &state.segments[state.segments.len() - 1];
        // `needs_roll` lets any one batch into an empty segment; a group
        // must fit as a whole, so that no segment outgrows `segment.bytes`.
        if self.needs_roll(state, total_bytes, max_timestamp, last_offset)
            || active.size() + total_bytes > u64::from(self.config.segment_bytes)
        {
            return None;
        }
        if !indexes_have_room(
            &mut active.indexes.lock(),
            self.config.segment_index_bytes,
            batches.len(),
        ) {
            return None;
        }

        let start = active.size();
        let mut offset = base_offset;
        for (batch, header) in batches.iter_mut().zip(headers.iter_mut()) {
            set_base_offset(batch.bytes, offset);
            set_partition_leader_epoch(batch.bytes, state.leader_epoch);
            header.base_offset = offset;
            header.partition_leader_epoch = state.leader_epoch;
            offset = header.last_offset() + 1;
        }
        let parts: Vec<&[u8]> = batches.iter().map(|b| &*b.bytes).collect();
        if let Err(source) = active.write_all_vectored_at(&parts, start) {
            let error = undo_failed_write(state, start, source);
            return Some(batches.iter().map(|_| Err(error.duplicate())).collect());
        }
        self.publish_written(state, start, &headers);
        let log_append_time =
            (self.config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let mut infos = Vec::with_capacity(batches.len());
        for header in &headers {
            state.producers.observe(header);
            infos.push(Ok(AppendInfo {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                log_append_time_ms: log_append_time,
                log_start_offset: state.log_start_offset,
                duplicate: false,
            }));
        }
        drop(guard);
        self.wake_readers();
        if self.config.durability == Durability::EveryAppend
            && let Err(err) = self.flush_to(last_offset + 1)
        {
            return Some(batches.iter().map(|_| Err(err.duplicate())).collect());
        }
        Some(infos)
    }
}

/// Whether `batches` more batches fit the indexes without filling them:
/// each adds at most one entry to each index, and Kafka rolls before a
/// batch once an index is full.
fn indexes_have_room(
    indexes: &mut SegmentIndexes,
    segment_index_bytes: u32,
    batches: usize,
) -> bool {
    use crate::storage::index::{IndexEntry, OffsetEntry, TimeEntry};
    let index_bytes = segment_index_bytes as usize;
    let offsets = indexes.offsets.len().unwrap_or(usize::MAX);
    let times = indexes.times.len().unwrap_or(usize::MAX);
    offsets.saturating_add(batches) < index_bytes / OffsetEntry::LEN
        && times.saturating_add(batches + 1) < index_bytes / TimeEntry::LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogConfig, TopicConfig};
    use crate::error::Error;
    use crate::log::{Log, TailLoss};
    use crate::record::Record;
    use crate::record::batch::BATCH_HEADER_LEN;
    use crate::record::encode::encode_record;
    use crate::storage::fetch::Fetch;

    const TIMESTAMP_MS: i64 = 1_700_000_000_000;

    /// Batch `index` of two records, encoded as a producer leaves it.
    fn encoded(index: usize, value_bytes: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; BATCH_HEADER_LEN];
        for i in 0..2 {
            let record = Record::new(vec![(index * 2 + i) as u8; value_bytes])
                .key(format!("k{index}-{i}"))
                .timestamp_ms(TIMESTAMP_MS);
            encode_record(&mut bytes, &record, 0, i as i64);
        }
        bytes
    }

    fn group<'a>(
        raw: &'a mut [Vec<u8>],
        producer: (i64, i16),
        sequences: &[i32],
    ) -> Vec<GroupBatch<'a>> {
        raw.iter_mut()
            .zip(sequences)
            .map(|(bytes, &base_sequence)| GroupBatch {
                bytes,
                record_count: 2,
                base_timestamp: TIMESTAMP_MS,
                max_timestamp: TIMESTAMP_MS,
                producer: Some(ProducerBatch {
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    base_sequence,
                }),
            })
            .collect()
    }

    /// The first byte of every value in the partition, in offset order.
    fn first_value_bytes(log: &Log) -> Vec<(i64, u8)> {
        let mut reader = log.reader("t", 0, 0).expect("reader");
        let mut fetch = Fetch::new();
        let mut out = Vec::new();
        while reader.next_into(&mut fetch).expect("read") {
            for record in fetch.records() {
                let record = record.expect("valid record");
                out.push((record.offset, record.value.expect("a value")[0]));
            }
        }
        out
    }

    fn retry(partition: &PartitionLog, producer: (i64, i16), index: usize) -> AppendInfo {
        let mut bytes = encoded(index, 10);
        let options = AppendOptions::default().producer(ProducerBatch {
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: 2 * index as i32,
        });
        partition
            .append_records(&mut bytes, 2, TIMESTAMP_MS, TIMESTAMP_MS, &options)
            .expect("retry")
    }

    #[test]
    fn a_group_lands_in_order_and_its_sequences_are_remembered_across_a_crash() {
        let dir = tempfile::tempdir().expect("scratch directory");
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        log.create_topic("t", TopicConfig::default())
            .expect("create");
        let producer = log.init_producer_id().expect("producer id");
        let partition = log.partition("t", 0).expect("partition");
        let mut raw: Vec<Vec<u8>> = (0..3).map(|i| encoded(i, 10)).collect();
        let infos = partition.append_records_group(&mut group(&mut raw, producer, &[0, 2, 4]));
        let offsets: Vec<(i64, i64, bool)> = infos
            .into_iter()
            .map(|info| info.expect("appended"))
            .map(|info| (info.base_offset, info.last_offset, info.duplicate))
            .collect();
        assert_eq!(offsets, [(0, 1, false), (2, 3, false), (4, 5, false)]);
        let expected: Vec<(i64, u8)> = (0..6).map(|i| (i, i as u8)).collect();
        assert_eq!(first_value_bytes(&log), expected);
        let again = retry(&partition, producer, 1);
        assert!(again.duplicate && again.base_offset == 2, "{again:?}");
        drop(partition);

        log.kill(TailLoss::None).expect("crash");
        let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
        assert_eq!(first_value_bytes(&log), expected);
        let partition = log.partition("t", 0).expect("partition");
        let again = retry(&partition, producer, 2);
        assert!(again.duplicate && again.base_offset == 4, "{again:?}");
        let next = retry(&partition, producer, 3);
        assert!(!next.duplicate && next.base_offset == 6, "{next:?}");
    }

    #[test]
    fn a_group_that_needs_a_roll_is_appended_batch_by_batch() {
        let log = Log::temporary(LogConfig::default()).expect("open");
        log.create_topic("t", TopicConfig::default().segment_bytes(1024))
            .expect("create");
        let producer = log.init_producer_id().expect("producer id");
        let partition = log.partition("t", 0).expect("partition");
        // About 500 bytes each: three do not fit one 1 KiB segment.
        let mut raw: Vec<Vec<u8>> = (0..3).map(|i| encoded(i, 200)).collect();
        let infos = partition.append_records_group(&mut group(&mut raw, producer, &[0, 2, 4]));
        let bases: Vec<i64> = infos
            .into_iter()
            .map(|info| info.expect("appended").base_offset)
            .collect();
        assert_eq!(bases, [0, 2, 4]);
        let expected: Vec<(i64, u8)> = (0..6).map(|i| (i, i as u8)).collect();
        assert_eq!(first_value_bytes(&log), expected);
        let segments = log.describe_topic("t").expect("describe").partitions[0].segment_count;
        assert!(segments >= 2, "{segments} segments");
    }

    #[test]
    fn a_sequence_gap_in_a_group_refuses_the_batches_from_the_gap_on() {
        let log = Log::temporary(LogConfig::default()).expect("open");
        log.create_topic("t", TopicConfig::default())
            .expect("create");
        let producer = log.init_producer_id().expect("producer id");
        let partition = log.partition("t", 0).expect("partition");
        let mut raw: Vec<Vec<u8>> = (0..3).map(|i| encoded(i, 10)).collect();
        let infos = partition.append_records_group(&mut group(&mut raw, producer, &[0, 3, 5]));
        assert_eq!(infos[0].as_ref().map(|i| i.base_offset).ok(), Some(0));
        assert!(
            matches!(infos[1], Err(Error::OutOfOrderSequence { .. })),
            "{:?}",
            infos[1]
        );
        assert!(
            matches!(infos[2], Err(Error::OutOfOrderSequence { .. })),
            "{:?}",
            infos[2]
        );
        assert_eq!(first_value_bytes(&log), [(0, 0), (1, 1)]);
    }
}
