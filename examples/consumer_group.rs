//! A consumer group sharing work: three worker threads in one group read a
//! topic of jobs; one worker stops midway and the others take over its
//! partitions, resuming at its committed offsets. After each change the
//! demo prints who owns what (from `Log::describe_group`), and at the end
//! it checks that every job of this run was processed, exiting non-zero
//! otherwise.
//!
//! ```text
//! cargo run --example consumer_group [DATA_DIR]   # default ./consumer-group-data
//! ```
//!
//! The data directory is left in place; a second run appends new jobs and
//! the group continues from where the first run committed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use brooklet::{
    Consumer, ConsumerConfig, Error, GroupDescription, Log, LogConfig, OffsetReset, Record,
    TopicConfig, TopicPartition,
};

const TOPIC: &str = "jobs";
const GROUP: &str = "workers";
const PARTITIONS: u32 = 6;
const JOBS_PER_PARTITION: i64 = 50;
const WORKERS: usize = 3;
/// The worker that stops, and after how many jobs.
const LEAVER: usize = 2;
const LEAVER_JOBS: usize = 20;
/// A bound on the whole demo, in case the group never finishes the work.
const DEADLINE: Duration = Duration::from_secs(30);

/// What the workers tell the main thread.
enum Event {
    /// A worker's partitions changed.
    Assigned,
    /// A worker left the group.
    Left { worker: usize, processed: usize },
    /// Something went wrong.
    Failed { worker: usize, error: Error },
}

/// The jobs of this run: (partition, offset).
type Jobs = BTreeSet<(u32, i64)>;

struct Shared {
    /// How many times each job was processed.
    processed: Mutex<BTreeMap<(u32, i64), usize>>,
    wanted: Jobs,
    done: AtomicBool,
}

