//! Log compaction of one partition (cleanup policy `compact`): keep the
//! latest record of every key, as Kafka's log cleaner does.
//!
//! A pass maps each key of the dirty section (from the first dirty offset
//! to the first segment that may not be cleaned yet) to its latest offset,
//! then rewrites the segments up to the end of that section, in groups that
//! fit one segment, dropping every record a later one of its key replaces.
//! Each group's new segment is written as `.cleaned`, renamed `.swap` (the
//! commit point: recovery completes a swap it finds), the old segments are
//! renamed `.deleted`, and the `.swap` files take their final names.
//! Readers that hold the old segments keep reading them.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::CleanupPolicy;
use crate::error::{Error, IoContext, Result};
use crate::record::rewrite::write_filtered_batch;
use crate::record::{BATCH_HEADER_LEN, BatchHeader, BatchView, RecordView};
use crate::storage::checkpoint::sync_dir;
use crate::storage::index::IndexFile;
use crate::storage::partition::PartitionLog;
use crate::storage::segment::{
    INDEX_SUFFIX, IndexTracker, LOG_SUFFIX, Segment, SegmentIndexes, TIME_INDEX_SUFFIX,
    segment_file_name,
};

/// Suffix of a compacted segment being written.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a compacted segment ready to replace the old ones.
pub(crate) const SWAP_SUFFIX: &str = "swap";
/// Bytes read from a segment at a time while cleaning.
const READ_CHUNK_BYTES: usize = 4 << 20;
/// Bytes of memory one map entry may take: a 128-bit key hash and an
/// offset (24 bytes) plus the hash table's control byte, at most 8/7 of
/// entries per bucket, and up to twice the buckets right after the table
/// doubles. Kafka's `SkimpyOffsetMap` packs entries in 24 bytes; a growable
/// table needs the slack to stay within the configured buffer.
pub(crate) const OFFSET_MAP_ENTRY_BYTES: usize = 64;

/// Key → latest offset over the dirty section, holding a 128-bit hash of
/// each key rather than the key (as Kafka's cleaner holds an MD5), so its
/// memory is bounded by the number of keys, not their size.
pub(crate) struct OffsetMap {
    entries: HashMap<(u64, u64), i64, PreHashed>,
    capacity: usize,
}

/// Two SipHash passes with different prefixes: 128 bits, so two keys share
/// an entry (and one loses its latest record) with negligible probability.
fn key_hash(key: &[u8]) -> (u64, u64) {
    let mut low = DefaultHasher::new();
    key.hash(&mut low);
    let mut high = DefaultHasher::new();
    0x0b70_01e7_u32.hash(&mut high);
    key.hash(&mut high);
    (low.finish(), high.finish())
}

/// The map's keys are hashes already: use their bits as they are.
#[derive(Clone, Copy, Default)]
struct PreHashed;

#[derive(Default)]
struct PreHashedHasher(u64);

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;
    fn build_hasher(&self) -> PreHashedHasher {
        PreHashedHasher(0)
    }
}

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `(u64, u64)` keys; fold anything else.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }
}

impl OffsetMap {
    pub(crate) fn with_memory(bytes: usize) -> OffsetMap {
        OffsetMap {
            // Grown as keys arrive: a map sized for the whole buffer would
            // scatter a few keys over a large table, missing the cache on
            // every record.
            entries: HashMap::default(),
            capacity: (bytes / OFFSET_MAP_ENTRY_BYTES).max(1),
        }
    }

    fn has_room_for(&self, records: usize) -> bool {
        self.entries.len() + records <= self.capacity
    }

    fn put(&mut self, key: &[u8], offset: i64) {
        self.entries.insert(key_hash(key), offset);
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&key_hash(key)).copied()
    }
}

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Offsets below this are now clean.
    pub cleaned_up_to: i64,
    /// Bytes of the segments that were rewritten.
    pub bytes_read: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_written: u64,
    /// Records removed.
    pub records_removed: u64,
}

