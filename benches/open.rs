//! Open time after a clean shutdown, and resident memory while a partition
//! grows.
//!
//! 1. Open: a log with one partition of 1,000 segments (built once with
//!    4 KiB segments, then closed cleanly) is opened again and again.
//!    Criterion times `Log::open` alone (the `close` that must follow each
//!    open is left out of the measurement); an `Instant` loop then reports
//!    open alone, close alone and open + close. Goal: open under 50 ms.
//! 2. Resident memory: `BROOKLET_BENCH_RSS_RECORDS` records (default 10
//!    million) with 16-byte keys and 100-byte values are appended in
//!    1,000-record batches to one partition with 64 MiB segments (about
//!    1.2 GB of disk, so the partition rolls many times). RSS from
//!    `/proc/self/statm` is printed every 1/10 of the run (every million
//!    records by default); it should stay flat rather than grow with the
//!    log. This part is a plain measurement, not a criterion benchmark.
//!
//! Data goes to `target/bench-scratch` (same filesystem as the repository;
//! `/tmp` may be tmpfs). Run with `cargo bench --bench open`. Under
//! `cargo test --benches` the sizes shrink to a smoke test.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use brooklet::{Log, LogConfig, TopicConfig};
use criterion::SamplingMode;

use common::{
    bench_mode, criterion_mean_ns, discard, env_size, make_records, print_df, print_load,
    scratch_dir,
};

const TOPIC: &str = "bench";
/// Segments of the log that is opened.
const OPEN_SEGMENTS: usize = 1000;
/// Segment size for the open benchmark: tiny, so 1,000 segments are quick
/// to build.
const OPEN_SEGMENT_BYTES: u32 = 4096;
const OPEN_GOAL_MS: f64 = 50.0;
const DEFAULT_RSS_RECORDS: u64 = 10_000_000;
const RSS_SEGMENT_BYTES: u32 = 64 << 20;
const RSS_BATCH_RECORDS: usize = 1000;

fn segment_count(log: &Log) -> usize {
    log.describe_topic(TOPIC)
        .expect("describe topic")
        .partitions[0]
        .segment_count
}

/// Builds a cleanly closed log whose one partition has `segments` segments.
/// Returns the log end offset.
fn build_open_log(dir: &Path, segments: usize) -> i64 {
    let log = Log::open(dir, LogConfig::default()).expect("open log");
    log.create_topic(
        TOPIC,
        TopicConfig::default().segment_bytes(OPEN_SEGMENT_BYTES),
    )
    .expect("create topic");
    let records = make_records(10);
    while segment_count(&log) < segments {
        log.append(TOPIC, 0, &records).expect("append");
    }
    let end = log.offsets(TOPIC, 0).expect("offsets").log_end_offset;
    log.close().expect("close log");
    end
}

/// Opens the log, checks it came back whole, and returns it with the time
/// `Log::open` took.
fn timed_open(dir: &Path, end: i64) -> (Log, Duration) {
    let start = Instant::now();
    let log = Log::open(dir, LogConfig::default()).expect("open log");
    let elapsed = start.elapsed();
    assert_eq!(
        log.offsets(TOPIC, 0).expect("offsets").log_end_offset,
        end,
        "the log reopened with all its records"
    );
    (log, elapsed)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "  {name:<12} median {median:>7.2} ms  min {:>7.2} ms  max {:>7.2} ms  ({} runs)",
        values[0],
        values[values.len() - 1],
        values.len()
    );
    median
}

