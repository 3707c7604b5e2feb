//! The producer keeps its promises under concurrency and failure: records
//! sent by many threads through one `Producer` land exactly once and in
//! each sender's order; keyed records go where Kafka's Java client would
//! put them (checked against published murmur2 vectors, not against our
//! own function); unkeyed records stick to one partition per batch; an
//! idempotent retry is stored once, also after a clean close and after a
//! crash; among racing conditional appends exactly one wins; a full buffer
//! fails by the log's clock; callbacks run once with the right offsets;
//! `flush` waits for everything sent before it.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::Duration;

use brooklet::{
    AppendInfo, AppendOptions, Error, Fetch, Log, LogConfig, ManualClock, ProducerBatch,
    ProducerConfig, Record, SendHandle, TailLoss, TopicConfig, murmur2, partition_for_key,
};

/// Every record of a partition as (offset, key, value).
type Stored = Vec<(i64, Option<Vec<u8>>, Vec<u8>)>;

fn read_all(log: &Log, topic: &str, partition: u32) -> Stored {
    common::read_partition(log, topic, partition, 0, |record| {
        (
            record.offset,
            record.key.map(<[u8]>::to_vec),
            record.value.expect("records here have values").to_vec(),
        )
    })
}

fn log_with_topic(partitions: u32) -> Log {
    let log = Log::temporary(LogConfig::default()).expect("open");
    log.create_topic("t", TopicConfig::default().partitions(partitions))
        .expect("create topic");
    log
}

fn end_offset(log: &Log, topic: &str, partition: u32) -> i64 {
    log.offsets(topic, partition)
        .expect("offsets")
        .log_end_offset
}

/// `thread` (1 byte) then `seq` (4 bytes, big-endian).
fn encode_origin(thread: u8, seq: u32) -> Vec<u8> {
    let mut value = vec![thread];
    value.extend_from_slice(&seq.to_be_bytes());
    value
}

fn decode_origin(value: &[u8]) -> (u8, u32) {
    assert_eq!(value.len(), 5, "value {value:?}");
    (
        value[0],
        u32::from_be_bytes([value[1], value[2], value[3], value[4]]),
    )
}