/// How dirty a compacted partition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dirtiness {
    pub(crate) clean_bytes: u64,
    pub(crate) dirty_bytes: u64,
    /// The oldest dirty record is older than `max_compaction_lag_ms`.
    pub(crate) overdue: bool,
}

/// The part of a partition a compaction pass may work on.
struct Cleanable {
    segments: Arc<Vec<Arc<Segment>>>,
    /// Index of the first segment not to clean (the active one, or the
    /// first with records younger than the minimum compaction lag).
    end: usize,
    /// Offsets below it are clean.
    first_dirty: i64,
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Calls `f` for every whole batch of `segment`, reading it in chunks.
fn for_each_batch(segment: &Segment, mut f: impl FnMut(BatchView<'_>) -> Result<()>) -> Result<()> {
    let size = segment.size();
    let mut buf = Vec::new();
    let mut position = 0u64;
    while position < size {
        let want = (READ_CHUNK_BYTES as u64).min(size - position) as usize;
        buf.resize(
            want.max(BATCH_HEADER_LEN.min((size - position) as usize)),
            0,
        );
        segment.read_at(&mut buf, position)?;
        let mut used = 0;
        while buf.len() - used >= BATCH_HEADER_LEN {
            let header = BatchHeader::parse(&buf[used..])?;
            let batch_size = header.size_bytes();
            if buf.len() - used < batch_size {
                if used == 0 {
                    // A batch larger than the chunk: read it whole.
                    buf.resize(batch_size, 0);
                    segment.read_at(&mut buf, position)?;
                    continue;
                }
                break;
            }
            let batch = BatchView::parse(&buf[used..used + batch_size])?;
            batch.verify_crc()?;
            f(batch)?;
            used += batch_size;
        }
        if used == 0 {
            return Err(Error::Corrupt {
                path: segment.log_path().to_owned(),
                reason: format!("no whole batch at position {position}"),
            });
        }
        position += used as u64;
    }
    Ok(())
}

impl PartitionLog {
    fn is_compacted(&self) -> bool {
        matches!(
            self.config.cleanup_policy,
            CleanupPolicy::Compact | CleanupPolicy::CompactDelete
        )
    }

    /// The segments a pass may touch: all but the active one and those
    /// holding records newer than `min_compaction_lag_ms`.
    fn cleanable_segments(&self, now_ms: i64) -> Result<Cleanable> {
        let interval = u64::from(self.config.index_interval_bytes);
        let (segments, first_dirty) = {
            let state = self.state.lock();
            (
                Arc::clone(&state.segments),
                state.first_dirty_offset.max(state.log_start_offset),
            )
        };
        let mut end = segments.len() - 1;
        if self.config.min_compaction_lag_ms > 0 {
            for (i, segment) in segments[..end].iter().enumerate() {
                segment.ensure_verified(interval)?;
                if segment.max_timestamp()?
                    > now_ms.saturating_sub(self.config.min_compaction_lag_ms)
                {
                    end = i;
                    break;
                }
            }
        }
        Ok(Cleanable {
            segments,
            end,
            first_dirty,
        })
    }

    /// Clean and dirty bytes, for choosing which partition to clean.
    pub(crate) fn dirtiness(&self, now_ms: i64) -> Result<Option<Dirtiness>> {
        if !self.is_compacted() || self.is_closed() {
            return Ok(None);
        }
        let Cleanable {
            segments,
            end,
            first_dirty,
        } = self.cleanable_segments(now_ms)?;
        let (mut clean_bytes, mut dirty_bytes) = (0, 0);
        let mut overdue = false;
        for (i, segment) in segments[..end].iter().enumerate() {
            let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset());
            if next_base <= first_dirty {
                clean_bytes += segment.size();
            } else {
                dirty_bytes += segment.size();
                if let Some(max_lag) = self.config.max_compaction_lag_ms
                    && segment.size() > 0
                {
                    let first = segment.read_header(0)?.max_timestamp;
                    overdue |= now_ms.saturating_sub(first) > max_lag;
                }
            }
        }
        Ok(Some(Dirtiness {
            clean_bytes,
            dirty_bytes,
            overdue,
        }))
    }

    /// Runs one compaction pass with an offset map of `map_memory_bytes`.
    /// Returns `None` if there was nothing dirty to clean.
    pub(crate) fn compact(
        &self,
        now_ms: i64,
        map_memory_bytes: usize,
    ) -> Result<Option<CompactionStats>> {
        // One pass at a time per partition: two would write the same
        // `.cleaned` files.
        let _pass = self.compaction_pass.lock();
        if !self.is_compacted() {
            return Ok(None);
        }
        let Cleanable {
            segments,
            end,
            first_dirty,
        } = self.cleanable_segments(now_ms)?;
        if end == 0 || first_dirty >= segments[end].base_offset() {
            return Ok(None);
        }
        // 1. Map each key of the dirty section to its latest offset, whole
        //    batches at a time, until the map is full.
        let mut map = OffsetMap::with_memory(map_memory_bytes);
        let mut map_end = first_dirty;
        let start = segments
            .partition_point(|s| s.base_offset() <= first_dirty)
            .saturating_sub(1);
        'segments: for segment in &segments[start..end] {
            let mut full = false;
            for_each_batch(segment, |batch| {
                if full || batch.header().last_offset() < first_dirty {
                    return Ok(());
                }
                let records = usize::try_from(batch.header().record_count).unwrap_or(0);
                if !map.has_room_for(records) && map_end > first_dirty {
                    full = true;
                    return Ok(());
                }
                for record in batch.records() {
                    let record = record?;
                    if let (true, Some(key)) = (record.offset >= first_dirty, record.key) {
                        map.put(key, record.offset);
                    }
                }
                map_end = batch.header().last_offset() + 1;
                Ok(())
            })?;
            if full {
                break 'segments;
            }
        }
        if map_end <= first_dirty {
            return Ok(None);
        }
        // 2. Rewrite every segment up to the one holding the map's end, in
        //    groups that fit one segment.
        let last = segments
            .partition_point(|s| s.base_offset() < map_end)
            .saturating_sub(1)
            .min(end - 1);
        let producers_last: HashSet<i64> = self.state.lock().producers.last_offsets().collect();
        let mut stats = CompactionStats {
            cleaned_up_to: map_end,
            ..CompactionStats::default()
        };
        let mut group_start = 0;
        while group_start <= last {
            let mut group_end = group_start + 1;
            let mut bytes = segments[group_start].size();
            while group_end <= last {
                let next = &segments[group_end];
                let span = segments
                    .get(group_end + 1)
                    .map_or(i64::MAX, |s| s.base_offset())
                    - segments[group_start].base_offset();
                if bytes + next.size() > u64::from(self.config.segment_bytes)
                    || span > i64::from(i32::MAX)
                {
                    break;
                }
                bytes += next.size();
                group_end += 1;
            }
            let group = &segments[group_start..group_end];
            if !self.clean_group(group, &map, now_ms, &producers_last, &mut stats)? {
                // The segments changed under us (retention, truncation): the
                // next pass starts over.
                return Ok(Some(stats));
            }
            group_start = group_end;
        }
        let mut state = self.state.lock();
        state.first_dirty_offset = state.first_dirty_offset.max(map_end);
        Ok(Some(stats))
    }

