//! Log compaction: how fast the cleaner cleans, and what it costs
//! foreground appends against a baseline measured in the same run (the
//! machine is shared and noisy, so absolute numbers mean little on their
//! own).
//!
//! Records have 16-byte keys and 100-byte values, appended in 1,000-record
//! batches. On compacted topics the keys come from 100,000 distinct ones:
//! a pool of 100 batches holds each key once (a fixed-seed shuffle), and
//! the pool is appended over and over, its batches in a new shuffled order
//! each time, so the latest record of every key lies in the last pass over
//! the pool.
//!
//! 1. Compaction throughput: a compacted topic with one partition and 64 MiB
//!    segments gets at least `BROOKLET_BENCH_COMPACT_BYTES` (default 1 GiB)
//!    of sealed, dirty segments (appending goes on until a roll seals the
//!    last one), then `log.compact_now` is timed (data generation is not).
//!    MB/s cleaned = `bytes_read` / time; space reclaimed = `bytes_read -
//!    bytes_written`, and its share of `bytes_read`. Goal >= 200 MB/s. For
//!    context, the time to read the same segment files with `read` (from
//!    the page cache, as compaction does right after the appends) is
//!    printed too. `LogConfig::default()` cleaner settings (a 128 MiB key
//!    map, room for the 100,000 keys in one pass), except the background
//!    cleaner's backoff, made a day so it does not compact the partition
//!    while it is being written.
//! 2. Cost to foreground appends: one thread appends
//!    `BROOKLET_BENCH_APPEND_BATCHES` (default 8,000, about 1 GB) batches
//!    to topic `x` while a second thread loops over `compact_now` on a
//!    compacted partition (32 MiB of dirty data at the start, 16 MiB
//!    segments, and 32 MiB more appended to it between passes to keep it
//!    dirty); vs the same appends with that partition present but no
//!    cleaning thread. Ratio with/without; goal >= 0.7. The machine has 2
//!    cores, so the two threads have one each only if nothing else runs.
//!    To tell the causes of a slowdown apart, the appending thread's wall
//!    time is split into time on a core, time runnable but waiting for one
//!    (the run-queue wait in `/proc/thread-self/schedstat`) and the rest
//!    (blocked: I/O, page cache throttling, locks); `cpu:` ratios divide
//!    the work by its CPU time instead of wall time. The cleaning thread's
//!    split between compacting and re-dirtying is printed too.
//!
//! Criterion times each variant (compaction at a smaller size,
//! `BROOKLET_BENCH_COMPACT_CRITERION_BYTES`, default 128 MiB, since every
//! iteration needs fresh dirty data); then the figures to quote are
//! measured again with `Instant` (`BROOKLET_BENCH_COMPACT_REPS` full-size
//! compactions, default 3; 5 interleaved repetitions of the append pair)
//! and printed at the end. Data goes to temporary directories under
//! `target/bench-scratch` (same filesystem as the repository; `/tmp` may be
//! tmpfs);
//! logs are stopped with `Log::kill(TailLoss::None)` and deleted, so their
//! dirty pages are dropped rather than written back.
//!
//! Run with `cargo bench --bench cleaner`; under `cargo test --benches` the
//! sizes shrink to a smoke test.

mod common;

use std::collections::HashSet;
use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use brooklet::{CleanupPolicy, Log, LogConfig, Record, TopicConfig};
use criterion::{SamplingMode, Throughput};

use common::{
    KEY_BYTES, VALUE_BYTES, bench_mode, discard, make_records, median, print_load,
    print_parallelism, ratio_line_without_best, reps, rotation, scratch_dir, size_from_env,
    thread_cpu_time,
};

const COMPACTED: &str = "compacted";
const FOREGROUND: &str = "x";
const RECORDS_PER_BATCH: usize = 1000;
const DISTINCT_KEYS: usize = 100_000;
const POOL_BATCHES: usize = DISTINCT_KEYS / RECORDS_PER_BATCH;
const MIB: u64 = 1 << 20;
/// Segment size of the throughput scenario's compacted topic.
const COMPACT_SEGMENT_BYTES: u32 = 64 << 20;
/// Segment size of the interference scenario's compacted topic.
const BUSY_SEGMENT_BYTES: u32 = 16 << 20;
/// Dirty bytes the interference scenario's compacted partition starts
/// with, and appended to it between two passes.
const BUSY_PRELOAD_BYTES: u64 = 32 * MIB;
const BUSY_REDIRTY_BYTES: u64 = 32 * MIB;
const COMPACTION_GOAL_MB_S: f64 = 200.0;
const APPEND_GOAL_RATIO: f64 = 0.7;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A fixed-seed xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
}

