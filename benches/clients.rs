//! The producer and consumer clients against the storage engine under them,
//! each figure a ratio against a baseline measured in the same run (the
//! machine is shared and noisy, so absolute numbers mean little alone).
//!
//! Records have 16-byte keys and 100-byte values (the same records as the
//! `append` and `read` benches), on a one-partition topic whose segments
//! never roll.
//!
//! 1. Send throughput: one thread `send`s records one by one through a
//!    default `ProducerConfig` (16 KiB batches, linger 0, idempotence on),
//!    then `flush`es. Each send borrows a prepared `Record` (`send`
//!    encodes it into its batch at once, so it takes `&Record`). Baseline:
//!    `log.append` of 1,000-record batches of the same records. Goals: at
//!    least 2 million records/s and at least 0.6 of the baseline. Also
//!    reported: sends that move a fresh `Record` each (a clone of a
//!    prepared one: key and value allocated per send, as a caller building
//!    records would), and for diagnosis the rates of the clones alone and
//!    of one read of the log's clock per record (what `send` does).
//! 2. Consumer scan: a `Consumer` (one assigned partition, `Earliest`)
//!    polls through the whole partition touching each value, vs the
//!    record iterator (`log.reader` + `next_into` + `fetch.records()`) over
//!    the same partition. Goal >= 0.8. For diagnosis, the record iterator
//!    with a new `Fetch` per read (the consumer allocates one per fetch).
//! 3. End-to-end latency: one thread sends one record at a time and waits
//!    for it (`send(..)?.wait()`), another is blocked in `poll`; the time
//!    from before the send to when the consumer sees the record, measured
//!    on one `Instant` epoch carried in the value. The writer sends the
//!    next record only after the reader has seen the last one (over a
//!    channel, outside the timed span), so no record queues behind
//!    another. Goals: p50 < 20 µs, p99 < 100 µs. For comparison, the same with the writer calling
//!    `log.append` (no producer thread), and with that writer and a
//!    `PartitionReader` blocked in `wait` (the engine alone).
//!
//! Criterion times the throughput pairs; then each pair is re-run
//! interleaved over a fixed amount of work with `Instant`, and the ratios
//! are printed as `ratio <name> = X` at the end, with the latency
//! percentiles. Data goes to `target/bench-scratch` (same filesystem as the
//! repository; `/tmp` may be tmpfs); logs written only to be timed are
//! stopped with `Log::kill(TailLoss::None)` and deleted.
//!
//! Run with `cargo bench --bench clients`. Under `cargo test --benches` the
//! sizes shrink to a smoke test.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use brooklet::{
    ConsumerConfig, Fetch, Log, LogConfig, OffsetReset, ProducerConfig, Record, TopicConfig,
    TopicPartition,
};
use criterion::{Criterion, SamplingMode, Throughput};

use common::{
    KEY_BYTES, VALUE_BYTES, bench_mode, discard, in_rounds, make_records, nearest_rank, print_load,
    rate_line, ratio_line, reps, rotation, scaled, scratch_root,
};

const TOPIC: &str = "bench";
const RECORDS_PER_BATCH: usize = 1000;
/// The largest segment brooklet accepts: no roll happens during a round.
const NO_ROLL_SEGMENT_BYTES: u32 = i32::MAX as u32;
/// Records per send round (and per baseline round).
const SEND_RECORDS: u64 = 1_000_000;
/// Records in the partition the consumer scans.
const SCAN_RECORDS: u64 = 2_000_000;
/// Records timed per latency variant.
const LATENCY_RECORDS: u64 = 100_000;
/// How long any blocking call in the latency runs may wait before the
/// bench gives up (something is broken, not slow).
const STUCK: Duration = Duration::from_secs(30);

fn open_log(dir: &Path) -> Log {
    let log = Log::open(dir.join("log"), LogConfig::default()).expect("open log");
    log.create_topic(
        TOPIC,
        TopicConfig::default().segment_bytes(NO_ROLL_SEGMENT_BYTES),
    )
    .expect("create topic");
    log
}

fn end_offset(log: &Log) -> u64 {
    let end = log.offsets(TOPIC, 0).expect("offsets").log_end_offset;
    u64::try_from(end).expect("offsets are >= 0")
}

