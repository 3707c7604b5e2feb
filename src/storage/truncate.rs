//! Truncating a partition: removing every record from an offset on, for a
//! follower that diverged from its leader.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, IoContext, Result};
use crate::storage::checkpoint::write_epoch_checkpoint;
use crate::storage::partition::{LEADER_EPOCH_CHECKPOINT, PartitionLog, indexes_full};
use crate::storage::segment::Segment;

impl PartitionLog {
    /// Removes every record at or after `offset` (a follower that diverged
    /// from its leader, or recovery). Later segments are deleted whole.
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<()> {
        let mut state = self.state.lock();
        self.check_writable(&state)?;
        if offset >= state.next_offset {
            return Ok(());
        }
        let offset = offset.max(state.log_start_offset);
        let keep = state
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .max(1);
        let mut segments: Vec<Arc<Segment>> = state.segments[..keep].to_vec();
        for removed in &state.segments[keep..] {
            removed.mark_deleted()?;
        }
        let last = Arc::clone(&segments[keep - 1]);
        if last.base_offset() > offset {
            // Everything goes: start over with an empty segment at `offset`.
            last.mark_deleted()?;
            segments.clear();
            segments.push(Arc::new(Segment::create(&self.dir, offset)?));
        } else {
            let cut = match last.find_batch(offset, last.size(), self.interval_bytes())? {
                Some((_, header)) if header.base_offset < offset => {
                    return Err(Error::InvalidRecord(format!(
                        "offset {offset} is inside the batch {}..={}; truncation works on batch boundaries",
                        header.base_offset,
                        header.last_offset()
                    )));
                }
                Some((position, _)) => position,
                None => last.size(),
            };
            last.truncate_file(cut)?;
            // Rebuild the (now active) segment's indexes from what remains.
            last.recover(
                last.base_offset(),
                self.interval_bytes(),
                true,
                true,
                self.offsets_contiguous(),
            )?;
        }
        state.segments = Arc::new(segments);
        state.next_offset = offset;
        state.high_watermark = state.high_watermark.min(offset);
        state.recovery_point = state.recovery_point.min(offset);
        state.directory_dirty = true;
        state.active_created_ms = self.clock.now_ms();
        let active = Arc::clone(state.active());
        state.active_first_timestamp = match active.size() {
            0 => None,
            _ => Some(active.read_header(0)?.max_timestamp),
        };
        state.active_index_full =
            indexes_full(&mut active.indexes.lock(), self.config.segment_index_bytes);
        state.producers.truncate_from(offset);
        crate::storage::producer_state::remove_snapshots_after(&self.dir, offset).at(&self.dir)?;
        let before = state.epoch_entries.len();
        state
            .epoch_entries
            .retain(|&(_, start)| start < offset || start == 0);
        if state.epoch_entries.len() != before {
            write_epoch_checkpoint(
                &self.dir.join(LEADER_EPOCH_CHECKPOINT),
                &state.epoch_entries,
            )?;
        }
        self.high_watermark
            .store(state.high_watermark, Ordering::Release);
        let mut flush = self.flush.lock();
        flush.durable_offset = flush.durable_offset.min(offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{LogConfig, TopicConfig};
    use crate::error::Error;
    use crate::log::Log;
    use crate::record::Record;
    use crate::storage::Fetch;

    fn offsets(log: &Log) -> Vec<i64> {
        let mut reader = log.reader("t", 0, 0).expect("reader");
        let mut fetch = Fetch::new();
        let mut out = Vec::new();
        while reader.next_into(&mut fetch).expect("read") {
            out.extend(fetch.records().map(|r| r.expect("record").offset));
        }
        out
    }

    /// Truncation (a follower that diverged) removes every record from an
    /// offset on, across segments, refuses offsets inside a batch, and the
    /// log carries on from there, also after a reopen.
    #[test]
    fn truncate_removes_the_tail_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = Log::open(dir.path(), LogConfig::default()).expect("open");
            log.create_topic("t", TopicConfig::default().segment_bytes(1024))
                .expect("create");
            for i in 0..100 {
                log.append("t", 0, &[Record::new(format!("value-{i:04}")).key("k")])
                    .expect("append");
            }
            let three = [Record::new("a"), Record::new("b"), Record::new("c")];
            log.append("t", 0, &three).expect("append a batch of three");
            let segments = log.describe_topic("t").expect("describe").partitions[0].segment_count;
            assert!(segments > 3, "{segments} segments");
            assert!(matches!(
                log.truncate_to("t", 0, 101),
                Err(Error::InvalidRecord(_))
            ));
            log.truncate_to("t", 0, 37).expect("truncate");
            assert_eq!(log.offsets("t", 0).expect("offsets").log_end_offset, 37);
            assert_eq!(offsets(&log), (0..37).collect::<Vec<_>>());
            assert!(
                log.describe_topic("t").expect("describe").partitions[0].segment_count < segments
            );
            let info = log.append("t", 0, &[Record::new("after")]).expect("append");
            assert_eq!(info.base_offset, 37);
            log.close().expect("close");
        }
        let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
        assert_eq!(offsets(&log), (0..38).collect::<Vec<_>>());
        log.truncate_to("t", 0, 0).expect("truncate everything");
        assert!(offsets(&log).is_empty());
        assert_eq!(
            log.append("t", 0, &[Record::new("x")])
                .expect("append")
                .base_offset,
            0
        );
    }
}
