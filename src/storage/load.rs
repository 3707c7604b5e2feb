//! Creating a partition's directory, and opening an existing one: after a
//! clean shutdown by trusting the checkpoints and indexes (checked lazily),
//! after a crash by re-reading every segment from the recovery point on.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::TopicConfig;
use crate::error::{Error, IoContext, Result};
use crate::notify::Notify;
use crate::storage::checkpoint::{read_epoch_checkpoint, sync_dir, write_epoch_checkpoint};
use crate::storage::compaction::finish_interrupted_swaps;
use crate::storage::index::{IndexFile, OffsetEntry, TimeEntry};
use crate::storage::partition::{
    LEADER_EPOCH_CHECKPOINT, PartitionLog, PartitionState, indexes_full,
};
use crate::storage::producer_state::{ProducerStateTable, list_snapshots, snapshot_path};
use crate::storage::segment::{
    INDEX_SUFFIX, IndexTracker, LOG_SUFFIX, Segment, SegmentIndexes, TIME_INDEX_SUFFIX,
    parse_segment_file_name, segment_file_name,
};

/// What the log directory's checkpoints say about a partition.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LoadHints {
    /// Compaction had cleaned everything below this offset.
    pub(crate) first_dirty_offset: Option<i64>,
    /// The log was shut down cleanly: no rescan needed.
    pub(crate) clean_shutdown: bool,
    /// Offsets below it were on disk at the last checkpoint.
    pub(crate) recovery_point: Option<i64>,
    /// The log start offset at the last checkpoint.
    pub(crate) log_start_offset: Option<i64>,
}

/// The topic, partition and shared handles a partition is built with.
pub(crate) struct PartitionContext<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: u32,
    pub(crate) dir: PathBuf,
    pub(crate) config: Arc<TopicConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) background: Arc<Notify>,
}

fn initial_state(
    segments: Vec<Arc<Segment>>,
    next_offset: i64,
    log_start_offset: i64,
    now_ms: i64,
) -> PartitionState {
    PartitionState {
        segments: Arc::new(segments),
        next_offset,
        log_start_offset,
        high_watermark: next_offset,
        recovery_point: next_offset,
        leader_epoch: 0,
        epoch_entries: Vec::new(),
        active_created_ms: now_ms,
        active_first_timestamp: None,
        active_index_full: false,
        directory_dirty: false,
        poisoned: None,
        closed: false,
        producers: ProducerStateTable::default(),
        first_dirty_offset: log_start_offset,
    }
}

impl PartitionLog {
    /// Creates the directory and first segment of a new partition.
    pub(crate) fn create(ctx: PartitionContext<'_>) -> Result<PartitionLog> {
        fs::create_dir_all(&ctx.dir).at(&ctx.dir)?;
        let segment = Arc::new(Segment::create(&ctx.dir, 0)?);
        let epochs = vec![(0, 0)];
        write_epoch_checkpoint(&ctx.dir.join(LEADER_EPOCH_CHECKPOINT), &epochs)?;
        sync_dir(&ctx.dir).at(&ctx.dir)?;
        let mut state = initial_state(vec![segment], 0, 0, ctx.clock.now_ms());
        state.epoch_entries = epochs;
        Ok(PartitionLog::new(
            ctx.topic,
            ctx.partition,
            ctx.dir,
            ctx.config,
            ctx.clock,
            state,
            ctx.background,
        ))
    }

