//! The consumer's contract, one behaviour per test: where it starts
//! (`auto_offset_reset`, committed offsets, seeks in and out of range),
//! how it moves (seek by offset and time, pause and resume), what one poll
//! returns (`max_poll_records`, every partition served in turn), which
//! topics a pattern covers (later ones yes, `__consumer_offsets` no), how
//! commits and auto-commits are stored, and how `poll` blocks: woken by an
//! append from another thread, timed out only by the log's clock.

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use brooklet::{
    Clock, Consumer, ConsumerConfig, ConsumerRecords, Error, Log, LogConfig, ManualClock,
    OFFSETS_TOPIC, OffsetAndMetadata, OffsetReset, Record, TopicConfig, TopicPartition,
};

const START_MS: i64 = 1_700_000_000_000;

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// A log on a manual clock that only the test moves, with a small
/// offsets topic.
fn manual_log() -> (Log, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let log = Log::temporary(
        LogConfig::default()
            .clock(clock.clone())
            .offsets_topic_partitions(3),
    )
    .expect("open");
    (log, clock)
}

/// Appends `count` one-record batches to a partition; values are
/// "p{partition}-{offset}".
fn fill(log: &Log, topic: &str, partition: u32, count: usize) {
    for _ in 0..count {
        let next = log
            .offsets(topic, partition)
            .expect("offsets")
            .log_end_offset;
        log.append(
            topic,
            partition,
            &[Record::new(format!("p{partition}-{next}"))],
        )
        .expect("append");
    }
}

fn offsets_of(records: &ConsumerRecords) -> Vec<(String, u32, i64)> {
    records
        .iter()
        .map(|r| (r.topic.to_owned(), r.partition, r.offset))
        .collect()
}

fn only_offsets(records: &ConsumerRecords, topic: &str, partition: u32) -> Vec<i64> {
    records
        .records(topic, partition)
        .map(|r| r.offset)
        .collect()
}

fn consumer(log: &Log, group: Option<&str>, reset: OffsetReset) -> Consumer {
    let config = match group {
        Some(group) => ConsumerConfig::group(group),
        None => ConsumerConfig::default(),
    };
    log.consumer(config.auto_offset_reset(reset).enable_auto_commit(false))
}

/// Advances the manual clock far past any poll's time-out if the test has
/// not finished within `limit`, so a poll that never wakes fails its
/// assertions instead of hanging the run. It asserts nothing on time.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn new(clock: &Arc<ManualClock>, limit: Duration) -> Watchdog {
        let (done, finished) = mpsc::channel::<()>();
        let clock = Arc::clone(clock);
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                clock.advance_ms(i64::from(u32::MAX));
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn auto_offset_reset_decides_where_a_new_group_starts() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default())
        .expect("create");
    fill(&log, "t", 0, 10);
    let t0 = tp("t", 0);

    let mut earliest = consumer(&log, Some("e"), OffsetReset::Earliest);
    earliest.assign(std::slice::from_ref(&t0)).expect("assign");
    assert_eq!(earliest.position(&t0).expect("position"), 0);
    let records = earliest.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), (0..10).collect::<Vec<_>>());

    let mut latest = consumer(&log, Some("l"), OffsetReset::Latest);
    latest.subscribe(&["t"]).expect("subscribe");
    assert_eq!(latest.position(&t0).expect("position"), 10);
    assert!(latest.poll(Duration::ZERO).expect("poll").is_empty());
    fill(&log, "t", 0, 2);
    let records = latest.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), vec![10, 11]);

    let mut none = consumer(&log, Some("n"), OffsetReset::None);
    none.subscribe(&["t"]).expect("subscribe");
    match none.position(&t0) {
        Err(Error::NoOffsetForPartition { topic, partition }) => {
            assert_eq!((topic.as_str(), partition), ("t", 0));
        }
        other => panic!("position without a commit gave {other:?}"),
    }
    assert!(matches!(
        none.poll(Duration::ZERO),
        Err(Error::NoOffsetForPartition { .. })
    ));
    // With a committed offset, None is no obstacle. (The first member
    // leaves the group first, so the next one gets the partition.)
    drop(none);
    log.commit_offsets("n", &[(t0.clone(), OffsetAndMetadata::new(4))])
        .expect("commit");
    let mut none = consumer(&log, Some("n"), OffsetReset::None);
    none.subscribe(&["t"]).expect("subscribe");
    assert_eq!(none.position(&t0).expect("position"), 4);
    let records = none.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), (4..12).collect::<Vec<_>>());
}

