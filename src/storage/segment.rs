//! One segment: a `.log` file of record batches with its `.index` and
//! `.timeindex`, named by the segment's base offset.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::record::{BATCH_HEADER_LEN, BatchHeader};
use crate::storage::index::{IndexFile, OffsetEntry, TimeEntry};

/// Extension of segment data files.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Bounds of the space reserved ahead of an active segment's data.
const PREALLOCATE_MIN_BYTES: u64 = 64 << 10;
const PREALLOCATE_MAX_BYTES: u64 = 8 << 20;

/// Allocates `len` bytes of `file` from `offset` without changing its size
/// (`fallocate` with `FALLOC_FL_KEEP_SIZE`, as RocksDB does for its logs).
/// Whether the filesystem did.
#[cfg(target_os = "linux")]
fn preallocate(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return false;
    };
    // SAFETY: `fallocate` only reads its integer arguments; the descriptor
    // is open for writing as long as `file` lives.
    unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_file: &File, _offset: u64, _len: u64) -> bool {
    false
}

/// Positional write of `parts` in order, `pwritev` on Linux, resumed
/// after short writes.
#[cfg(target_os = "linux")]
fn write_all_vectored_at(file: &File, parts: &[&[u8]], mut position: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Whole parts still to write, and how much of the first is done.
    let mut rest = parts;
    let mut done_in_first = 0;
    while let Some(first) = rest.first() {
        if done_in_first == first.len() {
            rest = &rest[1..];
            done_in_first = 0;
            continue;
        }
        let iovecs: Vec<libc::iovec> = rest
            .iter()
            .take(MAX_IOVECS)
            .enumerate()
            .map(|(i, part)| {
                let part = if i == 0 { &part[done_in_first..] } else { part };
                libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                }
            })
            .collect();
        let offset = libc::off_t::try_from(position)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "position past off_t"))?;
        // SAFETY: every iovec points into a live slice of `parts` and spans
        // only its bytes; the kernel only reads them.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len() as libc::c_int,
                offset,
            )
        };
        if written < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut written = written as usize;
        position += written as u64;
        while written > 0 {
            let left = rest[0].len() - done_in_first;
            if written >= left {
                written -= left;
                rest = &rest[1..];
                done_in_first = 0;
            } else {
                done_in_first += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn write_all_vectored_at(file: &File, parts: &[&[u8]], mut position: u64) -> io::Result<()> {
    for part in parts {
        file.write_all_at(part, position)?;
        position += part.len() as u64;
    }
    Ok(())
}

/// Buffers per `pwritev` call (Linux's `IOV_MAX`).
#[cfg(target_os = "linux")]
const MAX_IOVECS: usize = 1024;

/// `<20-digit base offset>.<suffix>`, Kafka's file naming.
pub(crate) fn segment_file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// The base offset in a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// What the index entries are derived from, kept per segment so that an
/// append and a rebuild from the log produce the same entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexTracker {
    /// Log bytes appended since the last offset index entry.
    pub(crate) bytes_since_last_entry: u64,
    /// Largest timestamp in the segment, -1 if none.
    pub(crate) max_timestamp: i64,
    /// Last offset of the batch that first carried `max_timestamp`.
    pub(crate) offset_of_max_timestamp: i64,
}

impl IndexTracker {
    pub(crate) fn new(base_offset: i64) -> Self {
        IndexTracker {
            bytes_since_last_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
        }
    }
}

/// A segment's two indexes and the state that feeds them.
pub(crate) struct SegmentIndexes {
    pub(crate) offsets: IndexFile<OffsetEntry>,
    pub(crate) times: IndexFile<TimeEntry>,
    pub(crate) tracker: IndexTracker,
    /// For sealed segments: whether the index files were checked against
    /// the log (done on first use, so opening stays fast).
    pub(crate) verified: bool,
}

impl SegmentIndexes {
    /// Adds the index entries due for a batch of `size` bytes at `position`,
    /// exactly as Kafka's `LogSegment.append` does: an entry when more than
    /// `interval` bytes were appended since the last one.
    pub(crate) fn on_batch(
        &mut self,
        base_offset: i64,
        position: u64,
        header: &BatchHeader,
        interval: u64,
    ) {
        let tracker = &mut self.tracker;
        if header.max_timestamp > tracker.max_timestamp {
            tracker.max_timestamp = header.max_timestamp;
            tracker.offset_of_max_timestamp = header.last_offset();
        }
        if tracker.bytes_since_last_entry > interval {
            let relative = u32::try_from(header.last_offset() - base_offset);
            if let (Ok(relative_offset), Ok(position)) = (relative, u32::try_from(position)) {
                self.offsets.push(OffsetEntry {
                    relative_offset,
                    position,
                });
            }
            self.append_time_entry(base_offset);
            self.tracker.bytes_since_last_entry = 0;
        }
        self.tracker.bytes_since_last_entry += header.size_bytes() as u64;
    }

    /// Adds a time index entry for the largest timestamp so far if it is
    /// newer than the last entry (Kafka's `TimeIndex.maybeAppend`).
    pub(crate) fn append_time_entry(&mut self, base_offset: i64) {
        let tracker = self.tracker;
        if tracker.max_timestamp < 0 {
            return;
        }
        let last = self.times.last().ok().flatten();
        if last.is_some_and(|last| last.timestamp >= tracker.max_timestamp) {
            return;
        }
        if let Ok(relative_offset) = u32::try_from(tracker.offset_of_max_timestamp - base_offset) {
            self.times.push(TimeEntry {
                timestamp: tracker.max_timestamp,
                relative_offset,
            });
        }
    }
}

/// One segment of a partition's log.
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    file: OnceLock<File>,
    /// Bytes of whole batches in the file; readers never read past it.
    size_bytes: AtomicU64,
    /// Bytes known to be on disk (after an `fsync`).
    pub(crate) flushed_bytes: AtomicU64,
    /// Space reserved for the data file past its end, by [`preallocate`]:
    /// the file's blocks up to here are allocated (its size stays the size
    /// of its data). `u64::MAX` once the filesystem refused.
    reserved_bytes: AtomicU64,
    pub(crate) indexes: Mutex<SegmentIndexes>,
    /// Whether a sealed segment's index files were `fsync`ed.
    indexes_synced: AtomicBool,
    deleted: AtomicBool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("size_bytes", &self.size())
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// Creates an empty segment (its three files) in `dir`.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment> {
        let log_path = dir.join(segment_file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .at(&log_path)?;
        let segment = Segment::new(dir, base_offset, log_path, 0, true);
        let _ = segment.file.set(file);
        {
            let mut indexes = segment.indexes.lock();
            indexes
                .offsets
                .persist()
                .at(indexes.offsets.path().to_owned())?;
            indexes
                .times
                .persist()
                .at(indexes.times.path().to_owned())?;
        }
        Ok(segment)
    }

    /// A segment whose files exist. `active` keeps its indexes in memory
    /// (the caller loads them); otherwise they stay on disk.
    pub(crate) fn open(dir: &Path, base_offset: i64, size_bytes: u64, active: bool) -> Segment {
        let log_path = dir.join(segment_file_name(base_offset, LOG_SUFFIX));
        Segment::new(dir, base_offset, log_path, size_bytes, active)
    }

    fn new(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        size_bytes: u64,
        active: bool,
    ) -> Segment {
        let offsets_path = dir.join(segment_file_name(base_offset, INDEX_SUFFIX));
        let times_path = dir.join(segment_file_name(base_offset, TIME_INDEX_SUFFIX));
        let (offsets, times) = if active {
            (
                IndexFile::in_memory(offsets_path, Vec::new(), 0),
                IndexFile::in_memory(times_path, Vec::new(), 0),
            )
        } else {
            (
                IndexFile::on_disk(offsets_path),
                IndexFile::on_disk(times_path),
            )
        };
        Segment {
            base_offset,
            log_path,
            file: OnceLock::new(),
            size_bytes: AtomicU64::new(size_bytes),
            flushed_bytes: AtomicU64::new(size_bytes),
            reserved_bytes: AtomicU64::new(0),
            indexes: Mutex::new(SegmentIndexes {
                offsets,
                times,
                tracker: IndexTracker::new(base_offset),
                verified: active,
            }),
            indexes_synced: AtomicBool::new(!active),
            deleted: AtomicBool::new(false),
        }
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Bytes of whole batches readers may read.
    pub(crate) fn size(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    /// Publishes a new size after the bytes below it were written.
    pub(crate) fn set_size(&self, size: u64) {
        self.size_bytes.store(size, Ordering::Release);
    }

    pub(crate) fn flushed_size(&self) -> u64 {
        self.flushed_bytes.load(Ordering::Acquire)
    }

    /// The segment's data file, opened on first use.
    pub(crate) fn file(&self) -> Result<&File> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.log_path)
            .at(&self.log_path)?;
        // Another thread may have won the race; either handle will do.
        let _ = self.file.set(opened);
        self.file.get().ok_or(Error::Closed)
    }

    /// Reads exactly `buf.len()` bytes at `position`.
    pub(crate) fn read_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.file()?.read_exact_at(buf, position).at(&self.log_path)
    }

    /// Reads and checks the batch header at `position`.
    pub(crate) fn read_header(&self, position: u64) -> Result<BatchHeader> {
        let file_len = self.size();
        if position + BATCH_HEADER_LEN as u64 > file_len {
            return Err(Error::Corrupt {
                path: self.log_path.clone(),
                reason: format!(
                    "batch header at position {position} runs past the end ({file_len} bytes)"
                ),
            });
        }
        let mut raw = [0u8; BATCH_HEADER_LEN];
        self.read_at(&mut raw, position)?;
        BatchHeader::parse_raw(&raw).map_err(|reason| Error::Corrupt {
            path: self.log_path.clone(),
            reason: format!("{reason} at position {position}"),
        })
    }

    /// Writes `bytes` at `position` (the end of the data), reserving space
    /// ahead of it first.
    pub(crate) fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        match self.file() {
            Ok(file) => {
                let end = position + bytes.len() as u64;
                if end > self.reserved_bytes.load(Ordering::Relaxed) {
                    self.reserve_past(file, end);
                }
                file.write_all_at(bytes, position)
            }
            Err(Error::Io { source, .. }) => Err(source),
            Err(other) => Err(io::Error::other(other.to_string())),
        }
    }

    /// Writes `parts` one after another from `position` (the end of the
    /// data) with as few system calls as the kernel allows, reserving
    /// space first.
    pub(crate) fn write_all_vectored_at(&self, parts: &[&[u8]], position: u64) -> io::Result<()> {
        let file = match self.file() {
            Ok(file) => file,
            Err(Error::Io { source, .. }) => return Err(source),
            Err(other) => return Err(io::Error::other(other.to_string())),
        };
        let total: u64 = parts.iter().map(|part| part.len() as u64).sum();
        let end = position + total;
        if end > self.reserved_bytes.load(Ordering::Relaxed) {
            self.reserve_past(file, end);
        }
        write_all_vectored_at(file, parts, position)
    }

    /// Reserves the file's blocks from its end to `end` and as far again
    /// (within bounds), keeping its size: appends into reserved blocks skip
    /// the filesystem's block allocation, which costs more than the copy of
    /// the data. The step grows with the segment, so a quiet partition
    /// reserves little.
    fn reserve_past(&self, file: &File, end: u64) {
        let ahead = end.clamp(PREALLOCATE_MIN_BYTES, PREALLOCATE_MAX_BYTES);
        let from = self.reserved_bytes.load(Ordering::Relaxed).max(self.size());
        let reserved = if preallocate(file, from, end + ahead - from) {
            end + ahead
        } else {
            // Not supported here, or no space: the write itself will say
            // whether the data fits.
            u64::MAX
        };
        self.reserved_bytes.store(reserved, Ordering::Relaxed);
    }

    /// Gives back the blocks reserved past the end of the data, when the
    /// segment takes no more appends (sealed, or the log closing).
    pub(crate) fn release_reserved(&self) -> Result<()> {
        let reserved = self.reserved_bytes.swap(0, Ordering::Relaxed);
        let size = self.size();
        if reserved > size && reserved != u64::MAX {
            self.file()?.set_len(size).at(&self.log_path)?;
        }
        Ok(())
    }

    /// Cuts the data file to `size` bytes.
    pub(crate) fn truncate_file(&self, size: u64) -> Result<()> {
        self.file()?.set_len(size).at(&self.log_path)?;
        // Cutting also frees the blocks reserved past the end.
        self.reserved_bytes.store(0, Ordering::Relaxed);
        self.set_size(size);
        self.flushed_bytes.fetch_min(size, Ordering::AcqRel);
        Ok(())
    }

    /// Forces the data written so far to disk.
    pub(crate) fn sync(&self) -> Result<()> {
        let size = self.size();
        if self.flushed_size() >= size {
            return Ok(());
        }
        self.file()?.sync_data().at(&self.log_path)?;
        self.flushed_bytes.fetch_max(size, Ordering::AcqRel);
        Ok(())
    }

    /// The largest timestamp in the segment, -1 if it has none.
    pub(crate) fn max_timestamp(&self) -> Result<i64> {
        Ok(self.indexes.lock().tracker.max_timestamp)
    }

    /// Writes the indexes out, adds the final time index entry and drops
    /// the in-memory entries: the segment will not be appended to again.
    pub(crate) fn seal(&self) -> Result<()> {
        self.release_reserved()?;
        let mut indexes = self.indexes.lock();
        indexes.append_time_entry(self.base_offset);
        let SegmentIndexes { offsets, times, .. } = &mut *indexes;
        offsets.seal().at(offsets.path().to_owned())?;
        times.seal().at(times.path().to_owned())?;
        self.indexes_synced.store(false, Ordering::Release);
        Ok(())
    }

    /// `fsync`s a sealed segment's index files once, so a recovery point
    /// past this segment never relies on index bytes still in the cache.
    pub(crate) fn sync_sealed_indexes(&self) -> Result<()> {
        if self.indexes_synced.load(Ordering::Acquire) {
            return Ok(());
        }
        self.persist_indexes(true)?;
        self.indexes_synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes in-memory index entries to their files (for the active
    /// segment at flush and close) and, with `durable`, `fsync`s them.
    pub(crate) fn persist_indexes(&self, durable: bool) -> Result<()> {
        let mut indexes = self.indexes.lock();
        let SegmentIndexes { offsets, times, .. } = &mut *indexes;
        offsets.persist().at(offsets.path().to_owned())?;
        times.persist().at(times.path().to_owned())?;
        if durable {
            offsets.sync().at(offsets.path().to_owned())?;
            times.sync().at(times.path().to_owned())?;
        }
        Ok(())
    }

    /// The position of the first batch whose last offset is at or after
    /// `offset`, searching below `limit`; `None` if there is none.
    pub(crate) fn find_batch(
        &self,
        offset: i64,
        limit: u64,
        interval: u64,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let relative = offset.saturating_sub(self.base_offset);
        let mut position = if self.is_deleted() {
            // Its index files are gone; read the data from the start.
            0
        } else {
            self.ensure_verified(interval)?;
            let mut indexes = self.indexes.lock();
            match indexes
                .offsets
                .lookup(relative)
                .at(indexes.offsets.path().to_owned())?
            {
                Some(entry) => u64::from(entry.position),
                None => 0,
            }
        };
        if position >= limit {
            position = 0;
        }
        let mut first = true;
        while position < limit {
            let header = match self.read_header(position) {
                Ok(header) => header,
                // An index entry that points at garbage: fall back to a
                // scan from the segment start rather than trust it.
                Err(_) if first && position != 0 => {
                    position = 0;
                    first = false;
                    continue;
                }
                Err(err) => return Err(err),
            };
            if first && header.base_offset > offset && position != 0 {
                position = 0;
                first = false;
                continue;
            }
            first = false;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// The first record at or after `target_ms` within this segment, for a
    /// time index lookup: the position to start scanning from.
    pub(crate) fn time_lookup_start(
        &self,
        target_ms: i64,
        limit: u64,
        interval: u64,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let start_offset = if self.is_deleted() {
            self.base_offset
        } else {
            self.ensure_verified(interval)?;
            let mut indexes = self.indexes.lock();
            match indexes
                .times
                .lookup(target_ms)
                .at(indexes.times.path().to_owned())?
            {
                Some(entry) => self.base_offset + i64::from(entry.relative_offset),
                None => self.base_offset,
            }
        };
        self.find_batch(start_offset, limit, interval)
    }

    /// Takes the segment out of the directory at once (its files are renamed
    /// `*.deleted`, which recovery removes) and removes the files when the
    /// last reader lets go of it. Readers holding it keep reading the data
    /// through the open file; its indexes are no longer used.
    pub(crate) fn mark_deleted(&self) -> Result<()> {
        if self.deleted.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Hold the data open so readers of this segment keep their bytes.
        let _ = self.file();
        let mut indexes = self.indexes.lock();
        indexes.offsets.release();
        indexes.times.release();
        for path in [
            self.log_path.clone(),
            indexes.offsets.path().to_owned(),
            indexes.times.path().to_owned(),
        ] {
            match fs::rename(&path, deleted_path(&path)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).at(path),
            }
        }
        Ok(())
    }

    /// Whether the segment was taken out of its partition.
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn remove_files(&mut self) {
        let indexes = self.indexes.get_mut();
        let paths = [
            self.log_path.clone(),
            indexes.offsets.path().to_owned(),
            indexes.times.path().to_owned(),
        ];
        for path in paths {
            // Best effort: recovery removes `*.deleted` files left behind.
            let _ = fs::remove_file(deleted_path(&path));
        }
    }
}

/// `<path>.deleted`.
pub(crate) fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".deleted");
    PathBuf::from(name)
}

impl Drop for Segment {
    fn drop(&mut self) {
        if *self.deleted.get_mut() {
            self.remove_files();
        }
    }
}