    /// Opens an existing partition directory, recovering it if needed.
    pub(crate) fn load(ctx: PartitionContext<'_>, hints: LoadHints) -> Result<PartitionLog> {
        let dir = ctx.dir.clone();
        let interval = u64::from(ctx.config.index_interval_bytes);
        let contiguous = ctx.config.cleanup_policy == crate::config::CleanupPolicy::Delete;
        finish_interrupted_swaps(&dir)?;
        let mut bases = list_segments(&dir)?;
        let mut changed = false;
        if bases.is_empty() {
            let base = hints.log_start_offset.unwrap_or(0).max(0);
            Segment::create(&dir, base)?;
            bases.insert(base, 0);
            changed = true;
        }
        let last_base = *bases.keys().next_back().unwrap_or(&0);
        let mut segments: Vec<Arc<Segment>> = bases
            .iter()
            .map(|(&base, &size)| Arc::new(Segment::open(&dir, base, size, base == last_base)))
            .collect();

        let mut next_offset = None;
        let recover_from = if hints.clean_shutdown {
            match load_active_after_clean_shutdown(
                &segments[segments.len() - 1],
                interval,
                contiguous,
            ) {
                Ok(next) => {
                    next_offset = Some(next);
                    None
                }
                // The checkpoints said clean but the tail disagrees: recover
                // the active segment like after a crash.
                Err(_) => Some(segments.len() - 1),
            }
        } else {
            // Start with the segment holding the last offset known to be on
            // disk: a flush that raced a roll may have moved the recovery
            // point to the end of a segment whose index files were not yet
            // synced, and re-reading that segment rebuilds them.
            let last_flushed = hints.recovery_point.unwrap_or(0).saturating_sub(1);
            Some(
                segments
                    .partition_point(|s| s.base_offset() <= last_flushed)
                    .saturating_sub(1),
            )
        };

        if let Some(first) = recover_from {
            let mut next_expected = segments[first].base_offset();
            let mut i = first;
            while i < segments.len() {
                let segment = Arc::clone(&segments[i]);
                let is_last = i + 1 == segments.len();
                let on_disk = segment.size();
                let outcome = segment.recover(next_expected, interval, true, true, contiguous)?;
                changed = true;
                next_expected = outcome
                    .next_offset
                    .unwrap_or(next_expected.max(segment.base_offset()));
                // The next segment must start right where this one ends; a
                // segment cut at a batch boundary (or emptied) leaves a gap
                // that nothing after it may bridge.
                let next_base = segments.get(i + 1).map(|s| s.base_offset());
                let cut_short = outcome.problem.is_some()
                    || outcome.valid_bytes < on_disk
                    || next_base.is_some_and(|next| next != next_expected);
                if cut_short && !is_last {
                    // Kafka's rule: after the first bad batch nothing later
                    // can be trusted; later segments go.
                    for removed in segments.drain(i + 1..) {
                        removed.mark_deleted()?;
                    }
                }
                if i + 1 < segments.len() {
                    // Not the active segment: its indexes go back to disk.
                    segment.seal()?;
                }
                i += 1;
            }
            let active = &segments[segments.len() - 1];
            next_offset = Some(next_expected.max(active.base_offset()));
            for segment in &segments[first..] {
                segment.sync()?;
                segment.persist_indexes(true)?;
            }
        }

        let active = Arc::clone(&segments[segments.len() - 1]);
        let next_offset = next_offset.unwrap_or(active.base_offset());
        let first_base = segments[0].base_offset();
        let log_start_offset = hints
            .log_start_offset
            .unwrap_or(first_base)
            .max(first_base)
            .min(next_offset);
        let now_ms = ctx.clock.now_ms();
        let mut state = initial_state(segments, next_offset, log_start_offset, now_ms);
        if active.size() > 0 {
            state.active_first_timestamp = Some(active.read_header(0)?.max_timestamp);
        }
        state.active_index_full =
            indexes_full(&mut active.indexes.lock(), ctx.config.segment_index_bytes);

        let epoch_path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut epochs = read_epoch_checkpoint(&epoch_path).unwrap_or_default();
        let before = epochs.len();
        epochs.retain(|&(_, start)| start <= next_offset);
        if epochs.is_empty() {
            epochs.push((0, log_start_offset));
        }
        if epochs.len() != before {
            write_epoch_checkpoint(&epoch_path, &epochs)?;
        }
        state.first_dirty_offset = hints
            .first_dirty_offset
            .unwrap_or(log_start_offset)
            .clamp(log_start_offset, next_offset);
        state.producers = rebuild_producer_state(&dir, &state.segments, next_offset, interval)?;
        state.leader_epoch = epochs.last().map_or(0, |&(epoch, _)| epoch);
        state.epoch_entries = epochs;
        drop(active);
        if changed {
            sync_dir(&dir).at(&dir)?;
        }
        Ok(PartitionLog::new(
            ctx.topic,
            ctx.partition,
            dir,
            ctx.config,
            ctx.clock,
            state,
            ctx.background,
        ))
    }
}

