//! A full disk fails appends cleanly and loses nothing acknowledged. The
//! test binary runs itself again as a child (`full_disk_child_writer`,
//! which does nothing unless `BROOKLET_FULL_DISK_CHILD_DIR` is set) with
//! `RLIMIT_FSIZE` at 64 KiB and `SIGXFSZ` ignored, so a write that would
//! grow a file past 64 KiB fails with `EFBIG`, as a write to a full disk
//! fails with `ENOSPC`. The child appends until an append fails and checks
//! the failure is `Error::Io`, that every acknowledged record still reads
//! back, and that later appends to the full partition fail the same way
//! (or succeed) without a panic, while another partition keeps working;
//! it then closes the log (which may fail) and exits. The parent reopens
//! the log without the limit, finds every acknowledged record intact and a
//! gap-free partition, and appends past the old limit.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use brooklet::{Error, Fetch, Log, LogConfig, Record, TopicConfig};

const CHILD_DIR_ENV: &str = "BROOKLET_FULL_DISK_CHILD_DIR";
const CHILD_TEST: &str = "full_disk_child_writer";
const TOPIC: &str = "t";
/// The child's largest file.
const FILE_SIZE_LIMIT_BYTES: u64 = 64 * 1024;
/// Larger than the file size limit, so the active segment hits the limit
/// instead of rolling.
const SEGMENT_BYTES: u32 = 1 << 20;
/// The partition that fills up; the other one only gets a few appends.
const FULL: u32 = 0;
const OTHER: u32 = 1;

/// The value at `offset` of `partition`: distinctive, 100 to 299 bytes.
fn value_for(partition: u32, offset: i64) -> Vec<u8> {
    let len = 100 + usize::try_from(offset * 37 % 200).expect("small");
    format!("{partition}/{offset}.")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

/// Appends `count` records at the partition's end.
fn append(log: &Log, partition: u32, count: i64) -> brooklet::Result<(i64, i64)> {
    let next = log.offsets(TOPIC, partition)?.log_end_offset;
    let records: Vec<Record> = (next..next + count)
        .map(|o| Record::new(value_for(partition, o)))
        .collect();
    let info = log.append(TOPIC, partition, &records)?;
    assert_eq!(info.base_offset, next, "single writer");
    Ok((info.base_offset, info.last_offset))
}

/// Checks the partition is exactly the records `0..end`, each intact.
fn check_partition(log: &Log, partition: u32, end: i64, who: &str) {
    let mut reader = log.reader(TOPIC, partition, 0).expect("reader");
    let mut fetch = Fetch::new();
    let mut next = 0;
    while reader
        .next_into(&mut fetch)
        .unwrap_or_else(|e| panic!("{who}: read {partition}/{next}: {e}"))
    {
        for record in fetch.records() {
            let record = record.unwrap_or_else(|e| panic!("{who}: record {partition}/{next}: {e}"));
            assert_eq!(record.offset, next, "{who}: partition {partition}");
            assert_eq!(
                record.value,
                Some(&value_for(partition, next)[..]),
                "{who}: value at {partition}/{next}"
            );
            next += 1;
        }
    }
    assert_eq!(next, end, "{who}: end of partition {partition}");
    assert_eq!(
        log.offsets(TOPIC, partition)
            .expect("offsets")
            .log_end_offset,
        end,
        "{who}: log end of partition {partition}"
    );
}

/// Limits the size of files this process writes and turns the `SIGXFSZ`
/// that would kill it into an `EFBIG` error from the write.
fn limit_file_size(limit_bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: limit_bytes,
        rlim_max: limit_bytes,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this
    // process's limits; ignoring SIGXFSZ installs no handler code.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
        assert_ne!(
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN),
            libc::SIG_ERR,
            "ignore SIGXFSZ"
        );
    }
}

