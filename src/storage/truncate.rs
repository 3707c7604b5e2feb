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
