//! Reads from a partition: whole batches from the one holding an offset,
//! up to a byte budget, and the search for the first offset at or after a
//! timestamp. Readers take a snapshot under the partition lock and do their
//! I/O outside it.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::record::{BATCH_HEADER_LEN, BatchHeader, BatchView};
use crate::storage::fetch::{Fetch, ReadCursor};
use crate::storage::partition::PartitionLog;
use crate::storage::segment::Segment;

/// What a reader sees of a partition at one moment.
struct ReadSnapshot {
    segments: Arc<Vec<Arc<Segment>>>,
    log_start_offset: i64,
    high_watermark: i64,
    /// Index of the segment holding the high watermark, and the byte
    /// position in it that readers stop at.
    hw_segment: usize,
    hw_position: u64,
}

impl ReadSnapshot {
    /// Readable bytes of segment `i`.
    fn limit(&self, i: usize) -> u64 {
        if i == self.hw_segment {
            self.hw_position
        } else {
            self.segments[i].size()
        }
    }

    /// Index of the segment that would hold `offset`.
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }
}

/// A record's offset and timestamp, as found by a timestamp search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
}

impl PartitionLog {
    fn snapshot(&self) -> ReadSnapshot {
        let state = self.state.lock();
        let hw_segment = state.segments.len() - 1;
        ReadSnapshot {
            segments: Arc::clone(&state.segments),
            log_start_offset: state.log_start_offset,
            high_watermark: state.high_watermark,
            hw_segment,
            hw_position: state.segments[hw_segment].size(),
        }
    }

    /// (log start offset, high watermark, log end offset).
    pub(crate) fn offsets(&self) -> (i64, i64, i64) {
        let state = self.state.lock();
        (
            state.log_start_offset,
            state.high_watermark,
            state.next_offset,
        )
    }

    fn out_of_range(&self, requested: i64, snapshot: &ReadSnapshot) -> Error {
        Error::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            requested,
            log_start_offset: snapshot.log_start_offset,
            high_watermark: snapshot.high_watermark,
        }
    }

    /// Reads whole batches starting with the one that holds `offset`, at
    /// most `max_bytes` of them unless the first alone is larger (it is
    /// returned whole, as Kafka does). `cursor`, from the previous read of
    /// the same reader, skips the index search.
    pub(crate) fn read_into(
        &self,
        offset: i64,
        max_bytes: usize,
        cursor: Option<&ReadCursor>,
        fetch: &mut Fetch,
    ) -> Result<()> {
        let snapshot = self.snapshot();
        if offset < snapshot.log_start_offset || offset > snapshot.high_watermark {
            return Err(self.out_of_range(offset, &snapshot));
        }
        fetch.reset(offset, snapshot.log_start_offset, snapshot.high_watermark);
        if offset == snapshot.high_watermark {
            return Ok(());
        }
        let interval = u64::from(self.config.index_interval_bytes);
        // Continue from the cursor if it still describes this log.
        let (mut i, mut start) = match cursor {
            Some(c) if c.offset == offset => {
                let i = snapshot.segment_for(c.segment.base_offset());
                if Arc::ptr_eq(&snapshot.segments[i], &c.segment) {
                    (i, Some(c.position))
                } else {
                    (snapshot.segment_for(offset), None)
                }
            }
            _ => (snapshot.segment_for(offset), None),
        };
        while i <= snapshot.hw_segment {
            let segment = &snapshot.segments[i];
            let limit = snapshot.limit(i);
            let found = match start.take() {
                Some(position) if position >= limit => None,
                Some(position) => {
                    let header = segment.read_header(position)?;
                    if header.last_offset() >= offset {
                        Some((position, header))
                    } else {
                        segment.find_batch(offset, limit, interval)?
                    }
                }
                None => segment.find_batch(offset, limit, interval)?,
            };
            let Some((position, header)) = found else {
                i += 1;
                start = Some(0);
                continue;
            };
            let first_size = header.size_bytes() as u64;
            let contiguous = self.offsets_contiguous();
            // Lengths and base offsets lie outside the CRC: a batch that
            // runs past its segment, or that starts after the offset asked
            // for in a log without gaps, is damage.
            if position + first_size > limit || (contiguous && header.base_offset > offset) {
                return Err(Error::Corrupt {
                    path: segment.log_path().to_owned(),
                    reason: format!(
                        "batch at position {position} (offsets {}..={}, {first_size} bytes) does not fit the log",
                        header.base_offset,
                        header.last_offset()
                    ),
                });
            }
            let want = first_size.max((max_bytes as u64).min(limit - position));
            let buffer = fetch.buffer_for(want as usize);
            segment.read_at(buffer, position)?;
            let (kept, next_offset) =
                whole_batches_len(buffer, snapshot.high_watermark, contiguous);
            fetch.set_filled(kept, next_offset);
            fetch.set_cursor(ReadCursor {
                segment: Arc::clone(segment),
                position: position + kept as u64,
                offset: fetch.next_offset(),
            });
            return Ok(());
        }
        Ok(())
    }

    /// The first record (in offset order) whose timestamp is at or after
    /// `target_ms`, searched with the time index (Kafka's ListOffsets).
    pub(crate) fn offset_for_timestamp(&self, target_ms: i64) -> Result<Option<TimestampOffset>> {
        let snapshot = self.snapshot();
        let interval = u64::from(self.config.index_interval_bytes);
        let mut buffer = Vec::new();
        for i in 0..=snapshot.hw_segment {
            let segment = &snapshot.segments[i];
            segment.ensure_verified(interval)?;
            if segment.max_timestamp()? < target_ms {
                continue;
            }
            let limit = snapshot.limit(i);
            let Some((mut position, _)) = segment.time_lookup_start(target_ms, limit, interval)?
            else {
                continue;
            };
            while position < limit {
                let header = segment.read_header(position)?;
                let size = header.size_bytes();
                if header.max_timestamp >= target_ms
                    && header.last_offset() >= snapshot.log_start_offset
                {
                    buffer.resize(size, 0);
                    segment.read_at(&mut buffer, position)?;
                    let batch = BatchView::parse(&buffer)?;
                    batch.verify_crc()?;
                    for record in batch.records() {
                        let record = record?;
                        if record.timestamp_ms >= target_ms
                            && record.offset >= snapshot.log_start_offset
                            && record.offset < snapshot.high_watermark
                        {
                            return Ok(Some(TimestampOffset {
                                offset: record.offset,
                                timestamp_ms: record.timestamp_ms,
                            }));
                        }
                    }
                }
                position += size as u64;
            }
        }
        Ok(None)
    }
}

/// Length of the prefix of `bytes` made of whole batches below the high
/// watermark (and following on from each other, with `contiguous`), and the
/// offset after the last of them.
fn whole_batches_len(bytes: &[u8], high_watermark: i64, contiguous: bool) -> (usize, i64) {
    let mut kept = 0;
    let mut next_offset = None;
    while bytes.len() - kept >= BATCH_HEADER_LEN {
        let Ok(header) = BatchHeader::parse_raw(&bytes[kept..]) else {
            break;
        };
        let size = header.size_bytes();
        if bytes.len() - kept < size || header.base_offset >= high_watermark {
            break;
        }
        // Stop before a batch that does not follow on: the next read starts
        // there and reports it.
        if contiguous && next_offset.is_some_and(|next| next != header.base_offset) {
            break;
        }
        next_offset = Some(header.last_offset() + 1);
        kept += size;
    }
    (kept, next_offset.unwrap_or(0))
}
