//! Crash safety of compaction's segment swap, checked by building each
//! on-disk state a crash can leave by hand. A compacted partition with a
//! clean and a dirty section over several segments is closed and copied (A,
//! before); a second copy is compacted and closed (B, after); diffing the
//! two directories gives the segment files the pass wrote (B's new
//! segments) and those it replaced (A's old ones). Fresh copies of A then
//! get the files of a swap caught at each step of its protocol: uncommitted
//! `.cleaned` files (whole, torn, or garbage), the data file `.swap` while
//! its indexes are still `.cleaned`, committed `.swap` files with the old
//! segments still there, some of them already renamed `.deleted`, the
//! indexes already in place while the data file is still `.swap` (and the
//! reverse, which an earlier protocol could leave), index `.swap` files of
//! an older version of the segment, one group swapped and the next not, and
//! B itself with leftover `.deleted` files. Before the commit point the log
//! must open as A, after it as B; every state is opened both with the
//! clean-shutdown marker and without it (forcing recovery). In every case
//! the log opens, holds exactly the expected records with every key's
//! latest value, reads at every offset return the next record uncorrupted,
//! timestamp lookups find the first record at or after the time, no
//! `.cleaned`, `.swap` or `.deleted` file is left, appends continue at the
//! log end, and all of it survives another reopen.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use brooklet::{CleanupPolicy, Clock, Log, LogConfig, ManualClock, Record, TopicConfig};

const TOPIC: &str = "state";
const CLOCK_START_MS: i64 = 1_700_000_000_000;
const KEYS: [&str; 6] = ["a", "b", "c", "user-1", "user-2", ""];
/// Longer than the tests run on the manual clock: the background cleaner
/// only looks at the log when it is opened, and then finds it clean
/// enough to leave alone.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const MARKER: &str = ".kafka_cleanshutdown";

/// One record read back: offset, key, value (`None`: a tombstone).
type Rec = (i64, Vec<u8>, Option<Vec<u8>>);

fn log_config() -> LogConfig {
    LogConfig::default()
        .clock(Arc::new(ManualClock::new(CLOCK_START_MS)) as Arc<dyn Clock>)
        .retention_check_interval(NEVER)
        .cleaner_backoff(NEVER)
}

fn open(dir: &Path) -> Log {
    Log::open(dir, log_config()).expect("open the log")
}

fn partition_dir(dir: &Path) -> PathBuf {
    dir.join(format!("{TOPIC}-0"))
}

/// Every record, read from the log start, checked to decode with strictly
/// increasing offsets.
fn read_all(log: &Log) -> Vec<Rec> {
    let mut last: Option<i64> = None;
    common::read_partition(log, TOPIC, 0, 0, |record| {
        if let Some(last) = last {
            assert!(
                record.offset > last,
                "offset {} after {last}",
                record.offset
            );
        }
        last = Some(record.offset);
        (
            record.offset,
            record.key.expect("every record has a key").to_vec(),
            record.value.map(<[u8]>::to_vec),
        )
    })
}

/// Base offset and suffix of a segment file name (`<20 digits>.<suffix>`).
fn parse_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

const SEGMENT_SUFFIXES: [&str; 3] = ["log", "index", "timeindex"];

/// Base offset → suffix → contents of every segment file in a partition.
fn segments(dir: &Path) -> BTreeMap<i64, BTreeMap<String, Vec<u8>>> {
    let mut segments: BTreeMap<i64, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for entry in fs::read_dir(partition_dir(dir)).expect("list the partition") {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().into_string().expect("a UTF-8 name");
        if let Some((base, suffix)) = parse_name(&name)
            && SEGMENT_SUFFIXES.contains(&suffix)
        {
            let bytes = fs::read(entry.path()).expect("read a segment file");
            segments
                .entry(base)
                .or_default()
                .insert(suffix.to_owned(), bytes);
        }
    }
    segments
}

