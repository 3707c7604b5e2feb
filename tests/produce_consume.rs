//! Producer and consumer end to end: sends land in order, keyed records
//! land on Kafka's partition, a group resumes at its committed offsets
//! after a reopen, and a blocked poll wakes on an append.

use std::sync::Arc;
use std::time::Duration;

use brooklet::{
    ConsumerConfig, Log, LogConfig, ManualClock, OffsetReset, ProducerConfig, Record, TopicConfig,
    TopicPartition, partition_for_key,
};

fn earliest(group: &str) -> ConsumerConfig {
    ConsumerConfig::group(group).auto_offset_reset(OffsetReset::Earliest)
}

#[test]
fn sent_records_are_consumed_in_order_and_resumed_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log =
            Log::open(dir.path(), LogConfig::default().offsets_topic_partitions(3)).expect("open");
        log.create_topic("t", TopicConfig::default().partitions(3))
            .expect("create");
        let producer = log.producer(ProducerConfig::default()).expect("producer");
        let mut handles = Vec::new();
        for i in 0..3000u32 {
            let key = format!("key-{}", i % 17);
            handles.push((
                key.clone(),
                producer
                    .send("t", Record::new(i.to_be_bytes()).key(key))
                    .expect("send"),
            ));
        }
        producer.flush().expect("flush");
        for (key, handle) in &handles {
            let meta = handle.wait().expect("sent");
            assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 3));
        }
        let mut consumer = log.consumer(earliest("g").enable_auto_commit(false));
        consumer.subscribe(&["t"]).expect("subscribe");
        let mut last_per_partition = [-1i64; 3];
        let mut seen = 0;
        while seen < 2000 {
            let records = consumer.poll(Duration::from_secs(5)).expect("poll");
            assert!(!records.is_empty());
            for record in &records {
                assert!(record.offset > last_per_partition[record.partition as usize]);
                last_per_partition[record.partition as usize] = record.offset;
                seen += 1;
            }
        }
        consumer.commit().expect("commit");
        drop(consumer);
        drop(producer);
        log.close().expect("close");
    }
    let log =
        Log::open(dir.path(), LogConfig::default().offsets_topic_partitions(3)).expect("reopen");
    let mut consumer = log.consumer(earliest("g"));
    consumer.subscribe(&["t"]).expect("subscribe");
    let committed: i64 = (0..3)
        .map(|p| {
            consumer
                .position(&TopicPartition::new("t", p))
                .expect("position")
        })
        .sum();
    assert!(committed >= 2000, "resumed at {committed}");
    let mut rest = 0;
    loop {
        let records = consumer.poll(Duration::ZERO).expect("poll");
        if records.is_empty() {
            break;
        }
        rest += records.len() as i64;
    }
    assert_eq!(committed + rest, 3000);
}

#[test]
fn blocked_poll_wakes_on_append_and_times_out_by_the_clock() {
    let clock = Arc::new(ManualClock::new(10_000));
    let log = Log::temporary(LogConfig::default().clock(clock.clone())).expect("open");
    log.create_topic("t", TopicConfig::default().partitions(2))
        .expect("create");
    let mut consumer =
        log.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest));
    consumer.subscribe(&["t"]).expect("subscribe");
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || log.append("t", 1, &[Record::new("late")]).expect("append"))
    };
    let records = consumer.poll(Duration::from_secs(3600)).expect("poll");
    appender.join().expect("join");
    assert_eq!(records.len(), 1);
    let poller =
        std::thread::spawn(move || consumer.poll(Duration::from_millis(100)).map(|r| r.len()));
    while !poller.is_finished() {
        clock.advance_ms(50);
        std::thread::yield_now();
    }
    assert_eq!(poller.join().expect("join").expect("poll"), 0);
}
