//! Retention, driven by a `ManualClock`: by time (exactly the leading
//! segments whose largest timestamp is more than `retention_ms` old go,
//! oldest first, stopping at the first that is not; the boundary is
//! strict; when every segment expired the active one is rolled and goes
//! too, the log end is kept and appends continue at the same offset), by
//! size (the leading segments go while what is left stays at or above
//! `retention_bytes`), and by `delete_records` (reads below the new log
//! start are out of range, segments wholly below it are deleted, beyond
//! the high watermark is an error). The log start survives reopening.
//! Consumers whose position falls below the log start follow their
//! `auto_offset_reset`. The background cleaner applies retention every
//! `retention_check_interval` of the log's clock, and not before. Finally
//! producers, readers and a consumer run while compaction (`compact_now`
//! in a loop), on-demand retention and the background cleaner work on a
//! `compact,delete` topic: every record read decodes and is the record
//! appended at its offset, and every key's latest record that retention
//! may not delete yet is still there and was seen by every reader.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use brooklet::{
    CleanupPolicy, Clock, ConsumerConfig, Error, Fetch, Log, LogConfig, ManualClock,
    OffsetAndMetadata, OffsetReset, Record, TopicConfig, TopicPartition,
};

const TOPIC: &str = "events";
const T0: i64 = 1_700_000_000_000;
/// Longer than any test runs on the manual clock: with it the background
/// cleaner leaves retention to `enforce_retention`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn log_config(clock: &Arc<ManualClock>, retention_check: Duration) -> LogConfig {
    LogConfig::default()
        .clock(Arc::clone(clock) as Arc<dyn Clock>)
        .retention_check_interval(retention_check)
        .cleaner_backoff(NEVER)
        .offsets_topic_partitions(1)
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Log {
    Log::open(dir, log_config(clock, NEVER)).expect("open the log")
}

/// A segment as the test tracked it while appending.
#[derive(Clone, Copy, Debug)]
struct Segment {
    base: i64,
    size_bytes: u64,
    max_timestamp_ms: i64,
}

fn segment_count(log: &Log) -> usize {
    log.describe_topic(TOPIC).expect("describe").partitions[0].segment_count
}

/// Appends one batch per timestamp (`records_per_batch` records of 150
/// bytes, all with that timestamp) and returns the segments they landed
/// in, learned from the segment count growing after an append.
fn append_batches(log: &Log, timestamps: &[i64], records_per_batch: usize) -> Vec<Segment> {
    let mut segments = Vec::new();
    append_more(log, &mut segments, timestamps, records_per_batch);
    segments
}

/// Like `append_batches`, adding to the segments of a partition that
/// retention has not touched yet.
fn append_more(
    log: &Log,
    segments: &mut Vec<Segment>,
    timestamps: &[i64],
    records_per_batch: usize,
) {
    for (i, &timestamp_ms) in timestamps.iter().enumerate() {
        let before = segment_count(log);
        let records: Vec<Record> = (0..records_per_batch)
            .map(|j| {
                Record::new(vec![b'a' + (i % 26) as u8; 150])
                    .key(format!("key-{}", (i + j) % 5))
                    .timestamp_ms(timestamp_ms)
            })
            .collect();
        let info = log.append(TOPIC, 0, &records).expect("append");
        let fetch = log.read(TOPIC, 0, info.base_offset, 1).expect("read back");
        let size = fetch
            .batches()
            .next()
            .expect("a batch")
            .expect("parse")
            .as_bytes()
            .len() as u64;
        if segments.is_empty() || segment_count(log) > before {
            segments.push(Segment {
                base: info.base_offset,
                size_bytes: 0,
                max_timestamp_ms: i64::MIN,
            });
        }
        let last = segments.last_mut().expect("a segment");
        last.size_bytes += size;
        last.max_timestamp_ms = last.max_timestamp_ms.max(timestamp_ms);
    }
    let described = log.describe_topic(TOPIC).expect("describe").partitions[0].clone();
    assert_eq!(described.segment_count, segments.len(), "segments tracked");
    assert_eq!(
        described.size_bytes,
        segments.iter().map(|s| s.size_bytes).sum::<u64>(),
        "bytes tracked"
    );
}