/// Sends `n` records one by one through a default producer into a fresh
/// log and flushes; returns the time from the first send to the flush's
/// return. With `owned`, each send moves a clone of the prepared record;
/// otherwise it borrows it.
fn send_round(records: &[Record], n: u64, owned: bool) -> Duration {
    let dir = common::scratch_dir("clients-");
    let log = open_log(dir.path());
    let producer = log
        .producer(ProducerConfig::default())
        .expect("create producer");
    let start = Instant::now();
    for i in 0..n {
        let record = &records[(i % records.len() as u64) as usize];
        let handle = if owned {
            producer.send(TOPIC, record.clone())
        } else {
            producer.send(TOPIC, record)
        };
        black_box(handle.expect("send"));
    }
    producer.flush().expect("flush");
    let elapsed = start.elapsed();
    assert_eq!(end_offset(&log), n, "every sent record is in the log");
    producer.close().expect("close producer");
    discard(log);
    elapsed
}

/// Appends `n` records (rounded up to whole batches) in 1,000-record
/// batches into a fresh log; returns the time the appends took.
fn append_round(records: &[Record], n: u64) -> Duration {
    let dir = common::scratch_dir("clients-");
    let log = open_log(dir.path());
    let batches = n.div_ceil(records.len() as u64);
    let start = Instant::now();
    for _ in 0..batches {
        black_box(log.append(TOPIC, 0, records).expect("append"));
    }
    let elapsed = start.elapsed();
    assert_eq!(end_offset(&log), batches * records.len() as u64);
    discard(log);
    // Scaled to exactly `n` records, so the rates compare.
    elapsed.mul_f64(n as f64 / (batches * records.len() as u64) as f64)
}

/// The record clones a send round makes, alone.
fn clone_round(records: &[Record], n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        black_box(records[(i % records.len() as u64) as usize].clone());
    }
    start.elapsed()
}

/// One read of the log's clock per record, as `send` makes (the record's
/// timestamp, which also dates a new batch), alone.
fn clock_round(log: &Log, n: u64) -> Duration {
    let clock = log.clock();
    let start = Instant::now();
    for _ in 0..n {
        black_box(clock.now_ms());
    }
    start.elapsed()
}

/// What a scan saw: records and a value that depends on their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    count: u64,
    digest: u64,
}

impl Scan {
    fn touch(&mut self, value: &[u8]) {
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_add(u64::from(value[0]) + u64::from(value[value.len() - 1]));
    }
}

/// Reads partition 0 through the storage engine's record iterator.
fn scan_reader(log: &Log, fetch: &mut Fetch) -> Scan {
    let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
    let mut scan = Scan {
        count: 0,
        digest: 0,
    };
    while reader.next_into(fetch).expect("read") {
        for record in fetch.records() {
            let record = record.expect("valid record");
            scan.touch(record.value.expect("a value"));
        }
    }
    black_box(scan)
}

/// [`scan_reader`] with a new `Fetch` (so a new buffer) for every read,
/// as the consumer does.
fn scan_reader_fresh(log: &Log) -> Scan {
    let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
    let mut scan = Scan {
        count: 0,
        digest: 0,
    };
    while let Some(fetch) = reader.next_fetch().expect("read") {
        for record in fetch.records() {
            let record = record.expect("valid record");
            scan.touch(record.value.expect("a value"));
        }
    }
    black_box(scan)
}

/// Polls partition 0 from the start with a consumer until it has seen
/// `records` records.
fn scan_consumer(log: &Log, records: u64) -> Scan {
    let mut consumer =
        log.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest));
    consumer
        .assign(&[TopicPartition::new(TOPIC, 0)])
        .expect("assign");
    let mut scan = Scan {
        count: 0,
        digest: 0,
    };
    while scan.count < records {
        let polled = consumer.poll(STUCK).expect("poll");
        assert!(!polled.is_empty(), "the partition holds more records");
        for record in &polled {
            scan.touch(record.value.expect("a value"));
        }
    }
    assert_eq!(scan.count, records);
    consumer.close().expect("close consumer");
    black_box(scan)
}

