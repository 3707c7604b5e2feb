//! A consumer group resumes exactly where it committed after its process
//! ends, whether the process exits normally or is killed with SIGKILL
//! right after committing (having read further without committing). The
//! child is this test binary re-executed with an environment variable; it
//! reports its commit on stdout, and the parent then opens the log itself
//! and checks that a new consumer of the group starts at exactly the
//! committed offsets: `position` equals them and the first record polled
//! from each partition has that offset.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use brooklet::{
    ConsumerConfig, Log, LogConfig, OffsetAndMetadata, OffsetReset, Record, TopicConfig,
    TopicPartition,
};

const TEST_NAME: &str = "a_group_resumes_at_its_commit_after_exit_or_kill";
/// Set in the child: "<dir>\t<max_poll_records>\t<polls>".
const CHILD_ENV: &str = "BROOKLET_CONSUMER_RESTART_CHILD";
const GROUP: &str = "restart";
const PARTITIONS: u32 = 3;

fn config() -> LogConfig {
    LogConfig::default().offsets_topic_partitions(2)
}

fn consumer_config(max_poll_records: usize) -> ConsumerConfig {
    ConsumerConfig::group(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .max_poll_records(max_poll_records)
}

fn partitions() -> Vec<TopicPartition> {
    (0..PARTITIONS)
        .map(|p| TopicPartition::new("t", p))
        .collect()
}

fn format_offsets(offsets: &[i64]) -> String {
    offsets
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_offsets(text: &str) -> Vec<i64> {
    text.split(' ')
        .map(|o| o.parse().expect("an offset"))
        .collect()
}

/// The child: consume a little, commit, report, read further without
/// committing, then either exit cleanly or wait to be killed.
fn child(spec: &str) {
    let fields: Vec<&str> = spec.split('\t').collect();
    let [dir, max_poll_records, polls] = fields[..] else {
        panic!("bad child spec {spec:?}");
    };
    let max_poll_records: usize = max_poll_records.parse().expect("max_poll_records");
    let polls: usize = polls.parse().expect("polls");
    let log = Log::open(dir, config()).expect("child opens the log");
    let mut consumer = log.consumer(consumer_config(max_poll_records));
    consumer.subscribe(&["t"]).expect("subscribe");
    let started: Vec<i64> = partitions()
        .iter()
        .map(|tp| consumer.position(tp).expect("position"))
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "STARTED {}", format_offsets(&started)).expect("stdout");
    let mut next = started.clone();
    for _ in 0..polls {
        let records = consumer.poll(Duration::ZERO).expect("poll");
        for record in &records {
            // The child checks its own resume as well: no gap, no repeat.
            assert_eq!(record.offset, next[record.partition as usize]);
            next[record.partition as usize] += 1;
        }
    }
    consumer.commit().expect("commit");
    let committed: Vec<i64> = consumer
        .committed(&partitions())
        .expect("committed")
        .into_iter()
        .map(|(_, c)| c.map_or(-1, |c| c.offset))
        .collect();
    assert_eq!(committed, next, "commit() stores the positions");
    writeln!(out, "COMMITTED {}", format_offsets(&committed)).expect("stdout");
    out.flush().expect("flush stdout");
    // Read on past the commit; none of this may count after a restart.
    let records = consumer.poll(Duration::ZERO).expect("poll");
    assert!(!records.is_empty(), "there is more to read");
    writeln!(out, "READ-ON {}", records.len()).expect("stdout");
    out.flush().expect("flush stdout");
    // Killed here, or told to exit by stdin closing.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    if line.trim() == "exit" {
        drop(consumer);
        log.close().expect("child closes the log");
    } else {
        panic!("told {line:?} instead of being killed");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Exit,
    Kill,
}

struct Report {
    started: Vec<i64>,
    committed: Vec<i64>,
}

type ChildLines = std::io::Lines<BufReader<ChildStdout>>;

/// Reads the child's stdout up to its READ-ON line.
fn read_report(child: &mut Child) -> (Report, ChildLines) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut started = None;
    let mut committed = None;
    loop {
        let line = match lines.next() {
            Some(line) => line.expect("child stdout"),
            None => panic!("child ended before reporting (started {started:?})"),
        };
        // The test harness may have started the line ("test name ... ").
        let after = |marker: &str| line.find(marker).map(|at| &line[at + marker.len()..]);
        if let Some(rest) = after("STARTED ") {
            started = Some(parse_offsets(rest));
        } else if let Some(rest) = after("COMMITTED ") {
            committed = Some(parse_offsets(rest));
        } else if after("READ-ON ").is_some() {
            break;
        }
    }
    let report = Report {
        started: started.expect("STARTED line"),
        committed: committed.expect("COMMITTED line"),
    };
    (report, lines)
}