/// The offsets of every record from the log start.
fn offsets_from_start(log: &Log) -> Vec<i64> {
    let start = log.offsets(TOPIC, 0).expect("offsets").log_start_offset;
    common::read_partition(log, TOPIC, 0, start, |record| record.offset)
}

/// The log starts at `log_start`: a read just below it is out of range
/// (reporting it), a read at it returns its record first, and every
/// record from it to `log_end` is there.
fn assert_log_starts_at(log: &Log, log_start: i64, log_end: i64) {
    let offsets = log.offsets(TOPIC, 0).expect("offsets");
    assert_eq!(
        (offsets.log_start_offset, offsets.log_end_offset),
        (log_start, log_end),
        "log start and end"
    );
    if log_start > 0 {
        match log.read(TOPIC, 0, log_start - 1, 1 << 20) {
            Err(Error::OffsetOutOfRange {
                requested,
                log_start_offset,
                ..
            }) => assert_eq!((requested, log_start_offset), (log_start - 1, log_start)),
            other => panic!("a read below the log start gave {other:?}"),
        }
    }
    if log_start < log_end {
        let fetch = log
            .read(TOPIC, 0, log_start, 1)
            .expect("read at the log start");
        let first = fetch.records().next().expect("a record").expect("decode");
        assert_eq!(first.offset, log_start);
    }
    assert_eq!(
        offsets_from_start(log),
        (log_start..log_end).collect::<Vec<_>>(),
        "records from the log start"
    );
}

fn delete_topic_config() -> TopicConfig {
    TopicConfig::default()
        .segment_bytes(1024)
        .index_interval_bytes(256)
        .retention_ms(None)
}

/// How many leading segments retention by time deletes at `now_ms`.
fn expired_by_time(segments: &[Segment], now_ms: i64, retention_ms: i64) -> usize {
    segments
        .iter()
        .take_while(|s| now_ms - s.max_timestamp_ms > retention_ms)
        .count()
}