/// The child: fills partition `FULL` under the file size limit, printing
/// `ack <partition> <first> <last>` for every acknowledged append, and
/// checks how the log behaves once it is full.
#[test]
fn full_disk_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    limit_file_size(FILE_SIZE_LIMIT_BYTES);
    let mut out = std::io::stdout().lock();
    // The harness has printed `test <name> ... ` without a line end.
    writeln!(out).expect("stdout");
    let log = Log::open(&dir, LogConfig::default()).expect("child: open under the limit");
    let mut acked_end = 0;
    let first_error = loop {
        match append(&log, FULL, 1 + acked_end % 3) {
            Ok((first, last)) => {
                writeln!(out, "ack {FULL} {first} {last}").expect("stdout");
                acked_end = last + 1;
            }
            Err(err) => break err,
        }
        assert!(
            acked_end < 10_000,
            "the file size limit never stopped the appends"
        );
    };
    writeln!(out, "error {first_error}").expect("stdout");
    assert!(
        matches!(first_error, Error::Io { .. }),
        "child: a full disk is an I/O error: {first_error:?}"
    );
    assert!(acked_end > 100, "child: only {acked_end} records fit");
    // Nothing acknowledged was hurt by the failed write.
    check_partition(&log, FULL, acked_end, "child after the failure");
    // The full partition keeps failing cleanly, or takes a smaller batch.
    for attempt in 0..5 {
        match append(&log, FULL, 1) {
            Ok((first, last)) => {
                writeln!(out, "ack {FULL} {first} {last}").expect("stdout");
                acked_end = last + 1;
            }
            Err(err) => {
                writeln!(out, "retry {attempt}: {err}").expect("stdout");
                assert!(
                    matches!(err, Error::Io { .. } | Error::Poisoned { .. }),
                    "child: retry {attempt}: {err:?}"
                );
            }
        }
    }
    check_partition(&log, FULL, acked_end, "child after the retries");
    // A partition whose files still have room is not affected.
    for _ in 0..3 {
        let (first, last) = append(&log, OTHER, 2).expect("child: append to the other partition");
        writeln!(out, "ack {OTHER} {first} {last}").expect("stdout");
    }
    match log.flush() {
        Ok(()) => writeln!(out, "flush ok"),
        Err(err) => writeln!(out, "flush failed: {err}"),
    }
    .expect("stdout");
    match log.close() {
        Ok(()) => writeln!(out, "close ok"),
        Err(err) => writeln!(out, "close failed: {err}"),
    }
    .expect("stdout");
    out.flush().expect("stdout");
}

fn create_log(dir: &Path) {
    let log = Log::open(dir, LogConfig::default()).expect("open");
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .partitions(2)
            .segment_bytes(SEGMENT_BYTES)
            .index_interval_bytes(512),
    )
    .expect("create topic");
    log.close().expect("close");
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_log(dir.path());
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed: {:?}\n{stdout}\n{stderr}",
        output.status
    );
    let mut acked_end = [0i64; 2];
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("ack ") else {
            continue;
        };
        let fields: Vec<i64> = rest
            .split(' ')
            .map(|f| f.parse().expect("ack field"))
            .collect();
        let partition = usize::try_from(fields[0]).expect("partition");
        assert_eq!(fields[1], acked_end[partition], "consecutive acks: {line}");
        acked_end[partition] = fields[2] + 1;
    }
    let error = stdout
        .lines()
        .find(|l| l.starts_with("error "))
        .unwrap_or_else(|| panic!("the child saw no error:\n{stdout}"));
    assert!(
        error.contains("File too large"),
        "the failure is EFBIG: {error}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("close ")),
        "the child got as far as closing:\n{stdout}"
    );

    // The failed writes left no partial batch behind: the full segment is
    // whole batches up to the last acknowledged offset.
    let segment = dir
        .path()
        .join(format!("{TOPIC}-{FULL}"))
        .join(format!("{:020}.log", 0));
    let bytes = std::fs::read(&segment).expect("full segment");
    assert!(bytes.len() as u64 <= FILE_SIZE_LIMIT_BYTES);
    let (mut position, mut next) = (0usize, 0i64);
    while position < bytes.len() {
        let field = |at: usize, n: usize| &bytes[position + at..position + at + n];
        let base = i64::from_be_bytes(field(0, 8).try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(field(8, 4).try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(field(23, 4).try_into().expect("4 bytes"));
        assert_eq!(base, next, "batch at {position}");
        next = base + i64::from(delta) + 1;
        position += 12 + usize::try_from(length).expect("batch length");
    }
    assert_eq!(position, bytes.len(), "the segment ends with a whole batch");
    assert_eq!(
        next, acked_end[FULL as usize],
        "the segment ends at the last ack"
    );

    // Without the limit: everything acknowledged is there, and the full
    // partition grows past the old limit.
    let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
    for partition in [FULL, OTHER] {
        check_partition(
            &log,
            partition,
            acked_end[partition as usize],
            "parent after reopen",
        );
    }
    let mut end = acked_end[FULL as usize];
    while std::fs::metadata(&segment).expect("segment").len() <= FILE_SIZE_LIMIT_BYTES + 4096 {
        let (first, last) = append(&log, FULL, 3).expect("append after the disk has room");
        assert_eq!(first, end);
        end = last + 1;
    }
    check_partition(&log, FULL, end, "parent after appending");
    log.close().expect("close");
    let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
    check_partition(&log, FULL, end, "parent after a clean reopen");
    log.close().expect("close");
}