/// Appends 1,000-record batches until partition 0 holds `records` records,
/// then flushes so no write-back runs during the scans.
fn build_scan_log(dir: &Path, batch: &[Record], records: u64) -> Log {
    let log = open_log(dir);
    let batches = records.div_ceil(batch.len() as u64);
    for _ in 0..batches {
        log.append(TOPIC, 0, batch).expect("append");
    }
    log.flush().expect("flush");
    log
}

/// Rates (units per second) of interleaved runs of several variants over
/// the same amount of work, the order rotating each repetition (see
/// [`rotation`]).
fn interleaved(
    reps: usize,
    units: u64,
    variants: &mut [&mut dyn FnMut(u64) -> Duration],
) -> Vec<Vec<f64>> {
    let mut rates = vec![Vec::with_capacity(reps); variants.len()];
    for v in rotation(reps, variants.len()) {
        let elapsed = variants[v](units);
        rates[v].push(units as f64 / elapsed.as_secs_f64());
    }
    rates
}

/// The figures printed at the end of the run.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn line(&mut self, line: String) {
        self.lines.push(line);
    }

    fn rate(&mut self, name: &str, rates: &[f64], goal: Option<f64>) {
        self.line(rate_line(name, rates, goal));
    }

    fn ratio(&mut self, name: &str, a: &[f64], b: &[f64], goal: Option<f64>) {
        self.line(ratio_line(name, a, b, goal));
    }
}

/// How the latency writer appends each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// `producer.send(..)?.wait()`.
    Producer,
    /// `log.append` of a one-record batch, on the writing thread.
    Append,
}

/// How the latency reader waits for each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    /// A consumer blocked in `poll`.
    Consumer,
    /// A `PartitionReader` blocked in `wait`, then `next_into`.
    Reader,
}

/// Latencies (nanoseconds, sorted) of `n` records, each written one at a
/// time by one thread and seen by another blocked waiting for it.
fn latency_run(writer: Writer, waiter: Waiter, n: u64) -> Vec<u64> {
    let dir = common::scratch_dir("clients-");
    let log = open_log(dir.path());
    let epoch = Instant::now();
    let nanos = move || u64::try_from(epoch.elapsed().as_nanos()).expect("under 584 years");
    // The reader says when it is ready and when it has seen each record;
    // the writer sends the next record only then, so every record finds
    // the reader waiting (or about to wait) and none queues behind another.
    let (seen_tx, seen_rx) = mpsc::channel::<()>();

    let reader = {
        let log = log.clone();
        thread::spawn(move || {
            let mut latencies = Vec::with_capacity(usize::try_from(n).expect("fits"));
            // Records one latency; values carry (send time, sequence).
            let see = |latencies: &mut Vec<u64>, value: &[u8]| {
                let now = nanos();
                let sent = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
                let sequence = u64::from_be_bytes(value[8..16].try_into().expect("8 bytes"));
                assert_eq!(sequence, latencies.len() as u64, "records arrive in order");
                latencies.push(now.saturating_sub(sent));
                // The writer is gone only after the last record.
                let _ = seen_tx.send(());
            };
            match waiter {
                Waiter::Consumer => {
                    let mut consumer = log.consumer(
                        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
                    );
                    consumer
                        .assign(&[TopicPartition::new(TOPIC, 0)])
                        .expect("assign");
                    seen_tx.send(()).expect("writer waits");
                    while (latencies.len() as u64) < n {
                        let polled = consumer.poll(STUCK).expect("poll");
                        assert!(!polled.is_empty(), "poll timed out: records lost");
                        for record in &polled {
                            see(&mut latencies, record.value.expect("a value"));
                        }
                    }
                    consumer.close().expect("close consumer");
                }
                Waiter::Reader => {
                    let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
                    let mut fetch = Fetch::new();
                    seen_tx.send(()).expect("writer waits");
                    while (latencies.len() as u64) < n {
                        assert!(reader.wait(STUCK).expect("wait"), "wait timed out");
                        while reader.next_into(&mut fetch).expect("read") {
                            for record in fetch.records() {
                                let record = record.expect("valid record");
                                see(&mut latencies, record.value.expect("a value"));
                            }
                        }
                    }
                }
            }
            latencies
        })
    };
    let producer = (writer == Writer::Producer).then(|| {
        log.producer(ProducerConfig::default())
            .expect("create producer")
    });
    let padding = vec![0u8; VALUE_BYTES - 16];
    let key = [7u8; KEY_BYTES];
    for i in 0..n {
        seen_rx
            .recv_timeout(STUCK)
            .expect("the reader saw the previous record");
        let mut value = Vec::with_capacity(VALUE_BYTES);
        let sent = nanos();
        value.extend_from_slice(&sent.to_be_bytes());
        value.extend_from_slice(&i.to_be_bytes());
        value.extend_from_slice(&padding);
        let record = Record::new(value).key(key);
        match &producer {
            Some(producer) => {
                producer
                    .send(TOPIC, record)
                    .expect("send")
                    .wait()
                    .expect("append");
            }
            None => {
                log.append(TOPIC, 0, &[record]).expect("append");
            }
        }
    }
    let mut latencies = reader.join().expect("reader thread");
    if let Some(producer) = producer {
        producer.close().expect("close producer");
    }
    discard(log);
    latencies.sort_unstable();
    latencies
}