#[test]
fn concurrent_senders_keep_their_order_and_lose_nothing() {
    const THREADS: u8 = 4;
    const PER_THREAD: u32 = 2_000;
    let log = log_with_topic(3);
    // Small batches: many appends, so the threads' records interleave.
    let producer = log
        .producer(ProducerConfig::default().batch_size_bytes(512))
        .expect("producer");
    let start = Arc::new(Barrier::new(usize::from(THREADS)));
    let senders: Vec<_> = (0..THREADS)
        .map(|thread| {
            let producer = producer.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                (0..PER_THREAD)
                    .map(|seq| {
                        // Each thread walks the partitions in its own pattern.
                        let partition = (seq * (u32::from(thread) + 1) / 7) % 3;
                        let handle = producer
                            .send_to("t", partition, Record::new(encode_origin(thread, seq)))
                            .expect("send");
                        (thread, seq, partition, handle)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let sent: Vec<(u8, u32, u32, SendHandle)> = senders
        .into_iter()
        .flat_map(|s| s.join().expect("sender thread"))
        .collect();
    producer.flush().expect("flush");

    // Where each record's handle says it went.
    let mut acknowledged = HashMap::new();
    for (thread, seq, partition, handle) in &sent {
        let meta = handle.wait().expect("appended");
        assert_eq!(meta.partition, *partition);
        assert_eq!(&*meta.topic, "t");
        let previous = acknowledged.insert((meta.partition, meta.offset), (*thread, *seq));
        assert!(previous.is_none(), "two records got {meta:?}");
    }

    let mut seen = BTreeSet::new();
    for partition in 0..3 {
        let stored = read_all(&log, "t", partition);
        let mut last_seq: BTreeMap<u8, u32> = BTreeMap::new();
        for (i, (offset, key, value)) in stored.iter().enumerate() {
            assert_eq!(*offset, i as i64, "partition {partition} offsets are dense");
            assert!(key.is_none());
            let (thread, seq) = decode_origin(value);
            assert_eq!(
                acknowledged.get(&(partition, *offset)),
                Some(&(thread, seq)),
                "the handle's offset holds that record"
            );
            if let Some(before) = last_seq.insert(thread, seq) {
                assert!(
                    before < seq,
                    "partition {partition}: thread {thread} sent {before} before {seq}"
                );
            }
            assert!(seen.insert((thread, seq)), "({thread}, {seq}) stored twice");
        }
        assert_eq!(end_offset(&log, "t", partition), stored.len() as i64);
    }
    assert_eq!(seen.len(), usize::from(THREADS) * PER_THREAD as usize);
}

#[test]
fn murmur2_matches_published_vectors() {
    // librdkafka's src/rdmurmur2.c unit test, `java_murmur2_results`: the
    // hashes Kafka's Java `Utils.murmur2` gives these keys.
    let librdkafka: &[(&str, u32)] = &[
        ("kafka", 0xd067_cf64),
        ("giberish123456789", 0x8f55_2b0c),
        ("1234", 0x9fc9_7b14),
        ("234", 0xe7c0_09ca),
        ("34", 0x8739_30da),
        ("4", 0x5a4b_5ca1),
        ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
        ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
        ("eAmbleWillBeRemoved,ThePrePartThatIs", 0xe0e4_e09e),
        ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
        ("", 0x106e_08d9),
    ];
    for &(key, expected) in librdkafka {
        assert_eq!(
            murmur2(key.as_bytes()),
            i32::from_ne_bytes(expected.to_ne_bytes()),
            "murmur2({key:?})"
        );
    }
}

#[test]
fn partition_for_key_matches_kafka_clients() {
    // kafka-python's test_partitioner.py, test_murmur2_java_compatibility:
    // "compare with output from Kafka's ...producer.Partitioner", 1000
    // partitions.
    let kafka_python: &[(&[u8], u32)] = &[
        (b"", 681),
        (b"a", 524),
        (b"ab", 434),
        (b"abc", 107),
        (b"123456789", 566),
        (b"\x00 ", 742),
    ];
    for &(key, expected) in kafka_python {
        assert_eq!(partition_for_key(key, 1000), expected, "key {key:?}");
    }
    // Derived with an independent Python transcription of Java's
    // `Utils.murmur2` (checked first against the two tables above), then
    // `(h & 0x7fffffff) % n`:
    //   "foo" -> 597841616, "key" -> -1079937367, "alice" -> 1951417749,
    //   "order-1" -> 1221710326, "21" -> -973932308 (Kafka's UtilsTest).
    let derived: &[(&str, i32, [u32; 3])] = &[
        ("foo", 597_841_616, [2, 0, 1]),
        ("key", -1_079_937_367, [1, 1, 4]),
        ("alice", 1_951_417_749, [0, 1, 1]),
        ("order-1", 1_221_710_326, [1, 2, 4]),
        ("21", -973_932_308, [0, 0, 3]),
    ];
    for &(key, hash, partitions) in derived {
        assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
        for (count, expected) in [3, 4, 7].into_iter().zip(partitions) {
            assert_eq!(
                partition_for_key(key.as_bytes(), count),
                expected,
                "{key:?} over {count} partitions"
            );
        }
    }
}

#[test]
fn records_with_one_key_share_the_keys_partition_in_send_order() {
    let log = log_with_topic(3);
    let producer = log.producer(ProducerConfig::default()).expect("producer");
    let keys: Vec<String> = (0..20).map(|k| format!("user-{k}")).collect();
    let mut handles = Vec::new();
    for round in 0..50u32 {
        for key in &keys {
            let handle = producer
                .send("t", Record::new(round.to_be_bytes()).key(key.as_str()))
                .expect("send");
            handles.push((key.clone(), round, handle));
        }
    }
    producer.flush().expect("flush");
    let mut placed: HashMap<String, (u32, i64)> = HashMap::new();
    for (key, round, handle) in &handles {
        let meta = handle.wait().expect("appended");
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), 3),
            "{key}"
        );
        if let Some((partition, offset)) = placed.insert(key.clone(), (meta.partition, meta.offset))
        {
            assert_eq!(partition, meta.partition, "{key} moved partitions");
            assert!(offset < meta.offset, "{key} round {round} went backwards");
        }
    }
    // And the log agrees: each key's records in one partition, in order.
    let mut rounds_seen: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
    for partition in 0..3 {
        for (_, key, value) in read_all(&log, "t", partition) {
            let key = key.expect("keyed");
            assert_eq!(partition_for_key(&key, 3), partition);
            let round = u32::from_be_bytes(value.try_into().expect("4-byte value"));
            rounds_seen.entry(key).or_default().push(round);
        }
    }
    assert_eq!(rounds_seen.len(), keys.len());
    for rounds in rounds_seen.values() {
        assert_eq!(*rounds, (0..50).collect::<Vec<u32>>());
    }
    // With 20 keys over 3 partitions, more than one partition is used.
    let used: BTreeSet<u32> = placed.values().map(|(p, _)| *p).collect();
    assert!(used.len() > 1);
}

#[test]
fn unkeyed_records_fill_one_partition_at_a_time() {
    const RECORDS: usize = 3_000;
    const BATCH_BYTES: usize = 1024;
    let log = log_with_topic(3);
    let producer = log
        .producer(ProducerConfig::default().batch_size_bytes(BATCH_BYTES))
        .expect("producer");
    // 43 value bytes: about 64 bytes per record in a batch, so about 16
    // records per batch.
    let handles: Vec<SendHandle> = (0..RECORDS)
        .map(|i| {
            producer
                .send("t", Record::new(format!("{i:043}")))
                .expect("send")
        })
        .collect();
    producer.flush().expect("flush");
    let partitions: Vec<u32> = handles
        .iter()
        .map(|h| h.wait().expect("appended").partition)
        .collect();
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for &partition in &partitions {
        match runs.last_mut() {
            Some((last, length)) if *last == partition => *length += 1,
            _ => runs.push((partition, 1)),
        }
    }
    let per_partition = |p: u32| partitions.iter().filter(|&&x| x == p).count();
    for p in 0..3 {
        assert!(
            per_partition(p) >= RECORDS / 5,
            "partition {p} got {} of {RECORDS}",
            per_partition(p)
        );
    }
    let same_as_previous = partitions.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        same_as_previous * 10 >= (RECORDS - 1) * 9,
        "only {same_as_previous} of {} consecutive pairs share a partition",
        RECORDS - 1
    );
    // Every run but the last is about a batch's worth of records.
    let shortest = runs[..runs.len() - 1]
        .iter()
        .map(|(_, length)| *length)
        .min()
        .expect("several runs");
    assert!(shortest >= 8, "a run of only {shortest} records: {runs:?}");
    let longest = runs.iter().map(|(_, length)| *length).max().expect("runs");
    assert!(longest <= 64, "a run of {longest} records never switched");
}

