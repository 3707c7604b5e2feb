//! Sequential read throughput of one large partition through brooklet's
//! record iterator, as a ratio against plain `read` of the same segment
//! files measured in the same run (the machine is shared and noisy).
//!
//! The partition holds `BROOKLET_BENCH_READ_BYTES` bytes (default 1 GiB) of
//! 1,000-record batches with 16-byte keys and 100-byte values, in default
//! (1 GiB) segments. Both sides read from a warm page cache: each is run
//! once before anything is timed.
//!
//! - brooklet: `log.reader(..)` + `next_into` + `fetch.records()` (which
//!   checks every batch's CRC-32C), touching each record's value;
//! - baseline: `read` of each segment file into a 1 MiB buffer (the reader's
//!   default fetch size);
//! - for diagnosis: the same `read` plus CRC-32C over every buffer, the
//!   least work a checked read can do.
//!
//! Goal: brooklet / plain read >= 0.6. The ratios are printed as
//! `ratio <name> = X` at the end. Data goes to `target/bench-scratch` (same
//! filesystem as the repository; `/tmp` may be tmpfs).
//!
//! Run with `cargo bench --bench read`. Under `cargo test --benches` the
//! partition shrinks to a smoke test.

mod common;

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use brooklet::{DEFAULT_MAX_FETCH_BYTES, Fetch, Log, LogConfig, TopicConfig};
use criterion::{SamplingMode, Throughput};

use common::{
    bench_mode, best, criterion_mean_ns, env_size, make_records, median, print_df, print_load,
    ratio_line, reps, rotation, thread_cpu_time,
};

const TOPIC: &str = "bench";
const RECORDS_PER_BATCH: usize = 1000;
const DEFAULT_READ_BYTES: u64 = 1 << 30;

/// Bytes of log to read, from `BROOKLET_BENCH_READ_BYTES` (also in the
/// smoke run).
fn read_bytes(full: bool) -> u64 {
    env_size("BROOKLET_BENCH_READ_BYTES").unwrap_or(if full { DEFAULT_READ_BYTES } else { 4 << 20 })
}

/// Appends 1,000-record batches until the partition holds at least
/// `target_bytes`, then flushes so no write-back runs during the reads.
fn build(log: &Log, target_bytes: u64) -> u64 {
    let records = make_records(RECORDS_PER_BATCH);
    log.create_topic(TOPIC, TopicConfig::default())
        .expect("create topic");
    let mut size = 0;
    while size < target_bytes {
        for _ in 0..64 {
            log.append(TOPIC, 0, &records).expect("append");
        }
        size = partition_size(log);
    }
    log.flush().expect("flush");
    size
}

fn partition_size(log: &Log) -> u64 {
    log.describe_topic(TOPIC)
        .expect("describe topic")
        .partitions[0]
        .size_bytes
}

/// The partition's segment files, in offset order.
fn segment_files(log: &Log) -> Vec<PathBuf> {
    common::segment_files(&log.dir().join(format!("{TOPIC}-0")))
}

/// What a scan saw: records (or reads) and a value that depends on the
/// bytes, so nothing is optimised away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    count: u64,
    bytes: u64,
    digest: u64,
}

/// Reads the whole partition through the record iterator, touching the
/// first and last byte of every value.
fn scan_brooklet(log: &Log, fetch: &mut Fetch) -> Scan {
    let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
    let mut scan = Scan {
        count: 0,
        bytes: 0,
        digest: 0,
    };
    while reader.next_into(fetch).expect("read") {
        scan.bytes += fetch.bytes().len() as u64;
        for record in fetch.records() {
            let record = record.expect("valid record");
            let value = record.value.expect("a value");
            scan.count += 1;
            scan.digest = scan
                .digest
                .wrapping_add(u64::from(value[0]) + u64::from(value[value.len() - 1]));
        }
    }
    black_box(scan)
}

/// Reads every segment file with plain `read` into `buffer`; with `crc`,
/// also computes CRC-32C over what was read.
fn scan_files(files: &[PathBuf], buffer: &mut [u8], crc: bool) -> Scan {
    let mut scan = Scan {
        count: 0,
        bytes: 0,
        digest: 0,
    };
    for path in files {
        let mut file = File::open(path).expect("open segment file");
        loop {
            let n = file.read(buffer).expect("read segment file");
            if n == 0 {
                break;
            }
            scan.count += 1;
            scan.bytes += n as u64;
            let touched = if crc {
                u64::from(crc32c::crc32c(&buffer[..n]))
            } else {
                u64::from(buffer[n - 1])
            };
            scan.digest = scan.digest.wrapping_add(touched);
        }
    }
    black_box(scan)
}