impl Shared {
    /// Records a processed job; true once every wanted job is done.
    fn process(&self, partition: u32, offset: i64) -> bool {
        let mut processed = self.processed.lock().unwrap_or_else(|e| e.into_inner());
        *processed.entry((partition, offset)).or_insert(0) += 1;
        let all = self.wanted.iter().all(|job| processed.contains_key(job));
        if all {
            self.done.store(true, Ordering::SeqCst);
        }
        all
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> brooklet::Result<bool> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./consumer-group-data".to_owned());
    let log = Log::open(&dir, LogConfig::default())?;
    if !log.topics().iter().any(|t| t == TOPIC) {
        log.create_topic(TOPIC, TopicConfig::default().partitions(PARTITIONS))?;
    }
    let partitions = log.partition_count(TOPIC)?;

    // This run's jobs.
    let mut wanted = Jobs::new();
    for p in 0..partitions {
        for i in 0..JOBS_PER_PARTITION {
            let info = log.append(
                TOPIC,
                p,
                &[Record::new(format!("job {i} of partition {p}")).key(format!("k{i}"))],
            )?;
            wanted.insert((p, info.base_offset));
        }
    }
    println!(
        "{dir}: produced {} jobs on {partitions} partitions of {TOPIC:?}",
        wanted.len()
    );
    let shared = Arc::new(Shared {
        processed: Mutex::new(BTreeMap::new()),
        wanted,
        done: AtomicBool::new(false),
    });

    // All workers subscribe before any polls, so the first one cannot take
    // every job before the others are in: a poll finishes the group's
    // rebalance before it reads anything.
    let mut consumers = Vec::new();
    for worker in 0..WORKERS {
        let mut consumer = log.consumer(
            ConsumerConfig::group(GROUP)
                .client_id(format!("worker-{worker}"))
                .auto_offset_reset(OffsetReset::Earliest)
                .enable_auto_commit(false)
                .max_poll_records(10)
                .session_timeout(Duration::from_secs(2))
                .max_poll_interval(Duration::from_secs(10)),
        );
        consumer.subscribe(&[TOPIC])?;
        consumers.push(consumer);
    }
    print_group(&log, "all workers subscribed", &mut None)?;

    let (events, inbox) = mpsc::channel();
    let started = Instant::now();
    let workers: Vec<_> = consumers
        .into_iter()
        .enumerate()
        .map(|(worker, consumer)| {
            let (shared, events) = (Arc::clone(&shared), events.clone());
            thread::spawn(move || work(worker, consumer, &shared, &events, started))
        })
        .collect();
    drop(events);

    let mut last = None;
    let mut failed = false;
    // Ends when every worker has left and dropped its sender.
    for event in inbox {
        match event {
            Event::Assigned => print_group(&log, "partitions moved", &mut last)?,
            Event::Left { worker, processed } => {
                println!("worker-{worker} left after processing {processed} jobs");
                print_group(&log, &format!("worker-{worker} left"), &mut last)?;
            }
            Event::Failed { worker, error } => {
                eprintln!("worker-{worker} failed: {error}");
                failed = true;
            }
        }
    }
    for worker in workers {
        if worker.join().is_err() {
            failed = true;
        }
    }

    let processed = shared.processed.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<_> = shared
        .wanted
        .iter()
        .filter(|job| !processed.contains_key(job))
        .collect();
    let repeated = processed.values().filter(|&&n| n > 1).count();
    println!(
        "processed {} of {} jobs ({} more than once, after a rebalance)",
        shared.wanted.len() - missing.len(),
        shared.wanted.len(),
        repeated
    );
    print_group(&log, "the end", &mut None)?;
    log.close()?;
    if !missing.is_empty() {
        eprintln!("jobs never processed: {missing:?}");
    }
    Ok(missing.is_empty() && !failed)
}

/// One worker: poll, process, commit; the leaver closes after a few jobs,
/// the others once every job is done.
fn work(
    worker: usize,
    mut consumer: Consumer,
    shared: &Shared,
    events: &mpsc::Sender<Event>,
    started: Instant,
) {
    let mut processed = 0;
    let mut held: Vec<TopicPartition> = Vec::new();
    while !shared.done.load(Ordering::SeqCst) && started.elapsed() < DEADLINE {
        let records = match consumer.poll(Duration::from_millis(100)) {
            Ok(records) => records,
            Err(error) => {
                let _ = events.send(Event::Failed { worker, error });
                break;
            }
        };
        for record in &records {
            shared.process(record.partition, record.offset);
            processed += 1;
        }
        // A commit refused because a rebalance moved on only means the new
        // owner processes these jobs again (at least once).
        match consumer.commit() {
            Ok(())
            | Err(
                Error::IllegalGeneration { .. }
                | Error::UnknownMember { .. }
                | Error::RebalanceInProgress(_),
            ) => {}
            Err(error) => {
                let _ = events.send(Event::Failed { worker, error });
                break;
            }
        }
        let now = consumer.assignment();
        if now != held {
            held = now;
            let _ = events.send(Event::Assigned);
        }
        if worker == LEAVER && processed >= LEAVER_JOBS {
            break;
        }
    }
    if let Err(error) = consumer.close() {
        let _ = events.send(Event::Failed { worker, error });
    }
    let _ = events.send(Event::Left { worker, processed });
}

/// Prints the group's owners and lag if they changed since `last`.
fn print_group(log: &Log, step: &str, last: &mut Option<GroupDescription>) -> brooklet::Result<()> {
    let description = log.describe_group(GROUP)?;
    if let Some(previous) = last
        && previous.state == description.state
        && previous.generation == description.generation
        && previous.members == description.members
    {
        return Ok(());
    }
    println!(
        "-- {step}: generation {}, {:?}",
        description.generation, description.state
    );
    for member in &description.members {
        let owned: Vec<String> = member.assignment.iter().map(ToString::to_string).collect();
        println!("   {:<12} owns {}", member.member_id, owned.join(", "));
    }
    let lag: i64 = description.partitions.iter().map(|p| p.lag).sum();
    println!("   lag (uncommitted jobs): {lag}");
    *last = Some(description);
    Ok(())
}