#[test]
fn retention_by_time_deletes_exactly_the_expired_leading_segments() {
    const RETENTION_MS: i64 = 60_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let log = open(dir.path(), &clock);
    log.create_topic(
        TOPIC,
        delete_topic_config().retention_ms(Some(RETENTION_MS)),
    )
    .expect("create the topic");
    // One batch every 10 s; batch 17 carries a timestamp far ahead, so its
    // segment outlives the ones after it and holds them back.
    let timestamps: Vec<i64> = (0..30)
        .map(|i| T0 + i * 10_000 + if i == 17 { 500_000 } else { 0 })
        .collect();
    let segments = append_batches(&log, &timestamps, 1);
    assert!(segments.len() >= 5, "{segments:?}");
    let log_end = timestamps.len() as i64;
    let held_back = segments
        .iter()
        .rposition(|s| s.base <= 17)
        .expect("a segment");
    assert!(
        held_back >= 2 && held_back + 1 < segments.len(),
        "{segments:?}"
    );

    let mut deleted = 0;
    let check = |log: &Log, now_ms: i64, deleted: &mut usize| {
        clock.set_ms(now_ms);
        let expected = expired_by_time(&segments, now_ms, RETENTION_MS);
        let went = log.enforce_retention().expect("enforce retention");
        assert_eq!(went, expected - *deleted, "segments deleted at {now_ms}");
        *deleted = expected;
        let log_start = segments.get(expected).map_or(log_end, |s| s.base);
        assert_log_starts_at(log, log_start, log_end);
        // When everything went, the new active segment is left.
        assert_eq!(segment_count(log), (segments.len() - expected).max(1));
    };
    // Exactly `retention_ms` old is not older than it.
    check(
        &log,
        segments[0].max_timestamp_ms + RETENTION_MS,
        &mut deleted,
    );
    assert_eq!(deleted, 0);
    check(
        &log,
        segments[0].max_timestamp_ms + RETENTION_MS + 1,
        &mut deleted,
    );
    assert_eq!(deleted, 1);
    check(
        &log,
        segments[1].max_timestamp_ms + RETENTION_MS + 1,
        &mut deleted,
    );
    assert_eq!(deleted, 2);
    // Every segment before the held-back one, and no further, although
    // the ones after it are just as old.
    let behind = segments[held_back + 1].max_timestamp_ms + RETENTION_MS + 1;
    check(&log, behind, &mut deleted);
    assert_eq!(deleted, held_back);
    // Nothing more goes until the clock moves.
    assert_eq!(log.enforce_retention().expect("enforce retention"), 0);

    // The log start survives a clean reopen.
    let log_start = segments[held_back].base;
    log.close().expect("close");
    let log = open(dir.path(), &clock);
    assert_log_starts_at(&log, log_start, log_end);
    assert_eq!(segment_count(&log), segments.len() - held_back);

    // Everything expired: the active segment is rolled and goes too; the
    // log end stays and appends continue from it.
    let all = segments[held_back].max_timestamp_ms + RETENTION_MS + 1;
    check(&log, all, &mut deleted);
    assert_eq!(deleted, segments.len());
    assert_eq!(
        segment_count(&log),
        1,
        "only the new active segment is left"
    );
    assert_eq!(log.enforce_retention().expect("enforce retention"), 0);
    let info = log
        .append(TOPIC, 0, &[Record::new("after").timestamp_ms(all)])
        .expect("append after everything expired");
    assert_eq!(info.base_offset, log_end);
    assert_log_starts_at(&log, log_end, log_end + 1);
    log.close().expect("close");
    let log = open(dir.path(), &clock);
    assert_log_starts_at(&log, log_end, log_end + 1);
    log.close().expect("close");
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    let timestamps = vec![T0; 30];
    let log_end = timestamps.len() as i64;
    // The same appends always make the same segments: learn their sizes
    // once, then give each case a topic with its limit.
    let segments = {
        let clock = Arc::new(ManualClock::new(T0));
        let log = Log::temporary(log_config(&clock, NEVER)).expect("open a temporary log");
        log.create_topic(TOPIC, delete_topic_config())
            .expect("create the topic");
        let segments = append_batches(&log, &timestamps, 1);
        log.close().expect("close");
        segments
    };
    assert!(segments.len() >= 5, "{segments:?}");
    let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let (first, second) = (segments[0].size_bytes, segments[1].size_bytes);
    // The limit, and how many leading segments go: those whose removal
    // leaves at least the limit.
    let cases = [
        ("the whole log", total, 0),
        ("one byte under the log", total - 1, 0),
        ("all but the first segment", total - first, 1),
        ("one byte over all but two", total - first - second + 1, 1),
        ("all but two", total - first - second, 2),
        ("nothing", 0, segments.len()),
    ];
    for (what, limit, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let log = open(dir.path(), &clock);
        log.create_topic(TOPIC, delete_topic_config().retention_bytes(Some(limit)))
            .expect("create the topic");
        let again = append_batches(&log, &timestamps, 1);
        assert_eq!(
            again
                .iter()
                .map(|s| (s.base, s.size_bytes))
                .collect::<Vec<_>>(),
            segments
                .iter()
                .map(|s| (s.base, s.size_bytes))
                .collect::<Vec<_>>(),
            "{what}: the same appends made other segments"
        );
        assert_eq!(
            log.enforce_retention().expect("enforce retention"),
            expected,
            "{what}: segments deleted with retention.bytes {limit} of {total}"
        );
        let log_start = segments.get(expected).map_or(log_end, |s| s.base);
        assert_log_starts_at(&log, log_start, log_end);
        let size = log.describe_topic(TOPIC).expect("describe").partitions[0].size_bytes;
        let kept: u64 = segments[expected..].iter().map(|s| s.size_bytes).sum();
        assert_eq!(size, kept, "{what}: bytes left");
        assert!(
            size >= limit || expected == segments.len(),
            "{what}: {size} < {limit}"
        );
        assert_eq!(
            log.enforce_retention().expect("enforce retention"),
            0,
            "{what}: again"
        );
        log.close().expect("close");
        let log = open(dir.path(), &clock);
        assert_log_starts_at(&log, log_start, log_end);
        log.close().expect("close");
    }
}