/// The idempotent producers' state at `next_offset`: the newest readable
/// snapshot at or before it, then every batch header after the snapshot.
fn rebuild_producer_state(
    dir: &Path,
    segments: &[Arc<Segment>],
    next_offset: i64,
    interval: u64,
) -> Result<ProducerStateTable> {
    let snapshots = list_snapshots(dir).at(dir)?;
    for &stale in snapshots.iter().filter(|&&offset| offset > next_offset) {
        // It describes batches that recovery cut off.
        let path = snapshot_path(dir, stale);
        fs::remove_file(&path).at(&path)?;
    }
    let mut table = ProducerStateTable::default();
    let mut from = segments[0].base_offset();
    for &offset in snapshots
        .iter()
        .rev()
        .filter(|&&offset| offset <= next_offset)
    {
        let path = snapshot_path(dir, offset);
        let decoded = fs::read(&path)
            .at(&path)
            .and_then(|bytes| ProducerStateTable::decode_snapshot(&path, &bytes));
        if let Ok(snapshot) = decoded {
            table = snapshot;
            from = offset;
            break;
        }
    }
    let first = segments
        .partition_point(|s| s.base_offset() <= from)
        .saturating_sub(1);
    for (i, segment) in segments.iter().enumerate().skip(first) {
        let size = segment.size();
        let mut position = if i == first {
            match segment.find_batch(from, size, interval)? {
                Some((position, _)) => position,
                None => continue,
            }
        } else {
            0
        };
        while position < size {
            let header = segment.read_header(position)?;
            if header.base_offset >= from {
                table.observe(&header);
            }
            position += header.size_bytes() as u64;
        }
    }
    Ok(table)
}

/// Base offset → size of each segment data file in `dir`. Removes leftovers
/// of interrupted operations: temporary files and index files whose data
/// file is gone.
fn list_segments(dir: &Path) -> Result<BTreeMap<i64, u64>> {
    let mut logs = BTreeMap::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            fs::remove_file(&path).at(&path)?;
            continue;
        }
        match parse_segment_file_name(name) {
            Some((base, LOG_SUFFIX)) => {
                let size = entry.metadata().at(&path)?.len();
                logs.insert(base, size);
            }
            Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => indexes.push((base, path)),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains_key(&base) {
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(logs)
}

/// Loads the active segment's indexes into memory and finds the log end by
/// reading only what follows the last index entry. Any inconsistency is an
/// error, and the caller recovers the segment instead.
fn load_active_after_clean_shutdown(
    active: &Segment,
    interval: u64,
    contiguous: bool,
) -> Result<i64> {
    let base = active.base_offset();
    let dir = active
        .log_path()
        .parent()
        .unwrap_or(Path::new("."))
        .to_owned();
    let offsets_path = dir.join(segment_file_name(base, INDEX_SUFFIX));
    let times_path = dir.join(segment_file_name(base, TIME_INDEX_SUFFIX));
    let corrupt = |reason: &str| Error::Corrupt {
        path: active.log_path().to_owned(),
        reason: reason.to_owned(),
    };
    // A torn index file is not trusted: whole entries only.
    for (path, entry_len) in [(&offsets_path, 8u64), (&times_path, 12u64)] {
        if fs::metadata(path).at(path)?.len() % entry_len != 0 {
            return Err(corrupt("index file is not a whole number of entries"));
        }
    }
    let offsets = IndexFile::<OffsetEntry>::on_disk(offsets_path.clone())
        .read_all()
        .at(&offsets_path)?;
    let times = IndexFile::<TimeEntry>::on_disk(times_path.clone())
        .read_all()
        .at(&times_path)?;
    let size = active.size();
    let monotonic = offsets
        .windows(2)
        .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
        && times.windows(2).all(|w| w[0].timestamp < w[1].timestamp);
    if !monotonic
        || offsets
            .last()
            .is_some_and(|e| u64::from(e.position) >= size)
    {
        return Err(corrupt("index out of order or past the end of the log"));
    }
    let mut tracker = IndexTracker::new(base);
    if let Some(last) = times.last() {
        tracker.max_timestamp = last.timestamp;
        tracker.offset_of_max_timestamp = base + i64::from(last.relative_offset);
    }
    // Scan from the batch the last index entry points at, checking it too
    // (its CRC and that it fits in the file): the tail after it is all that
    // a clean shutdown leaves unindexed. Starting with zero bytes since the
    // last entry re-creates the state right after that batch's entry.
    let (start, next_expected) = match offsets.last() {
        Some(entry) => {
            let header = active.read_header(u64::from(entry.position))?;
            if header.last_offset() != base + i64::from(entry.relative_offset) {
                return Err(corrupt("offset index entry does not match its batch"));
            }
            (u64::from(entry.position), header.base_offset)
        }
        None => (0, base),
    };
    let persisted = (offsets.len(), times.len());
    let mut indexes = SegmentIndexes {
        offsets: IndexFile::in_memory(offsets_path, offsets, persisted.0),
        times: IndexFile::in_memory(times_path, times, persisted.1),
        tracker,
        verified: true,
    };
    let outcome = active.scan_into(&mut indexes, start, next_expected, interval, contiguous)?;
    if let Some(problem) = outcome.problem {
        return Err(corrupt(&problem));
    }
    let next_offset = outcome.next_offset.unwrap_or(next_expected);
    *active.indexes.lock() = indexes;
    Ok(next_offset)
}