    /// Writes the cleaned copy of `group` and swaps it in. False if the
    /// group is no longer in the log.
    fn clean_group(
        &self,
        group: &[Arc<Segment>],
        map: &OffsetMap,
        now_ms: i64,
        producers_last: &HashSet<i64>,
        stats: &mut CompactionStats,
    ) -> Result<bool> {
        let base = group[0].base_offset();
        let interval = u64::from(self.config.index_interval_bytes);
        let log_path = self.dir.join(segment_file_name(base, LOG_SUFFIX));
        let index_path = self.dir.join(segment_file_name(base, INDEX_SUFFIX));
        let time_path = self.dir.join(segment_file_name(base, TIME_INDEX_SUFFIX));
        let cleaned = |path: &Path| suffixed(path, CLEANED_SUFFIX);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(cleaned(&log_path))
            .at(cleaned(&log_path))?;
        let mut indexes = SegmentIndexes {
            offsets: IndexFile::in_memory(cleaned(&index_path), Vec::new(), 0),
            times: IndexFile::in_memory(cleaned(&time_path), Vec::new(), 0),
            tracker: IndexTracker::new(base),
            verified: true,
        };
        let group_last_offset = {
            let last = &group[group.len() - 1];
            let mut last_offset = last.base_offset() - 1;
            for_each_batch(last, |batch| {
                last_offset = batch.header().last_offset();
                Ok(())
            })?;
            last_offset
        };
        let mut out = Vec::with_capacity(READ_CHUNK_BYTES);
        let mut position = 0u64;
        let delete_retention_ms = self.config.delete_retention_ms;
        for segment in group {
            stats.bytes_read += segment.size();
            for_each_batch(segment, |batch| {
                let header = *batch.header();
                let horizon = header.delete_horizon_ms();
                let mut tombstone_kept = false;
                let mut total = 0u64;
                let mut local: Vec<RecordView<'_>> = Vec::new();
                for record in batch.records() {
                    let record = record?;
                    total += 1;
                    let latest = record.key.and_then(|key| map.get(key));
                    if latest.is_some_and(|latest| record.offset < latest) {
                        continue;
                    }
                    if record.value.is_none() && record.key.is_some() {
                        if horizon.is_some_and(|h| h <= now_ms) {
                            continue;
                        }
                        tombstone_kept = true;
                    }
                    local.push(record);
                }
                stats.records_removed += total - local.len() as u64;
                let needs_horizon = tombstone_kept && horizon.is_none();
                let keep_empty = header.last_offset() == group_last_offset
                    || (header.producer_id >= 0 && producers_last.contains(&header.last_offset()));
                let start = out.len();
                // An untouched batch is copied as it is; an empty one (left by
                // an earlier pass) only survives where an empty one must.
                let written = if total > 0 && local.len() as u64 == total && !needs_horizon {
                    out.extend_from_slice(batch.as_bytes());
                    Some(header)
                } else if !local.is_empty() || keep_empty {
                    let new_horizon = if needs_horizon {
                        Some(now_ms.saturating_add(delete_retention_ms))
                    } else {
                        horizon.filter(|_| tombstone_kept)
                    };
                    Some(write_filtered_batch(&mut out, &header, &local, new_horizon))
                } else {
                    None
                };
                if let Some(written) = written {
                    indexes.on_batch(base, position, &written, interval);
                    position += (out.len() - start) as u64;
                }
                if out.len() >= READ_CHUNK_BYTES {
                    file.write_all(&out).at(cleaned(&log_path))?;
                    out.clear();
                }
                Ok(())
            })?;
        }
        file.write_all(&out).at(cleaned(&log_path))?;
        file.sync_all().at(cleaned(&log_path))?;
        drop(file);
        indexes.append_time_entry(base);
        for index in [
            &mut indexes.offsets as &mut dyn PersistIndex,
            &mut indexes.times,
        ] {
            index.persist_and_sync()?;
        }
        stats.bytes_written += position;
        self.swap_in(group, base, position)
    }

