//! Append throughput, each figure a ratio against plain file writes of the
//! same bytes measured in the same run (the machine is shared and noisy, so
//! absolute numbers mean little on their own).
//!
//! Scenarios, all with 16-byte keys and 100-byte values on one topic whose
//! segments are large enough never to roll:
//! 1. 1,000-record batches, `Durability::Os`, vs `write_all` of the encoded
//!    batches (read back from brooklet's own segment file) in the same
//!    chunks. Goal >= 0.7.
//! 2. 1-record batches (one append per record) vs one `write` per encoded
//!    1-record batch. Goal >= 0.8. Also reported: the same `write`s in a
//!    process without the log's threads, where Linux skips the per-call
//!    reference count on the file (see `write_round`).
//! 3. 1,000-record batches with `Durability::EveryAppend` vs `write_all` +
//!    `File::sync_data` per batch. Goal >= 0.8.
//! 4. Group commit: 1, 2 and 4 threads appending 1-record batches with
//!    `EveryAppend` to one partition, vs one thread doing `write` +
//!    `fdatasync` per record. Appends/s should grow with the thread count.
//! 5. Two threads on two partitions vs one thread on one partition
//!    (`Durability::Os`, 1-record and 100-record batches). Goal >= 1.5 on a
//!    quiet machine; the same scaling of plain writes to two files is
//!    measured alongside, as what the machine allows at the moment.
//!
//! Every baseline that writes from one thread does so while an idle log is
//! open, so the process has the same threads as when brooklet appends.
//!
//! Criterion times every variant; then each pair is re-run interleaved
//! (the order rotating each repetition) over a fixed amount of work with
//! `Instant`, and the ratios are printed as `ratio <name> = X` at the end,
//! three ways: wall-clock medians, `cpu:` (CPU time of the working threads,
//! steadier when other processes take the cores, blind to disk waits) and
//! `criterion:` (from criterion's mean times of this run). The fsync
//! scenarios size their work from a short probe, since fsync latency on a
//! shared disk varies tenfold from minute to minute. Data goes to
//! `target/bench-scratch` (same filesystem as the repository; `/tmp` may be
//! tmpfs) and every log is stopped with `Log::kill(TailLoss::None)` and
//! deleted, so its dirty pages are dropped instead of written back.
//!
//! Run with `cargo bench --bench append`. Under `cargo test --benches` the
//! sizes shrink to a smoke test.

mod common;

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use brooklet::{Durability, Log, LogConfig, Record, TopicConfig};
use criterion::Throughput;

use common::{
    Timing, bench_mode, criterion_mean_ns, discard, in_rounds, make_records, median, print_df,
    print_load, print_parallelism, ratio_line, reps, rotation, scaled, scratch_root,
    thread_cpu_time,
};

const TOPIC: &str = "bench";
/// The largest segment brooklet accepts: no roll (and so no background
/// fsync) happens during a round.
const NO_ROLL_SEGMENT_BYTES: u32 = i32::MAX as u32;

/// The record batches appended in turn: 1,000 one-record slices, or one
/// slice of `per_batch` records.
fn batches(records: &[Record], per_batch: usize) -> Vec<&[Record]> {
    records.chunks(per_batch).collect()
}

fn topic_config(durability: Durability, partitions: u32) -> TopicConfig {
    TopicConfig::default()
        .partitions(partitions)
        .segment_bytes(NO_ROLL_SEGMENT_BYTES)
        .durability(durability)
}

fn open_log(dir: &Path, config: &TopicConfig) -> Log {
    let log = Log::open(dir.join("log"), LogConfig::default()).expect("open log");
    log.create_topic(TOPIC, config.clone())
        .expect("create topic");
    log
}

/// Appends `n` batches (cycling through `batches`) to partition 0 of a fresh
/// log and returns the time the appends took.
fn append_round(config: &TopicConfig, batches: &[&[Record]], n: u64) -> Timing {
    let dir = common::scratch_dir("append-");
    let log = open_log(dir.path(), config);
    let cpu = thread_cpu_time();
    let start = Instant::now();
    for i in 0..n {
        let batch = batches[(i % batches.len() as u64) as usize];
        black_box(log.append(TOPIC, 0, batch).expect("append"));
    }
    let timing = Timing {
        wall: start.elapsed(),
        cpu: thread_cpu_time() - cpu,
    };
    discard(log);
    timing
}