fn idempotent(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> AppendOptions {
    AppendOptions::default().producer(ProducerBatch {
        producer_id,
        producer_epoch,
        base_sequence,
    })
}

fn records(tag: &str, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record::new(format!("{tag}-{i}")))
        .collect()
}

fn expect_offsets(info: &AppendInfo, base: i64, last: i64, duplicate: bool) {
    assert_eq!(
        (info.base_offset, info.last_offset, info.duplicate),
        (base, last, duplicate),
        "{info:?}"
    );
}

#[test]
fn idempotent_retries_gaps_and_epochs() {
    let log = log_with_topic(1);
    let (id, epoch) = log.init_producer_id().expect("producer id");
    let (other_id, _) = log.init_producer_id().expect("second producer id");
    assert_ne!(id, other_id);

    let first = records("a", 3);
    let info = log
        .append_with("t", 0, &first, &idempotent(id, epoch, 0))
        .expect("first batch");
    expect_offsets(&info, 0, 2, false);
    // The retry of a batch whose acknowledgement was lost.
    let retry = log
        .append_with("t", 0, &first, &idempotent(id, epoch, 0))
        .expect("retry");
    expect_offsets(&retry, 0, 2, true);
    assert_eq!(end_offset(&log, "t", 0), 3, "the retry wrote nothing");

    let info = log
        .append_with("t", 0, &records("b", 2), &idempotent(id, epoch, 3))
        .expect("second batch");
    expect_offsets(&info, 3, 4, false);
    // A retry of the earlier batch still finds its offsets.
    let retry = log
        .append_with("t", 0, &first, &idempotent(id, epoch, 0))
        .expect("older retry");
    expect_offsets(&retry, 0, 2, true);

    // A gap: sequences 5..=9 never arrived.
    match log.append_with("t", 0, &records("c", 1), &idempotent(id, epoch, 10)) {
        Err(Error::OutOfOrderSequence {
            producer_id,
            expected,
            received,
        }) => assert_eq!((producer_id, expected, received), (id, 5, 10)),
        other => panic!("gap gave {other:?}"),
    }
    // A batch overlapping the last one without matching it.
    assert!(matches!(
        log.append_with("t", 0, &records("c", 2), &idempotent(id, epoch, 4)),
        Err(Error::OutOfOrderSequence { .. })
    ));
    // A producer id the partition never saw must start at sequence 0.
    assert!(matches!(
        log.append_with("t", 0, &records("x", 1), &idempotent(other_id, 0, 7)),
        Err(Error::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(end_offset(&log, "t", 0), 5, "refused batches wrote nothing");

    // An epoch bump restarts the sequence at 0...
    assert!(matches!(
        log.append_with("t", 0, &records("d", 1), &idempotent(id, epoch + 1, 5)),
        Err(Error::OutOfOrderSequence { .. })
    ));
    let info = log
        .append_with("t", 0, &records("d", 2), &idempotent(id, epoch + 1, 0))
        .expect("new epoch");
    expect_offsets(&info, 5, 6, false);
    // ...and fences the old epoch, even for what would be its next batch.
    match log.append_with("t", 0, &records("e", 1), &idempotent(id, epoch, 5)) {
        Err(Error::ProducerFenced {
            producer_id,
            epoch: fenced,
            current_epoch,
        }) => assert_eq!((producer_id, fenced, current_epoch), (id, epoch, epoch + 1)),
        other => panic!("old epoch gave {other:?}"),
    }
    let retry = log
        .append_with("t", 0, &records("d", 2), &idempotent(id, epoch + 1, 0))
        .expect("retry in the new epoch");
    expect_offsets(&retry, 5, 6, true);
    let info = log
        .append_with("t", 0, &records("f", 1), &idempotent(id, epoch + 1, 2))
        .expect("next in the new epoch");
    expect_offsets(&info, 7, 7, false);

    let values: Vec<Vec<u8>> = read_all(&log, "t", 0)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    let expected: Vec<Vec<u8>> = ["a-0", "a-1", "a-2", "b-0", "b-1", "d-0", "d-1", "f-0"]
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    assert_eq!(values, expected);
}

#[test]
fn the_last_five_batches_are_remembered() {
    let log = log_with_topic(1);
    let (id, epoch) = log.init_producer_id().expect("producer id");
    // Seven batches of two records: sequences 0, 2, ..., 12.
    let batches: Vec<Vec<Record>> = (0..7).map(|b| records(&format!("b{b}"), 2)).collect();
    for (b, batch) in batches.iter().enumerate() {
        let info = log
            .append_with("t", 0, batch, &idempotent(id, epoch, 2 * b as i32))
            .expect("append");
        expect_offsets(&info, 2 * b as i64, 2 * b as i64 + 1, false);
    }
    // Batches 2..=6 are the last five: each retry is a duplicate.
    for (b, batch) in batches.iter().enumerate().skip(2) {
        let retry = log
            .append_with("t", 0, batch, &idempotent(id, epoch, 2 * b as i32))
            .expect("retry");
        expect_offsets(&retry, 2 * b as i64, 2 * b as i64 + 1, true);
    }
    // Batch 1 is the sixth-last: forgotten, so out of order.
    for (b, batch) in batches.iter().enumerate().take(2) {
        match log.append_with("t", 0, batch, &idempotent(id, epoch, 2 * b as i32)) {
            Err(Error::OutOfOrderSequence {
                expected, received, ..
            }) => assert_eq!((expected, received), (14, 2 * b as i32)),
            other => panic!("retry of batch {b} gave {other:?}"),
        }
    }
    assert_eq!(end_offset(&log, "t", 0), 14);
}

/// Appends batch `b` (three records, sequences `3b..3b+3`) and checks it
/// got offsets `3b..3b+3`: this producer is the partition's only writer.
fn append_numbered(log: &Log, id: i64, b: i32) -> AppendInfo {
    let info = log
        .append_with(
            "t",
            0,
            &records(&format!("n{b}"), 3),
            &idempotent(id, 0, 3 * b),
        )
        .expect("append");
    expect_offsets(&info, i64::from(3 * b), i64::from(3 * b + 2), false);
    info
}

fn retry_numbered(log: &Log, id: i64, b: i32) -> brooklet::Result<AppendInfo> {
    log.append_with(
        "t",
        0,
        &records(&format!("n{b}"), 3),
        &idempotent(id, 0, 3 * b),
    )
}

/// A retry of an older batch after a reopen: a duplicate with the
/// original offsets, or refused as out of order; the log does not grow.
fn retry_is_refused_or_duplicate(log: &Log, id: i64, b: i32) {
    let end = end_offset(log, "t", 0);
    match retry_numbered(log, id, b) {
        Ok(info) => expect_offsets(&info, i64::from(3 * b), i64::from(3 * b + 2), true),
        Err(Error::OutOfOrderSequence { .. }) => {}
        Err(other) => panic!("retry of batch {b}: {other:?}"),
    }
    assert_eq!(
        end_offset(log, "t", 0),
        end,
        "retry of batch {b} was stored"
    );
}

#[test]
fn duplicates_are_detected_after_a_clean_close_and_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The clock stays put, so nothing is flushed by time and no producer
    // expires.
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = || LogConfig::default().clock(clock.clone());
    let id;
    {
        let log = Log::open(dir.path(), config()).expect("open");
        // Small segments: rolls write producer snapshots along the way.
        log.create_topic("t", TopicConfig::default().segment_bytes(1024))
            .expect("create topic");
        id = log.init_producer_id().expect("producer id").0;
        for b in 0..20 {
            append_numbered(&log, id, b);
        }
        assert!(
            log.describe_topic("t").expect("describe").partitions[0].segment_count > 1,
            "the test wants rolls"
        );
        log.close().expect("close");
    }
    {
        let log = Log::open(dir.path(), config()).expect("reopen after close");
        let retry = retry_numbered(&log, id, 19).expect("retry after close");
        expect_offsets(&retry, 57, 59, true);
        // Like Kafka's, the snapshot keeps only each producer's last
        // batch, so older retries may be refused, but never stored twice
        // or answered with wrong offsets.
        for b in 15..19 {
            retry_is_refused_or_duplicate(&log, id, b);
        }
        assert!(matches!(
            retry_numbered(&log, id, 21),
            Err(Error::OutOfOrderSequence { expected: 60, .. })
        ));
        for b in 20..25 {
            append_numbered(&log, id, b);
        }
        log.kill(TailLoss::None).expect("kill");
    }
    {
        let log = Log::open(dir.path(), config()).expect("reopen after crash");
        assert_eq!(
            end_offset(&log, "t", 0),
            75,
            "a process crash loses nothing"
        );
        let retry = retry_numbered(&log, id, 24).expect("retry after crash");
        expect_offsets(&retry, 72, 74, true);
        for b in 18..24 {
            retry_is_refused_or_duplicate(&log, id, b);
        }
        append_numbered(&log, id, 25);
        log.flush().expect("flush");
        // This batch is acknowledged but never flushed; the crash below
        // takes it, so its retry must be appended anew, not reported as a
        // duplicate with offsets that no longer exist.
        append_numbered(&log, id, 26);
        log.kill(TailLoss::Unflushed).expect("kill losing the tail");
    }
    let log = Log::open(dir.path(), config()).expect("reopen after losing the tail");
    assert_eq!(end_offset(&log, "t", 0), 78, "the unflushed batch is gone");
    let retry = retry_numbered(&log, id, 25).expect("retry of the flushed batch");
    expect_offsets(&retry, 75, 77, true);
    let again = retry_numbered(&log, id, 26).expect("retry of the lost batch");
    expect_offsets(&again, 78, 80, false);
    let stored = read_all(&log, "t", 0);
    assert_eq!(stored.len(), 81);
    for (offset, _, value) in stored {
        let b = offset / 3;
        let i = offset % 3;
        assert_eq!(value, format!("n{b}-{i}").into_bytes(), "offset {offset}");
    }
}

#[test]
fn exactly_one_conditional_append_wins_each_round() {
    const THREADS: usize = 8;
    const ROUNDS: i64 = 200;
    let log = log_with_topic(1);
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = log.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut won = Vec::new();
                for round in 0..ROUNDS {
                    // Nobody starts round r+1 before everyone tried round r.
                    barrier.wait();
                    let record = Record::new(format!("{thread}:{round}"));
                    match log.append_if("t", 0, round, &[record]) {
                        Ok(info) => {
                            assert_eq!((info.base_offset, info.last_offset), (round, round));
                            won.push(round);
                        }
                        Err(Error::UnexpectedEndOffset {
                            expected,
                            actual,
                            partition,
                            ..
                        }) => {
                            assert_eq!((expected, actual, partition), (round, round + 1, 0));
                        }
                        Err(other) => panic!("round {round}: {other:?}"),
                    }
                }
                (thread, won)
            })
        })
        .collect();
    let mut winners: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for worker in workers {
        let (thread, won) = worker.join().expect("worker");
        for round in won {
            winners.entry(round).or_default().push(thread);
        }
    }
    assert_eq!(winners.len(), ROUNDS as usize, "a round without a winner");
    for (round, threads) in &winners {
        assert_eq!(threads.len(), 1, "round {round} won by {threads:?}");
    }
    let stored = read_all(&log, "t", 0);
    assert_eq!(stored.len(), ROUNDS as usize);
    for (offset, _, value) in stored {
        let expected = format!("{}:{offset}", winners[&offset][0]);
        assert_eq!(value, expected.into_bytes());
    }
}