    /// Replaces `group` by the cleaned segment at `base`, crash-safely.
    fn swap_in(&self, group: &[Arc<Segment>], base: i64, size: u64) -> Result<bool> {
        // `<base>.log.swap` marks an unfinished swap: it is renamed first
        // from `.cleaned` (the commit point) and last into place, so while
        // it exists every `.swap` file at this base belongs to the swap.
        let paths: Vec<PathBuf> = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
            .iter()
            .map(|suffix| self.dir.join(segment_file_name(base, suffix)))
            .collect();
        let mut state = self.state.lock();
        let position = state
            .segments
            .iter()
            .position(|s| Arc::ptr_eq(s, &group[0]));
        let still_there = position.is_some_and(|at| {
            group.iter().enumerate().all(|(i, segment)| {
                state
                    .segments
                    .get(at + i)
                    .is_some_and(|s| Arc::ptr_eq(s, segment))
            })
        });
        let Some(at) = position.filter(|_| still_there) else {
            for path in &paths {
                let _ = fs::remove_file(suffixed(path, CLEANED_SUFFIX));
            }
            return Ok(false);
        };
        for path in &paths {
            fs::rename(suffixed(path, CLEANED_SUFFIX), suffixed(path, SWAP_SUFFIX)).at(path)?;
        }
        sync_dir(&self.dir).at(&self.dir)?;
        for segment in group {
            segment.mark_deleted()?;
        }
        // The old segments must be gone on disk before the new one takes
        // their name, or a crash could leave both.
        sync_dir(&self.dir).at(&self.dir)?;
        for path in paths.iter().rev() {
            fs::rename(suffixed(path, SWAP_SUFFIX), path).at(path)?;
        }
        sync_dir(&self.dir).at(&self.dir)?;
        let cleaned = Arc::new(Segment::open(&self.dir, base, size, false));
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(state.segments.len());
        segments.extend(state.segments[..at].iter().cloned());
        segments.push(cleaned);
        segments.extend(state.segments[at + group.len()..].iter().cloned());
        state.segments = Arc::new(segments);
        Ok(true)
    }
}