/// Files of unfinished swaps and deletions in a partition.
fn leftovers(dir: &Path) -> Vec<String> {
    let unfinished = |name: &String| {
        [".cleaned", ".swap", ".deleted"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
    };
    fs::read_dir(partition_dir(dir))
        .expect("list the partition")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .filter(unfinished)
        .collect()
}

fn file_name(base: i64, suffix: &str) -> String {
    format!("{base:020}.{suffix}")
}

/// The two directories and what the pass between them changed.
struct Fixture {
    _tmp: tempfile::TempDir,
    before: PathBuf,
    after: PathBuf,
    /// Records of A and of B.
    before_records: Vec<Rec>,
    after_records: Vec<Rec>,
    /// Every record appended, for each key's latest value.
    appended: Vec<Rec>,
    /// Offset → timestamp of every record appended.
    timestamps: BTreeMap<i64, i64>,
    /// B's segments the pass wrote: base → suffix → contents.
    new_segments: BTreeMap<i64, BTreeMap<String, Vec<u8>>>,
    /// A's segments the pass replaced.
    old_segments: BTreeMap<i64, BTreeMap<String, Vec<u8>>>,
    /// Each new segment's base with the bases of the old ones it replaced.
    groups: Vec<(i64, Vec<i64>)>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let before = tmp.path().join("before");
    let after = tmp.path().join("after");
    let log = open(&before);
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(1024)
            .index_interval_bytes(128)
            .min_cleanable_dirty_ratio_percent(100),
    )
    .expect("create the topic");
    let mut appended = Vec::new();
    let mut timestamps = BTreeMap::new();
    let mut batch_index = 0i64;
    // A fixed pseudo-random sequence of appends: 1 to 4 records a batch,
    // one in seven a tombstone, timestamps a second apart give or take
    // two seconds (so not always in offset order).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut append_round = |log: &Log, appended: &mut Vec<Rec>, batches: usize| {
        for _ in 0..batches {
            let count = 1 + next(4) as usize;
            batch_index += 1;
            let records: Vec<Record> = (0..count)
                .map(|_| {
                    let key = KEYS[next(KEYS.len() as u64) as usize];
                    let timestamp_ms =
                        CLOCK_START_MS + batch_index * 1000 + next(4000) as i64 - 2000;
                    let record = if next(7) == 0 {
                        Record::tombstone(key)
                    } else {
                        let len = 40 + next(80) as usize;
                        let fill = b'a' + next(26) as u8;
                        Record::new(vec![fill; len]).key(key)
                    };
                    record.timestamp_ms(timestamp_ms)
                })
                .collect();
            let info = log.append(TOPIC, 0, &records).expect("append");
            for (i, record) in records.into_iter().enumerate() {
                let timestamp_ms = record.timestamp_ms.expect("set");
                timestamps.insert(info.base_offset + i as i64, timestamp_ms);
                appended.push((
                    info.base_offset + i as i64,
                    record.key.expect("keyed"),
                    record.value,
                ));
            }
        }
    };
    // A clean section, then a dirty one.
    append_round(&log, &mut appended, 60);
    let stats = log.compact_now(TOPIC, 0).expect("first pass");
    assert!(stats.bytes_read > 0, "the first pass did not run");
    append_round(&log, &mut appended, 60);
    let before_records = read_all(&log);
    log.close().expect("close A");

    common::copy_dir(&before, &after);
    let log = open(&after);
    let stats = log.compact_now(TOPIC, 0).expect("second pass");
    assert!(stats.records_removed > 0, "the second pass removed nothing");
    let after_records = read_all(&log);
    log.close().expect("close B");
    assert_ne!(before_records, after_records);

    let (a, b) = (segments(&before), segments(&after));
    let new_segments: BTreeMap<_, _> = b
        .iter()
        .filter(|&(base, files)| a.get(base) != Some(files))
        .map(|(&base, files)| (base, files.clone()))
        .collect();
    let old_segments: BTreeMap<_, _> = a
        .iter()
        .filter(|&(base, files)| b.get(base) != Some(files))
        .map(|(&base, files)| (base, files.clone()))
        .collect();
    // A new segment replaces the old ones based from its own base up to
    // the next segment of B.
    let groups: Vec<(i64, Vec<i64>)> = new_segments
        .keys()
        .map(|&base| {
            let end = b
                .range(base + 1..)
                .next()
                .map_or(i64::MAX, |(&next, _)| next);
            (
                base,
                old_segments.range(base..end).map(|(&old, _)| old).collect(),
            )
        })
        .collect();
    assert!(
        groups.len() >= 2,
        "the pass wrote {} segments; the tests want several swaps: {groups:?}",
        groups.len()
    );
    for (base, replaced) in &groups {
        assert!(
            !replaced.is_empty(),
            "new segment {base} replaced nothing: {groups:?}"
        );
        for suffix in SEGMENT_SUFFIXES {
            assert!(
                new_segments[base].contains_key(suffix),
                "new segment {base} has no .{suffix}"
            );
        }
    }
    let replaced: BTreeSet<i64> = groups.iter().flat_map(|(_, old)| old.clone()).collect();
    assert_eq!(
        replaced,
        old_segments.keys().copied().collect(),
        "old segments outside every new one: {groups:?}"
    );
    // Shown with `--nocapture`: the swaps the tests rebuild.
    eprintln!("new segment <- old segments: {groups:?}");
    Fixture {
        _tmp: tmp,
        before,
        after,
        before_records,
        after_records,
        appended,
        timestamps,
        new_segments,
        old_segments,
        groups,
    }
}