fn key(k: usize) -> String {
    let key = format!("key-{k:012}");
    assert_eq!(key.len(), KEY_BYTES);
    key
}

/// The pool of batches appended to compacted topics: every one of the
/// `DISTINCT_KEYS` keys once, in shuffled order.
fn key_pool() -> Vec<Vec<Record>> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut keys: Vec<usize> = (0..DISTINCT_KEYS).collect();
    rng.shuffle(&mut keys);
    let pool: Vec<Vec<Record>> = keys
        .chunks(RECORDS_PER_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&k| Record::new(rng.bytes(VALUE_BYTES)).key(key(k)))
                .collect()
        })
        .collect();
    assert_eq!(pool.len(), POOL_BATCHES);
    pool
}

/// Appends pool batches, each pass over the pool in a new order.
struct Filler<'a> {
    pool: &'a [Vec<Record>],
    order: Vec<usize>,
    next: usize,
    rng: Rng,
}

impl<'a> Filler<'a> {
    fn new(pool: &'a [Vec<Record>], seed: u64) -> Filler<'a> {
        Filler {
            pool,
            order: (0..pool.len()).collect(),
            next: pool.len(),
            rng: Rng(seed),
        }
    }

    fn next_batch(&mut self) -> &'a [Record] {
        if self.next == self.order.len() {
            self.rng.shuffle(&mut self.order);
            self.next = 0;
        }
        let batch = &self.pool[self.order[self.next]];
        self.next += 1;
        batch
    }

    /// Appends until a roll seals at least `bytes` more than the partition
    /// held at the start; returns how much more was sealed (exactly the
    /// sealed bytes when the partition started empty).
    fn seal(&mut self, log: &Log, topic: &str, bytes: u64) -> u64 {
        let describe = || {
            let description = log.describe_topic(topic).expect("describe topic");
            let partition = &description.partitions[0];
            (partition.segment_count, partition.size_bytes)
        };
        let (mut segments, mut size) = describe();
        let start_size = size;
        loop {
            log.append(topic, 0, self.next_batch()).expect("append");
            let (now_segments, now_size) = describe();
            // A roll: everything before this append is sealed.
            if now_segments > segments && size - start_size >= bytes {
                return size - start_size;
            }
            (segments, size) = (now_segments, now_size);
        }
    }
}

fn compacted_config(segment_bytes: u32) -> TopicConfig {
    TopicConfig::default()
        .cleanup_policy(CleanupPolicy::Compact)
        .segment_bytes(segment_bytes)
}

/// A log whose background cleaner stays out of the way: the benchmark
/// compacts on demand.
fn open_log(dir: &Path) -> Log {
    Log::open(
        dir.join("log"),
        LogConfig::default().cleaner_backoff(Duration::from_secs(24 * 3600)),
    )
    .expect("open log")
}

/// The partition's sealed segment files (all `.log` files but the last) and
/// their total size.
fn sealed_file_bytes(dir: &Path, topic: &str) -> (Vec<PathBuf>, u64) {
    let mut logs = common::segment_files(&dir.join("log").join(format!("{topic}-0")));
    logs.pop();
    let bytes = logs
        .iter()
        .map(|p| fs::metadata(p).expect("segment metadata").len())
        .sum();
    (logs, bytes)
}

