//! A process killed with SIGKILL while appending loses nothing it
//! acknowledged. The test binary runs itself again as a child writer
//! (`kill_child_writer`, which does nothing unless `BROOKLET_KILL_CHILD_DIR`
//! is set): the child appends to a log with small segments and prints each
//! acknowledged offset range as soon as the append returns; the parent
//! kills it after a seeded-random number of acknowledgements (every fourth
//! round none, so the kill lands while the child starts, opens or recovers
//! the log), then reopens the log and checks every acknowledged record is
//! there with its value, that each partition is a gap-free run of correct
//! records, and that the next child can recover and carry on. Twenty kills
//! of an `EveryAppend` topic, and six of an `Os` topic, whose acknowledged
//! appends must survive a process kill too: the page cache outlives the
//! process.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use brooklet::{Durability, Fetch, Log, LogConfig, Record, TailLoss, TopicConfig};

// The seeded kill points are drawn from this.
use common::SplitMix64 as Rng;

const CHILD_DIR_ENV: &str = "BROOKLET_KILL_CHILD_DIR";
const CHILD_TOPIC_ENV: &str = "BROOKLET_KILL_CHILD_TOPIC";
const CHILD_TEST: &str = "kill_child_writer";
const PARTITIONS: u32 = 2;
/// Small, so the child rolls segments often and kills land in rolls too.
const SEGMENT_BYTES: u32 = 4096;
/// A child that is never killed stops after this many appends.
const CHILD_MAX_APPENDS: u64 = 20_000;

/// The value at `offset` of `partition`: distinctive, of varying length.
fn value_for(partition: u32, offset: i64) -> Vec<u8> {
    let len = 8 + usize::try_from(offset % 40).expect("small");
    format!("{partition}:{offset};")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

/// Records per append at `offset`: 1 to 3.
fn batch_len(offset: i64) -> i64 {
    1 + offset % 3
}

/// The child: appends forever (well, up to a bound), alternating
/// partitions, and prints `ack <partition> <first> <last>` after each
/// append returns. Runs only when the parent sets `BROOKLET_KILL_CHILD_DIR`;
/// in a normal test run it returns at once.
#[test]
fn kill_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let topic = std::env::var(CHILD_TOPIC_ENV).expect("topic for the child");
    let log = Log::open(&dir, LogConfig::default()).expect("child: open");
    let mut stdout = std::io::stdout().lock();
    // A line of its own: the harness has printed `test <name> ... `
    // without a line end.
    writeln!(stdout, "\nopened").expect("child: stdout");
    stdout.flush().expect("child: flush");
    for i in 0..CHILD_MAX_APPENDS {
        let partition = u32::try_from(i % u64::from(PARTITIONS)).expect("small");
        let next = log
            .offsets(&topic, partition)
            .expect("child: offsets")
            .log_end_offset;
        let records: Vec<Record> = (next..next + batch_len(next))
            .map(|o| Record::new(value_for(partition, o)))
            .collect();
        let info = log
            .append(&topic, partition, &records)
            .expect("child: append");
        assert_eq!(info.base_offset, next, "child: single writer");
        // A closed pipe means the parent is gone: stop.
        if writeln!(
            stdout,
            "ack {partition} {} {}",
            info.base_offset, info.last_offset
        )
        .is_err()
            || stdout.flush().is_err()
        {
            return;
        }
    }
}

/// Takes in an `ack <partition> <first> <last>` line from the child;
/// false for any other line (the test harness prints its own).
fn record_ack(line: &str, acked: &mut [i64]) -> bool {
    let Some(rest) = line.trim().strip_prefix("ack ") else {
        return false;
    };
    let fields: Vec<i64> = rest
        .split(' ')
        .map(|f| f.parse().expect("ack field"))
        .collect();
    let partition = usize::try_from(fields[0]).expect("partition");
    assert_eq!(
        fields[1],
        acked[partition] + 1,
        "acks of partition {partition} are consecutive: {line:?}"
    );
    acked[partition] = fields[2];
    true
}

/// What the child wrote to stderr (best effort: for a failure message).
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    err
}