impl Fixture {
    /// A fresh copy of A (or B) at `name`.
    fn copy_of(&self, from: &Path, name: &str) -> PathBuf {
        let dir = self._tmp.path().join(name);
        common::copy_dir(from, &dir);
        dir
    }

    fn write(&self, dir: &Path, name: &str, bytes: &[u8]) {
        fs::write(partition_dir(dir).join(name), bytes).expect("write a file");
    }

    fn rename(&self, dir: &Path, from: &str, to: &str) {
        let part = partition_dir(dir);
        fs::rename(part.join(from), part.join(to)).expect("rename a file");
    }

    /// Renames every file of every old segment `.deleted`.
    fn delete_all_old(&self, dir: &Path) {
        for base in self.old_segments.keys() {
            for suffix in SEGMENT_SUFFIXES {
                let name = file_name(*base, suffix);
                self.rename(dir, &name, &format!("{name}.deleted"));
            }
        }
    }

    /// Every new segment's files under `<name>.<suffix>`.
    fn write_new_as(&self, dir: &Path, extra: &str, bases: impl Fn(i64) -> bool) {
        for (&base, files) in &self.new_segments {
            if bases(base) {
                for (suffix, bytes) in files {
                    self.write(dir, &format!("{}.{extra}", file_name(base, suffix)), bytes);
                }
            }
        }
    }

    /// Opens the state in `dir` (twice: as left, and with the
    /// clean-shutdown marker removed to force recovery) and checks it holds
    /// `expected`.
    fn check_both_ways(&self, dir: &Path, expected: &[Rec], what: &str) {
        let recovered = self._tmp.path().join(format!(
            "{}-recovered",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        ));
        common::copy_dir(dir, &recovered);
        assert!(
            dir.join(MARKER).exists(),
            "{what}: A and B were closed cleanly"
        );
        fs::remove_file(recovered.join(MARKER)).expect("remove the marker");
        self.check_opens_as(dir, expected, &format!("{what} (clean shutdown)"));
        self.check_opens_as(&recovered, expected, &format!("{what} (recovery)"));
    }

