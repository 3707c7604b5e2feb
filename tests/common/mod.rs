//! Helpers shared by several integration-test crates: reading a partition
//! back, deterministic generators, a manual-clock log in memory-backed
//! storage, and the proptest configuration the model tests share.

// Every test crate that declares `mod common;` compiles this whole module
// but uses only some of it; the rest would warn as dead code there.
#![allow(dead_code)]

use std::cell::Cell;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use brooklet::{Fetch, Log, LogConfig, ManualClock, RecordView};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// Reads a partition from `from` to its end and returns `map` of every
/// record, in offset order.
pub fn read_partition<T>(
    log: &Log,
    topic: &str,
    partition: u32,
    from: i64,
    mut map: impl FnMut(RecordView<'_>) -> T,
) -> Vec<T> {
    let mut reader = log.reader(topic, partition, from).expect("reader");
    let mut fetch = Fetch::new();
    let mut out = Vec::new();
    while reader.next_into(&mut fetch).expect("read") {
        for record in fetch.records() {
            out.push(map(record.expect("decode a record")));
        }
    }
    out
}

/// The offset of the first record a read at `offset` returns, if any.
pub fn first_offset_from(log: &Log, topic: &str, partition: u32, offset: i64) -> Option<i64> {
    let mut reader = log.reader(topic, partition, offset).expect("reader");
    let mut fetch = Fetch::new();
    let mut first = None;
    while first.is_none() && reader.next_into(&mut fetch).expect("read") {
        first = fetch
            .records()
            .next()
            .map(|r| r.expect("decode a record").offset);
    }
    first
}

/// Small deterministic generator (splitmix64).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Small deterministic generator (xorshift64*). The seed must not be 0.
pub struct XorShift64Star(pub u64);

impl XorShift64Star {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where memory-backed temporary directories go, when the system has it.
pub const SHM: &str = "/dev/shm";

/// A log on a manual clock starting at `start_ms`, with one offsets-topic
/// partition, in a temporary directory named `prefix…` in memory-backed
/// `/dev/shm` where there is one (for tests about the group protocol, not
/// storage: a case runs about ten times faster than on disk).
pub fn shm_manual_log(prefix: &str, start_ms: i64) -> (Log, Arc<ManualClock>, tempfile::TempDir) {
    let shm = std::path::Path::new(SHM);
    let dir = if shm.is_dir() {
        tempfile::Builder::new().prefix(prefix).tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let clock = Arc::new(ManualClock::new(start_ms));
    let log = Log::open(
        dir.path(),
        LogConfig::default()
            .clock(clock.clone())
            .offsets_topic_partitions(1),
    )
    .expect("open a log");
    (log, clock, dir)
}

/// Proptest's configuration with `default_cases` cases unless
/// `PROPTEST_CASES` is set, the fixed seed `seed` unless
/// `PROPTEST_RNG_SEED` is set, and no failure persistence.
pub fn proptest_config(default_cases: u32, seed: u64) -> Config {
    let defaults = Config::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        defaults.cases
    } else {
        default_cases
    };
    let rng_seed = match defaults.rng_seed {
        RngSeed::Random => RngSeed::Fixed(seed),
        fixed => fixed,
    };
    Config {
        cases,
        rng_seed,
        failure_persistence: None,
        ..defaults
    }
}

/// Runs `check` on values of `strategy` under `config` and panics with
/// proptest's report (the minimal failing input) if a case fails.
pub fn check_property<S: Strategy>(
    config: Config,
    strategy: &S,
    check: impl Fn(S::Value) -> Result<(), String>,
) {
    let mut runner = TestRunner::new(config);
    if let Err(err) = runner.run(strategy, |value| check(value).map_err(TestCaseError::fail)) {
        panic!("{err}");
    }
}

/// Counts one more of something a property test exercised.
pub fn bump(counter: &Cell<usize>) {
    counter.set(counter.get() + 1);
}

/// A log call's result, its error described with `what` failed.
pub fn ok<T>(result: brooklet::Result<T>, what: &str) -> Result<T, String> {
    result.map_err(|err| format!("{what} failed: {err}"))
}

/// Copies the directory tree `from` to `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}