#[test]
fn delete_records_moves_the_log_start_and_deletes_segments_below_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let log = open(dir.path(), &clock);
    log.create_topic(TOPIC, delete_topic_config())
        .expect("create the topic");
    // Two records a batch, so a log start can fall inside a batch.
    let segments = append_batches(&log, &[T0; 20], 2);
    assert!(segments.len() >= 5, "{segments:?}");
    let log_end = 40;
    let target = segments[2].base + 3;
    assert!(target < segments[3].base, "{segments:?}");
    assert_eq!(
        log.delete_records(TOPIC, 0, target)
            .expect("delete records"),
        target
    );
    assert_log_starts_at(&log, target, log_end);
    assert_eq!(
        segment_count(&log),
        segments.len() - 2,
        "the segments wholly below {target} are deleted, the one holding it is not"
    );
    // A read at the log start, inside a batch, returns no record below it.
    let fetch = log.read(TOPIC, 0, target, 1 << 20).expect("read");
    assert!(fetch.records().all(|r| r.expect("decode").offset >= target));
    match log.reader(TOPIC, 0, 0).and_then(|mut r| r.next_fetch()) {
        Err(Error::OffsetOutOfRange { requested: 0, .. }) => {}
        other => panic!("reading from 0 gave {other:?}"),
    }
    // The log start never moves back.
    assert_eq!(
        log.delete_records(TOPIC, 0, 1).expect("delete records"),
        target
    );
    assert_log_starts_at(&log, target, log_end);
    // Beyond the high watermark (or negative) is an error and moves nothing.
    for beyond in [log_end + 1, -1] {
        match log.delete_records(TOPIC, 0, beyond) {
            Err(Error::OffsetOutOfRange { requested, .. }) => assert_eq!(requested, beyond),
            other => panic!("delete_records({beyond}) gave {other:?}"),
        }
    }
    assert_log_starts_at(&log, target, log_end);
    // Enforcing retention deletes nothing more.
    assert_eq!(log.enforce_retention().expect("enforce retention"), 0);
    log.close().expect("close");

    let log = open(dir.path(), &clock);
    assert_log_starts_at(&log, target, log_end);
    assert_eq!(segment_count(&log), segments.len() - 2);
    // Up to the high watermark: nothing is left to read, appends go on.
    assert_eq!(
        log.delete_records(TOPIC, 0, log_end).expect("delete all"),
        log_end
    );
    assert_log_starts_at(&log, log_end, log_end);
    assert_eq!(segment_count(&log), 1, "only the active segment is left");
    let info = log
        .append(TOPIC, 0, &[Record::new("next")])
        .expect("append");
    assert_eq!(info.base_offset, log_end);
    log.close().expect("close");
    let log = open(dir.path(), &clock);
    assert_log_starts_at(&log, log_end, log_end + 1);
    log.close().expect("close");
}

