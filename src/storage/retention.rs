//! Deleting whole segments from the front of a partition: by time, by size,
//! and below a log start offset moved by `delete_records` (Kafka's
//! `deleteOldSegments` and `DeleteRecords`).

use std::sync::Arc;

use crate::config::CleanupPolicy;
use crate::error::{Error, Result};
use crate::storage::partition::{PartitionLog, PartitionState};
use crate::storage::segment::Segment;

impl PartitionLog {
    /// Deletes the segments that retention allows, oldest first, and returns
    /// how many went. Only `delete` policies delete by time and size; every
    /// policy deletes segments wholly below the log start offset.
    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let interval = u64::from(self.config.index_interval_bytes);
        let mut state = self.state.lock();
        if state.closed {
            return Ok(0);
        }
        let deletes_by_age_or_size = matches!(
            self.config.cleanup_policy,
            CleanupPolicy::Delete | CleanupPolicy::CompactDelete
        );
        let segments = Arc::clone(&state.segments);
        let count = segments.len();
        let active_empty = segments[count - 1].size() == 0;
        // A segment may go only once its successor starts at or below the
        // high watermark; the active segment only if it holds data (it is
        // rolled first).
        let eligible = |i: usize| {
            if i + 1 < count {
                segments[i + 1].base_offset() <= state.high_watermark
            } else {
                !active_empty && state.next_offset <= state.high_watermark
            }
        };
        let mut deletable = 0;
        while deletable + 1 < count
            && segments[deletable + 1].base_offset() <= state.log_start_offset
        {
            deletable += 1;
        }
        if deletes_by_age_or_size {
            if let Some(retention_ms) = self.config.retention_ms {
                while deletable < count && eligible(deletable) {
                    let segment = &segments[deletable];
                    segment.ensure_verified(interval)?;
                    let max_timestamp = segment.max_timestamp()?;
                    if now_ms.saturating_sub(max_timestamp) <= retention_ms {
                        break;
                    }
                    deletable += 1;
                }
            }
            if let Some(retention_bytes) = self.config.retention_bytes {
                let total: u64 = segments[deletable..].iter().map(|s| s.size()).sum();
                let mut excess = total.saturating_sub(retention_bytes);
                while deletable < count
                    && eligible(deletable)
                    && excess >= segments[deletable].size()
                {
                    excess -= segments[deletable].size();
                    deletable += 1;
                }
            }
        }
        if deletable == 0 {
            return Ok(0);
        }
        if deletable == count {
            // Everything expired: roll so the old active segment can go too,
            // as Kafka does.
            self.roll(&mut state)?;
        }
        self.remove_front_segments(&mut state, deletable)?;
        Ok(deletable)
    }

    /// Moves the log start offset forward to `offset` (Kafka's
    /// DeleteRecords) and deletes the segments wholly below it. Returns the
    /// new log start offset.
    pub(crate) fn delete_records(&self, offset: i64) -> Result<i64> {
        // As Kafka: records of a compact-only topic are removed by
        // compaction, not by moving the log start.
        if self.config.cleanup_policy == CleanupPolicy::Compact {
            return Err(Error::InvalidConfig(format!(
                "delete_records on {}-{} needs a cleanup policy with delete",
                self.topic, self.partition
            )));
        }
        let mut state = self.state.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        if offset > state.high_watermark || offset < 0 {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.partition,
                requested: offset,
                log_start_offset: state.log_start_offset,
                high_watermark: state.high_watermark,
            });
        }
        state.log_start_offset = state.log_start_offset.max(offset);
        let below = state
            .segments
            .iter()
            .skip(1)
            .take_while(|s| s.base_offset() <= state.log_start_offset)
            .count();
        if below > 0 {
            self.remove_front_segments(&mut state, below)?;
        }
        Ok(state.log_start_offset)
    }

    /// Drops the first `count` segments (never the last): the log start
    /// moves to the first one kept.
    fn remove_front_segments(&self, state: &mut PartitionState, count: usize) -> Result<()> {
        let count = count.min(state.segments.len() - 1);
        let kept: Vec<Arc<Segment>> = state.segments[count..].to_vec();
        let removed: Vec<Arc<Segment>> = state.segments[..count].to_vec();
        state.log_start_offset = state.log_start_offset.max(kept[0].base_offset());
        state.segments = Arc::new(kept);
        state.directory_dirty = true;
        for segment in removed {
            segment.mark_deleted()?;
        }
        Ok(())
    }
}
