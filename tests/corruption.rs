//! Damaged files never become wrong data. A log of one topic with three
//! partitions and 2 KiB segments is written and closed cleanly; then a copy
//! of it has files cut, bit-flipped, emptied, garbled or deleted, and is
//! reopened. Every reopen succeeds and every record read back is the one
//! appended at its offset (value, key and timestamp are derived from the
//! partition and offset, so a misplaced record shows). After an unclean
//! reopen the damaged partition ends exactly after the last whole valid
//! batch before the damage, a damaged sealed segment also drops the
//! segments after it (Kafka's rule), and the other partitions are
//! untouched. When the clean-shutdown marker says the files are fine but a
//! data file is damaged anyway, reads either return correct records or
//! report `ChecksumMismatch`/`Corrupt`. Lost or garbled index and
//! checkpoint files are rebuilt without losing anything. After each reopen
//! new records are appended and read back (in a third of the cases also
//! across one more clean reopen). A second `Log::open` of an open directory
//! is `AlreadyOpen`. The last tests each reproduce one defect the
//! randomized ones found, in its smallest scenario.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use brooklet::{Error, Fetch, Log, LogConfig, Record, TailLoss, TopicConfig};

// The seeded damage positions are drawn from this.
use common::SplitMix64 as Rng;

const TOPIC: &str = "t";
const PARTITIONS: u32 = 3;
const SEGMENT_BYTES: u32 = 2048;
const INDEX_INTERVAL_BYTES: u32 = 128;
/// Appends per partition in the template log (1 to 3 records each).
const BATCHES_PER_PARTITION: usize = 60;
/// The partition that gets damaged; the others must come through intact.
const DAMAGED: u32 = 1;
/// Record timestamps are `BASE_TS + offset`.
const BASE_TS: i64 = 1_700_000_000_000;
const BATCH_HEADER_LEN: u64 = 61;
const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";
const RECOVERY_POINTS: &str = "recovery-point-offset-checkpoint";
const LOG_STARTS: &str = "log-start-offset-checkpoint";

type Ends = [i64; PARTITIONS as usize];

/// The value appended at `offset` of `partition`: distinctive, and of a
/// length that varies so batches differ in size.
fn value_for(partition: u32, offset: i64) -> Vec<u8> {
    let len = 20 + usize::try_from(offset * 7 % 61).expect("small");
    format!("p{partition}-o{offset}|")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

fn key_for(offset: i64) -> Vec<u8> {
    format!("k{offset}").into_bytes()
}

fn record_for(partition: u32, offset: i64) -> Record {
    Record::new(value_for(partition, offset))
        .key(key_for(offset))
        .timestamp_ms(BASE_TS + offset)
}

/// Appends one batch of `count` records at the partition's end, which must
/// be `next`.
fn append_batch(log: &Log, partition: u32, next: i64, count: i64) -> i64 {
    let records: Vec<Record> = (next..next + count)
        .map(|o| record_for(partition, o))
        .collect();
    let info = log.append(TOPIC, partition, &records).expect("append");
    assert_eq!(info.base_offset, next, "partition {partition}");
    assert_eq!(info.last_offset, next + count - 1, "partition {partition}");
    next + count
}

/// One batch as found in a segment file.
#[derive(Clone, Copy, Debug)]
struct BatchAt {
    position: u64,
    size: u64,
    last_offset: i64,
}

/// One segment's data file and its batches, parsed independently of the
/// crate (base offset at byte 0, batch length at 8, last offset delta at 23).
#[derive(Clone, Debug)]
struct SegmentFile {
    base_offset: i64,
    path: PathBuf,
    batches: Vec<BatchAt>,
}

impl SegmentFile {
    fn len(&self) -> u64 {
        self.batches.last().map_or(0, |b| b.position + b.size)
    }

    fn sibling(&self, extension: &str) -> PathBuf {
        self.path.with_extension(extension)
    }

    /// The partition's log end if this segment is damaged from byte
    /// `position` on: the end of the last batch wholly before it.
    fn end_if_damaged_at(&self, position: u64) -> i64 {
        self.batches
            .iter()
            .take_while(|b| b.position + b.size <= position)
            .last()
            .map_or(self.base_offset, |b| b.last_offset + 1)
    }

    /// The batch holding byte `position`.
    fn batch_at(&self, position: u64) -> BatchAt {
        *self
            .batches
            .iter()
            .find(|b| b.position <= position && position < b.position + b.size)
            .expect("position inside a batch")
    }
}

fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("{TOPIC}-{partition}"))
}

