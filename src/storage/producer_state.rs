//! Idempotent producers, partition side: the last batches of each producer
//! id, so that a retried batch gets its original offsets instead of being
//! appended twice, and a batch from a fenced epoch or with a sequence gap
//! is refused (Kafka's `ProducerStateManager`).
//!
//! The state is rebuilt on open from a snapshot (Kafka's `.snapshot` file
//! format, written at each roll and at close) plus the batch headers after
//! it, so no state lives only in memory.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::BatchHeader;
use crate::storage::checkpoint::write_atomically;

/// How many batches per producer id are remembered for duplicate
/// detection (Kafka's `NUM_BATCHES_TO_RETAIN`, matched by the producer's
/// `max.in.flight.requests.per.connection` of 5).
pub(crate) const RETAINED_BATCHES: usize = 5;
/// Producer ids idle this long are forgotten (Kafka's
/// `producer.id.expiration.ms`: 1 day).
pub(crate) const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;
/// Extension of producer state snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";

/// One batch a producer appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) timestamp_ms: i64,
}

#[derive(Clone, Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn last_timestamp(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.timestamp_ms)
    }
}

/// What to do with an idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New and in order: append it.
    Append,
    /// Already appended: answer with these offsets.
    Duplicate(BatchMetadata),
}

/// The sequence of the last record of a batch: Kafka's sequences wrap
/// from `i32::MAX` to 0.
pub(crate) fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    if base_sequence > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - base_sequence) - 1
    } else {
        base_sequence + last_offset_delta
    }
}

/// The first sequence of the batch after one of `record_count` records
/// from `base_sequence`.
pub(crate) fn sequence_after(base_sequence: i32, record_count: i32) -> i32 {
    next_sequence(last_sequence(base_sequence, record_count - 1))
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// Appends a batch whose first sequence is the one expected; refuses any
/// other.
fn in_order(producer_id: i64, expected: i32, received: i32) -> Result<SequenceCheck> {
    if received == expected {
        Ok(SequenceCheck::Append)
    } else {
        Err(Error::OutOfOrderSequence {
            producer_id,
            expected,
            received,
        })
    }
}

/// Every producer id seen in a partition, with its retained batches.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    /// Checks an idempotent batch before it is appended.
    pub(crate) fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    ) -> Result<SequenceCheck> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return in_order(producer_id, 0, first_sequence);
        };
        if epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            // A new epoch restarts the sequence (Kafka's epoch bump).
            return in_order(producer_id, 0, first_sequence);
        }
        if let Some(duplicate) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate(*duplicate));
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        in_order(producer_id, expected, first_sequence)
    }

    /// Remembers an appended batch.
    pub(crate) fn record(&mut self, producer_id: i64, epoch: i16, batch: BatchMetadata) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(RETAINED_BATCHES),
            });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
    }

    /// Applies a batch read back from the log (recovery).
    pub(crate) fn observe(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let batch = BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header.base_sequence, header.last_offset_delta),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp_ms: header.max_timestamp,
        };
        self.record(header.producer_id, header.producer_epoch, batch);
    }

    /// The last offset of each producer's latest batch: compaction keeps
    /// those batches (empty if need be) so producer state survives it.
    pub(crate) fn last_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.last_offset))
    }

    /// Forgets producers idle since before `now_ms - PRODUCER_ID_EXPIRATION_MS`.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
        self.producers
            .retain(|_, entry| entry.last_timestamp() >= cutoff);
    }

    /// Drops batches at or after `offset` (truncation).
    pub(crate) fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, entry| !entry.batches.is_empty());
    }

    /// Kafka's producer snapshot format, version 1: version i16, CRC-32C
    /// u32 of what follows, then an i32 count of 46-byte entries (producer
    /// id i64, epoch i16, last sequence i32, last offset i64, offset delta
    /// i32, timestamp i64, coordinator epoch i32, current transaction first
    /// offset i64). Like Kafka it keeps only each producer's last batch.
    pub(crate) fn encode_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * SNAPSHOT_ENTRY_LEN);
        let mut entries: Vec<_> = self
            .producers
            .iter()
            .filter_map(|(id, entry)| entry.batches.back().map(|last| (*id, entry.epoch, *last)))
            .collect();
        entries.sort_unstable_by_key(|(id, _, _)| *id);
        body.extend_from_slice(
            &i32::try_from(entries.len())
                .unwrap_or(i32::MAX)
                .to_be_bytes(),
        );
        for (id, epoch, last) in entries {
            let offset_delta =
                i32::try_from(last.last_offset - last.base_offset).unwrap_or(i32::MAX);
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&epoch.to_be_bytes());
            body.extend_from_slice(&last.last_sequence.to_be_bytes());
            body.extend_from_slice(&last.last_offset.to_be_bytes());
            body.extend_from_slice(&offset_delta.to_be_bytes());
            body.extend_from_slice(&last.timestamp_ms.to_be_bytes());
            body.extend_from_slice(&(-1i32).to_be_bytes());
            body.extend_from_slice(&(-1i64).to_be_bytes());
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses [`ProducerStateTable::encode_snapshot`]'s format.
    pub(crate) fn decode_snapshot(path: &Path, bytes: &[u8]) -> Result<ProducerStateTable> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if bytes.len() < 10 {
            return Err(corrupt("producer snapshot too short"));
        }
        if i16::from_be_bytes([bytes[0], bytes[1]]) != SNAPSHOT_VERSION {
            return Err(corrupt("unknown producer snapshot version"));
        }
        let crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let body = &bytes[6..];
        if crc32c::crc32c(body) != crc {
            return Err(corrupt("producer snapshot checksum mismatch"));
        }
        let count = usize::try_from(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
            .map_err(|_| corrupt("negative entry count"))?;
        let entries = &body[4..];
        if entries.len() != count * SNAPSHOT_ENTRY_LEN {
            return Err(corrupt("producer snapshot length does not match its count"));
        }
        let mut table = ProducerStateTable::default();
        for raw in entries.chunks_exact(SNAPSHOT_ENTRY_LEN) {
            let i64_at = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[at..at + 8]);
                i64::from_be_bytes(b)
            };
            let i32_at =
                |at: usize| i32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
            let producer_id = i64_at(0);
            let epoch = i16::from_be_bytes([raw[8], raw[9]]);
            let last_sequence = i32_at(10);
            let last_offset = i64_at(14);
            let offset_delta = i32_at(22);
            let timestamp_ms = i64_at(26);
            let first_sequence = last_sequence.wrapping_sub(offset_delta).max(0);
            table.record(
                producer_id,
                epoch,
                BatchMetadata {
                    first_sequence,
                    last_sequence,
                    base_offset: last_offset - i64::from(offset_delta),
                    last_offset,
                    timestamp_ms,
                },
            );
        }
        Ok(table)
    }
}

