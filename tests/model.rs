//! Model-based test of the storage engine. Random sequences of appends,
//! reads, full scans, timestamp lookups, flushes, clean reopens and crashes
//! (`Log::kill` with a random torn tail, then reopen) run against a log with
//! one topic of two partitions, small segments and a small index interval,
//! and against a plain in-memory model: a `Vec` of records per partition.
//! Every read, scan and lookup must agree with the model byte for byte
//! (batch boundaries and sizes included), and after a crash each partition
//! must hold a prefix of the model, cut at a batch boundary, that keeps at
//! least everything flushed before the crash — with
//! `Durability::EveryAppend`, everything acknowledged.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use brooklet::{
    Clock, DEFAULT_MAX_MESSAGE_BYTES, Durability, Error, Fetch, Header, Log, LogConfig,
    ManualClock, Record, TailLoss, TimestampOffset, TopicConfig,
};
use common::{bump, ok};
use proptest::prelude::*;
use proptest::sample::Index;

const TOPIC: &str = "t";
const PARTITIONS: u32 = 2;
const CLOCK_START_MS: i64 = 1_700_000_000_000;
/// Keys and header names come from small sets so they repeat; the empty
/// string is a real key, distinct from no key.
const KEYS: [&str; 4] = ["a", "b", "user-7", ""];
const HEADER_KEYS: [&str; 3] = ["h", "trace-id", ""];
const MAX_OPS: usize = 40;
const DEFAULT_CASES: u32 = 64;

// ---------------------------------------------------------------------------
// What the generator produces.

#[derive(Clone)]
struct GenRecord {
    key: Option<usize>,
    value: Option<Vec<u8>>,
    headers: Vec<(usize, Option<Vec<u8>>)>,
    /// Relative to `CLOCK_START_MS`; `None` takes the clock's time.
    timestamp_ms: Option<i64>,
}

/// Bytes as one hex string, so a failing case prints compactly.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.0.len())?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for GenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<_> = self
            .headers
            .iter()
            .map(|(k, v)| (HEADER_KEYS[*k], v.as_deref().map(Hex)))
            .collect();
        f.debug_struct("GenRecord")
            .field("key", &self.key.map(|k| KEYS[k]))
            .field("value", &self.value.as_deref().map(Hex))
            .field("headers", &headers)
            .field("timestamp_ms", &self.timestamp_ms)
            .finish()
    }
}

#[derive(Clone, Debug)]
enum OffsetPick {
    First,
    Within(Index),
    LogEnd,
    Beyond(i64),
    Negative,
}

#[derive(Clone, Debug)]
enum TimestampPick {
    /// A record's timestamp plus a small delta (hits exact matches).
    NearRecord(Index, i64),
    /// Relative to `CLOCK_START_MS`; spans below and above every record.
    Absolute(i64),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        partition: u32,
        advance_ms: i64,
        records: Vec<GenRecord>,
    },
    Read {
        partition: u32,
        at: OffsetPick,
        max_bytes: usize,
    },
    FullScan {
        partition: u32,
        fetch_bytes: Option<usize>,
    },
    TimestampLookup {
        partition: u32,
        target: TimestampPick,
    },
    Flush,
    CleanReopen,
    Crash {
        seed: u64,
    },
}

#[derive(Clone, Debug)]
struct Setup {
    segment_bytes: u32,
    index_interval_bytes: u32,
    segment_ms: Option<i64>,
}

fn record_strategy() -> impl Strategy<Value = GenRecord> {
    (
        prop::option::of(0..KEYS.len()),
        // Now and then a value too big for most batches to fit the smaller
        // segments, so `RecordTooLarge` is reached too.
        prop::option::weighted(
            0.9,
            prop_oneof![
                19 => prop::collection::vec(any::<u8>(), 0..200),
                1 => prop::collection::vec(any::<u8>(), 200..1200),
            ],
        ),
        prop::collection::vec(
            (
                0..HEADER_KEYS.len(),
                prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..8)),
            ),
            0..=2,
        ),
        // Explicit timestamps land before, among and after the clock's, so
        // batches are often out of order with each other and within.
        prop::option::of(-2_000i64..15_000),
    )
        .prop_map(|(key, value, headers, timestamp_ms)| GenRecord {
            key,
            value,
            headers,
            timestamp_ms,
        })
}