#[test]
fn a_record_larger_than_the_buffer_is_refused_at_once() {
    let log = log_with_topic(1);
    let producer = log
        .producer(ProducerConfig::default().buffer_memory_bytes(1_000))
        .expect("producer");
    match producer.send("t", Record::new(vec![7u8; 2_000])) {
        Err(Error::RecordTooLarge {
            size_bytes,
            max_bytes,
        }) => {
            assert!(size_bytes >= 2_000);
            assert_eq!(max_bytes, 1_000);
        }
        other => panic!("oversized record gave {other:?}"),
    }
    // Larger than the topic allows is refused too, before any waiting.
    let small_topic = TopicConfig::default().max_message_bytes(500);
    log.create_topic("small", small_topic).expect("create");
    assert!(matches!(
        producer.send("small", Record::new(vec![1u8; 600])),
        Err(Error::RecordTooLarge { .. })
    ));
    producer.flush().expect("flush");
    assert_eq!(end_offset(&log, "t", 0), 0);
    assert_eq!(end_offset(&log, "small", 0), 0);
}

/// A producer whose batches never leave on their own: the linger is
/// longer than any test advances the clock and the batch size larger than
/// the buffer. Only `flush` (or close) sends. Records of 79 value bytes
/// count 100 bytes, so ten fill its 1000-byte buffer.
fn stalled_producer(log: &Log, max_block: Duration) -> brooklet::Producer {
    log.producer(
        ProducerConfig::default()
            .linger(Duration::from_secs(1_000_000_000))
            .batch_size_bytes(1 << 20)
            .buffer_memory_bytes(1_000)
            .max_block(max_block),
    )
    .expect("producer")
}