#[test]
fn a_seek_outside_the_log_follows_the_reset_policy() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default())
        .expect("create");
    fill(&log, "t", 0, 10);
    let t0 = tp("t", 0);

    for target in [10_000, -1] {
        let mut earliest = consumer(&log, None, OffsetReset::Earliest);
        earliest.assign(std::slice::from_ref(&t0)).expect("assign");
        earliest.seek(&t0, target).expect("seek");
        assert_eq!(earliest.position(&t0).expect("position"), target);
        let records = earliest.poll(Duration::ZERO).expect("poll");
        assert_eq!(
            only_offsets(&records, "t", 0),
            (0..10).collect::<Vec<_>>(),
            "earliest after a seek to {target}"
        );

        let mut none = consumer(&log, None, OffsetReset::None);
        none.assign(std::slice::from_ref(&t0)).expect("assign");
        none.seek(&t0, target).expect("seek");
        match none.poll(Duration::ZERO) {
            Err(Error::OffsetOutOfRange {
                requested,
                log_start_offset,
                high_watermark,
                ..
            }) => assert_eq!(
                (requested, log_start_offset, high_watermark),
                (target, 0, 10)
            ),
            other => panic!("none after a seek to {target} gave {other:?}"),
        }
    }

    let mut latest = consumer(&log, None, OffsetReset::Latest);
    latest.assign(std::slice::from_ref(&t0)).expect("assign");
    latest.seek(&t0, 10_000).expect("seek");
    assert!(latest.poll(Duration::ZERO).expect("poll").is_empty());
    assert_eq!(latest.position(&t0).expect("position"), 10);
    assert!(latest.poll(Duration::ZERO).expect("poll").is_empty());
    fill(&log, "t", 0, 3);
    let records = latest.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), vec![10, 11, 12]);

    // A seek into the middle of a batch starts at that record.
    log.append(
        "t",
        0,
        &(0..5).map(|i| Record::new(vec![i])).collect::<Vec<_>>(),
    )
    .expect("five-record batch");
    latest.seek(&t0, 15).expect("seek");
    let records = latest.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), vec![15, 16, 17]);
}

