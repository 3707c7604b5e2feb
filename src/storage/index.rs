//! Sparse indexes of a segment: the offset index (relative offset →
//! file position) and the time index (timestamp → relative offset).
//!
//! The active segment keeps its entries in memory and writes them out when
//! it is sealed, flushed or closed; a sealed segment's index stays on disk
//! and is binary-searched with positional reads, so memory does not grow
//! with the number of segments.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One fixed-width index entry, stored big-endian.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    /// Bytes per entry on disk.
    const LEN: usize;
    fn decode(bytes: &[u8]) -> Self;
    fn encode(&self, out: &mut Vec<u8>);
    /// The value entries are sorted by and looked up with.
    fn key(&self) -> i64;
}

/// An offset index entry: a batch's last offset, relative to the segment's
/// base offset, and the file position where the batch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const LEN: usize = 8;
    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            position: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
}

/// A time index entry: the largest timestamp seen so far in the segment
/// and the (relative) last offset of the batch that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const LEN: usize = 12;
    fn decode(bytes: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn key(&self) -> i64 {
        self.timestamp
    }
}

/// Where an index's entries live.
enum Entries<E> {
    /// The active segment's: every entry in memory; the first `persisted`
    /// are already in the file.
    Memory { entries: Vec<E>, persisted: usize },
    /// A sealed segment's: only in the file, opened on first use.
    Disk { file: Option<File>, count: usize },
}

/// One index file of a segment.
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    entries: Entries<E>,
}

impl<E: IndexEntry> IndexFile<E> {
    /// An in-memory index holding `entries`, of which the first `persisted`
    /// match the file.
    pub(crate) fn in_memory(path: PathBuf, entries: Vec<E>, persisted: usize) -> Self {
        IndexFile {
            path,
            entries: Entries::Memory { entries, persisted },
        }
    }