fn offset_pick() -> impl Strategy<Value = OffsetPick> {
    prop_oneof![
        1 => Just(OffsetPick::First),
        5 => any::<Index>().prop_map(OffsetPick::Within),
        2 => Just(OffsetPick::LogEnd),
        1 => (1i64..4).prop_map(OffsetPick::Beyond),
        1 => Just(OffsetPick::Negative),
    ]
}

fn timestamp_pick() -> impl Strategy<Value = TimestampPick> {
    prop_oneof![
        3 => (any::<Index>(), -1i64..=1).prop_map(|(i, d)| TimestampPick::NearRecord(i, d)),
        1 => (-3_000i64..25_000).prop_map(TimestampPick::Absolute),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let partition = 0..PARTITIONS;
    prop_oneof![
        12 => (
            partition.clone(),
            0i64..500,
            prop::collection::vec(record_strategy(), 1..=8)
        )
            .prop_map(|(partition, advance_ms, records)| Op::Append {
                partition,
                advance_ms,
                records,
            }),
        4 => (partition.clone(), offset_pick(), 0usize..4096).prop_map(
            |(partition, at, max_bytes)| Op::Read {
                partition,
                at,
                max_bytes,
            }
        ),
        2 => (partition.clone(), prop::option::of(0usize..2048)).prop_map(
            |(partition, fetch_bytes)| Op::FullScan {
                partition,
                fetch_bytes,
            }
        ),
        3 => (partition, timestamp_pick())
            .prop_map(|(partition, target)| Op::TimestampLookup { partition, target }),
        1 => Just(Op::Flush),
        1 => Just(Op::CleanReopen),
        2 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
    ]
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (
        1024u32..4096,
        64u32..512,
        prop::option::of(2_000i64..20_000),
    )
        .prop_map(|(segment_bytes, index_interval_bytes, segment_ms)| Setup {
            segment_bytes,
            index_interval_bytes,
            segment_ms,
        })
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    timestamp_ms: i64,
}

#[derive(Clone, Copy, Debug)]
struct ModelBatch {
    base_offset: i64,
    last_offset: i64,
    size_bytes: usize,
}

#[derive(Debug, Default)]
struct ModelPartition {
    /// A record's offset is its index.
    records: Vec<ModelRecord>,
    batches: Vec<ModelBatch>,
    /// Records known to be on disk: a crash must keep at least these.
    durable_len: usize,
}

impl ModelPartition {
    fn log_end(&self) -> i64 {
        self.records.len() as i64
    }

    fn size_bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.size_bytes as u64).sum()
    }

    fn truncate(&mut self, log_end: i64) {
        self.records.truncate(log_end as usize);
        self.batches.retain(|b| b.last_offset < log_end);
        self.durable_len = self.durable_len.min(self.records.len());
    }
}

/// Counts of what the cases exercised, checked at the end so a generator
/// that stopped reaching rolls, torn tails or oversized batches is noticed.
#[derive(Debug, Default)]
struct Stats {
    appended_batches: Cell<usize>,
    too_large: Cell<usize>,
    max_segments: Cell<usize>,
    crashes: Cell<usize>,
    crashes_losing_records: Cell<usize>,
    lookups_found: Cell<usize>,
    lookups_none: Cell<usize>,
    reads_out_of_range: Cell<usize>,
}

/// Length of a zig-zag varint, as Kafka's record format writes it.
fn varint_len(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        len += 1;
    }
    len
}

fn bytes_field_len(field: Option<&[u8]>) -> usize {
    field.map_or(varint_len(-1), |bytes| {
        varint_len(bytes.len() as i64) + bytes.len()
    })
}

/// The size of a record batch v2 holding `records`, from the format's
/// specification (61-byte header, then length-prefixed records whose
/// timestamp and offset are deltas from the first record's).
fn batch_size(records: &[ModelRecord]) -> usize {
    let base_timestamp = records[0].timestamp_ms;
    let body_lens = records.iter().enumerate().map(|(delta, record)| {
        let mut body = 1 // attributes
            + varint_len(record.timestamp_ms - base_timestamp)
            + varint_len(delta as i64)
            + bytes_field_len(record.key.as_deref())
            + bytes_field_len(record.value.as_deref())
            + varint_len(record.headers.len() as i64);
        for header in &record.headers {
            body += bytes_field_len(Some(header.key.as_bytes()))
                + bytes_field_len(header.value.as_deref());
        }
        varint_len(body as i64) + body
    });
    61 + body_lens.sum::<usize>()
}