/// Resident set size in bytes, from `/proc/self/statm` (second field, in
/// pages).
fn rss_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages in /proc/self/statm");
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).expect("positive page size")
}

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Appends `total` records in 1,000-record batches to a partition with
/// 64 MiB segments, printing RSS along the way.
fn rss_check(total: u64) {
    let dir = scratch_dir("rss-");
    let log = Log::open(dir.path().join("log"), LogConfig::default()).expect("open log");
    log.create_topic(
        TOPIC,
        TopicConfig::default().segment_bytes(RSS_SEGMENT_BYTES),
    )
    .expect("create topic");
    let records = make_records(RSS_BATCH_RECORDS);
    let batch = RSS_BATCH_RECORDS as u64;
    let step = (total / 10).max(batch) / batch * batch;
    println!(
        "\n=== open: resident memory while appending {total} records ({RSS_BATCH_RECORDS}-record batches, {} MiB segments) into {} ===",
        RSS_SEGMENT_BYTES >> 20,
        dir.path().display()
    );
    println!(
        "  {:>12} {:>10} {:>9} {:>10} {:>6}",
        "records", "RSS MiB", "segments", "log GiB", "fds"
    );
    let mut series = Vec::new();
    let mut point = |appended: u64, log: &Log| {
        let rss = rss_bytes();
        let description = log.describe_topic(TOPIC).expect("describe topic");
        let partition = &description.partitions[0];
        println!(
            "  {appended:>12} {:>10.1} {:>9} {:>10.2} {:>6}",
            mib(rss),
            partition.segment_count,
            partition.size_bytes as f64 / f64::from(1u32 << 30),
            open_fds()
        );
        series.push(rss);
    };
    point(0, &log);
    let start = Instant::now();
    let mut appended = 0;
    while appended < total {
        log.append(TOPIC, 0, &records).expect("append");
        appended += batch;
        if appended % step == 0 || appended >= total {
            point(appended, &log);
        }
    }
    let elapsed = start.elapsed();
    println!(
        "  appended {appended} records in {elapsed:.1?} ({:.0} records/s)",
        appended as f64 / elapsed.as_secs_f64()
    );
    print_df(dir.path());
    // The data is about to be deleted: stop without flushing it.
    discard(log);

    // Flat means: after the first point with data, RSS does not grow with
    // the log. Compare the first step's RSS with the largest later one.
    if series.len() >= 3 {
        let first = series[1];
        let peak = series[1..].iter().copied().max().unwrap_or(first);
        let last = series[series.len() - 1];
        println!(
            "rss after first step = {:.1} MiB, peak = {:.1} MiB, last = {:.1} MiB",
            mib(first),
            mib(peak),
            mib(last)
        );
        println!(
            "ratio rss_peak/rss_after_first_step = {:.3} (growth {:+.1} MiB over {} records; flat means ~1.0)",
            peak as f64 / first as f64,
            mib(peak) - mib(first),
            total - step
        );
    }
}

fn main() {
    let full = bench_mode();
    print_load("start");
    let segments = if full { OPEN_SEGMENTS } else { 20 };
    let rss_records = env_size("BROOKLET_BENCH_RSS_RECORDS").unwrap_or(if full {
        DEFAULT_RSS_RECORDS
    } else {
        20_000
    });

    let dir = scratch_dir("open-");
    let log_dir = dir.path().join("log");
    let started = Instant::now();
    let end = build_open_log(&log_dir, segments);
    let files = fs::read_dir(log_dir.join(format!("{TOPIC}-0")))
        .expect("list partition")
        .count();
    println!(
        "built a log of {segments} segments ({end} records, {files} files in the partition directory) in {:.1?} under {}",
        started.elapsed(),
        log_dir.display()
    );
    print_df(dir.path());
    // One untimed round trip warms the directory and inode caches.
    let (log, _) = timed_open(&log_dir, end);
    log.close().expect("close log");

    let criterion_started = SystemTime::now();
    let mut criterion = common::criterion(Duration::from_secs(2));
    let mut group = criterion.benchmark_group("open_after_clean_shutdown");
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function(format!("open_{segments}_segments"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (log, elapsed) = timed_open(&log_dir, end);
                total += elapsed;
                log.close().expect("close log");
            }
            total
        })
    });
    group.finish();
    criterion.final_summary();

    let runs = if full { 30 } else { 2 };
    let (mut opens, mut closes, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (log, open) = timed_open(&log_dir, end);
        let start = Instant::now();
        log.close().expect("close log");
        let close = start.elapsed();
        opens.push(millis(open));
        closes.push(millis(close));
        both.push(millis(open + close));
    }
    println!("\n=== open: {segments} segments, clean shutdown (Instant) ===");
    let open_median = summary("open", &mut opens);
    summary("close", &mut closes);
    summary("open+close", &mut both);
    let verdict = if open_median < OPEN_GOAL_MS {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "ratio open_ms/goal_ms = {:.3} (open median {open_median:.2} ms; goal < {OPEN_GOAL_MS} ms: {verdict})",
        open_median / OPEN_GOAL_MS
    );
    let bench = format!("open_{segments}_segments");
    match criterion_mean_ns("open_after_clean_shutdown", &bench, criterion_started) {
        Some(ns) => println!(
            "criterion mean open = {:.2} ms (goal < {OPEN_GOAL_MS} ms)",
            ns / 1e6
        ),
        None => println!("criterion mean open = n/a (no estimate from this run)"),
    }
    drop(dir);

    rss_check(rss_records);
    print_load("end");
}