/// Writes `n` chunks (cycling through `chunks`) to a new file, each with
/// one `write_all` and, with `sync`, one `fdatasync`, while an idle log is
/// open: the process then has the threads it has when brooklet appends.
/// Linux makes every file system call of a process with more than one
/// thread count a reference to the file (and `write` lock its position),
/// about 0.1 µs per call here; a baseline without those threads would
/// charge that to brooklet.
fn write_round(chunks: &[Vec<u8>], n: u64, sync: bool) -> Timing {
    let dir = common::scratch_dir("append-");
    let idle = Log::open(dir.path().join("idle-log"), LogConfig::default()).expect("open a log");
    let timing = write_round_alone(chunks, n, sync, dir.path());
    discard(idle);
    timing
}

/// [`write_round`] without the log's threads (unless others run), into
/// `dir`.
fn write_round_alone(chunks: &[Vec<u8>], n: u64, sync: bool, dir: &Path) -> Timing {
    let mut file = File::create(dir.join("baseline.log")).expect("create baseline file");
    let cpu = thread_cpu_time();
    let start = Instant::now();
    for i in 0..n {
        let chunk = &chunks[(i % chunks.len() as u64) as usize];
        file.write_all(chunk).expect("write");
        if sync {
            file.sync_data().expect("fdatasync");
        }
    }
    let timing = Timing {
        wall: start.elapsed(),
        cpu: thread_cpu_time() - cpu,
    };
    drop(file);
    timing
}

/// Runs `work` on one thread per job, all released together, and returns
/// the wall time from the release until the last thread finished and the
/// threads' CPU time summed.
fn timed_threads<J: Send>(jobs: Vec<J>, work: impl Fn(J) + Sync) -> Timing {
    let barrier = Barrier::new(jobs.len() + 1);
    thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    let cpu = thread_cpu_time();
                    work(job);
                    thread_cpu_time() - cpu
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let cpu = handles
            .into_iter()
            .map(|handle| handle.join().expect("working thread"))
            .sum();
        Timing {
            wall: start.elapsed(),
            cpu,
        }
    })
}

/// Appends from one thread per entry of `partitions` (the partition it
/// appends to), `per_thread` batches each, and returns the wall time from
/// the common start until the last thread finished.
fn threaded_round(
    config: &TopicConfig,
    partitions: &[u32],
    batches: &[&[Record]],
    per_thread: u64,
) -> Timing {
    let dir = common::scratch_dir("append-");
    let log = open_log(dir.path(), config);
    let timing = timed_threads(partitions.to_vec(), |partition| {
        for i in 0..per_thread {
            let batch = batches[(i % batches.len() as u64) as usize];
            black_box(log.append(TOPIC, partition, batch).expect("append"));
        }
    });
    discard(log);
    timing
}

/// The file-write counterpart of [`threaded_round`]: one thread per file,
/// each writing `per_thread` chunks with one `write_all` each.
fn threaded_write_round(chunks: &[Vec<u8>], threads: usize, per_thread: u64) -> Timing {
    let dir = common::scratch_dir("append-");
    let files: Vec<File> = (0..threads)
        .map(|t| File::create(dir.path().join(format!("baseline-{t}.log"))).expect("create file"))
        .collect();
    timed_threads(files, |mut file| {
        for i in 0..per_thread {
            let chunk = &chunks[(i % chunks.len() as u64) as usize];
            file.write_all(chunk).expect("write");
        }
    })
}

/// Criterion's `iters` for a threaded scenario are total appends; each thread
/// does its share and the time is scaled back to `iters`.
fn threaded_iters(
    config: &TopicConfig,
    partitions: &[u32],
    batches: &[&[Record]],
    iters: u64,
) -> Duration {
    let threads = partitions.len() as u64;
    let per_thread = (iters / threads).max(1);
    let elapsed = threaded_round(config, partitions, batches, per_thread).wall;
    elapsed.mul_f64(iters as f64 / (per_thread * threads) as f64)
}