fn segment_files(dir: &Path, partition: u32) -> Vec<SegmentFile> {
    let pdir = partition_dir(dir, partition);
    let mut paths: Vec<PathBuf> = fs::read_dir(&pdir)
        .expect("partition dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).expect("read segment");
            let stem = path.file_stem().expect("stem").to_str().expect("utf-8");
            let base_offset: i64 = stem.parse().expect("base offset file name");
            let mut batches = Vec::new();
            let mut position = 0usize;
            while position < bytes.len() {
                let at = |from: usize, n: usize| &bytes[position + from..position + from + n];
                let batch_base = i64::from_be_bytes(at(0, 8).try_into().expect("8 bytes"));
                let length = i32::from_be_bytes(at(8, 4).try_into().expect("4 bytes"));
                let delta = i32::from_be_bytes(at(23, 4).try_into().expect("4 bytes"));
                let size = 12 + usize::try_from(length).expect("positive length");
                batches.push(BatchAt {
                    position: position as u64,
                    size: size as u64,
                    last_offset: batch_base + i64::from(delta),
                });
                position += size;
            }
            assert_eq!(
                position,
                bytes.len(),
                "{} ends in a whole batch",
                path.display()
            );
            SegmentFile {
                base_offset,
                path,
                batches,
            }
        })
        .collect()
}

fn topic_config() -> TopicConfig {
    TopicConfig::default()
        .partitions(PARTITIONS)
        .segment_bytes(SEGMENT_BYTES)
        .index_interval_bytes(INDEX_INTERVAL_BYTES)
}

/// The cleanly closed log every case starts from, and its partitions' ends.
struct Template {
    dir: tempfile::TempDir,
    ends: Ends,
    /// The damaged partition's segments.
    segments: Vec<SegmentFile>,
}

impl Template {
    fn build() -> Template {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        log.create_topic(TOPIC, topic_config())
            .expect("create topic");
        let mut ends = [0i64; PARTITIONS as usize];
        for i in 0..BATCHES_PER_PARTITION {
            for p in 0..PARTITIONS {
                // The other partitions are witnesses that damage stays in
                // its partition; a little data is enough for them.
                if p != DAMAGED && i % 4 != 0 {
                    continue;
                }
                let count = 1 + (i as i64 + i64::from(p)) % 3;
                ends[p as usize] = append_batch(&log, p, ends[p as usize], count);
            }
        }
        log.close().expect("close");
        let segments = segment_files(dir.path(), DAMAGED);
        assert!(
            segments.len() >= 5,
            "the template needs several segments: {}",
            segments.len()
        );
        assert_eq!(
            segments
                .last()
                .expect("segments")
                .batches
                .last()
                .expect("batch")
                .last_offset
                + 1,
            ends[DAMAGED as usize]
        );
        assert!(dir.path().join(CLEAN_SHUTDOWN).exists());
        Template {
            dir,
            ends,
            segments,
        }
    }

    /// A fresh copy of the template, to damage.
    fn copy(&self) -> tempfile::TempDir {
        let target = tempfile::tempdir().expect("tempdir");
        common::copy_dir(self.dir.path(), target.path());
        target
    }

    /// The same path in a copy.
    fn in_copy(&self, copy: &Path, path: &Path) -> PathBuf {
        copy.join(path.strip_prefix(self.dir.path()).expect("inside template"))
    }

    fn last_segment(&self) -> &SegmentFile {
        self.segments.last().expect("segments")
    }

    /// The ends after the damaged partition is cut to `end`.
    fn ends_with_damaged(&self, end: i64) -> Ends {
        let mut ends = self.ends;
        ends[DAMAGED as usize] = end;
        ends
    }
}

fn cut(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for cut")
        .set_len(len)
        .expect("cut");
}

fn flip_bit(path: &Path, position: u64, bit: u8) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for flip");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, position).expect("read byte");
    byte[0] ^= 1 << bit;
    file.write_all_at(&byte, position).expect("write byte");
}

