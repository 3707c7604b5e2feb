//! Checking a segment's index files against its data, and rebuilding
//! them (or recovering the data file itself) by reading every batch.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::{IoContext, Result};
use crate::storage::index::{IndexFile, OffsetEntry, TimeEntry};
use crate::storage::scan::{ScanOutcome, scan_batches};
use crate::storage::segment::{
    INDEX_SUFFIX, IndexTracker, Segment, SegmentIndexes, TIME_INDEX_SUFFIX, segment_file_name,
};

impl Segment {
    /// Scans the data file from `start`, building index entries for each
    /// valid batch into `indexes`.
    pub(crate) fn scan_into(
        &self,
        indexes: &mut SegmentIndexes,
        start: u64,
        next_expected: i64,
        interval: u64,
        contiguous: bool,
    ) -> Result<ScanOutcome> {
        let file = self.file()?;
        let file_len = file.metadata().at(self.log_path())?.len();
        let base = self.base_offset();
        scan_batches(
            file,
            file_len,
            start,
            base,
            next_expected,
            contiguous,
            |position, header| {
                indexes.on_batch(base, position, header, interval);
            },
        )
        .at(self.log_path())
    }

    /// Re-reads the whole data file, checking every batch, cuts it after the
    /// last valid batch and rebuilds both indexes from what remains.
    pub(crate) fn recover(
        &self,
        next_expected: i64,
        interval: u64,
        active: bool,
        truncate: bool,
        contiguous: bool,
    ) -> Result<ScanOutcome> {
        let mut indexes = self.indexes.lock();
        let dir = self.log_path().parent().unwrap_or(Path::new("."));
        let mut fresh = SegmentIndexes {
            offsets: IndexFile::in_memory(
                dir.join(segment_file_name(self.base_offset(), INDEX_SUFFIX)),
                Vec::new(),
                0,
            ),
            times: IndexFile::in_memory(
                dir.join(segment_file_name(self.base_offset(), TIME_INDEX_SUFFIX)),
                Vec::new(),
                0,
            ),
            tracker: IndexTracker::new(self.base_offset()),
            verified: true,
        };
        let outcome = self.scan_into(&mut fresh, 0, next_expected, interval, contiguous)?;
        let file_len = self.file()?.metadata().at(self.log_path())?.len();
        if truncate {
            if outcome.valid_bytes < file_len {
                self.file()?
                    .set_len(outcome.valid_bytes)
                    .at(self.log_path())?;
            }
            self.set_size(outcome.valid_bytes);
            // What survived a crash may still be only in the page cache.
            self.flushed_bytes.store(0, Ordering::Release);
        }
        // As Kafka's recovery does: the largest timestamp always gets an
        // entry, so a sealed segment's last entry gives its max timestamp.
        fresh.append_time_entry(self.base_offset());
        let offsets = fresh.offsets.read_all().unwrap_or_default();
        let times = fresh.times.read_all().unwrap_or_default();
        let path = fresh.offsets.path().to_owned();
        fresh.offsets.rebuild(offsets, active).at(path)?;
        let path = fresh.times.path().to_owned();
        fresh.times.rebuild(times, active).at(path)?;
        *indexes = fresh;
        Ok(outcome)
    }

    /// For a sealed segment: on first use, loads the largest timestamp and
    /// checks the index files against the data file, rebuilding them if
    /// they are missing or inconsistent. Never trusts them blindly.
    pub(crate) fn ensure_verified(&self, interval: u64) -> Result<()> {
        {
            let mut indexes = self.indexes.lock();
            // A deleted segment's index paths may belong to its replacement
            // now: never rebuild (write) them.
            if indexes.verified || self.is_deleted() {
                return Ok(());
            }
            let sane = indexes_look_sane(&mut indexes, self.base_offset(), self.size())
                .unwrap_or(false)
                && self.time_index_covers_tail(&mut indexes).unwrap_or(false);
            if sane {
                if let Ok(Some(last)) = indexes.times.last() {
                    indexes.tracker.max_timestamp = last.timestamp;
                    indexes.tracker.offset_of_max_timestamp =
                        self.base_offset() + i64::from(last.relative_offset);
                }
                indexes.verified = true;
                return Ok(());
            }
        }
        // Rebuild from the data file, trusting only what checks out. If the
        // data itself is damaged, the indexes cover the valid prefix and a
        // read past it reports the damage when it gets there.
        self.recover(self.base_offset(), interval, false, false, false)?;
        Ok(())
    }

    /// Whether the last time index entry holds the largest timestamp of the
    /// batches after the last offset index entry (the only ones a lost tail
    /// of the time index could hide).
    fn time_index_covers_tail(&self, indexes: &mut SegmentIndexes) -> Result<bool> {
        let size = self.size();
        let mut position = match indexes
            .offsets
            .last()
            .at(indexes.offsets.path().to_owned())?
        {
            Some(entry) => u64::from(entry.position),
            None => 0,
        };
        let last_time = indexes.times.last().at(indexes.times.path().to_owned())?;
        let mut tail_max = -1;
        while position < size {
            let header = self.read_header(position)?;
            tail_max = tail_max.max(header.max_timestamp);
            position += header.size_bytes() as u64;
        }
        Ok(position == size && last_time.map_or(tail_max < 0, |entry| entry.timestamp >= tail_max))
    }
}

/// Cheap consistency checks of a sealed segment's index files: sizes are
/// whole entries, keys increase, positions stay inside the data file.
fn indexes_look_sane(
    indexes: &mut SegmentIndexes,
    base_offset: i64,
    log_size: u64,
) -> io::Result<bool> {
    for (path, entry_len) in [
        (indexes.offsets.path(), 8u64),
        (indexes.times.path(), 12u64),
    ] {
        let len = fs::metadata(path)?.len();
        if len % entry_len != 0 {
            return Ok(false);
        }
    }
    let offsets = indexes.offsets.read_all()?;
    let mut previous: Option<OffsetEntry> = None;
    for entry in &offsets {
        if u64::from(entry.position) >= log_size.max(1) {
            return Ok(false);
        }
        if let Some(previous) = previous
            && (entry.relative_offset <= previous.relative_offset
                || entry.position <= previous.position)
        {
            return Ok(false);
        }
        previous = Some(*entry);
    }
    let times = indexes.times.read_all()?;
    let mut previous: Option<TimeEntry> = None;
    for entry in &times {
        if let Some(previous) = previous
            && (entry.timestamp <= previous.timestamp
                || entry.relative_offset < previous.relative_offset)
        {
            return Ok(false);
        }
        previous = Some(*entry);
    }
    // A non-empty segment always has a final time index entry; an empty
    // time index for one means the file was lost or cut.
    if log_size > 0 && times.is_empty() {
        return Ok(false);
    }
    let _ = base_offset;
    indexes.offsets.release();
    indexes.times.release();
    Ok(true)
}