/// Encodes batches exactly as brooklet stores them: appends `batches` once
/// each to a scratch log and splits its segment file at batch boundaries.
fn encoded_batches(batches: &[&[Record]]) -> Vec<Vec<u8>> {
    let dir = common::scratch_dir("append-");
    let log = open_log(dir.path(), &topic_config(Durability::Os, 1));
    for batch in batches {
        log.append(TOPIC, 0, batch).expect("append");
    }
    discard(log);
    let segment = dir
        .path()
        .join("log")
        .join(format!("{TOPIC}-0"))
        .join(format!("{:020}.log", 0));
    let bytes = fs::read(&segment).expect("read segment file");
    let mut chunks = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        // Kafka record batch v2: base offset (8 bytes), then the batch
        // length (4 bytes, big-endian) counting everything after it.
        let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let size = 12 + usize::try_from(length).expect("non-negative batch length");
        let (batch, tail) = rest.split_at(size);
        chunks.push(batch.to_vec());
        rest = tail;
    }
    assert_eq!(chunks.len(), batches.len(), "one stored batch per append");
    chunks
}

/// How many units make one run last about `target` (within `min..=max`),
/// from a short probe of `probe_units`: fsync latency on a shared disk
/// changes by an order of magnitude from one minute to the next, and a fixed
/// count would make the run too short to measure or far too long.
fn calibrated_units(
    target: Duration,
    probe_units: u64,
    min: u64,
    max: u64,
    mut probe: impl FnMut(u64) -> Timing,
) -> u64 {
    let per_unit = probe(probe_units).wall.as_secs_f64() / probe_units as f64;
    let units = (target.as_secs_f64() / per_unit.max(1e-9)) as u64;
    units.clamp(min, max)
}

/// Rates of interleaved runs of several variants over the same amount of
/// work: units per wall-clock second and units per CPU second, per variant.
/// The order rotates each repetition (see [`rotation`]).
fn interleaved(
    reps: usize,
    units: u64,
    variants: &mut [&mut dyn FnMut(u64) -> Timing],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut wall = vec![Vec::with_capacity(reps); variants.len()];
    let mut cpu = vec![Vec::with_capacity(reps); variants.len()];
    for v in rotation(reps, variants.len()) {
        let timing = variants[v](units);
        wall[v].push(units as f64 / timing.wall.as_secs_f64());
        cpu[v].push(units as f64 / timing.cpu.as_secs_f64().max(1e-9));
    }
    (wall, cpu)
}

/// The figures printed at the end of the run.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    criterion_lines: Vec<String>,
}

impl Report {
    fn rate(&mut self, name: &str, unit: &str, rates: &[f64], bytes_per_unit: Option<u64>) {
        let med = median(rates);
        let best = common::best(rates);
        let mib = bytes_per_unit
            .map(|b| format!(", {:.0} MiB/s", med * b as f64 / (1 << 20) as f64))
            .unwrap_or_default();
        self.lines.push(format!(
            "  {name:<48} median {med:>12.0} {unit}/s (best {best:.0}){mib}"
        ));
    }

    /// The throughput ratio A/B from criterion's mean times per iteration
    /// (both benchmarks count the same unit per iteration).
    fn criterion_ratio(&mut self, name: &str, group: &str, a: &str, b: &str, since: SystemTime) {
        let line = match (
            criterion_mean_ns(group, a, since),
            criterion_mean_ns(group, b, since),
        ) {
            (Some(a_ns), Some(b_ns)) => format!(
                "ratio criterion:{name} = {:.3} (criterion means {a}: {a_ns:.0} ns, {b}: {b_ns:.0} ns per iteration)",
                b_ns / a_ns
            ),
            _ => format!("ratio criterion:{name} = n/a (no estimates from this run)"),
        };
        self.criterion_lines.push(line);
    }

    fn ratio(&mut self, name: &str, a: &[f64], b: &[f64], goal: Option<f64>) {
        self.lines.push(ratio_line(name, a, b, goal));
    }
}