/// Writing a cleaned index file out and forcing it to disk.
trait PersistIndex {
    fn persist_and_sync(&mut self) -> Result<()>;
}

impl<E: crate::storage::index::IndexEntry> PersistIndex for IndexFile<E> {
    fn persist_and_sync(&mut self) -> Result<()> {
        let path = self.path().to_owned();
        self.persist().at(&path)?;
        self.sync().at(&path)?;
        Ok(())
    }
}

/// Completes or discards compaction swaps interrupted by a crash: a
/// `.cleaned` file was never committed and goes; a `<base>.log.swap` was,
/// and replaces every segment based within its range, its own base
/// included; an index `.swap` without one belongs to a data file already in
/// place.
pub(crate) fn finish_interrupted_swaps(dir: &Path) -> Result<()> {
    let mut swapped_logs = Vec::new();
    let mut swapped_files = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
            fs::remove_file(&path).at(&path)?;
        } else if let Some(final_name) = name.strip_suffix(&format!(".{SWAP_SUFFIX}"))
            && let Some((base, suffix)) =
                crate::storage::segment::parse_segment_file_name(final_name)
        {
            if suffix == LOG_SUFFIX {
                swapped_logs.push(base);
            }
            swapped_files.push(dir.join(final_name));
        }
    }
    if swapped_files.is_empty() {
        return Ok(());
    }
    for base in swapped_logs {
        // An index without a `.swap` at this base is either the old
        // segment's (the swap's own never got past `.cleaned`) or already
        // the new one's: which is unknown, so it goes and the new segment's
        // index is rebuilt from its data on first use.
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let index = dir.join(segment_file_name(base, suffix));
            if !suffixed(&index, SWAP_SUFFIX).exists() && index.exists() {
                fs::remove_file(&index).at(&index)?;
            }
        }
        let swap_log = suffixed(&dir.join(segment_file_name(base, LOG_SUFFIX)), SWAP_SUFFIX);
        let last_offset = last_offset_in(&swap_log)?.unwrap_or(base);
        // The other old segments of the group: every one based after this
        // base within the swap's range.
        for entry in fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((old_base, suffix)) = crate::storage::segment::parse_segment_file_name(name)
            else {
                continue;
            };
            let segment_file = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX].contains(&suffix);
            if segment_file && old_base > base && old_base <= last_offset {
                fs::remove_file(&path).at(&path)?;
            }
        }
    }
    // Data files last, as `swap_in` does.
    swapped_files.sort_by_key(|path| path.extension().is_some_and(|e| e == LOG_SUFFIX));
    for path in swapped_files {
        fs::rename(suffixed(&path, SWAP_SUFFIX), &path).at(&path)?;
    }
    sync_dir(dir).at(dir)
}