/// Runs one child against `dir`, kills it after `kill_after` acks, and
/// returns the highest acknowledged offset of each partition (-1 if none)
/// merged into `acked`.
fn run_child_and_kill(dir: &Path, topic: &str, kill_after: u64, acked: &mut [i64]) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_TOPIC_ENV, topic)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut seen = 0;
    let mut line = String::new();
    while seen < kill_after {
        line.clear();
        if stdout.read_line(&mut line).expect("read child") == 0 {
            let err = stderr_of(&mut child);
            panic!(
                "child ended before {kill_after} acks: {:?}\n{err}",
                child.wait()
            );
        }
        if record_ack(&line, acked) {
            seen += 1;
        }
    }
    child.kill().expect("kill child");
    let status = child.wait().expect("wait for child");
    // Acks already in the pipe were given before the kill: they count.
    for line in stdout.lines() {
        record_ack(&line.expect("read child"), acked);
    }
    if status.signal() != Some(libc::SIGKILL) {
        let err = stderr_of(&mut child);
        panic!("child was not killed but ended with {status:?}\n{err}");
    }
}

/// Reopens the log and checks each partition holds a gap-free run of the
/// right records from offset 0 that covers every acknowledged offset.
/// Returns the log ends.
fn check_after_kill(dir: &Path, topic: &str, acked: &[i64], round: usize) -> Vec<i64> {
    let log = Log::open(dir, LogConfig::default()).expect("reopen after kill");
    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        let acked_last = acked[partition as usize];
        let mut reader = log.reader(topic, partition, 0).expect("reader");
        let mut fetch = Fetch::new();
        let mut next = 0i64;
        while reader.next_into(&mut fetch).expect("read after kill") {
            for record in fetch.records() {
                let record = record.unwrap_or_else(|e| {
                    panic!("round {round}: record {partition}/{next} after kill: {e}")
                });
                assert_eq!(record.offset, next, "round {round}: partition {partition}");
                assert_eq!(
                    record.value,
                    Some(&value_for(partition, next)[..]),
                    "round {round}: value at {partition}/{next}"
                );
                next += 1;
            }
        }
        assert!(
            next > acked_last,
            "round {round}: partition {partition} ends at {next}, but {acked_last} was acknowledged"
        );
        let offsets = log.offsets(topic, partition).expect("offsets");
        assert_eq!(offsets.log_end_offset, next, "round {round}");
        ends.push(next);
    }
    // Alternate between leaving the log clean and leaving it as a crash
    // would, so the next child sometimes has to recover what this parent
    // left too.
    if round.is_multiple_of(2) {
        log.close().expect("close");
    } else {
        log.kill(TailLoss::None).expect("kill log");
    }
    ends
}

fn kill_rounds(durability: Durability, rounds: usize, max_acks: u64, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = "events";
    {
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        log.create_topic(
            topic,
            TopicConfig::default()
                .partitions(PARTITIONS)
                .segment_bytes(SEGMENT_BYTES)
                .index_interval_bytes(256)
                .durability(durability),
        )
        .expect("create topic");
        log.close().expect("close");
    }
    let mut rng = Rng(seed);
    let mut acked = vec![-1i64; PARTITIONS as usize];
    for round in 0..rounds {
        // Every fourth round kills without waiting for an ack: while the
        // child starts, opens or recovers the log.
        let kill_after = if round % 4 == 1 {
            0
        } else {
            1 + rng.below(max_acks)
        };
        run_child_and_kill(dir.path(), topic, kill_after, &mut acked);
        let ends = check_after_kill(dir.path(), topic, &acked, round);
        // What survived unacknowledged is now part of the log: the next
        // child continues after it, so its acks start there.
        for (last, end) in acked.iter_mut().zip(ends) {
            *last = end - 1;
        }
    }
    assert!(
        acked.iter().all(|&last| last > 0),
        "the children made progress: {acked:?}"
    );
    // The last recovery left a log that takes appends where it ends.
    let log = Log::open(dir.path(), LogConfig::default()).expect("final open");
    for partition in 0..PARTITIONS {
        let next = acked[partition as usize] + 1;
        let value = value_for(partition, next);
        let info = log
            .append(topic, partition, &[Record::new(value.clone())])
            .expect("append after the kills");
        assert_eq!(info.base_offset, next);
        let fetch = log.read(topic, partition, next, 1 << 10).expect("read");
        let record = fetch.records().next().expect("a record").expect("intact");
        assert_eq!(record.value, Some(&value[..]));
    }
    log.close().expect("close");
}

#[test]
fn acknowledged_appends_survive_sigkill_with_every_append_durability() {
    kill_rounds(Durability::EveryAppend, 20, 40, 0x5eed_0001);
}

#[test]
fn acknowledged_appends_survive_sigkill_with_os_durability() {
    kill_rounds(Durability::Os, 6, 400, 0x5eed_0002);
}
