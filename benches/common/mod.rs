//! Helpers shared by the benches: smoke-mode detection and sizes, scratch
//! directories under `target/bench-scratch`, the test records, CPU-time
//! measurement, medians and percentiles, the `ratio ...` lines, criterion's
//! settings and its mean times read back, and the machine's load.
//!
//! Each bench includes this file as its own module (`mod common;`), so a
//! helper one bench does not call would otherwise be reported as dead code
//! in that bench's build.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime};

use brooklet::{Log, Record, TailLoss};
use criterion::Criterion;
use tempfile::TempDir;

pub const KEY_BYTES: usize = 16;
pub const VALUE_BYTES: usize = 100;
/// Interleaved repetitions of each compared variant for the printed
/// figures of a real run.
pub const REPS: usize = 5;

/// Whether this is a real benchmark run (`cargo bench`) rather than the
/// smoke run `cargo test --benches` does.
pub fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Interleaved repetitions: [`REPS`] in a real run, one in the smoke run.
pub fn reps(full: bool) -> usize {
    if full { REPS } else { 1 }
}

/// Scales a work amount down for the smoke run.
pub fn scaled(full: bool, units: u64) -> u64 {
    if full { units } else { (units / 200).max(2) }
}

/// A whole number from the environment variable `name` (`_` separators
/// allowed), or `None` if it is not set.
pub fn env_size(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
    )
}

/// A size from the environment, or `default`; `smoke` for the smoke run
/// (which ignores the environment).
pub fn size_from_env(name: &str, default: u64, full: bool, smoke: u64) -> u64 {
    if full {
        env_size(name).unwrap_or(default)
    } else {
        smoke
    }
}

/// `target/bench-scratch`: on the repository's filesystem (`/tmp` may be
/// tmpfs, which would time memory instead of the disk).
pub fn scratch_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-scratch");
    fs::create_dir_all(&root).expect("create target/bench-scratch");
    root
}

/// A fresh directory under [`scratch_root`], removed on drop.
pub fn scratch_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .expect("create a scratch directory")
}

pub fn print_df(path: &Path) {
    match std::process::Command::new("df")
        .arg("-h")
        .arg(path)
        .output()
    {
        Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(err) => println!("(df failed: {err})"),
    }
}

/// Prints the load average: other processes compete for this machine's
/// cores, which the figures depend on.
pub fn print_load(when: &str) {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at {when}: {}", load.trim());
}

pub fn print_parallelism() {
    println!(
        "available parallelism: {:?}",
        thread::available_parallelism().ok()
    );
}

/// `n` records with distinct 16-byte keys and pseudo-random 100-byte values
/// (the same records in every bench).
pub fn make_records(n: usize) -> Vec<Record> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..n)
        .map(|i| {
            let key = format!("{i:0width$}", width = KEY_BYTES);
            assert_eq!(key.len(), KEY_BYTES);
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

/// Stops a log whose data is about to be deleted: no flush, no fsync, so
/// its dirty pages are dropped instead of written back.
pub fn discard(log: Log) {
    log.kill(TailLoss::None).expect("stop log");
}

/// The `.log` segment files in a partition directory, in offset order.
pub fn segment_files(partition_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(partition_dir)
        .expect("list partition directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// CPU time (user + system) the calling thread has used so far: less
/// disturbed than wall time by other processes taking the cores, but blind
/// to time spent waiting for the disk.
pub fn thread_cpu_time() -> Duration {
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

/// What a round took: wall-clock time, and CPU time of the threads doing
/// the work (steadier on a busy machine, blind to disk waits).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub wall: Duration,
    pub cpu: Duration,
}

impl Timing {
    /// The timing of half the work: for two-thread rounds that did twice as
    /// much as the one-thread round they are compared with.
    pub fn halved(self) -> Timing {
        Timing {
            wall: self.wall / 2,
            cpu: self.cpu / 2,
        }
    }
}

/// The variant to run at each step of `reps` interleaved repetitions of
/// `variants` variants: the order rotates each repetition so a slow phase
/// of the machine does not always hit the same variant.
pub fn rotation(reps: usize, variants: usize) -> impl Iterator<Item = usize> {
    (0..reps).flat_map(move |rep| (0..variants).map(move |k| (k + rep) % variants))
}

/// Runs `iters` units in rounds of at most `round` (each round a fresh log
/// or file, so no file grows without bound) and sums the measured time.
pub fn in_rounds(iters: u64, round: u64, mut run: impl FnMut(u64) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(round);
        total += run(n);
        left -= n;
    }
    total
}

/// Median of a non-empty slice.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Largest value of a non-empty slice.
pub fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}

/// The `q`-quantile (nearest rank) of a non-empty sorted slice.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> T {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn goal_verdict(ratio: f64, goal: Option<f64>) -> String {
    match goal {
        Some(goal) if ratio >= goal => format!("; goal >= {goal}: met"),
        Some(goal) => format!("; goal >= {goal}: MISSED"),
        None => String::new(),
    }
}

fn per_run(a: &[f64], b: &[f64]) -> String {
    a.iter()
        .zip(b)
        .map(|(x, y)| format!("{:.2}", x / y))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ratio <name> = X` for the rates `a` over `b` of interleaved runs: the
/// ratio of the medians, of the bests, and per run.
pub fn ratio_line(name: &str, a: &[f64], b: &[f64], goal: Option<f64>) -> String {
    let ratio = median(a) / median(b);
    format!(
        "ratio {name} = {ratio:.3} (median of {n}; best/best {bb:.3}; per run [{}]{})",
        per_run(a, b),
        goal_verdict(ratio, goal),
        n = a.len(),
        bb = best(a) / best(b),
    )
}

/// [`ratio_line`] without the ratio of the bests.
pub fn ratio_line_without_best(name: &str, a: &[f64], b: &[f64], goal: Option<f64>) -> String {
    let ratio = median(a) / median(b);
    format!(
        "ratio {name} = {ratio:.3} (median of {}; per run [{}]{})",
        a.len(),
        per_run(a, b),
        goal_verdict(ratio, goal),
    )
}

/// A records/s figure: median and best of `rates`, against an optional goal.
pub fn rate_line(name: &str, rates: &[f64], goal: Option<f64>) -> String {
    let med = median(rates);
    let verdict = match goal {
        Some(goal) if med >= goal => format!("; goal >= {goal:.0}/s: met"),
        Some(goal) => format!("; goal >= {goal:.0}/s: MISSED"),
        None => String::new(),
    };
    format!(
        "  {name:<44} median {med:>12.0} records/s (best {:.0}{verdict})",
        best(rates)
    )
}

/// Criterion with the settings every bench uses: 10 samples, half a second
/// of warm-up, `measurement` per benchmark; command-line options win.
pub fn criterion(measurement: Duration) -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement)
        .configure_from_args()
}

/// Criterion's mean time per iteration, in nanoseconds, of `group/bench`,
/// read back from the `estimates.json` it wrote during this run (`None` if
/// it wrote none since `since`, e.g. when a filter skipped the benchmark).
pub fn criterion_mean_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
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