/// The last offset of the last whole batch in a segment file.
fn last_offset_in(path: &Path) -> Result<Option<i64>> {
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut last_offset = None;
    let mut position = 0u64;
    let mut header = [0u8; BATCH_HEADER_LEN];
    while position + BATCH_HEADER_LEN as u64 <= len {
        file.read_exact_at(&mut header, position).at(path)?;
        let parsed = BatchHeader::parse(&header)?;
        last_offset = Some(parsed.last_offset());
        position += parsed.size_bytes() as u64;
    }
    Ok(last_offset)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{CleanupPolicy, LogConfig, TopicConfig};
    use crate::error::Error;
    use crate::log::Log;
    use crate::record::Record;
    use crate::storage::{AppendOptions, ProducerBatch};

    /// An idempotent producer's batches, all superseded by later records
    /// of their keys, are compacted away but for the producer's last batch
    /// (kept empty): a retry of that batch is still answered as a
    /// duplicate, and the next sequence still follows, also after a reopen.
    #[test]
    fn idempotence_survives_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = || {
            LogConfig::default()
                .cleaner_backoff(Duration::from_secs(1 << 30))
                .retention_check_interval(Duration::from_secs(1 << 30))
        };
        let topic = TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(1024);
        let batch = |seq: i32| ProducerBatch {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let records = |tag: &str| -> Vec<Record> {
            (0..3)
                .map(|i| Record::new(tag).key(format!("k{i}")))
                .collect()
        };
        let first;
        {
            let log = Log::open(dir.path(), config()).expect("open");
            log.create_topic("t", topic.clone()).expect("create");
            log.append_with(
                "t",
                0,
                &records("a"),
                &AppendOptions::default().producer(batch(0)),
            )
            .expect("first batch");
            first = log
                .append_with(
                    "t",
                    0,
                    &records("b"),
                    &AppendOptions::default().producer(batch(3)),
                )
                .expect("second batch");
            // Another writer supersedes every key, over enough segments that
            // the producer's batches are cleanable.
            for round in 0..20 {
                log.append("t", 0, &records(&format!("later-{round}")))
                    .expect("append");
            }
            let stats = log.compact_now("t", 0).expect("compact");
            assert!(stats.records_removed >= 6, "{stats:?}");
            let retry = log
                .append_with(
                    "t",
                    0,
                    &records("b"),
                    &AppendOptions::default().producer(batch(3)),
                )
                .expect("retry after compaction");
            assert!(retry.duplicate);
            assert_eq!(
                (retry.base_offset, retry.last_offset),
                (first.base_offset, first.last_offset)
            );
            log.close().expect("close");
        }
        // Without snapshots the producer state must come from the log alone.
        for entry in std::fs::read_dir(dir.path().join("t-0")).expect("list") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "snapshot") {
                std::fs::remove_file(path).expect("remove snapshot");
            }
        }
        let log = Log::open(dir.path(), config()).expect("reopen");
        let retry = log
            .append_with(
                "t",
                0,
                &records("b"),
                &AppendOptions::default().producer(batch(3)),
            )
            .expect("retry after reopen");
        assert!(
            retry.duplicate,
            "the producer's last batch survived compaction and reopen"
        );
        assert!(matches!(
            log.append_with(
                "t",
                0,
                &records("c"),
                &AppendOptions::default().producer(batch(7))
            ),
            Err(Error::OutOfOrderSequence { expected: 6, .. })
        ));
        let next = log
            .append_with(
                "t",
                0,
                &records("c"),
                &AppendOptions::default().producer(batch(6)),
            )
            .expect("next sequence");
        assert!(!next.duplicate);
    }
}