// ---------------------------------------------------------------------------
// Running a case.

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

struct Harness<'a> {
    dir: &'a Path,
    clock: Arc<ManualClock>,
    durability: Durability,
    setup: &'a Setup,
    model: Vec<ModelPartition>,
    stats: &'a Stats,
}

impl Harness<'_> {
    fn open(&self) -> Result<Log, String> {
        let config = LogConfig::default().clock(Arc::clone(&self.clock) as Arc<dyn Clock>);
        ok(Log::open(self.dir, config), "open")
    }

    fn batch_limit(&self) -> usize {
        (self.setup.segment_bytes as usize).min(DEFAULT_MAX_MESSAGE_BYTES as usize)
    }

    fn append(
        &mut self,
        log: &Log,
        partition: u32,
        advance_ms: i64,
        generated: &[GenRecord],
    ) -> Check {
        self.clock.advance_ms(advance_ms);
        let now_ms = self.clock.now_ms();
        let records: Vec<Record> = generated
            .iter()
            .map(|g| Record {
                key: g.key.map(|k| KEYS[k].as_bytes().to_vec()),
                value: g.value.clone(),
                headers: g
                    .headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: HEADER_KEYS[*k].to_owned(),
                        value: v.clone(),
                    })
                    .collect(),
                timestamp_ms: g.timestamp_ms.map(|t| CLOCK_START_MS + t),
            })
            .collect();
        let expected: Vec<ModelRecord> = records
            .iter()
            .map(|r| ModelRecord {
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
                timestamp_ms: r.timestamp_ms.unwrap_or(now_ms),
            })
            .collect();
        let size_bytes = batch_size(&expected);
        let limit = self.batch_limit();
        let part = &mut self.model[partition as usize];
        match log.append(TOPIC, partition, &records) {
            Ok(info) => {
                ensure!(
                    size_bytes <= limit,
                    "a batch of {size_bytes} bytes was accepted over the limit {limit}"
                );
                let base_offset = part.log_end();
                let last_offset = base_offset + records.len() as i64 - 1;
                ensure!(
                    (info.base_offset, info.last_offset) == (base_offset, last_offset),
                    "append got offsets {}..={}, expected {base_offset}..={last_offset}",
                    info.base_offset,
                    info.last_offset
                );
                part.records.extend(expected);
                part.batches.push(ModelBatch {
                    base_offset,
                    last_offset,
                    size_bytes,
                });
                if self.durability == Durability::EveryAppend {
                    part.durable_len = part.records.len();
                }
                bump(&self.stats.appended_batches);
            }
            Err(Error::RecordTooLarge {
                size_bytes: reported,
                max_bytes,
            }) => {
                ensure!(
                    size_bytes > limit,
                    "a batch of {size_bytes} bytes (limit {limit}) was refused as {reported} > {max_bytes}"
                );
                // The append refuses a batch far over the limit from a
                // lower bound of its size, before encoding it: the size
                // reported is over the limit and at most the real one.
                ensure!(
                    max_bytes == limit && limit < reported && reported <= size_bytes,
                    "RecordTooLarge reported {reported} > {max_bytes}, expected at most {size_bytes} > {limit}"
                );
                bump(&self.stats.too_large);
            }
            Err(err) => return Err(format!("append failed: {err}")),
        }
        Ok(())
    }

    fn read(&self, log: &Log, partition: u32, at: &OffsetPick, max_bytes: usize) -> Check {
        let part = &self.model[partition as usize];
        let log_end = part.log_end();
        let offset = match at {
            OffsetPick::First => 0,
            OffsetPick::Within(i) if log_end > 0 => i.index(part.records.len()) as i64,
            OffsetPick::Within(_) => 0,
            OffsetPick::LogEnd => log_end,
            OffsetPick::Beyond(k) => log_end + k,
            OffsetPick::Negative => -1,
        };
        match log.read(TOPIC, partition, offset, max_bytes) {
            Ok(fetch) => {
                ensure!(
                    (0..=log_end).contains(&offset),
                    "read at {offset} succeeded outside 0..={log_end}"
                );
                check_fetch(part, &fetch, offset, max_bytes)
            }
            Err(Error::OffsetOutOfRange {
                requested,
                log_start_offset,
                high_watermark,
                ..
            }) => {
                ensure!(
                    !(0..=log_end).contains(&offset),
                    "read at {offset} (log end {log_end}) is out of range"
                );
                ensure!(
                    (requested, log_start_offset, high_watermark) == (offset, 0, log_end),
                    "OffsetOutOfRange reported ({requested}, {log_start_offset}, {high_watermark}), expected ({offset}, 0, {log_end})"
                );
                bump(&self.stats.reads_out_of_range);
                Ok(())
            }
            Err(err) => Err(format!("read at {offset} failed: {err}")),
        }
    }

    fn full_scan(&self, log: &Log, partition: u32, fetch_bytes: Option<usize>) -> Check {
        let part = &self.model[partition as usize];
        let mut reader = ok(log.reader(TOPIC, partition, 0), "reader")?;
        if let Some(bytes) = fetch_bytes {
            reader.set_max_bytes(bytes);
        }
        let mut fetch = Fetch::new();
        let mut fetches = 0;
        let mut next = 0i64;
        while ok(reader.next_into(&mut fetch), "reader.next_into")? {
            fetches += 1;
            ensure!(
                fetches <= part.batches.len(),
                "the reader returned more fetches than there are batches"
            );
            check_fetch(part, &fetch, next, fetch_bytes.unwrap_or(1 << 20))?;
            next = fetch.next_offset();
            ensure!(
                reader.position() == next,
                "reader position {} after a fetch ending at {next}",
                reader.position()
            );
        }
        ensure!(
            next == part.log_end(),
            "the full scan stopped at {next}, log end is {}",
            part.log_end()
        );
        Ok(())
    }

    fn timestamp_lookup(&self, log: &Log, partition: u32, target: &TimestampPick) -> Check {
        let part = &self.model[partition as usize];
        let target_ms = match target {
            TimestampPick::NearRecord(i, delta) if !part.records.is_empty() => {
                part.records[i.index(part.records.len())].timestamp_ms + delta
            }
            TimestampPick::NearRecord(_, delta) => CLOCK_START_MS + delta,
            TimestampPick::Absolute(relative) => CLOCK_START_MS + relative,
        };
        let expected = part
            .records
            .iter()
            .position(|r| r.timestamp_ms >= target_ms)
            .map(|offset| TimestampOffset {
                offset: offset as i64,
                timestamp_ms: part.records[offset].timestamp_ms,
            });
        let found = ok(
            log.offset_for_timestamp(TOPIC, partition, target_ms),
            "offset_for_timestamp",
        )?;
        ensure!(
            found == expected,
            "offset_for_timestamp({target_ms}) = {found:?}, expected {expected:?}"
        );
        bump(if found.is_some() {
            &self.stats.lookups_found
        } else {
            &self.stats.lookups_none
        });
        Ok(())
    }

    /// After a crash and reopen: each partition is a prefix of the model,
    /// cut at a batch boundary, keeping at least what was durable.
    fn check_crash_survivors(&mut self, log: &Log) -> Check {
        let mut lost_any = false;
        for partition in 0..PARTITIONS {
            let offsets = ok(log.offsets(TOPIC, partition), "offsets")?;
            let part = &mut self.model[partition as usize];
            let log_end = offsets.log_end_offset;
            ensure!(
                log_end >= part.durable_len as i64 && log_end <= part.log_end(),
                "partition {partition} recovered to log end {log_end}; durable were {}, appended {}",
                part.durable_len,
                part.log_end()
            );
            ensure!(
                log_end == 0 || part.batches.iter().any(|b| b.last_offset + 1 == log_end),
                "partition {partition} recovered to {log_end}, inside a batch: {:?}",
                part.batches
            );
            lost_any |= log_end < part.log_end();
            part.truncate(log_end);
            // What survived was read back from the files: it is on disk now.
            part.durable_len = part.records.len();
        }
        bump(&self.stats.crashes);
        if lost_any {
            bump(&self.stats.crashes_losing_records);
        }
        Ok(())
    }

    /// Closes (`CleanReopen`) or kills (`Crash`) the log and opens it
    /// again, then checks what it holds.
    fn restart(&mut self, log: Log, op: &Op) -> Result<Log, String> {
        let log = if let Op::Crash { seed } = op {
            ok(log.kill(TailLoss::Random { seed: *seed }), "kill")?;
            let log = self.open()?;
            self.check_crash_survivors(&log)?;
            log
        } else {
            ok(log.close(), "close")?;
            for part in &mut self.model {
                part.durable_len = part.records.len();
            }
            self.open()?
        };
        for partition in 0..PARTITIONS {
            self.full_scan(&log, partition, None)?;
        }
        Ok(log)
    }

    /// Checked after every operation: offsets and sizes match the model.
    fn check_offsets(&self, log: &Log) -> Check {
        let description = ok(log.describe_topic(TOPIC), "describe_topic")?;
        ensure!(
            description.partitions.len() == PARTITIONS as usize,
            "describe_topic lists {} partitions",
            description.partitions.len()
        );
        for (partition, part) in self.model.iter().enumerate() {
            let offsets = ok(log.offsets(TOPIC, partition as u32), "offsets")?;
            let log_end = part.log_end();
            ensure!(
                (
                    offsets.log_start_offset,
                    offsets.high_watermark,
                    offsets.log_end_offset
                ) == (0, log_end, log_end),
                "partition {partition}: offsets {offsets:?}, model log end {log_end}"
            );
            let described = &description.partitions[partition];
            ensure!(
                described.size_bytes == part.size_bytes(),
                "partition {partition}: {} bytes on disk, the model's batches add up to {}",
                described.size_bytes,
                part.size_bytes()
            );
            let max = self.stats.max_segments.get().max(described.segment_count);
            self.stats.max_segments.set(max);
        }
        Ok(())
    }
}