#[test]
fn consumers_below_the_log_start_follow_auto_offset_reset() {
    let clock = Arc::new(ManualClock::new(T0));
    let log = Log::temporary(log_config(&clock, NEVER)).expect("open a temporary log");
    log.create_topic(TOPIC, delete_topic_config())
        .expect("create the topic");
    let segments = append_batches(&log, &[T0; 20], 1);
    assert!(segments.len() >= 3, "{segments:?}");
    let tp = TopicPartition::new(TOPIC, 0);
    let consumer_with = |reset: OffsetReset| {
        // One record a poll, and none buffered for the next.
        let mut consumer = log.consumer(
            ConsumerConfig::default()
                .auto_offset_reset(reset)
                .max_poll_records(1)
                .max_partition_fetch_bytes(1),
        );
        consumer.assign(std::slice::from_ref(&tp)).expect("assign");
        consumer.seek(&tp, 0).expect("seek");
        let first: Vec<i64> = consumer
            .poll(Duration::ZERO)
            .expect("poll")
            .into_iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(first, vec![0]);
        consumer
    };
    let mut earliest = consumer_with(OffsetReset::Earliest);
    let mut latest = consumer_with(OffsetReset::Latest);
    let mut none = consumer_with(OffsetReset::None);
    // A group's committed offset that retention overtakes.
    log.commit_offsets("slow-group", &[(tp.clone(), OffsetAndMetadata::new(2))])
        .expect("commit");

    let log_start = segments[2].base + 1;
    log.delete_records(TOPIC, 0, log_start)
        .expect("delete records");
    let offsets = |records: brooklet::ConsumerRecords| -> Vec<i64> {
        records.into_iter().map(|r| r.offset).collect()
    };
    assert_eq!(
        offsets(earliest.poll(Duration::ZERO).expect("poll")),
        vec![log_start],
        "earliest resets to the log start"
    );
    assert_eq!(earliest.position(&tp).expect("position"), log_start + 1);
    assert_eq!(
        offsets(latest.poll(Duration::ZERO).expect("poll")),
        Vec::<i64>::new(),
        "latest resets to the end"
    );
    assert_eq!(latest.position(&tp).expect("position"), 20);
    match none.poll(Duration::ZERO) {
        Err(Error::OffsetOutOfRange { requested, .. }) => assert_eq!(requested, 1),
        other => panic!("a consumer without a reset policy got {other:?}"),
    }
    let mut group = log.consumer(
        ConsumerConfig::group("slow-group")
            .auto_offset_reset(OffsetReset::Earliest)
            .enable_auto_commit(false),
    );
    group.assign(std::slice::from_ref(&tp)).expect("assign");
    let first = offsets(group.poll(Duration::ZERO).expect("poll"));
    assert_eq!(
        first.first(),
        Some(&log_start),
        "a committed offset below the log start resets to it"
    );
    log.append(TOPIC, 0, &[Record::new("new")]).expect("append");
    assert_eq!(
        offsets(latest.poll(Duration::ZERO).expect("poll")),
        vec![20]
    );
}

/// Polls `done` between yields, a bounded number of times, for an effect
/// of the background cleaner.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5_000_000 {
        if done() {
            return;
        }
        thread::yield_now();
    }
    panic!("gave up waiting for {what}");
}

#[test]
fn background_retention_runs_every_check_interval_of_the_clock() {
    const RETENTION_MS: i64 = 10_000;
    const CHECK_MS: u64 = 60_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let config = log_config(&clock, Duration::from_millis(CHECK_MS));
    let log = Log::open(dir.path(), config.clone()).expect("open");
    log.create_topic(
        TOPIC,
        delete_topic_config().retention_ms(Some(RETENTION_MS)),
    )
    .expect("create the topic");
    let mut segments = append_batches(&log, &[T0; 20], 1);
    let old = segments.len();
    assert!(old >= 3, "{segments:?}");
    let log_start = || log.offsets(TOPIC, 0).expect("offsets").log_start_offset;
    // Expired, but the first check is due a minute after opening.
    clock.advance_ms(30_000);
    assert_eq!(log_start(), 0);
    // Younger records.
    append_more(&log, &mut segments, &[T0 + 55_000; 10], 1);
    assert!(segments.len() > old, "{segments:?}");
    clock.advance_ms(30_001);
    // Due: every segment of only old records goes.
    let expected = segments
        .iter()
        .find(|s| s.max_timestamp_ms > T0)
        .expect("a young segment")
        .base;
    wait_for("the first retention check", || log_start() == expected);
    assert_log_starts_at(&log, expected, 30);
    // The next check is a full interval later.
    clock.advance_ms(i64::try_from(CHECK_MS).expect("fits") - 1);
    assert_eq!(log_start(), expected, "retention ran before the interval");
    clock.advance_ms(1);
    wait_for("the second retention check", || log_start() == 30);
    assert_log_starts_at(&log, 30, 30);
    log.close().expect("close");
    let log = Log::open(dir.path(), config).expect("reopen");
    assert_log_starts_at(&log, 30, 30);
    log.close().expect("close");
}

/// A record as appended or read: key, value, timestamp.
type Stored = (Vec<u8>, Vec<u8>, i64);

/// Adds a record read to `seen`, checking its offset is above the last.
fn push_next(
    seen: &mut Vec<(i64, Stored)>,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    timestamp_ms: i64,
) {
    if let Some((last, _)) = seen.last() {
        assert!(offset > *last, "offset {offset} after {last}");
    }
    let stored = (
        key.expect("keyed").to_vec(),
        value.expect("not a tombstone").to_vec(),
        timestamp_ms,
    );
    seen.push((offset, stored));
}