fn main() {
    let full = bench_mode();
    print_load("start");
    let target_bytes = read_bytes(full);
    let dir = common::scratch_dir("read-");
    let log = Log::open(dir.path().join("log"), LogConfig::default()).expect("open log");
    let started = Instant::now();
    let size = build(&log, target_bytes);
    let files = segment_files(&log);
    let records = log.offsets(TOPIC, 0).expect("offsets").log_end_offset;
    println!(
        "built {size} bytes ({:.2} GiB), {records} records, {} segment file(s) in {:.1?} under {}",
        size as f64 / f64::from(1u32 << 30),
        files.len(),
        started.elapsed(),
        dir.path().display()
    );
    print_df(dir.path());

    let mut fetch = Fetch::new();
    let mut buffer = vec![0u8; DEFAULT_MAX_FETCH_BYTES];
    // Warm the page cache (and check both sides see the same data).
    let warm = scan_brooklet(&log, &mut fetch);
    assert_eq!(
        warm.count,
        u64::try_from(records).expect("offsets are >= 0")
    );
    assert_eq!(warm.bytes, size);
    let plain = scan_files(&files, &mut buffer, false);
    assert_eq!(plain.bytes, size);

    let criterion_started = SystemTime::now();
    let mut criterion = common::criterion(Duration::from_secs(3));
    let mut group = criterion.benchmark_group("read_partition");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("brooklet_records", |b| {
        b.iter(|| scan_brooklet(&log, &mut fetch))
    });
    group.bench_function("plain_read", |b| {
        b.iter(|| scan_files(&files, &mut buffer, false))
    });
    group.bench_function("read_crc32c", |b| {
        b.iter(|| scan_files(&files, &mut buffer, true))
    });
    group.finish();
    criterion.final_summary();

    // Interleaved fixed-work runs timed with Instant: the ratios to quote.
    let reps = reps(full);
    let mut rates = vec![Vec::new(); 3];
    let mut cpu_rates = vec![Vec::new(); 3];
    for variant in rotation(reps, 3) {
        let cpu = thread_cpu_time();
        let start = Instant::now();
        let scan = match variant {
            0 => scan_brooklet(&log, &mut fetch),
            1 => scan_files(&files, &mut buffer, false),
            _ => scan_files(&files, &mut buffer, true),
        };
        black_box(scan);
        let seconds = start.elapsed().as_secs_f64();
        let cpu_seconds = (thread_cpu_time() - cpu).as_secs_f64().max(1e-9);
        rates[variant].push(size as f64 / seconds / f64::from(1u32 << 20));
        cpu_rates[variant].push(size as f64 / cpu_seconds / f64::from(1u32 << 20));
    }
    println!("\n=== read: figures (Instant, whole partition, {reps} interleaved runs) ===");
    for (k, name) in ["brooklet records()", "plain read", "read + crc32c"]
        .iter()
        .enumerate()
    {
        println!(
            "  {name:<20} median {:>8.0} MiB/s (best {:.0}), {:.0} records/s",
            median(&rates[k]),
            best(&rates[k]),
            median(&rates[k]) * f64::from(1u32 << 20) / size as f64 * records as f64,
        );
    }
    println!(
        "{}",
        ratio_line("read_records/plain_read", &rates[0], &rates[1], Some(0.6))
    );
    println!(
        "{}",
        ratio_line("read_records/read_crc32c", &rates[0], &rates[2], None)
    );
    println!(
        "{}",
        ratio_line("read_crc32c/plain_read", &rates[2], &rates[1], None)
    );
    println!("(`cpu:` ratios use the reading thread's CPU time instead of wall time)");
    println!(
        "{}",
        ratio_line(
            "cpu:read_records/plain_read",
            &cpu_rates[0],
            &cpu_rates[1],
            None
        )
    );
    println!(
        "{}",
        ratio_line(
            "cpu:read_records/read_crc32c",
            &cpu_rates[0],
            &cpu_rates[2],
            None
        )
    );
    println!("=== read: the same ratios from criterion's mean times ===");
    for (name, a, b) in [
        ("read_records/plain_read", "brooklet_records", "plain_read"),
        (
            "read_records/read_crc32c",
            "brooklet_records",
            "read_crc32c",
        ),
        ("read_crc32c/plain_read", "read_crc32c", "plain_read"),
    ] {
        let mean = |bench| criterion_mean_ns("read_partition", bench, criterion_started);
        match (mean(a), mean(b)) {
            (Some(a_ns), Some(b_ns)) => println!(
                "ratio criterion:{name} = {:.3} (criterion means {a}: {:.1} ms, {b}: {:.1} ms per scan)",
                b_ns / a_ns,
                a_ns / 1e6,
                b_ns / 1e6
            ),
            _ => println!("ratio criterion:{name} = n/a (no estimates from this run)"),
        }
    }
    print_load("end");
    log.close().expect("close log");
}