fn remove(path: &Path) {
    fs::remove_file(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
}

/// Makes the next open run crash recovery from the recovery point.
fn remove_marker(dir: &Path) {
    remove(&dir.join(CLEAN_SHUTDOWN));
}

/// Makes the next open run crash recovery from the first segment.
fn remove_marker_and_recovery_points(dir: &Path) {
    remove_marker(dir);
    remove(&dir.join(RECOVERY_POINTS));
}

fn is_corruption(err: &Error) -> bool {
    matches!(err, Error::Corrupt { .. } | Error::ChecksumMismatch { .. })
}

/// Checks one record against what was appended at its offset.
fn check_record(partition: u32, offset: i64, value: Option<&[u8]>, key: Option<&[u8]>, ts: i64) {
    assert_eq!(
        value,
        Some(&value_for(partition, offset)[..]),
        "value at {partition}/{offset}"
    );
    assert_eq!(
        key,
        Some(&key_for(offset)[..]),
        "key at {partition}/{offset}"
    );
    assert_eq!(ts, BASE_TS + offset, "timestamp at {partition}/{offset}");
}

/// Strict check: the partition holds exactly offsets `0..end`, each with
/// the record appended there, read by a sequential reader; and a read at
/// each offset of `lookups` (through the offset index) and a timestamp
/// search for it (through the time index) find that record.
fn check_exact(
    log: &Log,
    partition: u32,
    end: i64,
    lookups: impl IntoIterator<Item = i64>,
    case: &str,
) {
    let offsets = log.offsets(TOPIC, partition).expect("offsets");
    assert_eq!(
        (
            offsets.log_start_offset,
            offsets.high_watermark,
            offsets.log_end_offset
        ),
        (0, end, end),
        "{case}: offsets of partition {partition}"
    );
    let mut reader = log.reader(TOPIC, partition, 0).expect("reader");
    let mut fetch = Fetch::new();
    let mut next = 0;
    while reader
        .next_into(&mut fetch)
        .unwrap_or_else(|e| panic!("{case}: sequential read of {partition}/{next}: {e}"))
    {
        for record in fetch.records() {
            let record =
                record.unwrap_or_else(|e| panic!("{case}: record {partition}/{next}: {e}"));
            assert_eq!(record.offset, next, "{case}: partition {partition}");
            check_record(
                partition,
                record.offset,
                record.value,
                record.key,
                record.timestamp_ms,
            );
            next += 1;
        }
    }
    assert_eq!(next, end, "{case}: records read from partition {partition}");
    for offset in lookups {
        let fetch = log
            .read(TOPIC, partition, offset, 1)
            .unwrap_or_else(|e| panic!("{case}: read at {partition}/{offset}: {e}"));
        let record = fetch
            .records()
            .next()
            .unwrap_or_else(|| panic!("{case}: nothing at {partition}/{offset}"))
            .unwrap_or_else(|e| panic!("{case}: record {partition}/{offset}: {e}"));
        assert_eq!(
            record.offset, offset,
            "{case}: read at {partition}/{offset}"
        );
        check_record(
            partition,
            offset,
            record.value,
            record.key,
            record.timestamp_ms,
        );
        let found = log
            .offset_for_timestamp(TOPIC, partition, BASE_TS + offset)
            .unwrap_or_else(|e| panic!("{case}: timestamp search {partition}/{offset}: {e}"))
            .unwrap_or_else(|| panic!("{case}: no record at time of {partition}/{offset}"));
        assert_eq!(
            (found.offset, found.timestamp_ms),
            (offset, BASE_TS + offset),
            "{case}: timestamp search in partition {partition}"
        );
    }
    assert_eq!(
        log.offset_for_timestamp(TOPIC, partition, BASE_TS + end)
            .expect("timestamp search"),
        None,
        "{case}: timestamp after the end of partition {partition}"
    );
    assert!(
        matches!(
            log.read(TOPIC, partition, end + 1, 1),
            Err(Error::OffsetOutOfRange { .. })
        ),
        "{case}: read past the end of partition {partition}"
    );
}

/// Every offset of the damaged partition is looked up; the others are
/// only read in sequence (their files were not touched).
fn lookups(partition: u32, end: i64) -> std::ops::Range<i64> {
    if partition == DAMAGED { 0..end } else { 0..0 }
}

/// Appends two batches to every partition and checks them; then, with
/// `clean_reopen`, closes, reopens and checks everything once more (so the
/// files recovery left behind are read again). Returns the new ends.
fn append_and_recheck(dir: &Path, log: Log, ends: Ends, case: &str, clean_reopen: bool) -> Ends {
    let mut new_ends = ends;
    for p in 0..PARTITIONS {
        let end = &mut new_ends[p as usize];
        *end = append_batch(&log, p, *end, 2);
        *end = append_batch(&log, p, *end, 1);
    }
    for p in 0..PARTITIONS {
        let (old, new) = (ends[p as usize], new_ends[p as usize]);
        check_exact(&log, p, new, old..new, case);
    }
    if !clean_reopen {
        // Nothing is checked after this: skip the fsyncs of a clean close.
        log.kill(TailLoss::None).expect("kill");
        return new_ends;
    }
    log.close().expect("close after appends");
    let log = Log::open(dir, LogConfig::default()).expect("clean reopen");
    for p in 0..PARTITIONS {
        let new = new_ends[p as usize];
        let sample = lookups(p, new).step_by(5).chain(new - 1..new);
        check_exact(&log, p, new, sample, case);
    }
    // Nothing is checked after this: skip the fsyncs of a clean close.
    log.kill(TailLoss::None).expect("kill");
    new_ends
}

/// Reopens a damaged copy and checks that every partition ends exactly at
/// `ends` with the right records, then that appends work, also after a
/// clean reopen.
fn reopen_exact(dir: &Path, ends: Ends, case: &str) {
    reopen_exact_with(dir, ends, case, true, |_| {});
}

/// [`reopen_exact`] for the `i`th case of a long loop: only every third
/// case pays for the clean close and reopen (their fsyncs dominate the run
/// time).
fn reopen_exact_nth(i: usize, dir: &Path, ends: Ends, case: &str) {
    reopen_exact_with(dir, ends, case, i.is_multiple_of(3), |_| {});
}

/// [`reopen_exact`], calling `inspect` with the open log before anything
/// is appended.
fn reopen_exact_with(
    dir: &Path,
    ends: Ends,
    case: &str,
    clean_reopen: bool,
    inspect: impl FnOnce(&Log),
) {
    let log = Log::open(dir, LogConfig::default())
        .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
    for p in 0..PARTITIONS {
        check_exact(
            &log,
            p,
            ends[p as usize],
            lookups(p, ends[p as usize]),
            case,
        );
    }
    inspect(&log);
    append_and_recheck(dir, log, ends, case, clean_reopen);
}

/// Reopens a copy whose damage the clean-shutdown marker hides. Reads may
/// report `ChecksumMismatch` or `Corrupt`, but every record they return is
/// right; offsets below `intact_end` read without error; the log ends at
/// `intact_end` (recovery noticed the damage) or at `original_end`; and
/// appends after the end read back. Returns how many reads reported
/// corruption.
fn reopen_tolerant(
    dir: &Path,
    template: &Template,
    intact_end: i64,
    original_end: i64,
    case: &str,
) -> usize {
    let log = Log::open(dir, LogConfig::default())
        .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
    for p in (0..PARTITIONS).filter(|&p| p != DAMAGED) {
        check_exact(&log, p, template.ends[p as usize], 0..0, case);
    }
    let offsets = log.offsets(TOPIC, DAMAGED).expect("offsets");
    let end = offsets.log_end_offset;
    assert!(
        end == intact_end || end == original_end,
        "{case}: log end {end}, expected {intact_end} or {original_end}"
    );
    assert_eq!(offsets.high_watermark, end, "{case}");
    let mut corruption_reports = 0;
    for offset in 0..end {
        let fetch = match log.read(TOPIC, DAMAGED, offset, 1) {
            Ok(fetch) => fetch,
            Err(err) => {
                assert!(is_corruption(&err), "{case}: read at {offset}: {err:?}");
                assert!(offset >= intact_end, "{case}: intact {offset}: {err}");
                corruption_reports += 1;
                continue;
            }
        };
        let mut first = true;
        for record in fetch.records() {
            match record {
                Ok(record) => {
                    assert!(record.offset >= offset, "{case}");
                    if first && offset < intact_end {
                        assert_eq!(record.offset, offset, "{case}");
                    }
                    check_record(
                        DAMAGED,
                        record.offset,
                        record.value,
                        record.key,
                        record.timestamp_ms,
                    );
                }
                Err(err) => {
                    assert!(is_corruption(&err), "{case}: record at {offset}: {err:?}");
                    assert!(
                        !(first && offset < intact_end),
                        "{case}: intact {offset}: {err}"
                    );
                    corruption_reports += 1;
                    break;
                }
            }
            first = false;
        }
        if offset < intact_end {
            assert!(!first, "{case}: nothing read at intact offset {offset}");
        }
    }
    // Whatever the damage, the partition takes new records after its end.
    let next = append_batch(&log, DAMAGED, end, 2);
    let fetch = log.read(TOPIC, DAMAGED, end, 1 << 16).expect("read new");
    let got: Vec<i64> = fetch
        .records()
        .map(|r| {
            let r = r.expect("new record");
            check_record(DAMAGED, r.offset, r.value, r.key, r.timestamp_ms);
            r.offset
        })
        .collect();
    assert_eq!(got, (end..next).collect::<Vec<_>>(), "{case}");
    log.kill(TailLoss::None).expect("kill");
    corruption_reports
}

#[test]
fn cut_at_every_batch_boundary_and_near_it() {
    let template = Template::build();
    let last = template.last_segment();
    let original = last.len();
    let mut cases = 0;
    for (i, batch) in last.batches.iter().enumerate() {
        for (j, delta) in [-30i64, -1, 0, 1, 30].into_iter().enumerate() {
            let Some(position) = batch.position.checked_add_signed(delta) else {
                continue;
            };
            if position >= original {
                continue;
            }
            let expected = template.ends_with_damaged(last.end_if_damaged_at(position));
            // With the marker present the log trusts its checkpoints but
            // must still notice the short tail; without it recovery runs.
            // Boundaries get both; the others alternate.
            let markers: &[bool] = match (delta, (i + j) % 2) {
                (0, _) => &[true, false],
                (_, 0) => &[true],
                _ => &[false],
            };
            for &marker in markers {
                let copy = template.copy();
                cut(&template.in_copy(copy.path(), &last.path), position);
                if !marker {
                    remove_marker(copy.path());
                }
                let case = format!("cut last segment at {position} (marker {marker})");
                reopen_exact_nth(cases, copy.path(), expected, &case);
                cases += 1;
            }
        }
    }
    assert!(cases > 30, "{cases} cases");
}

#[test]
fn cut_at_random_positions() {
    let template = Template::build();
    let last = template.last_segment();
    let mut rng = Rng(0xc0ff_ee00);
    for i in 0..50 {
        let position = rng.below(last.len());
        let copy = template.copy();
        cut(&template.in_copy(copy.path(), &last.path), position);
        if i % 2 == 0 {
            remove_marker(copy.path());
        }
        let expected = template.ends_with_damaged(last.end_if_damaged_at(position));
        let case = format!("random cut #{i} at {position}");
        reopen_exact_nth(i, copy.path(), expected, &case);
    }
}

/// Picks a byte to damage in `segment`: half the time in a batch header,
/// otherwise in the records after it.
fn pick_damage(rng: &mut Rng, segment: &SegmentFile) -> (u64, u8) {
    let batch = segment.batches[rng.below(segment.batches.len() as u64) as usize];
    let within = if rng.below(2) == 0 {
        rng.below(BATCH_HEADER_LEN)
    } else {
        BATCH_HEADER_LEN + rng.below(batch.size - BATCH_HEADER_LEN)
    };
    (batch.position + within, rng.below(8) as u8)
}

/// Where in its batch a byte lies, for the cases that need it.
fn offset_in_batch(segment: &SegmentFile, position: u64) -> u64 {
    position - segment.batch_at(position).position
}

/// The bytes of a batch header that no checksum covers and that change no
/// record: `partitionLeaderEpoch` (bytes 12..16). A flip there loses
/// nothing.
fn harmless(within: u64) -> bool {
    (12..16).contains(&within)
}

#[test]
fn bit_flips_in_the_active_segment_are_cut_off_by_recovery() {
    let template = Template::build();
    let last = template.last_segment();
    let mut rng = Rng(0x0f11_9b17);
    for i in 0..40 {
        let (position, bit) = pick_damage(&mut rng, last);
        let within = offset_in_batch(last, position);
        let copy = template.copy();
        flip_bit(&template.in_copy(copy.path(), &last.path), position, bit);
        remove_marker(copy.path());
        let end = if harmless(within) {
            template.ends[DAMAGED as usize]
        } else {
            last.end_if_damaged_at(position)
        };
        let case = format!("flip #{i}: bit {bit} of byte {position} (byte {within} of its batch)");
        reopen_exact_nth(i, copy.path(), template.ends_with_damaged(end), &case);
    }
}

#[test]
fn bit_flips_behind_a_clean_shutdown_marker_are_never_served() {
    let template = Template::build();
    let last = template.last_segment();
    let mut rng = Rng(0xc1ea_4f11);
    let mut reported = 0;
    for i in 0..40 {
        let (position, bit) = pick_damage(&mut rng, last);
        let within = offset_in_batch(last, position);
        let copy = template.copy();
        flip_bit(&template.in_copy(copy.path(), &last.path), position, bit);
        let original = template.ends[DAMAGED as usize];
        let intact = if harmless(within) {
            original
        } else {
            last.end_if_damaged_at(position)
        };
        let case =
            format!("clean flip #{i}: bit {bit} of byte {position} (byte {within} of its batch)");
        reported += reopen_tolerant(copy.path(), &template, intact, original, &case);
    }
    // Some flips sit before the last index entry, where a clean open does
    // not look: reads must have reported those.
    assert!(reported > 0, "no read reported corruption");
}

#[test]
fn damage_in_a_sealed_segment_drops_it_from_there_and_all_later_segments() {
    let template = Template::build();
    let mut rng = Rng(0x5ea1_ed00);
    let sealed = &template.segments[..template.segments.len() - 1];
    for i in 0..30 {
        let segment = &sealed[rng.below(sealed.len() as u64) as usize];
        let copy = template.copy();
        let path = template.in_copy(copy.path(), &segment.path);
        let (position, case) = if i % 2 == 0 {
            let position = rng.below(segment.len());
            cut(&path, position);
            (
                position,
                format!("cut {} at {position}", segment.base_offset),
            )
        } else {
            let (position, bit) = pick_damage(&mut rng, segment);
            let within = offset_in_batch(segment, position);
            if harmless(within) {
                continue;
            }
            flip_bit(&path, position, bit);
            (
                position,
                format!(
                    "flip bit {bit} of byte {position} in {}",
                    segment.base_offset
                ),
            )
        };
        remove_marker_and_recovery_points(copy.path());
        let end = segment.end_if_damaged_at(position);
        let ends = template.ends_with_damaged(end);
        reopen_exact_with(copy.path(), ends, &case, i % 3 == 0, |_| {
            let left = segment_files(copy.path(), DAMAGED);
            assert!(
                left.iter().all(|s| s.base_offset <= end),
                "{case}: segments after the damage were kept: {:?}",
                left.iter().map(|s| s.base_offset).collect::<Vec<_>>()
            );
        });
    }
}

#[test]
fn damage_in_a_sealed_segment_behind_a_clean_marker_is_reported_not_served() {
    let template = Template::build();
    let mut rng = Rng(0x5ea1_c1ea);
    let sealed = &template.segments[..template.segments.len() - 1];
    for i in 0..20 {
        let segment = &sealed[rng.below(sealed.len() as u64) as usize];
        let copy = template.copy();
        let path = template.in_copy(copy.path(), &segment.path);
        let original = template.ends[DAMAGED as usize];
        let (intact, case) = if i % 2 == 0 {
            let position = rng.below(segment.len());
            cut(&path, position);
            (
                segment.end_if_damaged_at(position),
                format!("clean cut {} at {position}", segment.base_offset),
            )
        } else {
            let (position, bit) = pick_damage(&mut rng, segment);
            flip_bit(&path, position, bit);
            let within = offset_in_batch(segment, position);
            let intact = if harmless(within) {
                original
            } else {
                segment.end_if_damaged_at(position)
            };
            (
                intact,
                format!(
                    "clean flip bit {bit} of byte {position} in {}",
                    segment.base_offset
                ),
            )
        };
        reopen_tolerant(copy.path(), &template, intact, original, &case);
    }
}

#[test]
fn lost_or_garbled_indexes_are_rebuilt() {
    let template = Template::build();
    let mut rng = Rng(0x1dec_0000);
    type Garble = fn(&Path, &mut Rng);
    let garbles: [(&str, Garble); 5] = [
        ("delete", |path, _| remove(path)),
        ("random bytes", |path, rng| {
            let len = fs::metadata(path).expect("index").len().max(24);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            fs::write(path, bytes).expect("garble");
        }),
        ("cut to a non-multiple of the entry size", |path, rng| {
            let len = fs::metadata(path).expect("index").len();
            cut(path, len.saturating_sub(1 + rng.below(5)).max(1));
        }),
        ("entries out of order", |path, _| {
            let bytes = fs::read(path).expect("index");
            let entry = if path.extension().is_some_and(|e| e == "index") {
                8
            } else {
                12
            };
            let mut entries: Vec<&[u8]> = bytes.chunks(entry).collect();
            entries.reverse();
            if entries.len() < 2 {
                // Nothing to reorder: point the lone entry somewhere wrong.
                fs::write(path, vec![0x7f; entry]).expect("garble");
            } else {
                fs::write(path, entries.concat()).expect("garble");
            }
        }),
        ("emptied", |path, _| cut(path, 0)),
    ];
    for (name, garble) in garbles {
        for extension in ["index", "timeindex"] {
            for marker in [true, false] {
                // Every segment's file, the sealed ones and the active one.
                let copy = template.copy();
                for segment in &template.segments {
                    garble(
                        &template.in_copy(copy.path(), &segment.sibling(extension)),
                        &mut rng,
                    );
                }
                if !marker {
                    remove_marker(copy.path());
                }
                let case = format!("{name} every .{extension} (marker {marker})");
                reopen_exact(copy.path(), template.ends, &case);
            }
        }
    }
}

#[test]
fn time_index_missing_its_last_entries_still_finds_every_timestamp() {
    let template = Template::build();
    for segment in &template.segments {
        let copy = template.copy();
        let path = template.in_copy(copy.path(), &segment.sibling("timeindex"));
        let len = fs::metadata(&path).expect("time index").len();
        assert!(len >= 12, "a closed segment has a time index entry");
        cut(&path, len - 12);
        let case = format!("time index of {} short by one entry", segment.base_offset);
        reopen_exact(copy.path(), template.ends, &case);
    }
}

#[test]
fn lost_checkpoint_files_lose_nothing() {
    let template = Template::build();
    let epoch_checkpoint =
        partition_dir(template.dir.path(), DAMAGED).join("leader-epoch-checkpoint");
    let sets: [&[&str]; 4] = [
        &[RECOVERY_POINTS],
        &[LOG_STARTS],
        &[RECOVERY_POINTS, LOG_STARTS],
        &[RECOVERY_POINTS, LOG_STARTS, CLEAN_SHUTDOWN],
    ];
    for set in sets {
        let copy = template.copy();
        for name in set {
            remove(&copy.path().join(name));
        }
        reopen_exact(copy.path(), template.ends, &format!("deleted {set:?}"));
    }
    for garbage in [&b""[..], b"garbage", b"0\n7\nt 1 5\n"] {
        let copy = template.copy();
        fs::write(copy.path().join(RECOVERY_POINTS), garbage).expect("garble");
        fs::write(copy.path().join(LOG_STARTS), garbage).expect("garble");
        reopen_exact(
            copy.path(),
            template.ends,
            &format!("garbled checkpoints {garbage:?}"),
        );
    }
    let copy = template.copy();
    remove(&template.in_copy(copy.path(), &epoch_checkpoint));
    reopen_exact(
        copy.path(),
        template.ends,
        "deleted leader-epoch-checkpoint",
    );
}

#[test]
fn a_segment_cut_to_zero_bytes() {
    let template = Template::build();
    let last = template.last_segment();
    for marker in [true, false] {
        let copy = template.copy();
        cut(&template.in_copy(copy.path(), &last.path), 0);
        if !marker {
            remove_marker(copy.path());
        }
        let expected = template.ends_with_damaged(last.base_offset);
        reopen_exact(
            copy.path(),
            expected,
            &format!("active emptied (marker {marker})"),
        );
    }
    for segment in &template.segments[..template.segments.len() - 1] {
        let copy = template.copy();
        cut(&template.in_copy(copy.path(), &segment.path), 0);
        remove_marker_and_recovery_points(copy.path());
        let expected = template.ends_with_damaged(segment.base_offset);
        let case = format!(
            "sealed {} emptied, recovery from the start",
            segment.base_offset
        );
        reopen_exact(copy.path(), expected, &case);
    }
    let middle = &template.segments[template.segments.len() / 2];
    let copy = template.copy();
    cut(&template.in_copy(copy.path(), &middle.path), 0);
    let original = template.ends[DAMAGED as usize];
    reopen_tolerant(
        copy.path(),
        &template,
        middle.base_offset,
        original,
        "sealed emptied behind a clean marker",
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let template = Template::build();
    let copy = template.copy();
    let log = Log::open(copy.path(), LogConfig::default()).expect("first open");
    match Log::open(copy.path(), LogConfig::default()) {
        Err(Error::AlreadyOpen { path }) => assert_eq!(path, copy.path()),
        other => panic!("second open: {other:?}"),
    }
    // The refused open changed nothing: the first handle still works.
    let end = template.ends[DAMAGED as usize];
    check_exact(&log, DAMAGED, end, 0..end, "after refused open");
    log.close().expect("close");
    let log = Log::open(copy.path(), LogConfig::default()).expect("open after close");
    log.close().expect("close");
}

// Focused reproductions of what the randomized cases above found, one
// scenario each.

/// The offset index entries of a segment: (relative offset, position).
fn offset_index(path: &Path) -> Vec<(u32, u32)> {
    fs::read(path)
        .expect("offset index")
        .chunks_exact(8)
        .map(|e| {
            (
                u32::from_be_bytes(e[..4].try_into().expect("4 bytes")),
                u32::from_be_bytes(e[4..].try_into().expect("4 bytes")),
            )
        })
        .collect()
}

/// `baseOffset` (bytes 0..8 of a batch) is outside the CRC, as in Kafka.
/// A flipped low bit there makes a batch claim offsets 2048 higher, and
/// recovery accepts it: the next batch then looks like it goes backwards
/// and is cut, and the flipped batch's records are served under offsets
/// they were never appended at.
#[test]
fn a_flipped_base_offset_is_not_served_under_the_wrong_offsets() {
    let template = Template::build();
    let last = template.last_segment();
    let batch = last.batches[last.batches.len() - 2];
    let copy = template.copy();
    // Byte 6, bit 3: the base offset grows by 2048.
    flip_bit(
        &template.in_copy(copy.path(), &last.path),
        batch.position + 6,
        3,
    );
    remove_marker(copy.path());
    let end = last.end_if_damaged_at(batch.position);
    reopen_exact(
        copy.path(),
        template.ends_with_damaged(end),
        "base offset of the last but one batch + 2048",
    );
}

/// A clean-shutdown open reads the header at the active segment's last
/// offset index entry and takes the log end from it without checking the
/// batch fits in the file. With the file cut inside that batch, the log
/// claims offsets it does not hold, appends land after the torn bytes and
/// cannot be read back.
#[test]
fn a_clean_open_notices_a_cut_inside_the_last_indexed_batch() {
    let template = Template::build();
    let last = template.last_segment();
    let entries = offset_index(&last.sibling("index"));
    let (_, position) = *entries
        .last()
        .expect("the active segment has index entries");
    let batch = last.batch_at(u64::from(position));
    assert_eq!(
        batch.position + batch.size,
        last.len(),
        "the last index entry is the last batch"
    );
    let copy = template.copy();
    cut(
        &template.in_copy(copy.path(), &last.path),
        batch.position + batch.size / 2,
    );
    let end = last.end_if_damaged_at(batch.position);
    reopen_exact(
        copy.path(),
        template.ends_with_damaged(end),
        "last indexed batch cut in half behind the marker",
    );
}

/// Recovery cuts a segment at its first bad batch and drops later
/// segments, but a sealed segment cut exactly at a batch boundary (or to
/// zero bytes) has no bad batch: recovery keeps the later segments and the
/// partition gets a hole where the lost batches were.
#[test]
fn recovery_drops_the_segments_after_one_cut_at_a_batch_boundary() {
    let template = Template::build();
    let segment = &template.segments[2];
    let boundary = segment.batches[3].position;
    let copy = template.copy();
    cut(&template.in_copy(copy.path(), &segment.path), boundary);
    remove_marker_and_recovery_points(copy.path());
    let end = segment.end_if_damaged_at(boundary);
    reopen_exact(
        copy.path(),
        template.ends_with_damaged(end),
        "sealed segment cut at a batch boundary",
    );
}

/// A read of a batch whose header claims more bytes than its segment holds
/// reports an I/O error (unexpected end of file) instead of corruption.
#[test]
fn a_batch_running_past_the_end_of_its_segment_reads_as_corrupt() {
    let template = Template::build();
    let segment = &template.segments[2];
    let batch = *segment.batches.last().expect("batches");
    let copy = template.copy();
    // Cut inside the last batch; the index entries all stay below the cut,
    // so the sealed segment's indexes still look sane.
    cut(
        &template.in_copy(copy.path(), &segment.path),
        batch.position + BATCH_HEADER_LEN + 1,
    );
    let log = Log::open(copy.path(), LogConfig::default()).expect("reopen");
    let offset = batch.last_offset;
    match log.read(TOPIC, DAMAGED, offset, 1) {
        Err(err) => assert!(is_corruption(&err), "read at {offset}: {err:?}"),
        Ok(fetch) => {
            let first = fetch.records().next().expect("a record or an error");
            assert!(
                matches!(&first, Err(err) if is_corruption(err)),
                "read at {offset}: {first:?}"
            );
        }
    }
    log.close().expect("close");
}

/// When a sealed segment's indexes fail their check on first use, the
/// rebuild scans the segment, and if the scan stops at a damaged batch the
/// read that triggered it fails with `Corrupt` even when it asked for an
/// intact batch before the damage. The same read then succeeds.
#[test]
fn intact_batches_before_damage_in_a_sealed_segment_read_the_first_time() {
    let template = Template::build();
    let segment = &template.segments[2];
    let entries = offset_index(&segment.sibling("index"));
    let (_, first_entry) = entries[0];
    let copy = template.copy();
    // Cut inside the batch at the first index entry: that entry now points
    // at the end of the file, so the indexes are rebuilt on first use.
    cut(
        &template.in_copy(copy.path(), &segment.path),
        u64::from(first_entry) + 1,
    );
    let log = Log::open(copy.path(), LogConfig::default()).expect("reopen");
    let offset = segment.base_offset;
    for attempt in 1..=2 {
        let fetch = log
            .read(TOPIC, DAMAGED, offset, 1)
            .unwrap_or_else(|e| panic!("attempt {attempt}: read at intact {offset}: {e}"));
        let record = fetch
            .records()
            .next()
            .expect("a record")
            .expect("an intact record");
        assert_eq!(record.offset, offset, "attempt {attempt}");
        check_record(
            DAMAGED,
            offset,
            record.value,
            record.key,
            record.timestamp_ms,
        );
    }
    log.close().expect("close");
}

/// The active segment's index files are loaded on a clean open without the
/// whole-entries check the sealed ones get: a time index cut to a
/// non-multiple of 12 bytes loses its last entry silently, the segment's
/// largest timestamp comes out too small and timestamp searches skip it.
#[test]
fn a_torn_active_time_index_is_rebuilt_on_a_clean_open() {
    let template = Template::build();
    let last = template.last_segment();
    let copy = template.copy();
    let path = template.in_copy(copy.path(), &last.sibling("timeindex"));
    let len = fs::metadata(&path).expect("time index").len();
    cut(&path, len - 5);
    reopen_exact(
        copy.path(),
        template.ends,
        "active time index cut to a non-multiple of 12",
    );
}