#[test]
fn seeks_by_position_and_by_time() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .expect("create");
    // Partition p's record i has timestamp 1000 * (i + 1) + p.
    for p in 0..2u32 {
        for i in 0..10i64 {
            log.append(
                "t",
                p,
                &[Record::new(format!("{p}:{i}")).timestamp_ms(1_000 * (i + 1) + i64::from(p))],
            )
            .expect("append");
        }
    }
    let (t0, t1) = (tp("t", 0), tp("t", 1));
    let mut c = consumer(&log, None, OffsetReset::Earliest);
    c.subscribe(&["t"]).expect("subscribe");
    assert_eq!(c.assignment(), vec![t0.clone(), t1.clone()]);

    c.seek(&t0, 3).expect("seek");
    assert_eq!(c.position(&t0).expect("position"), 3);
    c.seek_to_end(std::slice::from_ref(&t1))
        .expect("seek to end");
    assert_eq!(c.position(&t1).expect("position"), 10);
    let records = c.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), (3..10).collect::<Vec<_>>());
    assert!(only_offsets(&records, "t", 1).is_empty());
    assert_eq!(c.position(&t0).expect("position"), 10);

    c.seek_to_beginning(&[]).expect("seek all to beginning");
    assert_eq!(c.position(&t0).expect("position"), 0);
    assert_eq!(c.position(&t1).expect("position"), 0);
    c.seek_to_end(&[]).expect("seek all to end");
    assert_eq!(c.position(&t0).expect("position"), 10);
    assert!(c.poll(Duration::ZERO).expect("poll").is_empty());

    // 4500 falls between records 3 (4000) and 4 (5000).
    let found = c
        .offsets_for_times(&[
            (t0.clone(), 4_500),
            (t1.clone(), 1_001),
            (t1.clone(), 99_999),
        ])
        .expect("offsets for times");
    let lookups: Vec<_> = found
        .iter()
        .map(|(tp, hit)| (tp.partition, hit.map(|h| (h.offset, h.timestamp_ms))))
        .collect();
    assert_eq!(
        lookups,
        vec![(0, Some((4, 5_000))), (1, Some((0, 1_001))), (1, None)]
    );
    c.seek_to_timestamp(&[], 7_000).expect("seek to time");
    assert_eq!(c.position(&t0).expect("position"), 6);
    assert_eq!(
        c.position(&t1).expect("position"),
        6,
        "7001 is the first at or after 7000 in partition 1"
    );
    c.seek_to_timestamp(std::slice::from_ref(&t1), 50_000)
        .expect("seek past the last timestamp");
    assert_eq!(c.position(&t1).expect("position"), 10);
    let records = c.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), (6..10).collect::<Vec<_>>());
    assert!(only_offsets(&records, "t", 1).is_empty());

    // Positions of partitions not assigned are errors.
    assert!(matches!(
        c.position(&tp("t", 2)),
        Err(Error::NotAssigned { .. })
    ));
    assert!(matches!(
        c.seek(&tp("other", 0), 0),
        Err(Error::NotAssigned { .. })
    ));
}

#[test]
fn paused_partitions_return_nothing_until_resumed() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(3))
        .expect("create");
    for p in 0..3 {
        fill(&log, "t", p, 20);
    }
    let mut c = log.consumer(
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(7),
    );
    c.subscribe(&["t"]).expect("subscribe");
    let mut consumed: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    fn take(consumed: &mut BTreeMap<u32, Vec<i64>>, records: &ConsumerRecords) -> usize {
        for r in records {
            consumed.entry(r.partition).or_default().push(r.offset);
        }
        records.len()
    }
    // Start partition 1 so it has records buffered when paused.
    c.pause(&[tp("t", 0), tp("t", 2)]).expect("pause");
    assert_eq!(
        take(&mut consumed, &c.poll(Duration::ZERO).expect("poll")),
        7
    );
    c.resume(&[]).expect("resume all");
    c.pause(&[tp("t", 1)]).expect("pause 1");
    assert_eq!(c.paused(), vec![tp("t", 1)]);
    loop {
        let records = c.poll(Duration::ZERO).expect("poll");
        assert!(
            records.records("t", 1).next().is_none(),
            "a paused partition returned records"
        );
        if take(&mut consumed, &records) == 0 {
            break;
        }
    }
    assert_eq!(consumed[&1].len(), 7);
    assert_eq!(consumed[&0].len(), 20);
    assert_eq!(consumed[&2].len(), 20);
    // Everything unpaused is consumed, so a poll waits; with partition 1
    // paused its data does not count.
    assert!(c.poll(Duration::ZERO).expect("poll").is_empty());
    c.resume(&[tp("t", 1)]).expect("resume");
    assert!(c.paused().is_empty());
    while take(&mut consumed, &c.poll(Duration::ZERO).expect("poll")) > 0 {}
    for p in 0..3 {
        assert_eq!(
            consumed[&p],
            (0..20).collect::<Vec<i64>>(),
            "partition {p}: each record once, in order, across the pause"
        );
    }
}