/// Reads from the log start to `end`, moving to the log start whenever
/// retention overtakes the reader, and returns every record read.
fn read_to_end(log: &Log, end: &AtomicI64) -> Vec<(i64, Stored)> {
    let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
    reader.set_max_bytes(700);
    let mut fetch = Fetch::new();
    let mut seen: Vec<(i64, Stored)> = Vec::new();
    loop {
        match reader.next_into(&mut fetch) {
            Ok(true) => {
                for record in fetch.records() {
                    let record = record.expect("a record decodes");
                    push_next(
                        &mut seen,
                        record.offset,
                        record.key,
                        record.value,
                        record.timestamp_ms,
                    );
                }
            }
            Ok(false) => {
                let end = end.load(Ordering::SeqCst);
                if end >= 0 && reader.position() >= end {
                    return seen;
                }
                thread::yield_now();
            }
            Err(Error::OffsetOutOfRange {
                log_start_offset, ..
            }) => {
                assert!(log_start_offset > reader.position(), "{log_start_offset}");
                reader.seek(log_start_offset);
            }
            Err(err) => panic!("a reader failed: {err}"),
        }
    }
}

/// The same with a consumer that resets to the earliest offset.
fn consume_to_end(log: &Log, end: &AtomicI64) -> Vec<(i64, Stored)> {
    let tp = TopicPartition::new(TOPIC, 0);
    let mut consumer = log.consumer(
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_partition_fetch_bytes(900),
    );
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    let mut seen: Vec<(i64, Stored)> = Vec::new();
    loop {
        let records = consumer.poll(Duration::ZERO).expect("poll");
        if records.is_empty() {
            let end = end.load(Ordering::SeqCst);
            if end >= 0 && consumer.position(&tp).expect("position") >= end {
                return seen;
            }
            thread::yield_now();
        }
        for record in &records {
            push_next(
                &mut seen,
                record.offset,
                record.key,
                record.value,
                record.timestamp_ms,
            );
        }
    }
}

