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

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use brooklet::{DEFAULT_MAX_FETCH_BYTES, Fetch, Log, LogConfig, Record, TopicConfig};
use criterion::{Criterion, SamplingMode, Throughput};
use tempfile::TempDir;

const TOPIC: &str = "bench";
const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const RECORDS_PER_BATCH: usize = 1000;
const DEFAULT_READ_BYTES: u64 = 1 << 30;
/// Interleaved repetitions for the printed ratios.
const REPS: usize = 5;

/// Whether this is a real benchmark run (`cargo bench`) rather than the
/// smoke run `cargo test --benches` does.
fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn scratch_dir() -> TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-scratch");
    fs::create_dir_all(&root).expect("create target/bench-scratch");
    tempfile::Builder::new()
        .prefix("read-")
        .tempdir_in(root)
        .expect("create a scratch directory")
}

fn print_df(path: &Path) {
    match std::process::Command::new("df")
        .arg("-h")
        .arg(path)
        .output()
    {
        Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(err) => println!("(df failed: {err})"),
    }
}

fn print_load(when: &str) {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at {when}: {}", load.trim());
}

/// Bytes of log to read, from `BROOKLET_BENCH_READ_BYTES`.
fn read_bytes(full: bool) -> u64 {
    match std::env::var("BROOKLET_BENCH_READ_BYTES") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("BROOKLET_BENCH_READ_BYTES must be a number of bytes"),
        Err(_) if full => DEFAULT_READ_BYTES,
        Err(_) => 4 << 20,
    }
}

/// 1,000 records with distinct 16-byte keys and pseudo-random values.
fn make_records() -> Vec<Record> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..RECORDS_PER_BATCH)
        .map(|i| {
            let key = format!("{i:0width$}", width = KEY_BYTES);
            let value: Vec<u8> = (0..VALUE_BYTES)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 32) as u8
                })
                .collect();
            Record::new(value).key(key)
        })
        .collect()
}

/// Appends 1,000-record batches until the partition holds at least
/// `target_bytes`, then flushes so no write-back runs during the reads.
fn build(log: &Log, target_bytes: u64) -> u64 {
    let records = make_records();
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
    let dir = log.dir().join(format!("{TOPIC}-0"));
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("list partition directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
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

/// Criterion's mean time per iteration, in nanoseconds, of `group/bench`,
/// read back from the `estimates.json` it wrote during this run (`None` if
/// it wrote none since `since`, e.g. when a filter skipped the benchmark).
fn criterion_mean_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("criterion")
        });
    let path = home
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    if fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let text = fs::read_to_string(path).ok()?;
    let mean = &text[text.find("\"mean\"")?..];
    const KEY: &str = "\"point_estimate\":";
    let value = &mean[mean.find(KEY)? + KEY.len()..];
    value[..value.find([',', '}'])?].parse().ok()
}

/// CPU time the calling thread has used so far (user + system): less
/// disturbed than wall time by other processes taking the cores.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(now.tv_sec).expect("non-negative seconds"),
        u32::try_from(now.tv_nsec).expect("nanoseconds below 1e9"),
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}

fn ratio_line(name: &str, a: &[f64], b: &[f64], goal: Option<f64>) -> String {
    let ratio = median(a) / median(b);
    let per_run: Vec<String> = a
        .iter()
        .zip(b)
        .map(|(x, y)| format!("{:.2}", x / y))
        .collect();
    let verdict = match goal {
        Some(goal) if ratio >= goal => format!("; goal >= {goal}: met"),
        Some(goal) => format!("; goal >= {goal}: MISSED"),
        None => String::new(),
    };
    format!(
        "ratio {name} = {ratio:.3} (median of {n}; best/best {bb:.3}; per run [{}]{verdict})",
        per_run.join(", "),
        n = a.len(),
        bb = best(a) / best(b),
    )
}

fn main() {
    let full = bench_mode();
    print_load("start");
    let target_bytes = read_bytes(full);
    let dir = scratch_dir();
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
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
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
    let reps = if full { REPS } else { 1 };
    let mut rates = vec![Vec::new(); 3];
    let mut cpu_rates = vec![Vec::new(); 3];
    for rep in 0..reps {
        for k in 0..3 {
            let variant = (k + rep) % 3;
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