/// Reads `files` whole, 4 MiB at a time.
fn read_files(files: &[PathBuf]) -> Duration {
    let mut buf = vec![0u8; 4 << 20];
    let start = Instant::now();
    for path in files {
        let mut file = fs::File::open(path).expect("open segment");
        loop {
            let n = file.read(&mut buf).expect("read segment");
            if n == 0 {
                break;
            }
            black_box(&buf[..n]);
        }
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// 1. Compaction throughput
// ---------------------------------------------------------------------------

struct CompactionRun {
    time: Duration,
    cpu: Duration,
    read_files: Duration,
    bytes_read: u64,
    bytes_written: u64,
    records_removed: u64,
}

/// Fills a fresh compacted partition with at least `bytes` of sealed
/// segments, then times `compact_now` on it.
fn compaction_run(pool: &[Vec<Record>], bytes: u64, seed: u64) -> CompactionRun {
    let dir = scratch_dir("cleaner-");
    let log = open_log(dir.path());
    log.create_topic(COMPACTED, compacted_config(COMPACT_SEGMENT_BYTES))
        .expect("create compacted topic");
    let sealed = Filler::new(pool, seed).seal(&log, COMPACTED, bytes);
    let (files, file_bytes) = sealed_file_bytes(dir.path(), COMPACTED);
    assert_eq!(
        file_bytes, sealed,
        "sealed bytes by describe_topic and by the files"
    );
    let read_time = read_files(&files);

    let cpu = thread_cpu_time();
    let start = Instant::now();
    let stats = log.compact_now(COMPACTED, 0).expect("compact");
    let time = start.elapsed();
    let cpu = thread_cpu_time() - cpu;

    assert_eq!(
        stats.bytes_read, sealed,
        "one pass over exactly the sealed segments (nothing compacted them before)"
    );
    check_compacted(&log);
    discard(log);
    CompactionRun {
        time,
        cpu,
        read_files: read_time,
        bytes_read: stats.bytes_read,
        bytes_written: stats.bytes_written,
        records_removed: stats.records_removed,
    }
}

/// Below the active segment every key is left once.
fn check_compacted(log: &Log) {
    let description = log.describe_topic(COMPACTED).expect("describe topic");
    let end = description.partitions[0].log_end_offset;
    let mut keys = HashSet::new();
    let mut offset = 0;
    let mut duplicates = 0u64;
    let mut records = 0u64;
    // The active segment holds one batch, the last 1,000 offsets at most.
    let active_from = end - RECORDS_PER_BATCH as i64;
    while offset < active_from {
        let fetch = log.read(COMPACTED, 0, offset, 8 << 20).expect("read");
        if fetch.is_empty() {
            break;
        }
        for record in fetch.records() {
            let record = record.expect("record");
            if record.offset >= active_from {
                continue;
            }
            records += 1;
            if !keys.insert(record.key.expect("a key").to_vec()) {
                duplicates += 1;
            }
        }
        offset = fetch.next_offset();
    }
    assert_eq!(duplicates, 0, "every key once below the active segment");
    assert_eq!(keys.len(), DISTINCT_KEYS, "every key kept");
    assert_eq!(records, DISTINCT_KEYS as u64);
}

// ---------------------------------------------------------------------------
// 2. Cost to foreground appends
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
struct Timing {
    wall: Duration,
    cpu: Duration,
    /// Time the thread was runnable but waited for a core (from
    /// `/proc/thread-self/schedstat`; zero where that is missing).
    runnable: Duration,
}

impl Timing {
    /// Off-core time not spent waiting for a core: blocked on I/O, page
    /// cache throttling or locks.
    fn blocked(&self) -> Duration {
        self.wall.saturating_sub(self.cpu + self.runnable)
    }
}

/// The calling thread's time spent waiting on a run queue so far.
fn thread_runnable_time() -> Duration {
    let text = fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let waited_ns = text
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(waited_ns)
}

/// What the cleaning thread did during one round.
#[derive(Clone, Copy, Debug, Default)]
struct CleanerWork {
    passes: u64,
    compacting: Duration,
    redirtying: Duration,
    bytes_read: u64,
}

/// Appends `batches` batches to the foreground topic of a fresh log whose
/// compacted partition holds `BUSY_PRELOAD_BYTES` of dirty data; with
/// `cleaning`, a second thread compacts that partition in a loop meanwhile.
fn append_round(
    pool: &[Vec<Record>],
    foreground: &[Record],
    batches: u64,
    cleaning: bool,
) -> (Timing, CleanerWork) {
    let dir = scratch_dir("cleaner-");
    let log = open_log(dir.path());
    log.create_topic(FOREGROUND, TopicConfig::default())
        .expect("create foreground topic");
    log.create_topic(COMPACTED, compacted_config(BUSY_SEGMENT_BYTES))
        .expect("create compacted topic");
    let mut filler = Filler::new(pool, 7);
    filler.seal(&log, COMPACTED, BUSY_PRELOAD_BYTES);

    let stop = AtomicBool::new(false);
    let start = Barrier::new(2);
    let (timing, work) = thread::scope(|scope| {
        let cleaner = cleaning.then(|| {
            let (log, stop, start) = (&log, &stop, &start);
            scope.spawn(move || {
                let mut work = CleanerWork::default();
                start.wait();
                while !stop.load(Ordering::Acquire) {
                    let began = Instant::now();
                    let stats = log.compact_now(COMPACTED, 0).expect("compact");
                    work.compacting += began.elapsed();
                    work.bytes_read += stats.bytes_read;
                    work.passes += 1;
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let began = Instant::now();
                    filler.seal(log, COMPACTED, BUSY_REDIRTY_BYTES);
                    work.redirtying += began.elapsed();
                }
                work
            })
        });
        if cleaning {
            start.wait();
        }
        let runnable = thread_runnable_time();
        let cpu = thread_cpu_time();
        let began = Instant::now();
        for _ in 0..batches {
            black_box(log.append(FOREGROUND, 0, foreground).expect("append"));
        }
        let timing = Timing {
            wall: began.elapsed(),
            cpu: thread_cpu_time() - cpu,
            runnable: thread_runnable_time() - runnable,
        };
        stop.store(true, Ordering::Release);
        let work = cleaner
            .map(|h| h.join().expect("cleaning thread"))
            .unwrap_or_default();
        (timing, work)
    });
    discard(log);
    (timing, work)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn main() {
    let full = bench_mode();
    print_load("start");
    let compact_bytes = size_from_env("BROOKLET_BENCH_COMPACT_BYTES", 1 << 30, full, 1);
    let criterion_bytes =
        size_from_env("BROOKLET_BENCH_COMPACT_CRITERION_BYTES", 128 * MIB, full, 1);
    let compact_reps = size_from_env("BROOKLET_BENCH_COMPACT_REPS", 3, full, 1).max(1);
    let append_batches = size_from_env("BROOKLET_BENCH_APPEND_BATCHES", 8000, full, 20);
    println!(
        "sizes: compaction of >= {} MiB ({compact_reps} runs; criterion: {} MiB), \
         {append_batches} foreground batches per append round",
        compact_bytes / MIB,
        criterion_bytes / MIB
    );
    let pool = key_pool();
    let foreground = make_records(RECORDS_PER_BATCH);

    let mut criterion = common::criterion(Duration::from_secs(3));

    let mut group = criterion.benchmark_group("compact_now_100k_keys");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(criterion_bytes));
    let mut seed = 1u64;
    group.bench_function(format!("{}_mib_dirty", criterion_bytes / MIB), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    seed += 1;
                    let run = compaction_run(&pool, criterion_bytes, seed);
                    // Scaled to exactly `criterion_bytes` for the throughput.
                    run.time
                        .mul_f64(criterion_bytes as f64 / run.bytes_read as f64)
                })
                .sum()
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("append_1000_records_while_cleaning");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(append_batches));
    for (name, cleaning) in [("without_cleaner", false), ("with_cleaner", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        append_round(&pool, &foreground, append_batches, cleaning)
                            .0
                            .wall
                    })
                    .sum()
            })
        });
    }
    group.finish();
    criterion.final_summary();

    // The figures to quote.
    let mut lines = Vec::new();
    let mut runs = Vec::new();
    for rep in 0..compact_reps {
        let run = compaction_run(&pool, compact_bytes, 1000 + rep);
        println!(
            "compaction run {rep}: {:.1} MB in {:.3} s ({:.0} MB/s; CPU {:.3} s), \
             {:.1} MB written, {} records removed; reading the files: {:.0} MB/s",
            mb(run.bytes_read),
            run.time.as_secs_f64(),
            mb(run.bytes_read) / run.time.as_secs_f64(),
            run.cpu.as_secs_f64(),
            mb(run.bytes_written),
            run.records_removed,
            mb(run.bytes_read) / run.read_files.as_secs_f64(),
        );
        runs.push(run);
    }
    let rates: Vec<f64> = runs
        .iter()
        .map(|r| mb(r.bytes_read) / r.time.as_secs_f64())
        .collect();
    let cpu_rates: Vec<f64> = runs
        .iter()
        .map(|r| mb(r.bytes_read) / r.cpu.as_secs_f64().max(1e-9))
        .collect();
    let read_rates: Vec<f64> = runs
        .iter()
        .map(|r| mb(r.bytes_read) / r.read_files.as_secs_f64())
        .collect();
    let rate = median(&rates);
    let last = &runs[runs.len() - 1];
    let reclaimed = last.bytes_read - last.bytes_written;
    lines.push(format!(
        "compaction throughput = {rate:.0} MB/s ({:.0} MiB/s; median of {}, runs [{}]; goal >= {COMPACTION_GOAL_MB_S} MB/s: {})",
        rate * 1e6 / MIB as f64,
        rates.len(),
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        if rate >= COMPACTION_GOAL_MB_S {
            "met"
        } else {
            "MISSED"
        }
    ));
    lines.push(format!(
        "compaction throughput per CPU second = {:.0} MB/s (median)",
        median(&cpu_rates)
    ));
    lines.push(format!(
        "reading the same segment files (page cache) = {:.0} MB/s (median); \
         ratio compaction/read = {:.3}",
        median(&read_rates),
        rate / median(&read_rates)
    ));
    lines.push(format!(
        "space reclaimed = {:.1} MB of {:.1} MB read ({:.2}% reclaimed; written/read = {:.4}), \
         {} records removed",
        mb(reclaimed),
        mb(last.bytes_read),
        100.0 * reclaimed as f64 / last.bytes_read as f64,
        last.bytes_written as f64 / last.bytes_read as f64,
        last.records_removed,
    ));

    let mut wall = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut work = CleanerWork::default();
    let mut timings: [Vec<Timing>; 2] = [Vec::new(), Vec::new()];
    for v in rotation(reps(full), 2) {
        let (timing, done) = append_round(&pool, &foreground, append_batches, v == 1);
        wall[v].push(append_batches as f64 / timing.wall.as_secs_f64());
        cpu[v].push(append_batches as f64 / timing.cpu.as_secs_f64().max(1e-9));
        timings[v].push(timing);
        work.passes += done.passes;
        work.compacting += done.compacting;
        work.redirtying += done.redirtying;
        work.bytes_read += done.bytes_read;
    }
    for (v, name) in ["without cleaner", "with cleaner"].iter().enumerate() {
        let secs = |f: fn(&Timing) -> Duration| {
            median(
                &timings[v]
                    .iter()
                    .map(|t| f(t).as_secs_f64())
                    .collect::<Vec<_>>(),
            )
        };
        lines.push(format!(
            "  appends {name:<16} median {:>8.0} batches/s ({:.0} records/s); appending thread \
             (medians): wall {:.3} s = on a core {:.3} s + waiting for a core {:.3} s + blocked {:.3} s",
            median(&wall[v]),
            median(&wall[v]) * RECORDS_PER_BATCH as f64,
            secs(|t| t.wall),
            secs(|t| t.cpu),
            secs(|t| t.runnable),
            secs(Timing::blocked),
        ));
    }
    lines.push(ratio_line_without_best(
        "append_with_cleaner/without",
        &wall[1],
        &wall[0],
        Some(APPEND_GOAL_RATIO),
    ));
    lines.push(ratio_line_without_best(
        "cpu:append_with_cleaner/without",
        &cpu[1],
        &cpu[0],
        None,
    ));
    let busy = work.compacting + work.redirtying;
    let window: f64 = wall[1]
        .iter()
        .map(|rate| append_batches as f64 / rate)
        .sum();
    lines.push(format!(
        "  cleaning thread: {} passes, {:.1} MB cleaned, busy {:.2} s over {window:.2} s of appends \
         with cleaner: {:.0}% of it compacting, {:.0}% re-dirtying",
        work.passes,
        mb(work.bytes_read),
        busy.as_secs_f64(),
        100.0 * work.compacting.as_secs_f64() / busy.as_secs_f64().max(1e-9),
        100.0 * work.redirtying.as_secs_f64() / busy.as_secs_f64().max(1e-9),
    ));

    println!("\n=== cleaner: figures (Instant) ===");
    for line in &lines {
        println!("{line}");
    }
    print_parallelism();
    print_load("end");
}