/// The `p`-quantile of sorted nanoseconds, in microseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    nearest_rank(sorted, p) as f64 / 1000.0
}

/// Which parts to run, from `BROOKLET_BENCH_CLIENTS` (a comma-separated
/// subset of `send`, `scan`, `latency`; all by default).
fn selected(part: &str) -> bool {
    std::env::var("BROOKLET_BENCH_CLIENTS")
        .map(|parts| parts.split(',').any(|p| p.trim() == part))
        .unwrap_or(true)
}

/// Part 1: send throughput against batch appends.
fn bench_send(criterion: &mut Criterion, report: &mut Report, full: bool, records: &[Record]) {
    // A criterion unit is 1,000 records; rounds bound each scratch log to
    // SEND_RECORDS records.
    let round = SEND_RECORDS / 1000;
    let mut group = criterion.benchmark_group("send_100_byte_values");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("producer_send_flush", |b| {
        b.iter_custom(|iters| in_rounds(iters, round, |n| send_round(records, n * 1000, false)))
    });
    group.bench_function("log_append_1000_record_batches", |b| {
        b.iter_custom(|iters| in_rounds(iters, round, |n| append_round(records, n * 1000)))
    });
    group.finish();

    // The same pair again over a fixed amount of work, interleaved, timed
    // with Instant: these are the ratios to quote.
    let reps = reps(full);
    let units = scaled(full, SEND_RECORDS);
    let clock_log = Log::temporary(LogConfig::default()).expect("open a log for its clock");
    let rates = interleaved(
        reps,
        units,
        &mut [
            &mut |n| send_round(records, n, false),
            &mut |n| append_round(records, n),
            &mut |n| send_round(records, n, true),
            &mut |n| clone_round(records, n),
            &mut |n| clock_round(&clock_log, n),
        ],
    );
    report.line(format!(
        "send: {units} records of 16-byte key + 100-byte value per run, {reps} interleaved runs"
    ));
    report.rate(
        "producer send(&record) + flush",
        &rates[0],
        Some(2_000_000.0),
    );
    report.rate("log.append, 1,000-record batches", &rates[1], None);
    report.rate("producer send(record.clone()) + flush", &rates[2], None);
    report.rate("record clones alone (diagnosis)", &rates[3], None);
    report.rate("clock reads alone (diagnosis)", &rates[4], None);
    report.ratio("send/append_1000", &rates[0], &rates[1], Some(0.6));
    report.ratio("send_owned/append_1000", &rates[2], &rates[1], None);
}