    fn check_opens_as(&self, dir: &Path, expected: &[Rec], what: &str) {
        let log = open(dir);
        let records = read_all(&log);
        assert_eq!(records, expected, "{what}: records");
        let log_end = self.appended.len() as i64;
        let offsets = log.offsets(TOPIC, 0).expect("offsets");
        assert_eq!(
            (offsets.log_start_offset, offsets.log_end_offset),
            (0, log_end),
            "{what}: offsets"
        );
        // Every key's latest value is there (tombstones too: their delete
        // horizon is a day away).
        let mut latest: BTreeMap<&[u8], &Rec> = BTreeMap::new();
        for record in &self.appended {
            latest.insert(&record.1, record);
        }
        for (key, record) in latest {
            assert!(
                records.contains(record),
                "{what}: the latest record of {key:?} is missing"
            );
        }
        // A read at every offset starts at the next record there is.
        for offset in 0..log_end {
            let first = common::first_offset_from(&log, TOPIC, 0, offset);
            let want = records.iter().map(|r| r.0).find(|&o| o >= offset);
            assert_eq!(first, want, "{what}: first record read from {offset}");
        }
        // Timestamp lookups find the first record, in offset order, at or
        // after the time asked for.
        let mut targets = BTreeSet::new();
        for record in &records {
            let timestamp_ms = self.timestamps[&record.0];
            targets.extend([timestamp_ms - 1, timestamp_ms, timestamp_ms + 1]);
        }
        for target in targets {
            let want = records
                .iter()
                .map(|r| (r.0, self.timestamps[&r.0]))
                .find(|&(_, timestamp_ms)| timestamp_ms >= target);
            let got = log
                .offset_for_timestamp(TOPIC, 0, target)
                .expect("offset_for_timestamp")
                .map(|t| (t.offset, t.timestamp_ms));
            assert_eq!(got, want, "{what}: offset_for_timestamp({target})");
        }
        // Appends go on at the log end and everything survives a reopen.
        let info = log
            .append(TOPIC, 0, &[Record::new("after the crash").key("a")])
            .expect("append after opening");
        assert_eq!(info.base_offset, log_end, "{what}: next offset");
        log.close().expect("close");
        let log = open(dir);
        let mut with_append = expected.to_vec();
        with_append.push((log_end, b"a".to_vec(), Some(b"after the crash".to_vec())));
        assert_eq!(
            read_all(&log),
            with_append,
            "{what}: records after a reopen"
        );
        log.close().expect("close");
        let leftovers = leftovers(dir);
        assert!(
            leftovers.is_empty(),
            "{what}: files left behind: {leftovers:?}"
        );
    }
}

/// Uncommitted `.cleaned` files — whole, torn, or garbage — are thrown
/// away: the log is A.
#[test]
fn stray_cleaned_files_are_discarded() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "cleaned");
    f.write_new_as(&dir, "cleaned", |_| true);
    // A torn write of the last new data file, and garbage for a base no
    // segment has.
    let (&last, files) = f.new_segments.iter().next_back().expect("a new segment");
    let log = &files["log"];
    f.write(
        &dir,
        &format!("{}.cleaned", file_name(last, "log")),
        &log[..log.len() / 2],
    );
    let garbage: Vec<u8> = (0..777u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    f.write(
        &dir,
        &format!("{}.cleaned", file_name(1_000_000, "log")),
        &garbage,
    );
    f.write(
        &dir,
        &format!("{}.cleaned", file_name(1_000_000, "index")),
        &garbage[..64],
    );
    f.check_both_ways(&dir, &f.before_records, "stray .cleaned files");
}

/// Committed `.swap` files with every old segment still in place: the
/// swap is completed, the log is B.
#[test]
fn swap_files_with_old_segments_present_complete_the_swap() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "swap");
    f.write_new_as(&dir, "swap", |_| true);
    f.check_both_ways(&dir, &f.after_records, ".swap files, old segments present");
}

/// A swap caught while renaming `.cleaned` to `.swap`: the data file is
/// `.swap` (renamed first, the commit point), its indexes still
/// `.cleaned`. The log is B.
#[test]
fn swap_caught_between_commit_renames_completes() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "commit-renames");
    let first = *f.new_segments.keys().next().expect("a new segment");
    f.write_new_as(&dir, "swap", |base| base != first);
    f.write_new_as(&dir, "cleaned", |base| base == first);
    let name = file_name(first, "log");
    f.rename(&dir, &format!("{name}.cleaned"), &format!("{name}.swap"));
    f.check_both_ways(&dir, &f.after_records, "data file .swap, indexes .cleaned");
}

/// Committed `.swap` files with some old segments already renamed
/// `.deleted` (one of them only partly): the log is B.
#[test]
fn swap_files_with_some_old_segments_deleted_complete_the_swap() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "swap-deleted");
    f.write_new_as(&dir, "swap", |_| true);
    let old: Vec<i64> = f.old_segments.keys().copied().collect();
    for (i, base) in old.iter().enumerate() {
        let suffixes: &[&str] = match i % 3 {
            0 => &SEGMENT_SUFFIXES,
            1 => &["log"],
            _ => &[],
        };
        for suffix in suffixes {
            let name = file_name(*base, suffix);
            f.rename(&dir, &name, &format!("{name}.deleted"));
        }
    }
    f.check_both_ways(
        &dir,
        &f.after_records,
        ".swap files, old segments partly .deleted",
    );
}