fn run_child(dir: &Path, max_poll_records: usize, polls: usize, end: End) -> Report {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}\t{max_poll_records}\t{polls}", dir.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let (report, lines) = read_report(&mut child);
    match end {
        End::Kill => {
            // SIGKILL: no destructors, no clean shutdown of the log.
            child.kill().expect("kill child");
            let status = child.wait().expect("reap child");
            assert!(!status.success(), "a killed child does not succeed");
        }
        End::Exit => {
            let mut stdin = child.stdin.take().expect("piped stdin");
            writeln!(stdin, "exit").expect("tell child to exit");
            drop(stdin);
            // Drain the harness's own output so the child can finish.
            for line in lines {
                line.expect("child stdout");
            }
            let status = child.wait().expect("reap child");
            assert!(status.success(), "child failed: {status}");
        }
    }
    report
}

/// Appends `count` records to each partition in batches of 1 to 4
/// records, so commits fall both on and inside batch boundaries.
fn append_round(log: &Log, round: usize, count: usize) {
    for p in 0..PARTITIONS {
        let mut written = 0;
        let mut size = 1 + (round + p as usize) % 4;
        while written < count {
            let n = size.min(count - written);
            let batch: Vec<Record> = (0..n)
                .map(|i| Record::new(format!("r{round}-p{p}-{}", written + i)))
                .collect();
            log.append("t", p, &batch).expect("append");
            written += n;
            size = size % 4 + 1;
        }
    }
}

/// In the parent: a new consumer of the group starts at `expected`.
fn check_resume(dir: &Path, expected: &[i64], end: End, round: usize) {
    let log = Log::open(dir, config()).expect("parent reopens the log");
    let stored: Vec<i64> = {
        let offsets = log.committed_offsets(GROUP).expect("committed offsets");
        assert_eq!(offsets.len(), PARTITIONS as usize);
        offsets.into_iter().map(|(_, c)| c.offset).collect()
    };
    assert_eq!(stored, expected, "round {round} ({end:?}): stored commits");
    let mut consumer = log.consumer(consumer_config(10_000));
    consumer.subscribe(&["t"]).expect("subscribe");
    let committed = consumer.committed(&partitions()).expect("committed");
    for (tp, commit) in &committed {
        assert_eq!(
            commit.as_ref().map(|c| c.offset),
            Some(expected[tp.partition as usize]),
            "round {round} ({end:?}): committed {tp:?}"
        );
        assert_eq!(
            consumer.position(tp).expect("position"),
            expected[tp.partition as usize],
            "round {round} ({end:?}): position of {tp:?}"
        );
    }
    let records = consumer.poll(Duration::ZERO).expect("poll");
    for tp in partitions() {
        let first = records
            .records("t", tp.partition)
            .next()
            .map(|r| r.offset)
            .expect("records after the commit");
        assert_eq!(
            first, expected[tp.partition as usize],
            "round {round} ({end:?}): first record of {tp:?}"
        );
    }
    consumer.close().expect("close consumer");
    log.close().expect("close log");
}

#[test]
fn a_group_resumes_at_its_commit_after_exit_or_kill() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), config()).expect("open");
        log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
            .expect("create topic");
        append_round(&log, 0, 40);
        log.close().expect("close");
    }
    let rounds = [
        (End::Exit, 4, 3),
        (End::Kill, 7, 2),
        (End::Kill, 3, 5),
        (End::Exit, 11, 1),
        (End::Kill, 5, 4),
        (End::Exit, 2, 2),
    ];
    let mut resume_at = vec![0i64; PARTITIONS as usize];
    for (round, &(end, max_poll_records, polls)) in rounds.iter().enumerate() {
        let report = run_child(dir.path(), max_poll_records, polls, end);
        assert_eq!(
            report.started, resume_at,
            "round {round}: the child started where the last round committed"
        );
        assert!(
            report.committed.iter().zip(&resume_at).all(|(c, r)| c >= r),
            "round {round}: commits move forward"
        );
        let consumed: i64 = report
            .committed
            .iter()
            .zip(&resume_at)
            .map(|(c, r)| c - r)
            .sum();
        assert_eq!(
            consumed,
            (max_poll_records * polls) as i64,
            "round {round}: every poll returned max_poll_records"
        );
        check_resume(dir.path(), &report.committed, end, round);
        resume_at = report.committed;
        // More data for the next round, written by the parent.
        let log = Log::open(dir.path(), config()).expect("open");
        append_round(&log, round + 1, 5);
        log.close().expect("close");
    }
    // The group ended up somewhere real.
    assert!(resume_at.iter().sum::<i64>() > 0);
    let log = Log::open(dir.path(), config()).expect("open");
    assert_eq!(
        log.committed_offsets(GROUP).expect("committed"),
        partitions()
            .into_iter()
            .zip(&resume_at)
            .map(|(tp, &offset)| (tp, OffsetAndMetadata::new(offset)))
            .collect::<Vec<_>>()
    );
}
