//! The `Log` API end to end: topics, appends, reads by offset and time,
//! reopen after a clean close, and the errors bad input gets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use brooklet::{Error, Fetch, Log, LogConfig, ManualClock, Record, TopicConfig};

fn values(fetch: &Fetch) -> Vec<(i64, Vec<u8>)> {
    fetch
        .records()
        .map(|r| {
            let r = r.expect("valid record");
            (r.offset, r.value.expect("value").to_vec())
        })
        .collect()
}

fn read_all(log: &Log, topic: &str, partition: u32) -> Vec<(i64, Vec<u8>)> {
    common::read_partition(log, topic, partition, 0, |r| {
        (r.offset, r.value.expect("value").to_vec())
    })
}

#[test]
fn appends_read_back_across_segments_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TopicConfig::default()
        .partitions(2)
        .segment_bytes(4096)
        .index_interval_bytes(256);
    let mut expected = Vec::new();
    {
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        log.create_topic("t", config).expect("create");
        for i in 0..500i64 {
            let value = format!("value-{i}").into_bytes();
            let info = log
                .append("t", 1, &[Record::new(value.clone()).key("k")])
                .expect("append");
            assert_eq!(info.base_offset, i);
            expected.push((i, value));
        }
        assert_eq!(read_all(&log, "t", 1), expected);
        let description = log.describe_topic("t").expect("describe");
        assert!(
            description.partitions[1].segment_count > 3,
            "{description:?}"
        );
        for offset in [0, 1, 77, 250, 499] {
            let fetch = log.read("t", 1, offset, 100).expect("read");
            assert_eq!(values(&fetch)[0], expected[offset as usize]);
        }
        log.close().expect("close");
    }
    let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
    assert_eq!(log.topics(), vec!["t".to_owned()]);
    assert_eq!(read_all(&log, "t", 1), expected);
    assert_eq!(log.offsets("t", 1).expect("offsets").log_end_offset, 500);
    let info = log.append("t", 1, &[Record::new("after")]).expect("append");
    assert_eq!(info.base_offset, 500);
}

#[test]
fn timestamps_find_the_first_record_at_or_after() {
    let log = Log::temporary(LogConfig::default()).expect("open");
    log.create_topic(
        "t",
        TopicConfig::default()
            .segment_bytes(2048)
            .index_interval_bytes(100),
    )
    .expect("create");
    for i in 0..200i64 {
        log.append("t", 0, &[Record::new("x").timestamp_ms(1000 + i * 10)])
            .expect("append");
    }
    let found = log
        .offset_for_timestamp("t", 0, 1000 + 55 * 10 + 3)
        .expect("lookup")
        .expect("found");
    assert_eq!(found.offset, 56);
    assert_eq!(found.timestamp_ms, 1000 + 56 * 10);
    assert_eq!(
        log.offset_for_timestamp("t", 0, 0)
            .expect("lookup")
            .expect("found")
            .offset,
        0
    );
    assert!(
        log.offset_for_timestamp("t", 0, 1_000_000)
            .expect("lookup")
            .is_none()
    );
}

#[test]
fn bad_input_is_an_error_and_changes_nothing() {
    let log = Log::temporary(LogConfig::default()).expect("open");
    assert!(matches!(
        log.create_topic("../x", TopicConfig::default()),
        Err(Error::InvalidTopicName { .. })
    ));
    log.create_topic("t", TopicConfig::default().max_message_bytes(1000))
        .expect("create");
    assert!(matches!(
        log.create_topic("t", TopicConfig::default()),
        Err(Error::TopicAlreadyExists(_))
    ));
    log.append("t", 0, &[Record::new("ok")]).expect("append");
    let big = Record::new(vec![0u8; 2000]);
    assert!(matches!(
        log.append("t", 0, &[big]),
        Err(Error::RecordTooLarge { .. })
    ));
    assert!(matches!(
        log.append("t", 3, &[Record::new("x")]),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.append("nope", 0, &[Record::new("x")]),
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        log.read("t", 0, 5, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.append("t", 0, &[]),
        Err(Error::InvalidRecord(_))
    ));
    assert_eq!(log.offsets("t", 0).expect("offsets").log_end_offset, 1);
    assert!(log.read("t", 0, 1, 100).expect("read at end").is_empty());
}

#[test]
fn second_open_of_a_directory_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    assert!(matches!(
        Log::open(dir.path(), LogConfig::default()),
        Err(Error::AlreadyOpen { .. })
    ));
    drop(log);
    Log::open(dir.path(), LogConfig::default()).expect("open after close");
}

#[test]
fn wait_for_data_wakes_on_append_and_times_out_by_the_clock() {
    let clock = Arc::new(ManualClock::new(1_000));
    let log = Log::temporary(LogConfig::default().clock(clock.clone())).expect("open");
    log.create_topic("t", TopicConfig::default())
        .expect("create");
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || log.wait_for_data("t", 0, 0, Duration::from_secs(3600)))
    };
    log.append("t", 0, &[Record::new("x")]).expect("append");
    assert!(waiter.join().expect("join").expect("wait"));

    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || log.wait_for_data("t", 0, 1, Duration::from_millis(500)))
    };
    // Advancing the clock repeatedly until the waiter gives up: it must
    // return false once its deadline passes.
    while !waiter.is_finished() {
        clock.advance_ms(100);
        std::thread::yield_now();
    }
    assert!(!waiter.join().expect("join").expect("wait"));
}