#[test]
fn clients_read_intact_records_while_compaction_and_retention_run() {
    const RETENTION_MS: i64 = 20_000;
    const PRODUCERS: u64 = 2;
    const BATCHES: u64 = 1000;
    const KEYS: u64 = 12;
    let clock = Arc::new(ManualClock::new(T0));
    let log = Log::temporary(
        LogConfig::default()
            .clock(Arc::clone(&clock) as Arc<dyn Clock>)
            .retention_check_interval(Duration::from_secs(2))
            .cleaner_backoff(Duration::from_secs(1))
            .offsets_topic_partitions(1),
    )
    .expect("open a temporary log");
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::CompactDelete)
            .segment_bytes(2048)
            .index_interval_bytes(256)
            .retention_ms(Some(RETENTION_MS))
            .min_cleanable_dirty_ratio_percent(10),
    )
    .expect("create the topic");
    let appended: Mutex<BTreeMap<i64, Stored>> = Mutex::new(BTreeMap::new());
    let producers_done = AtomicBool::new(false);
    let end = AtomicI64::new(-1);
    let (mut passes, mut removed, mut retained) = (0u64, 0u64, 0usize);
    let (readers, consumed) = thread::scope(|s| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (log, clock, appended) = (&log, &clock, &appended);
                s.spawn(move || {
                    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (p + 1);
                    let mut next = move |n: u64| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state % n
                    };
                    for seq in 0..BATCHES {
                        let timestamp_ms = clock.now_ms();
                        let stored: Vec<Stored> = (0..1 + next(4))
                            .map(|j| {
                                let key = format!("key-{}", next(KEYS));
                                let body = format!("{key}/{p}/{seq}/{j}/");
                                let pad = usize::try_from(next(60)).expect("small");
                                let value = format!("{body}{}", "#".repeat(pad));
                                (key.into_bytes(), value.into_bytes(), timestamp_ms)
                            })
                            .collect();
                        let records: Vec<Record> = stored
                            .iter()
                            .map(|(k, v, t)| Record::new(v.clone()).key(k.clone()).timestamp_ms(*t))
                            .collect();
                        let info = log.append(TOPIC, 0, &records).expect("append");
                        let mut appended = appended.lock().expect("lock");
                        for (i, record) in stored.into_iter().enumerate() {
                            appended.insert(info.base_offset + i as i64, record);
                        }
                        drop(appended);
                        if p == 0 && seq % 4 == 3 {
                            clock.advance_ms(500);
                        }
                    }
                })
            })
            .collect();
        // Two threads compact all along, and the background cleaner too.
        let compactors: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (mut passes, mut removed) = (0u64, 0u64);
                    while !producers_done.load(Ordering::SeqCst) {
                        let stats = log.compact_now(TOPIC, 0).expect("compact_now");
                        passes += u64::from(stats.bytes_read > 0);
                        removed += stats.records_removed;
                        thread::yield_now();
                    }
                    (passes, removed)
                })
            })
            .collect();
        let retention = s.spawn(|| {
            let mut deleted = 0;
            while !producers_done.load(Ordering::SeqCst) {
                deleted += log.enforce_retention().expect("enforce_retention");
                thread::yield_now();
            }
            deleted
        });
        let readers: Vec<_> = (0..2)
            .map(|_| s.spawn(|| read_to_end(&log, &end)))
            .collect();
        let consumer = s.spawn(|| consume_to_end(&log, &end));
        for producer in producers {
            producer.join().expect("a producer panicked");
        }
        producers_done.store(true, Ordering::SeqCst);
        for compactor in compactors {
            let (p, r) = compactor.join().expect("a compactor panicked");
            passes += p;
            removed += r;
        }
        retained = retention.join().expect("retention panicked");
        end.store(
            log.offsets(TOPIC, 0).expect("offsets").log_end_offset,
            Ordering::SeqCst,
        );
        let readers: Vec<_> = readers
            .into_iter()
            .map(|r| r.join().expect("a reader panicked"))
            .collect();
        (readers, consumer.join().expect("the consumer panicked"))
    });
    let appended = appended.into_inner().expect("lock");
    // A last pass and retention check, so both surely did some work.
    let last = log.compact_now(TOPIC, 0).expect("compact_now");
    retained += log.enforce_retention().expect("enforce_retention");
    let offsets = log.offsets(TOPIC, 0).expect("offsets");
    let final_records = read_to_end(&log, &end);
    eprintln!(
        "{} records appended; compact_now threads: {passes} passes removing {removed}, then {} more; {retained} segments deleted on demand; {} records left from offset {}",
        appended.len(),
        last.records_removed,
        final_records.len(),
        offsets.log_start_offset
    );
    assert!(offsets.log_start_offset > 0, "retention deleted nothing");
    assert!(
        (final_records.len() as i64) < offsets.log_end_offset - offsets.log_start_offset,
        "compaction removed nothing"
    );
    // Everything read is what was appended at that offset.
    for (who, seen) in readers
        .iter()
        .chain([&consumed, &final_records])
        .enumerate()
    {
        for (offset, record) in seen {
            assert_eq!(
                appended.get(offset),
                Some(record),
                "reader {who} at {offset}"
            );
        }
    }
    // Every key's latest record that retention may not delete yet is in
    // the log, and every reader saw it.
    let now_ms = clock.now_ms();
    let mut latest: BTreeMap<&[u8], (i64, &Stored)> = BTreeMap::new();
    for (offset, record) in &appended {
        latest.insert(&record.0, (*offset, record));
    }
    let mut unexpired = 0;
    for (offset, record) in latest.values() {
        if now_ms - record.2 > RETENTION_MS {
            continue;
        }
        unexpired += 1;
        for (who, seen) in readers
            .iter()
            .chain([&consumed, &final_records])
            .enumerate()
        {
            assert!(
                seen.iter().any(|(o, r)| o == offset && r == *record),
                "reader {who} missed the latest record of {:?} at {offset}",
                String::from_utf8_lossy(&record.0)
            );
        }
    }
    assert!(unexpired > 0, "every key expired; the test checks nothing");
}