#[test]
fn polls_respect_max_poll_records_and_serve_every_partition() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(3))
        .expect("create");
    for p in 0..3 {
        // One big batch each, so a single fetch could return them all.
        let batch: Vec<Record> = (0..100).map(|i| Record::new(format!("{p}:{i}"))).collect();
        log.append("t", p, &batch).expect("append");
    }
    let mut c = log.consumer(
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(10),
    );
    c.subscribe(&["t"]).expect("subscribe");
    let mut next = [0i64; 3];
    let mut first_partitions = Vec::new();
    let mut idle_polls = [0usize; 3];
    loop {
        let records = c.poll(Duration::ZERO).expect("poll");
        if records.is_empty() {
            break;
        }
        assert!(records.len() <= 10, "a poll returned {}", records.len());
        first_partitions.push(records.iter().next().expect("non-empty").partition);
        for p in 0..3u32 {
            let offsets = only_offsets(&records, "t", p);
            if offsets.is_empty() {
                idle_polls[p as usize] += 1;
                assert!(
                    idle_polls[p as usize] <= 3 || next[p as usize] == 100,
                    "partition {p} starved: {first_partitions:?}"
                );
            } else {
                idle_polls[p as usize] = 0;
            }
            for offset in offsets {
                assert_eq!(offset, next[p as usize], "partition {p} in order");
                next[p as usize] += 1;
            }
        }
    }
    assert_eq!(next, [100, 100, 100]);
    assert_eq!(first_partitions.len(), 30, "ten records in every poll");
    // Successive polls start with different partitions.
    for window in first_partitions.windows(2) {
        assert_ne!(window[0], window[1], "{first_partitions:?}");
    }
    for p in 0..3 {
        let leading = first_partitions.iter().filter(|&&x| x == p).count();
        assert!(leading >= 8, "partition {p} led {leading} polls");
    }
}

#[test]
fn a_pattern_subscription_leaves_out_internal_topics() {
    let (log, _clock) = manual_log();
    log.create_topic("orders-eu", TopicConfig::default())
        .expect("create");
    log.create_topic("payments", TopicConfig::default())
        .expect("create");
    // A commit creates the offsets topic.
    log.commit_offsets("g", &[(tp("payments", 0), OffsetAndMetadata::new(0))])
        .expect("commit");
    assert!(log.topics().iter().any(|t| t == OFFSETS_TOPIC));

    let mut all = consumer(&log, None, OffsetReset::Earliest);
    all.subscribe_pattern(".*").expect("subscribe");
    assert_eq!(
        all.assignment(),
        vec![tp("orders-eu", 0), tp("payments", 0)]
    );
    let mut internal = consumer(&log, None, OffsetReset::Earliest);
    internal.subscribe_pattern("__.*").expect("subscribe");
    assert!(internal.assignment().is_empty());

    let mut orders = consumer(&log, None, OffsetReset::Earliest);
    orders.subscribe_pattern("orders-.*").expect("subscribe");
    assert_eq!(orders.assignment(), vec![tp("orders-eu", 0)]);
    // The pattern matches whole names only.
    orders.subscribe_pattern("orders").expect("subscribe");
    assert!(orders.assignment().is_empty());
    assert!(matches!(
        orders.subscribe_pattern("(unclosed"),
        Err(Error::InvalidPattern { .. })
    ));
    fill(&log, "orders-eu", 0, 2);
    fill(&log, "payments", 0, 1);
    let records = all.poll(Duration::ZERO).expect("poll");
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.topic != OFFSETS_TOPIC));
}

#[test]
fn a_subscription_picks_up_a_topic_created_after_it() {
    let (log, _clock) = manual_log();
    let mut named = consumer(&log, None, OffsetReset::Earliest);
    named.subscribe(&["later"]).expect("subscribe");
    let mut pattern = consumer(&log, None, OffsetReset::Earliest);
    pattern.subscribe_pattern("lat.*").expect("subscribe");
    assert!(named.assignment().is_empty());
    log.create_topic("later", TopicConfig::default().partitions(2))
        .expect("create");
    fill(&log, "later", 1, 1);
    for consumer in [&mut named, &mut pattern] {
        let records = consumer.poll(Duration::ZERO).expect("poll");
        assert_eq!(
            consumer.assignment(),
            vec![tp("later", 0), tp("later", 1)],
            "the new topic is assigned"
        );
        assert_eq!(offsets_of(&records), vec![("later".to_owned(), 1, 0)]);
    }
}