/// A fetch starting at `offset`: whole model batches from the one holding
/// it, within `max_bytes` unless the first alone is larger, and records
/// equal to the model's from `offset` on.
fn check_fetch(part: &ModelPartition, fetch: &Fetch, offset: i64, max_bytes: usize) -> Check {
    let log_end = part.log_end();
    ensure!(
        fetch.high_watermark() == log_end,
        "fetch high watermark {} != {log_end}",
        fetch.high_watermark()
    );
    if offset == log_end {
        ensure!(fetch.is_empty(), "a read at the log end returned data");
        ensure!(
            fetch.records().next().is_none(),
            "a read at the log end returned records"
        );
        ensure!(
            fetch.next_offset() == offset,
            "empty fetch next offset {}",
            fetch.next_offset()
        );
        return Ok(());
    }
    ensure!(
        !fetch.is_empty(),
        "a read at {offset} < {log_end} was empty"
    );
    let first = part
        .batches
        .iter()
        .position(|b| b.base_offset <= offset && offset <= b.last_offset)
        .ok_or_else(|| format!("the model has no batch holding {offset}"))?;
    let mut model_batches = part.batches[first..].iter();
    let mut first_size = None;
    for batch in fetch.batches() {
        let batch = ok(batch, "parse fetched batch")?;
        let expected = model_batches
            .next()
            .ok_or_else(|| "the fetch has more batches than the model".to_owned())?;
        let header = batch.header();
        ensure!(
            (
                header.base_offset,
                header.last_offset(),
                batch.as_bytes().len()
            ) == (
                expected.base_offset,
                expected.last_offset,
                expected.size_bytes
            ),
            "fetched batch {}..={} of {} bytes, model batch {expected:?}",
            header.base_offset,
            header.last_offset(),
            batch.as_bytes().len()
        );
        first_size.get_or_insert(expected.size_bytes);
    }
    let budget = max_bytes.max(first_size.unwrap_or(0));
    ensure!(
        fetch.bytes().len() <= budget,
        "fetched {} bytes with max_bytes {max_bytes} (first batch {first_size:?})",
        fetch.bytes().len()
    );
    let mut expected_offset = offset;
    for record in fetch.records() {
        let record = ok(record, "decode record")?;
        ensure!(
            record.offset == expected_offset,
            "record offset {} where {expected_offset} was expected",
            record.offset
        );
        let copy = ok(record.to_record(), "to_record")?;
        let got = ModelRecord {
            key: copy.key,
            value: copy.value,
            headers: copy.headers,
            timestamp_ms: record.timestamp_ms,
        };
        let want = &part.records[expected_offset as usize];
        ensure!(
            &got == want,
            "record {expected_offset}: read {got:?}, model {want:?}"
        );
        expected_offset += 1;
    }
    ensure!(
        fetch.next_offset() == expected_offset && expected_offset > offset,
        "fetch next offset {} after records up to {expected_offset}",
        fetch.next_offset()
    );
    Ok(())
}