fn main() {
    let full = bench_mode();
    print_load("start");
    let root = scratch_root();
    println!("scratch data in {}:", root.display());
    print_df(&root);

    let records = make_records(1000);
    let big = batches(&records, 1000);
    let small = batches(&records, 1);
    let hundred = batches(&records, 100);
    let big_chunks = encoded_batches(&big);
    let small_chunks = encoded_batches(&small);
    let hundred_chunks = encoded_batches(&hundred);
    let big_bytes = big_chunks[0].len() as u64;
    let small_bytes = small_chunks[0].len() as u64;
    println!(
        "encoded batch sizes: 1000 records = {big_bytes} bytes, 1 record = {small_bytes} bytes"
    );

    let os = topic_config(Durability::Os, 1);
    let every = topic_config(Durability::EveryAppend, 1);
    let os_two = topic_config(Durability::Os, 2);

    let criterion_started = SystemTime::now();
    let mut criterion = common::criterion(Duration::from_millis(1500));

    // Rounds bound the size of each scratch file (about 100 MB, 20 MB, ...).
    let big_round = 800;
    let small_round = 100_000;
    let sync_round = 200;

    for (name, bytes, config, set, chunks, sync, round, baseline) in [
        (
            "append_1000_records_os",
            big_bytes,
            &os,
            &big,
            &big_chunks,
            false,
            big_round,
            "write_all",
        ),
        (
            "append_1_record_os",
            small_bytes,
            &os,
            &small,
            &small_chunks,
            false,
            small_round,
            "write",
        ),
        (
            "append_1000_records_every_append",
            big_bytes,
            &every,
            &big,
            &big_chunks,
            true,
            sync_round,
            "write_fdatasync",
        ),
    ] {
        let mut group = criterion.benchmark_group(name);
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function("brooklet", |b| {
            b.iter_custom(|iters| in_rounds(iters, round, |n| append_round(config, set, n).wall))
        });
        group.bench_function(baseline, |b| {
            b.iter_custom(|iters| in_rounds(iters, round, |n| write_round(chunks, n, sync).wall))
        });
        group.finish();
    }

    let mut group = criterion.benchmark_group("group_commit_1_record_every_append");
    group.throughput(Throughput::Elements(1));
    for threads in [1usize, 2, 4] {
        let partitions = vec![0u32; threads];
        group.bench_function(format!("brooklet_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                in_rounds(iters, 2000, |n| {
                    threaded_iters(&every, &partitions, &small, n)
                })
            })
        });
    }
    group.bench_function("write_fdatasync_1_thread", |b| {
        b.iter_custom(|iters| in_rounds(iters, 2000, |n| write_round(&small_chunks, n, true).wall))
    });
    group.finish();

    for (label, per_batch, set, chunks, round) in [
        ("1_record", 1u64, &small, &small_chunks, 200_000u64),
        ("100_records", 100, &hundred, &hundred_chunks, 8000),
    ] {
        let mut group = criterion.benchmark_group(format!("partitions_{label}_os"));
        group.throughput(Throughput::Elements(per_batch));
        group.bench_function("brooklet_1_thread_1_partition", |b| {
            b.iter_custom(|iters| {
                in_rounds(iters, round, |n| threaded_iters(&os_two, &[0], set, n))
            })
        });
        group.bench_function("brooklet_2_threads_2_partitions", |b| {
            b.iter_custom(|iters| {
                in_rounds(iters, round, |n| threaded_iters(&os_two, &[0, 1], set, n))
            })
        });
        group.bench_function("write_1_thread_1_file", |b| {
            b.iter_custom(|iters| {
                in_rounds(iters, round, |n| threaded_write_round(chunks, 1, n).wall)
            })
        });
        group.bench_function("write_2_threads_2_files", |b| {
            b.iter_custom(|iters| {
                in_rounds(iters, round, |n| {
                    let per_thread = (n / 2).max(1);
                    threaded_write_round(chunks, 2, per_thread)
                        .wall
                        .mul_f64(n as f64 / (2 * per_thread) as f64)
                })
            })
        });
        group.finish();
    }
    criterion.final_summary();

    // The same pairs again over a fixed amount of work, interleaved, timed
    // with Instant: these are the ratios to quote.
    let reps = reps(full);
    let mut report = Report::default();
    let since = criterion_started;
    for (name, group, a, b) in [
        (
            "append_1000_records_os/write_all",
            "append_1000_records_os",
            "brooklet",
            "write_all",
        ),
        (
            "append_1_record_os/write",
            "append_1_record_os",
            "brooklet",
            "write",
        ),
        (
            "append_1000_records_every_append/write_fdatasync",
            "append_1000_records_every_append",
            "brooklet",
            "write_fdatasync",
        ),
        (
            "group_commit_1_threads/write_fdatasync_1_thread",
            "group_commit_1_record_every_append",
            "brooklet_1_threads",
            "write_fdatasync_1_thread",
        ),
        (
            "group_commit_2_threads/write_fdatasync_1_thread",
            "group_commit_1_record_every_append",
            "brooklet_2_threads",
            "write_fdatasync_1_thread",
        ),
        (
            "group_commit_4_threads/write_fdatasync_1_thread",
            "group_commit_1_record_every_append",
            "brooklet_4_threads",
            "write_fdatasync_1_thread",
        ),
        (
            "partitions_1_record_2_threads/1_thread",
            "partitions_1_record_os",
            "brooklet_2_threads_2_partitions",
            "brooklet_1_thread_1_partition",
        ),
        (
            "files_1_record_2_threads/1_thread",
            "partitions_1_record_os",
            "write_2_threads_2_files",
            "write_1_thread_1_file",
        ),
        (
            "partitions_100_records_2_threads/1_thread",
            "partitions_100_records_os",
            "brooklet_2_threads_2_partitions",
            "brooklet_1_thread_1_partition",
        ),
        (
            "files_100_records_2_threads/1_thread",
            "partitions_100_records_os",
            "write_2_threads_2_files",
            "write_1_thread_1_file",
        ),
    ] {
        report.criterion_ratio(name, group, a, b, since);
    }

    let units = scaled(full, 800);
    let (rates, cpu) = interleaved(
        reps,
        units,
        &mut [&mut |n| append_round(&os, &big, n), &mut |n| {
            write_round(&big_chunks, n, false)
        }],
    );
    report.rate(
        "1000-record batches, Os: brooklet",
        "batches",
        &rates[0],
        Some(big_bytes),
    );
    report.rate(
        "1000-record batches: write_all",
        "batches",
        &rates[1],
        Some(big_bytes),
    );
    report.ratio(
        "append_1000_records_os/write_all",
        &rates[0],
        &rates[1],
        Some(0.7),
    );
    report.ratio(
        "cpu:append_1000_records_os/write_all",
        &cpu[0],
        &cpu[1],
        None,
    );

    let units = scaled(full, 100_000);
    let (rates, cpu) = interleaved(
        reps,
        units,
        &mut [
            &mut |n| append_round(&os, &small, n),
            &mut |n| write_round(&small_chunks, n, false),
            &mut |n| {
                let dir = common::scratch_dir("append-");
                write_round_alone(&small_chunks, n, false, dir.path())
            },
        ],
    );
    report.rate(
        "1-record batches, Os: brooklet",
        "appends",
        &rates[0],
        Some(small_bytes),
    );
    report.rate(
        "1-record batches: write",
        "writes",
        &rates[1],
        Some(small_bytes),
    );
    report.rate(
        "1-record batches: write, single-threaded process",
        "writes",
        &rates[2],
        Some(small_bytes),
    );
    report.ratio("append_1_record_os/write", &rates[0], &rates[1], Some(0.8));
    report.ratio("cpu:append_1_record_os/write", &cpu[0], &cpu[1], None);
    report.ratio(
        "append_1_record_os/write_single_threaded_process (diagnosis)",
        &rates[0],
        &rates[2],
        None,
    );

    let units = scaled(
        full,
        calibrated_units(Duration::from_millis(250), 10, 20, 400, |n| {
            write_round(&big_chunks, n, true)
        }),
    );
    let (rates, _) = interleaved(
        reps,
        units,
        &mut [&mut |n| append_round(&every, &big, n), &mut |n| {
            write_round(&big_chunks, n, true)
        }],
    );
    report.rate(
        "1000-record batches, EveryAppend: brooklet",
        "batches",
        &rates[0],
        Some(big_bytes),
    );
    report.rate(
        "1000-record batches: write_all+fdatasync",
        "batches",
        &rates[1],
        Some(big_bytes),
    );
    report.ratio(
        "append_1000_records_every_append/write_fdatasync",
        &rates[0],
        &rates[1],
        Some(0.8),
    );

    // Group commit: the same total number of appends for each thread count.
    let units = (scaled(
        full,
        calibrated_units(Duration::from_millis(250), 20, 40, 800, |n| {
            write_round(&small_chunks, n, true)
        }),
    ) / 4)
        .max(1)
        * 4;
    let (rates, _) = interleaved(
        reps,
        units,
        &mut [
            &mut |n| write_round(&small_chunks, n, true),
            &mut |n| threaded_round(&every, &[0], &small, n),
            &mut |n| threaded_round(&every, &[0; 2], &small, n / 2),
            &mut |n| threaded_round(&every, &[0; 4], &small, n / 4),
        ],
    );
    report.rate(
        "1-record, fdatasync each: write+fdatasync",
        "writes",
        &rates[0],
        None,
    );
    for (k, threads) in [1, 2, 4].into_iter().enumerate() {
        report.rate(
            &format!("1-record, EveryAppend: brooklet {threads} thread(s)"),
            "appends",
            &rates[k + 1],
            None,
        );
    }
    for (k, threads) in [1, 2, 4].into_iter().enumerate() {
        report.ratio(
            &format!("group_commit_{threads}_threads/write_fdatasync_1_thread"),
            &rates[k + 1],
            &rates[0],
            None,
        );
    }
    report.ratio(
        "group_commit_4_threads/1_thread",
        &rates[3],
        &rates[1],
        None,
    );

    // Two partitions: `units` batches per thread, so the two-thread variants
    // do twice the work; their rates count both threads. The same scaling of
    // plain file writes shows what the machine allows at the moment.
    for (label, set, chunks, per_thread) in [
        ("1_record", &small, &small_chunks, 300_000u64),
        ("100_records", &hundred, &hundred_chunks, 16_000),
    ] {
        let units = scaled(full, per_thread);
        let (rates, cpu) = interleaved(
            reps,
            units,
            &mut [
                &mut |n| threaded_round(&os_two, &[0], set, n),
                &mut |n| threaded_round(&os_two, &[0, 1], set, n).halved(),
                &mut |n| threaded_write_round(chunks, 1, n),
                &mut |n| threaded_write_round(chunks, 2, n).halved(),
            ],
        );
        report.rate(
            &format!("{label}, Os: brooklet 1 thread, 1 partition"),
            "batches",
            &rates[0],
            None,
        );
        report.rate(
            &format!("{label}, Os: brooklet 2 threads, 2 partitions"),
            "batches",
            &rates[1],
            None,
        );
        report.rate(
            &format!("{label}: write 1 thread, 1 file"),
            "writes",
            &rates[2],
            None,
        );
        report.rate(
            &format!("{label}: write 2 threads, 2 files"),
            "writes",
            &rates[3],
            None,
        );
        report.ratio(
            &format!("partitions_{label}_2_threads/1_thread"),
            &rates[1],
            &rates[0],
            Some(1.5),
        );
        report.ratio(
            &format!("files_{label}_2_threads/1_thread (machine's own scaling)"),
            &rates[3],
            &rates[2],
            None,
        );
        report.ratio(
            &format!("cpu:partitions_{label}_2_threads/1_thread"),
            &cpu[1],
            &cpu[0],
            None,
        );
        report.ratio(
            &format!("cpu:files_{label}_2_threads/1_thread"),
            &cpu[3],
            &cpu[2],
            None,
        );
    }

    println!("\n=== append: figures (Instant, fixed work, {reps} interleaved runs) ===");
    println!(
        "(`cpu:` ratios divide work by the CPU time (user + system) of the working threads \
         instead of wall time: steadier when other processes take the cores. For 2 threads vs 1, \
         a cpu ratio near 1.0 means no extra CPU per batch from sharing, so two idle cores would \
         give about twice the throughput.)"
    );
    for line in &report.lines {
        println!("{line}");
    }
    println!("=== append: the same ratios from criterion's mean times ===");
    for line in &report.criterion_lines {
        println!("{line}");
    }
    print_parallelism();
    print_load("end");
    print_df(&root);
}