#[test]
fn a_blocked_pattern_poll_wakes_for_a_topic_created_later() {
    let (log, clock) = manual_log();
    let _watchdog = Watchdog::new(&clock, Duration::from_secs(10));
    log.create_topic("orders-eu", TopicConfig::default())
        .expect("create");
    let mut orders = consumer(&log, None, OffsetReset::Earliest);
    orders.subscribe_pattern("orders-.*").expect("subscribe");
    // Another thread creates a matching topic and appends to it while this
    // one is blocked in poll; nothing moves the clock.
    let (go_tx, go_rx) = mpsc::channel();
    let creator = {
        let log = log.clone();
        std::thread::spawn(move || {
            go_rx.recv().expect("go");
            log.create_topic("orders-us", TopicConfig::default().partitions(2))
                .expect("create later topic");
            log.append("orders-us", 1, &[Record::new("first")])
                .expect("append");
        })
    };
    go_tx.send(()).expect("release the creator");
    let mut got = Vec::new();
    while got.is_empty() {
        let records = orders.poll(Duration::from_secs(3_600)).expect("poll");
        assert_eq!(
            clock.now_ms(),
            START_MS,
            "poll returned only because the watchdog moved the clock: the new topic was never picked up"
        );
        got = offsets_of(&records);
    }
    creator.join().expect("creator");
    assert_eq!(got, vec![("orders-us".to_owned(), 1, 0)]);
    assert_eq!(
        orders.assignment(),
        vec![tp("orders-eu", 0), tp("orders-us", 0), tp("orders-us", 1)]
    );
}