/// Every old segment renamed `.deleted`, and the first new segment's
/// indexes already renamed into place while its data file is still
/// `.swap` (the final renames put the data file last): the log is B.
#[test]
fn swap_caught_between_final_renames_completes() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "final-renames");
    f.delete_all_old(&dir);
    let first = *f.new_segments.keys().next().expect("a new segment");
    f.write_new_as(&dir, "swap", |_| true);
    for suffix in ["timeindex", "index"] {
        let name = file_name(first, suffix);
        f.rename(&dir, &format!("{name}.swap"), &name);
    }
    f.check_both_ways(
        &dir,
        &f.after_records,
        "indexes renamed, data file still .swap",
    );
}

/// The opposite order, which an earlier version of the swap used: the
/// first new segment's data file in place, its indexes still `.swap`. The
/// log is B, and the index `.swap` files do not stay behind.
#[test]
fn data_file_in_place_with_index_swap_files_completes() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "orphan-index-swaps");
    f.delete_all_old(&dir);
    let first = *f.new_segments.keys().next().expect("a new segment");
    f.write_new_as(&dir, "swap", |_| true);
    let name = file_name(first, "log");
    f.rename(&dir, &format!("{name}.swap"), &name);
    f.check_both_ways(
        &dir,
        &f.after_records,
        "data file renamed, indexes still .swap",
    );
}

/// The first group fully swapped (its old segments gone), the others
/// committed as `.swap` with their old segments present: the log is B.
#[test]
fn one_group_swapped_and_the_next_committed_completes() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "half-done");
    let (first, replaced) = &f.groups[0];
    for base in replaced {
        for suffix in SEGMENT_SUFFIXES {
            fs::remove_file(partition_dir(&dir).join(file_name(*base, suffix)))
                .expect("remove an old segment file");
        }
    }
    for (suffix, bytes) in &f.new_segments[first] {
        f.write(&dir, &file_name(*first, suffix), bytes);
    }
    f.write_new_as(&dir, "swap", |base| base != *first);
    f.check_both_ways(
        &dir,
        &f.after_records,
        "first group swapped, the rest .swap",
    );
}

/// B with leftover `.deleted` copies of A's old segment files: the log is
/// B and the leftovers go.
#[test]
fn leftover_deleted_files_are_removed() {
    let f = fixture();
    let dir = f.copy_of(&f.after, "deleted");
    for (&base, files) in &f.old_segments {
        for (suffix, bytes) in files {
            f.write(&dir, &format!("{}.deleted", file_name(base, suffix)), bytes);
        }
    }
    f.check_both_ways(&dir, &f.after_records, "B with .deleted leftovers");
}

/// The fixture itself: A and B open as themselves.
#[test]
fn before_and_after_open_as_themselves() {
    let f = fixture();
    let a = f.copy_of(&f.before, "a");
    f.check_both_ways(&a, &f.before_records, "A");
    let b = f.copy_of(&f.after, "b");
    f.check_both_ways(&b, &f.after_records, "B");
}

/// Two crashes in a row can leave a committed `.log.swap` next to index
/// `.swap` files of an older version of the same segment: the first crash
/// came between renaming a swap's data file and its indexes (the index
/// `.swap` files stay behind, see `swap_caught_between_final_renames_completes`),
/// the second right after a later pass renamed its new data file `.swap`
/// and before its indexes. Built here with A's indexes of the first old
/// segment as the stale `.swap` indexes of B's first new segment. Index
/// files are derived data that recovery can not vouch for (Kafka deletes
/// index `.swap` files and rebuilds them): whatever it does with them, the
/// log is B and a read at every offset finds the next record.
#[test]
fn stale_index_swap_files_are_not_trusted() {
    let f = fixture();
    let dir = f.copy_of(&f.before, "stale-index");
    let first = *f.new_segments.keys().next().expect("a new segment");
    let stale = &f.old_segments[&first];
    f.write(
        &dir,
        &format!("{}.swap", file_name(first, "log")),
        &f.new_segments[&first]["log"],
    );
    for suffix in ["index", "timeindex"] {
        f.write(
            &dir,
            &format!("{}.swap", file_name(first, suffix)),
            &stale[suffix],
        );
    }
    f.write_new_as(&dir, "swap", |base| base != first);
    f.check_both_ways(&dir, &f.after_records, "stale index .swap files");
}