const SNAPSHOT_VERSION: i16 = 1;
const SNAPSHOT_ENTRY_LEN: usize = 46;

/// `<dir>/<20-digit offset>.snapshot`.
pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

/// Snapshot offsets present in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> io::Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((stem, SNAPSHOT_SUFFIX)) = name.split_once('.')
            && stem.len() == 20
            && let Ok(offset) = stem.parse()
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes the table as the snapshot at `offset` and removes all but the
/// newest two snapshots.
pub(crate) fn write_snapshot(
    dir: &Path,
    offset: i64,
    table: &ProducerStateTable,
) -> io::Result<()> {
    write_atomically(&snapshot_path(dir, offset), &table.encode_snapshot(), false)?;
    let offsets = list_snapshots(dir)?;
    for old in offsets.iter().rev().skip(2) {
        // Best effort: a stale snapshot is ignored on load anyway.
        let _ = fs::remove_file(snapshot_path(dir, *old));
    }
    Ok(())
}

/// Removes snapshots taken after `offset`: they describe batches that are
/// gone.
pub(crate) fn remove_snapshots_after(dir: &Path, offset: i64) -> io::Result<()> {
    for snapshot in list_snapshots(dir)? {
        if snapshot > offset {
            fs::remove_file(snapshot_path(dir, snapshot))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, last: i32, base: i64) -> BatchMetadata {
        BatchMetadata {
            first_sequence: first,
            last_sequence: last,
            base_offset: base,
            last_offset: base + i64::from(last - first),
            timestamp_ms: 1,
        }
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut table = ProducerStateTable::default();
        assert_eq!(
            table.check(7, 0, 0, 4).expect("first"),
            SequenceCheck::Append
        );
        table.record(7, 0, batch(0, 4, 100));
        assert_eq!(
            table.check(7, 0, 0, 4).expect("dup"),
            SequenceCheck::Duplicate(batch(0, 4, 100))
        );
        assert!(matches!(
            table.check(7, 0, 6, 6),
            Err(Error::OutOfOrderSequence { expected: 5, .. })
        ));
        assert_eq!(
            table.check(7, 0, 5, 5).expect("next"),
            SequenceCheck::Append
        );
        assert_eq!(
            table.check(7, 1, 0, 0).expect("new epoch"),
            SequenceCheck::Append
        );
        table.record(7, 1, batch(0, 0, 200));
        assert!(matches!(
            table.check(7, 0, 5, 5),
            Err(Error::ProducerFenced {
                current_epoch: 1,
                ..
            })
        ));
        assert!(matches!(
            table.check(8, 0, 3, 3),
            Err(Error::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 1), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(next_sequence(i32::MAX), 0);
    }

    #[test]
    fn snapshot_round_trips_last_batches() {
        let mut table = ProducerStateTable::default();
        table.record(1, 0, batch(0, 9, 0));
        table.record(1, 0, batch(10, 19, 10));
        table.record(2, 3, batch(0, 0, 20));
        let bytes = table.encode_snapshot();
        assert_eq!(bytes.len(), 10 + 2 * SNAPSHOT_ENTRY_LEN);
        let back = ProducerStateTable::decode_snapshot(Path::new("s"), &bytes).expect("decode");
        assert_eq!(
            back.check(1, 0, 10, 19).expect("dup"),
            SequenceCheck::Duplicate(batch(10, 19, 10))
        );
        assert_eq!(
            back.check(1, 0, 20, 20).expect("next"),
            SequenceCheck::Append
        );
        assert_eq!(back.check(2, 3, 1, 1).expect("next"), SequenceCheck::Append);
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(ProducerStateTable::decode_snapshot(Path::new("s"), &bad).is_err());
    }
}