fn run_case(durability: Durability, setup: &Setup, ops: &[Op], stats: &Stats) -> Check {
    let dir = tempfile::tempdir().map_err(|err| format!("tempdir: {err}"))?;
    let mut harness = Harness {
        dir: dir.path(),
        clock: Arc::new(ManualClock::new(CLOCK_START_MS)),
        durability,
        setup,
        model: (0..PARTITIONS).map(|_| ModelPartition::default()).collect(),
        stats,
    };
    let mut log = harness.open()?;
    let mut topic = TopicConfig::default()
        .partitions(PARTITIONS)
        .segment_bytes(setup.segment_bytes)
        .index_interval_bytes(setup.index_interval_bytes)
        .durability(durability);
    if let Some(ms) = setup.segment_ms {
        topic = topic.segment_ms(ms);
    }
    ok(log.create_topic(TOPIC, topic), "create_topic")?;
    for (step, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Append {
                partition,
                advance_ms,
                records,
            } => harness.append(&log, *partition, *advance_ms, records),
            Op::Read {
                partition,
                at,
                max_bytes,
            } => harness.read(&log, *partition, at, *max_bytes),
            Op::FullScan {
                partition,
                fetch_bytes,
            } => harness.full_scan(&log, *partition, *fetch_bytes),
            Op::TimestampLookup { partition, target } => {
                harness.timestamp_lookup(&log, *partition, target)
            }
            Op::Flush => ok(log.flush(), "flush").map(|()| {
                for part in &mut harness.model {
                    part.durable_len = part.records.len();
                }
            }),
            Op::CleanReopen | Op::Crash { .. } => match harness.restart(log, op) {
                Ok(reopened) => {
                    log = reopened;
                    Ok(())
                }
                Err(why) => return Err(format!("step {step} ({op:?}): {why}")),
            },
        };
        result
            .and_then(|()| harness.check_offsets(&log))
            .map_err(|why| format!("step {step} ({op:?}): {why}"))?;
    }
    ok(log.close(), "close")
}