fn hundred_byte_record(i: u8) -> Record {
    Record::new(vec![i; 79])
}

#[test]
fn a_full_buffer_fails_after_max_block_by_the_logs_clock() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Log::temporary(LogConfig::default().clock(clock.clone())).expect("open");
    log.create_topic("t", TopicConfig::default())
        .expect("create topic");

    // max_block zero: the eleventh record fails at once.
    let producer = stalled_producer(&log, Duration::ZERO);
    let held: Vec<SendHandle> = (0..10)
        .map(|i| producer.send("t", hundred_byte_record(i)).expect("fits"))
        .collect();
    match producer.send("t", hundred_byte_record(10)) {
        Err(Error::BufferExhausted {
            buffer_memory_bytes,
            max_block_ms,
        }) => assert_eq!((buffer_memory_bytes, max_block_ms), (1_000, 0)),
        other => panic!("full buffer gave {other:?}"),
    }
    assert_eq!(end_offset(&log, "t", 0), 0, "the sender is lingering");
    assert!(held.iter().all(|h| !h.is_done()));
    // Flushing empties the buffer and makes room again.
    producer.flush().expect("flush");
    assert_eq!(end_offset(&log, "t", 0), 10);
    producer
        .send("t", hundred_byte_record(10))
        .expect("room after flush");
    producer.close().expect("close");
    assert_eq!(end_offset(&log, "t", 0), 11, "close sends what is pending");

    // max_block ten seconds by the manual clock: the send waits for the
    // clock, not for real time.
    let producer = stalled_producer(&log, Duration::from_secs(10));
    for i in 0..10 {
        producer.send("t", hundred_byte_record(i)).expect("fits");
    }
    let blocked = {
        let producer = producer.clone();
        let clock = clock.clone();
        std::thread::spawn(move || {
            let before_ms = brooklet::Clock::now_ms(&*clock);
            let result = producer.send("t", hundred_byte_record(10)).map(|_| ());
            let after_ms = brooklet::Clock::now_ms(&*clock);
            (result, after_ms - before_ms)
        })
    };
    let mut advanced_ms = 0;
    while !blocked.is_finished() {
        assert!(advanced_ms < 100_000_000, "the send never gave up");
        clock.advance_ms(1_000);
        advanced_ms += 1_000;
        std::thread::yield_now();
    }
    let (result, waited_ms) = blocked.join().expect("blocked sender");
    assert!(
        matches!(
            result,
            Err(Error::BufferExhausted {
                max_block_ms: 10_000,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(waited_ms >= 10_000, "gave up after {waited_ms} ms of clock");
    assert_eq!(end_offset(&log, "t", 0), 11);

    // A send blocked on the full buffer goes through once a flush frees
    // it (whether it blocked before the flush or came after it).
    let producer = stalled_producer(&log, Duration::from_secs(3_600));
    for i in 0..10 {
        producer.send("t", hundred_byte_record(i)).expect("fits");
    }
    let (started_tx, started_rx) = mpsc::channel();
    let waiting = {
        let producer = producer.clone();
        std::thread::spawn(move || {
            started_tx.send(()).expect("signal");
            producer.send("t", hundred_byte_record(10)).map(|_| ())
        })
    };
    started_rx.recv().expect("sender started");
    producer.flush().expect("flush");
    waiting
        .join()
        .expect("waiting sender")
        .expect("send after room was made");
    producer.flush().expect("second flush");
    assert_eq!(end_offset(&log, "t", 0), 22);
}

/// A callback's record number and outcome.
type Call = (u32, brooklet::Result<brooklet::RecordMetadata>);

#[test]
fn callbacks_run_once_with_the_records_offsets() {
    const RECORDS: u32 = 1_500;
    let log = log_with_topic(3);
    let producer = log
        .producer(ProducerConfig::default().batch_size_bytes(2_048))
        .expect("producer");
    let calls: Arc<Mutex<Vec<Call>>> = Arc::new(Mutex::new(Vec::new()));
    for i in 0..RECORDS {
        let calls = Arc::clone(&calls);
        let mut record = Record::new(i.to_be_bytes());
        if i % 2 == 0 {
            record = record.key(format!("k{}", i % 11));
        }
        producer
            .send_with_callback("t", record, move |result| {
                calls.lock().expect("calls").push((i, result));
            })
            .expect("send");
    }
    producer.flush().expect("flush");
    let called = std::mem::take(&mut *calls.lock().expect("calls"));
    assert_eq!(called.len(), RECORDS as usize, "flush waits for callbacks");
    let stored: Vec<Stored> = (0..3).map(|p| read_all(&log, "t", p)).collect();
    let mut once = BTreeSet::new();
    for (i, result) in called {
        assert!(once.insert(i), "callback of record {i} ran twice");
        let meta = result.expect("appended");
        if i % 2 == 0 {
            assert_eq!(
                meta.partition,
                partition_for_key(format!("k{}", i % 11).as_bytes(), 3)
            );
        }
        let (offset, _, value) = &stored[meta.partition as usize][meta.offset as usize];
        assert_eq!(*offset, meta.offset);
        assert_eq!(
            *value,
            i.to_be_bytes().to_vec(),
            "callback of {i}: {meta:?}"
        );
    }
    producer.close().expect("close");
    assert!(calls.lock().expect("calls").is_empty(), "no late calls");
}

#[test]
fn flush_waits_for_every_record_sent_before_it() {
    let log = log_with_topic(2);
    let producer = log.producer(ProducerConfig::default()).expect("producer");
    let mut sent = [0i64; 2];
    for round in 0..500u32 {
        let handles: Vec<SendHandle> = (0..=round % 4)
            .map(|i| {
                let partition = (round + i) % 2;
                sent[partition as usize] += 1;
                producer
                    .send_to("t", partition, Record::new(round.to_be_bytes()))
                    .expect("send")
            })
            .collect();
        producer.flush().expect("flush");
        for (i, handle) in handles.iter().enumerate() {
            assert!(
                handle.is_done(),
                "round {round}: record {i} not appended when flush returned"
            );
        }
        for partition in 0..2 {
            assert_eq!(
                end_offset(&log, "t", partition),
                sent[partition as usize],
                "round {round}: partition {partition} after flush"
            );
        }
    }
}

/// Regression scenario: `flush` must also wait for a batch the sender has
/// already taken off its queue and is still appending (or still running
/// callbacks for). A callback that blocks holds that batch in flight
/// deterministically.
#[test]
fn flush_waits_for_a_batch_already_in_flight() {
    // How long a wrongly returning flush gets to show itself; a correct
    // flush blocks until the callback is released, and this only bounds
    // that wait. Nothing asserts on time.
    const LIVENESS: Duration = Duration::from_secs(1);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Log::temporary(LogConfig::default().clock(clock)).expect("open");
    log.create_topic("t", TopicConfig::default())
        .expect("create topic");
    // Batches leave only when flushed: both records go in one batch.
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_secs(1_000_000_000)))
        .expect("producer");
    let plain = producer.send("t", Record::new("a")).expect("send");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    producer
        .send_with_callback("t", Record::new("b"), move |result| {
            result.expect("appended");
            entered_tx.send(()).expect("signal entered");
            release_rx.recv().expect("released");
        })
        .expect("send with callback");
    // The first flush hands the batch to the sender, which appends it and
    // then blocks in the callback: the batch is in flight, not complete.
    let first_flush = {
        let producer = producer.clone();
        std::thread::spawn(move || producer.flush())
    };
    entered_rx.recv().expect("callback entered");
    assert!(!plain.is_done());
    let (flushed_tx, flushed_rx) = mpsc::channel();
    let second_flush = {
        let producer = producer.clone();
        let plain = plain.clone();
        std::thread::spawn(move || {
            let result = producer.flush();
            flushed_tx.send(plain.is_done()).expect("report");
            result
        })
    };
    let early = flushed_rx.recv_timeout(LIVENESS);
    release_tx.send(()).expect("release callback");
    first_flush.join().expect("first flush").expect("flushed");
    second_flush.join().expect("second flush").expect("flushed");
    match early {
        Ok(done) => assert!(
            done,
            "flush returned while a record sent before it was still in flight"
        ),
        Err(mpsc::RecvTimeoutError::Timeout) => {} // blocked, as it should be
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("second flush panicked"),
    }
    assert_eq!(plain.wait().expect("appended").offset, 0);
}

#[test]
fn closed_producers_and_unknown_targets_are_errors() {
    let log = log_with_topic(3);
    let producer = log.producer(ProducerConfig::default()).expect("producer");
    match producer.send("nope", Record::new("v")) {
        Err(Error::UnknownTopic(topic)) => assert_eq!(topic, "nope"),
        other => panic!("unknown topic gave {other:?}"),
    }
    match producer.send_to("t", 3, Record::new("v")) {
        Err(Error::UnknownPartition {
            topic,
            partition,
            partition_count,
        }) => assert_eq!((topic.as_str(), partition, partition_count), ("t", 3, 3)),
        other => panic!("unknown partition gave {other:?}"),
    }
    assert!(matches!(
        producer.send_with_callback("nope", Record::new("v"), |_| {
            panic!("no callback for a refused send")
        }),
        Err(Error::UnknownTopic(_))
    ));

    let other_handle = producer.clone();
    let pending: Vec<SendHandle> = (0..100)
        .map(|i| {
            producer
                .send_to("t", i % 3, Record::new("before close"))
                .expect("send")
        })
        .collect();
    producer.close().expect("close");
    assert!(
        pending.iter().all(SendHandle::is_done),
        "close sends pending"
    );
    let total: i64 = (0..3).map(|p| end_offset(&log, "t", p)).sum();
    assert_eq!(total, 100);
    assert!(matches!(
        other_handle.send("t", Record::new("after close")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        other_handle.send_to("t", 0, Record::new("after close")),
        Err(Error::Closed)
    ));
    let total: i64 = (0..3).map(|p| end_offset(&log, "t", p)).sum();
    assert_eq!(total, 100);
}

/// A send loop fast enough to leave batches waiting for the sender, whose
/// backlog it then appends several at a time: every stored batch still
/// carries the producer's id and the sequence right after the batch
/// before it, and the offsets run without gaps.
#[test]
fn batches_appended_together_keep_their_sequences() {
    const RECORDS: u32 = 20_000;
    let log = log_with_topic(1);
    let producer = log
        .producer(ProducerConfig::default().batch_size_bytes(1024))
        .expect("producer");
    let (producer_id, _) = producer.identity().expect("idempotent by default");
    let record = Record::new(vec![7u8; 100]).key("k");
    for _ in 0..RECORDS {
        producer.send("t", &record).expect("send");
    }
    producer.flush().expect("flush");
    let mut reader = log.reader("t", 0, 0).expect("reader");
    let mut fetch = Fetch::new();
    let (mut next_offset, mut next_sequence, mut batches) = (0i64, 0i32, 0);
    while reader.next_into(&mut fetch).expect("read") {
        for batch in fetch.batches() {
            let header = *batch.expect("a batch").header();
            assert_eq!(header.producer_id, producer_id);
            assert_eq!(header.base_offset, next_offset, "offsets without gaps");
            assert_eq!(
                header.base_sequence, next_sequence,
                "batch at {next_offset}"
            );
            next_offset = header.last_offset() + 1;
            next_sequence += header.record_count;
            batches += 1;
        }
    }
    assert_eq!(next_offset, i64::from(RECORDS));
    assert!(
        batches >= i64::from(RECORDS) / 10,
        "{batches} batches of about 1 KiB"
    );
}