#[test]
fn commits_carry_metadata_and_are_shared_by_the_group() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .expect("create");
    fill(&log, "t", 0, 10);
    fill(&log, "t", 1, 10);
    let (t0, t1) = (tp("t", 0), tp("t", 1));

    let mut c = consumer(&log, Some("g"), OffsetReset::Earliest);
    c.subscribe(&["t"]).expect("subscribe");
    assert_eq!(
        c.committed(&[t0.clone(), t1.clone()]).expect("committed"),
        vec![(t0.clone(), None), (t1.clone(), None)]
    );
    c.commit_offsets(&[
        (
            t0.clone(),
            OffsetAndMetadata {
                offset: 3,
                metadata: "batch 7 of run α".into(),
            },
        ),
        (t1.clone(), OffsetAndMetadata::new(8)),
    ])
    .expect("commit offsets");
    let committed = c.committed(&[t0.clone(), t1.clone()]).expect("committed");
    assert_eq!(
        committed,
        vec![
            (
                t0.clone(),
                Some(OffsetAndMetadata {
                    offset: 3,
                    metadata: "batch 7 of run α".into()
                })
            ),
            (t1.clone(), Some(OffsetAndMetadata::new(8))),
        ]
    );
    // The consumer starts at its committed offsets.
    let records = c.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), (3..10).collect::<Vec<_>>());
    assert_eq!(only_offsets(&records, "t", 1), vec![8, 9]);
    // commit() stores the positions, with empty metadata.
    c.seek(&t1, 9).expect("seek");
    c.commit().expect("commit");
    assert_eq!(
        log.committed_offsets("g").expect("group offsets"),
        vec![
            (t0.clone(), OffsetAndMetadata::new(10)),
            (t1.clone(), OffsetAndMetadata::new(9)),
        ]
    );
    // The next consumer of the group sees them, another group does not.
    c.close().expect("close");
    let mut other = consumer(&log, Some("g"), OffsetReset::None);
    other.subscribe(&["t"]).expect("subscribe");
    assert_eq!(other.position(&t1).expect("position"), 9);
    let mut stranger = consumer(&log, Some("h"), OffsetReset::Latest);
    stranger.subscribe(&["t"]).expect("subscribe");
    assert_eq!(
        stranger
            .committed(std::slice::from_ref(&t0))
            .expect("committed")[0]
            .1,
        None
    );
    assert_eq!(log.consumer_groups().expect("groups"), vec!["g".to_owned()]);
    // No group: nothing to commit to.
    let mut anonymous = consumer(&log, None, OffsetReset::Earliest);
    anonymous.subscribe(&["t"]).expect("subscribe");
    assert!(matches!(anonymous.commit(), Err(Error::InvalidConfig(_))));
    assert!(matches!(
        anonymous.committed(std::slice::from_ref(&t0)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn commits_and_metadata_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || LogConfig::default().offsets_topic_partitions(2);
    {
        let log = Log::open(dir.path(), config()).expect("open");
        log.create_topic("t", TopicConfig::default())
            .expect("create");
        fill(&log, "t", 0, 5);
        let mut c = consumer(&log, Some("g"), OffsetReset::Earliest);
        c.subscribe(&["t"]).expect("subscribe");
        c.commit_offsets(&[(
            tp("t", 0),
            OffsetAndMetadata {
                offset: 2,
                metadata: "first".into(),
            },
        )])
        .expect("commit");
        c.commit_offsets(&[(
            tp("t", 0),
            OffsetAndMetadata {
                offset: 4,
                metadata: "second".into(),
            },
        )])
        .expect("commit again");
        drop(c);
        log.close().expect("close");
    }
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!(
        log.committed_offsets("g").expect("committed"),
        vec![(
            tp("t", 0),
            OffsetAndMetadata {
                offset: 4,
                metadata: "second".into()
            }
        )]
    );
    let mut c = consumer(&log, Some("g"), OffsetReset::None);
    c.subscribe(&["t"]).expect("subscribe");
    let records = c.poll(Duration::ZERO).expect("poll");
    assert_eq!(only_offsets(&records, "t", 0), vec![4]);
}

#[test]
fn auto_commit_follows_the_clock_and_runs_on_close_and_drop() {
    let (log, clock) = manual_log();
    log.create_topic("t", TopicConfig::default())
        .expect("create");
    fill(&log, "t", 0, 10);
    let t0 = tp("t", 0);
    let committed = |log: &Log, group: &str| -> Option<i64> {
        log.committed_offsets(group)
            .expect("committed")
            .into_iter()
            .find(|(tp, _)| tp.partition == 0)
            .map(|(_, c)| c.offset)
    };
    let config = |group: &str| {
        ConsumerConfig::group(group)
            .auto_offset_reset(OffsetReset::Earliest)
            .auto_commit_interval(Duration::from_secs(5))
            .max_poll_records(4)
    };

    let mut c = log.consumer(config("g"));
    c.subscribe(&["t"]).expect("subscribe");
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 4);
    assert_eq!(committed(&log, "g"), None, "the interval has not passed");
    clock.advance_ms(4_999);
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 4);
    assert_eq!(committed(&log, "g"), None, "the interval has not passed");
    clock.advance_ms(1);
    // This poll commits what the earlier polls returned (8 records).
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 2);
    assert_eq!(committed(&log, "g"), Some(8));
    assert_eq!(c.position(&t0).expect("position"), 10);
    clock.advance_ms(4_000);
    assert!(c.poll(Duration::ZERO).expect("poll").is_empty());
    assert_eq!(committed(&log, "g"), Some(8), "4 s since the last commit");
    c.close().expect("close");
    assert_eq!(committed(&log, "g"), Some(10), "close commits");

    // Dropping commits too.
    fill(&log, "t", 0, 3);
    let mut c = log.consumer(config("g"));
    c.subscribe(&["t"]).expect("subscribe");
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 3);
    drop(c);
    assert_eq!(committed(&log, "g"), Some(13), "drop commits");

    // Without auto-commit, neither polls nor close commit.
    let mut c = log.consumer(config("manual").enable_auto_commit(false));
    c.subscribe(&["t"]).expect("subscribe");
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 4);
    clock.advance_ms(60_000);
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 4);
    c.close().expect("close");
    assert_eq!(committed(&log, "manual"), None);
}