/// Runs the model test with `durability`: `PROPTEST_CASES` cases (64 by
/// default) of up to 40 operations, from a fixed seed unless
/// `PROPTEST_RNG_SEED` is set.
fn run_model(durability: Durability, seed: u64) -> Stats {
    let stats = Stats::default();
    let strategy = (
        setup_strategy(),
        prop::collection::vec(op_strategy(), 1..=MAX_OPS),
    );
    common::check_property(
        common::proptest_config(DEFAULT_CASES, seed),
        &strategy,
        |(setup, ops)| run_case(durability, &setup, &ops, &stats),
    );
    stats
}

fn assert_exercised(stats: &Stats) {
    // Shown with `--nocapture`: what the cases reached.
    eprintln!("{stats:?}");
    assert!(stats.appended_batches.get() > 100, "{stats:?}");
    assert!(stats.too_large.get() > 0, "{stats:?}");
    assert!(stats.max_segments.get() > 3, "{stats:?}");
    assert!(stats.crashes.get() > 10, "{stats:?}");
    assert!(stats.lookups_found.get() > 0, "{stats:?}");
    assert!(stats.lookups_none.get() > 0, "{stats:?}");
    assert!(stats.reads_out_of_range.get() > 0, "{stats:?}");
}

#[test]
fn log_matches_model_and_keeps_flushed_data_across_crashes() {
    let stats = run_model(Durability::Os, 0x6272_6f6f_6b6c_6574);
    assert_exercised(&stats);
    assert!(
        stats.crashes_losing_records.get() > 0,
        "no crash lost unflushed records: {stats:?}"
    );
}

#[test]
fn every_append_durability_loses_nothing_in_a_crash() {
    let stats = run_model(Durability::EveryAppend, 0x6576_6572_7961_7070);
    assert_exercised(&stats);
    assert_eq!(stats.crashes_losing_records.get(), 0, "{stats:?}");
}