    /// A sealed index, read from `path` as needed. Its size is taken at the
    /// first use.
    pub(crate) fn on_disk(path: PathBuf) -> Self {
        IndexFile {
            path,
            entries: Entries::Disk {
                file: None,
                count: 0,
            },
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Number of entries.
    pub(crate) fn len(&mut self) -> io::Result<usize> {
        match &mut self.entries {
            Entries::Memory { entries, .. } => Ok(entries.len()),
            Entries::Disk { .. } => {
                self.open_disk()?;
                match &self.entries {
                    Entries::Disk { count, .. } => Ok(*count),
                    Entries::Memory { entries, .. } => Ok(entries.len()),
                }
            }
        }
    }

    fn open_disk(&mut self) -> io::Result<()> {
        if let Entries::Disk { file, count } = &mut self.entries
            && file.is_none()
        {
            let opened = File::open(&self.path)?;
            let len = opened.metadata()?.len();
            *count = usize::try_from(len / E::LEN as u64).unwrap_or(usize::MAX);
            *file = Some(opened);
        }
        Ok(())
    }

    /// Entry `i`.
    pub(crate) fn get(&mut self, i: usize) -> io::Result<E> {
        self.open_disk()?;
        match &self.entries {
            Entries::Memory { entries, .. } => entries.get(i).copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "index entry out of range")
            }),
            Entries::Disk { file, .. } => {
                let mut raw = [0u8; 16];
                let raw = &mut raw[..E::LEN];
                let file = file
                    .as_ref()
                    .ok_or_else(|| io::Error::other("index file not open"))?;
                file.read_exact_at(raw, (i * E::LEN) as u64)?;
                Ok(E::decode(raw))
            }
        }
    }

    /// The last entry, if any.
    pub(crate) fn last(&mut self) -> io::Result<Option<E>> {
        let len = self.len()?;
        if len == 0 {
            Ok(None)
        } else {
            self.get(len - 1).map(Some)
        }
    }

    /// The entry with the largest key at or below `target`.
    pub(crate) fn lookup(&mut self, target: i64) -> io::Result<Option<E>> {
        if let Entries::Memory { entries, .. } = &self.entries {
            let i = entries.partition_point(|entry| entry.key() <= target);
            return Ok(i.checked_sub(1).map(|i| entries[i]));
        }
        // Binary search over positional reads: O(log n) small reads from
        // the page cache, and no memory held for sealed segments.
        let (mut low, mut high) = (0usize, self.len()?);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.get(mid)?.key() <= target {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        match low.checked_sub(1) {
            Some(i) => self.get(i).map(Some),
            None => Ok(None),
        }
    }

    /// Adds an entry to an in-memory index. Sealed indexes are not
    /// appended to; the caller holds the active segment.
    pub(crate) fn push(&mut self, entry: E) {
        if let Entries::Memory { entries, .. } = &mut self.entries {
            entries.push(entry);
        }
    }

    /// Reads every entry of the file (bounded by the caller's size check).
    pub(crate) fn read_all(&mut self) -> io::Result<Vec<E>> {
        let len = self.len()?;
        (0..len).map(|i| self.get(i)).collect()
    }

    /// Writes in-memory entries not yet in the file, and cuts the file to
    /// exactly the entries.
    pub(crate) fn persist(&mut self) -> io::Result<()> {
        if let Entries::Memory { entries, persisted } = &mut self.entries {
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&self.path)?;
            let mut buf = Vec::with_capacity((entries.len() - *persisted) * E::LEN);
            for entry in &entries[*persisted..] {
                entry.encode(&mut buf);
            }
            file.write_all_at(&buf, (*persisted * E::LEN) as u64)?;
            file.set_len((entries.len() * E::LEN) as u64)?;
            *persisted = entries.len();
        }
        Ok(())
    }

    /// Persists the entries and leaves only the file: the segment is sealed.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        self.persist()?;
        if let Entries::Memory { entries, .. } = &self.entries {
            let count = entries.len();
            self.entries = Entries::Disk { file: None, count };
        }
        Ok(())
    }

    /// Replaces the index with `entries`, writing the file afresh.
    pub(crate) fn rebuild(&mut self, entries: Vec<E>, keep_in_memory: bool) -> io::Result<()> {
        let mut buf = Vec::with_capacity(entries.len() * E::LEN);
        for entry in &entries {
            entry.encode(&mut buf);
        }
        crate::storage::checkpoint::write_atomically(&self.path, &buf, false)?;
        let persisted = entries.len();
        self.entries = if keep_in_memory {
            Entries::Memory { entries, persisted }
        } else {
            Entries::Disk {
                file: None,
                count: persisted,
            }
        };
        Ok(())
    }

    /// Forces the file to disk (after [`IndexFile::persist`]).
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        match File::open(&self.path) {
            Ok(file) => file.sync_all(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Closes the file handle of a sealed index (it reopens on next use).
    pub(crate) fn release(&mut self) {
        if let Entries::Disk { file, .. } = &mut self.entries {
            *file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_largest_entry_at_or_below_target_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries: Vec<_> = (0..100u32)
            .map(|i| OffsetEntry {
                relative_offset: i * 10 + 5,
                position: i * 100,
            })
            .collect();
        let mut memory = IndexFile::in_memory(dir.path().join("a.index"), entries.clone(), 0);
        memory.persist().expect("persist");
        let mut disk = IndexFile::<OffsetEntry>::on_disk(dir.path().join("a.index"));
        for target in [0i64, 4, 5, 6, 14, 15, 500, 994, 995, 10_000] {
            let expected = entries.iter().rev().find(|e| e.key() <= target).copied();
            assert_eq!(
                memory.lookup(target).expect("lookup"),
                expected,
                "memory {target}"
            );
            assert_eq!(
                disk.lookup(target).expect("lookup"),
                expected,
                "disk {target}"
            );
        }
        assert_eq!(disk.len().expect("len"), 100);
    }
}