/// Part 2: consumer scan against the record iterator.
fn bench_scan(criterion: &mut Criterion, report: &mut Report, full: bool, records: &[Record]) {
    let scan_records = scaled(full, SCAN_RECORDS);
    let scan_dir = common::scratch_dir("clients-");
    let started = Instant::now();
    let scan_log = build_scan_log(scan_dir.path(), records, scan_records);
    let scan_records = end_offset(&scan_log);
    println!(
        "built a {scan_records}-record partition ({} bytes) in {:.1?}",
        scan_log.describe_topic(TOPIC).expect("describe").partitions[0].size_bytes,
        started.elapsed()
    );
    let mut fetch = Fetch::new();
    // Warm the page cache, and check both sides see the same records.
    assert_eq!(
        scan_reader(&scan_log, &mut fetch),
        scan_consumer(&scan_log, scan_records)
    );
    let mut group = criterion.benchmark_group("scan_partition");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(scan_records));
    group.bench_function("consumer_poll", |b| {
        b.iter(|| scan_consumer(&scan_log, scan_records))
    });
    group.bench_function("log_reader_records", |b| {
        b.iter(|| scan_reader(&scan_log, &mut fetch))
    });
    group.finish();

    let reps = reps(full);
    let rates = interleaved(
        reps,
        scan_records,
        &mut [
            &mut |_| {
                let start = Instant::now();
                scan_consumer(&scan_log, scan_records);
                start.elapsed()
            },
            &mut |_| {
                let start = Instant::now();
                scan_reader(&scan_log, &mut fetch);
                start.elapsed()
            },
            &mut |_| {
                let start = Instant::now();
                scan_reader_fresh(&scan_log);
                start.elapsed()
            },
        ],
    );
    report.line(format!(
        "scan: {scan_records} records per run, {reps} interleaved runs"
    ));
    report.rate("consumer poll", &rates[0], None);
    report.rate("log.reader + next_into + records()", &rates[1], None);
    report.rate("the same, new Fetch per read (diagnosis)", &rates[2], None);
    report.ratio("consumer_scan/reader_scan", &rates[0], &rates[1], Some(0.8));
    report.ratio("reader_new_fetch/reader_scan", &rates[2], &rates[1], None);
    scan_log.close().expect("close scan log");
}

/// Part 3: end-to-end latency, producer to consumer, against the engine.
fn bench_latency(report: &mut Report, full: bool) {
    let n = scaled(full, LATENCY_RECORDS);
    report.line(format!(
        "latency: {n} records per variant, one in flight, microseconds"
    ));
    let mut p50s = Vec::new();
    for (name, writer, waiter) in [
        (
            "send().wait() -> consumer poll",
            Writer::Producer,
            Waiter::Consumer,
        ),
        (
            "log.append -> consumer poll",
            Writer::Append,
            Waiter::Consumer,
        ),
        (
            "log.append -> reader wait (engine)",
            Writer::Append,
            Waiter::Reader,
        ),
    ] {
        let started = Instant::now();
        let latencies = latency_run(writer, waiter, n);
        let (p50, p99, p999) = (
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
        );
        let max = percentile(&latencies, 1.0);
        let goals = if writer == Writer::Producer {
            format!(
                "; goals p50 < 20: {}, p99 < 100: {}",
                if p50 < 20.0 { "met" } else { "MISSED" },
                if p99 < 100.0 { "met" } else { "MISSED" }
            )
        } else {
            String::new()
        };
        report.line(format!(
            "  {name:<36} p50 {p50:>7.1}  p99 {p99:>7.1}  p99.9 {p999:>8.1}  max {max:>9.1}  ({:.1?}){goals}",
            started.elapsed()
        ));
        p50s.push(p50);
    }
    report.line(format!(
        "ratio latency_p50 producer_consumer/engine = {:.2} (append->consumer/engine = {:.2})",
        p50s[0] / p50s[2],
        p50s[1] / p50s[2]
    ));
}

fn main() {
    let full = bench_mode();
    print_load("start");
    println!("scratch data in {}", scratch_root().display());
    let records = make_records(RECORDS_PER_BATCH);
    let mut report = Report::default();
    let mut criterion = common::criterion(Duration::from_millis(1500));
    if selected("send") {
        bench_send(&mut criterion, &mut report, full, &records);
    }
    if selected("scan") {
        bench_scan(&mut criterion, &mut report, full, &records);
    }
    criterion.final_summary();
    if selected("latency") {
        bench_latency(&mut report, full);
    }
    println!("\n=== clients: figures ===");
    for line in &report.lines {
        println!("{line}");
    }
    print_load("end");
}