#[test]
fn a_blocked_poll_wakes_when_another_thread_appends() {
    const ROUNDS: u32 = 50;
    let (log, clock) = manual_log();
    let _watchdog = Watchdog::new(&clock, Duration::from_secs(20));
    log.create_topic("t", TopicConfig::default().partitions(3))
        .expect("create");
    let mut c = consumer(&log, None, OffsetReset::Earliest);
    c.subscribe(&["t"]).expect("subscribe");
    let (go_tx, go_rx) = mpsc::channel::<u32>();
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            while let Ok(round) = go_rx.recv() {
                log.append("t", round % 3, &[Record::new(round.to_be_bytes())])
                    .expect("append");
            }
        })
    };
    for round in 0..ROUNDS {
        // Released just before this thread blocks; which comes first, the
        // append or the wait, differs from round to round, and both must
        // end with the record.
        go_tx.send(round).expect("release the appender");
        let records = c.poll(Duration::from_secs(3_600)).expect("poll");
        assert_eq!(
            clock.now_ms(),
            START_MS,
            "round {round}: poll returned only because the watchdog moved the clock"
        );
        let got: Vec<(u32, Vec<u8>)> = records
            .iter()
            .map(|r| (r.partition, r.value.expect("value").to_vec()))
            .collect();
        assert_eq!(got, vec![(round % 3, round.to_be_bytes().to_vec())]);
    }
    drop(go_tx);
    appender.join().expect("appender");
}

#[test]
fn an_idle_poll_times_out_by_the_logs_clock() {
    let (log, clock) = manual_log();
    log.create_topic("t", TopicConfig::default())
        .expect("create");
    fill(&log, "t", 0, 2);
    let mut c = consumer(&log, None, OffsetReset::Earliest);
    c.subscribe(&["t"]).expect("subscribe");
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 2);
    // A zero time-out never waits.
    assert!(c.poll(Duration::ZERO).expect("poll").is_empty());

    let poller = {
        let clock = clock.clone();
        std::thread::spawn(move || {
            let before_ms = clock.now_ms();
            let records = c.poll(Duration::from_millis(100)).map(|r| r.len());
            let after_ms = clock.now_ms();
            (records, after_ms - before_ms, c)
        })
    };
    let mut advanced_ms = 0;
    while !poller.is_finished() {
        assert!(advanced_ms < 10_000_000, "poll never timed out");
        clock.advance_ms(7);
        advanced_ms += 7;
        std::thread::yield_now();
    }
    let (records, waited_ms, mut c) = poller.join().expect("poller");
    assert_eq!(records.expect("poll"), 0);
    assert!(
        waited_ms >= 100,
        "poll returned after {waited_ms} ms of the log's clock"
    );
    // The consumer still works afterwards.
    fill(&log, "t", 0, 1);
    assert_eq!(c.poll(Duration::ZERO).expect("poll").len(), 1);
    c.close().expect("close");
}

#[test]
fn a_closed_consumer_refuses_to_poll() {
    let (log, _clock) = manual_log();
    log.create_topic("t", TopicConfig::default())
        .expect("create");
    let mut c = consumer(&log, Some("g"), OffsetReset::Earliest);
    c.subscribe(&["t"]).expect("subscribe");
    assert!(matches!(
        c.subscribe(&["bad name!"]),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        c.assign(&[tp("t", 5)]),
        Err(Error::UnknownPartition { .. })
    ));
    let other = log.clone();
    other.close().expect("close log");
    assert!(matches!(c.poll(Duration::ZERO), Err(Error::Closed)));
}
