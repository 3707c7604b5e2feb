//! Consumer groups: how long a rebalance takes, and what group membership
//! costs a consumer's throughput against a baseline measured in the same
//! run (the machine is shared and noisy, so absolute numbers mean little on
//! their own).
//!
//! 1. Rebalance latency: 10 members of one group, all `Consumer`s driven
//!    from one thread, share one topic of 100 partitions (empty, so polls
//!    fetch nothing). The trigger is an 11th member's `subscribe` (a join)
//!    or its `close` (a leave). The time runs from the call until every
//!    member has picked up its new assignment: the members are polled in
//!    turn with `poll(Duration::ZERO)` until all hold the same generation,
//!    their `assignment()`s cover the 100 partitions once each, and
//!    `describe_group` says `Stable` in that generation with the same
//!    assignment for every member. Median and p99 per trigger, for `Range`
//!    (eager: everyone revokes and re-joins) and `CooperativeSticky` (a join
//!    takes two rounds: moved partitions are withheld, then handed over).
//!    Goal: < 5 ms. The number of polling passes per rebalance is printed
//!    too.
//! 2. Group consumption: 4 partitions (1,000-record batches of 16-byte keys
//!    and 100-byte values) read by 2 consumers of one group, each on its
//!    own thread, polling until every record was consumed; vs two unrelated
//!    consumers (no group), each `assign`ed 2 of the partitions, doing the
//!    same. Both variants check every record arrives exactly once and in
//!    offset order, and stop the same way (a shared count of records read).
//!    Records/s and the ratio group/unrelated; goal >= 0.8. `cpu:` ratios
//!    divide the records by the CPU time of the two consumer threads instead
//!    of the wall time (steadier when other processes take the cores).
//!
//! Criterion times every variant; then the figures to quote are measured
//! again with `Instant` (many rebalances for percentiles; interleaved
//! repetitions of the two consumption variants, the order rotating) and
//! printed at the end. Data goes to a temporary directory under
//! `target/bench-scratch` (same filesystem as the repository; `/tmp` may be
//! tmpfs).
//!
//! Sizes: `BROOKLET_BENCH_REBALANCES` (rebalances of each kind per
//! strategy, default 300), `BROOKLET_BENCH_GROUP_RECORDS` (records in the 4
//! partitions together, default 6,000,000). Run with
//! `cargo bench --bench groups`; under `cargo test --benches` the sizes
//! shrink to a smoke test.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use brooklet::{
    AssignmentStrategy, Consumer, ConsumerConfig, GroupState, Log, LogConfig, OffsetReset,
    TopicConfig, TopicPartition,
};
use criterion::{SamplingMode, Throughput};

use common::{
    Timing, bench_mode, discard, make_records, nearest_rank, print_load, print_parallelism,
    rate_line, ratio_line_without_best, reps, rotation, scratch_dir, size_from_env,
    thread_cpu_time,
};

const REBALANCE_TOPIC: &str = "rebalance";
const REBALANCE_PARTITIONS: u32 = 100;
const MEMBERS: usize = 10;
const CONSUME_TOPIC: &str = "consume";
const CONSUME_PARTITIONS: u32 = 4;
const RECORDS_PER_BATCH: usize = 1000;
/// Polling passes after which a rebalance is declared stuck.
const MAX_PASSES: usize = 10_000;
/// Rebalance latency goal.
const REBALANCE_GOAL: Duration = Duration::from_millis(5);

/// The `q`-quantile (nearest rank) of non-empty durations.
fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    nearest_rank(&sorted, q)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------------------
// 1. Rebalance latency
// ---------------------------------------------------------------------------

fn strategy_name(strategy: AssignmentStrategy) -> &'static str {
    match strategy {
        AssignmentStrategy::Range => "range",
        AssignmentStrategy::CooperativeSticky => "cooperative_sticky",
        _ => "other",
    }
}

/// A group with `MEMBERS` settled members over the rebalance topic, and the
/// log it lives in.
struct RebalanceGroup {
    log: Log,
    strategy: AssignmentStrategy,
    group_id: String,
    config: ConsumerConfig,
    members: Vec<Consumer>,
}

impl RebalanceGroup {
    fn new(log: &Log, strategy: AssignmentStrategy) -> RebalanceGroup {
        let group_id = format!("bench-{}", strategy_name(strategy));
        let config = ConsumerConfig::group(group_id.clone())
            .assignment_strategy(strategy)
            .auto_offset_reset(OffsetReset::Earliest)
            .enable_auto_commit(false);
        let mut group = RebalanceGroup {
            log: log.clone(),
            strategy,
            group_id,
            config,
            members: Vec::with_capacity(MEMBERS + 1),
        };
        for _ in 0..MEMBERS {
            let mut consumer = log.consumer(group.config.clone());
            consumer
                .subscribe(&[REBALANCE_TOPIC])
                .expect("subscribe a member");
            group.members.push(consumer);
            group.settle();
        }
        group
    }

    /// Whether every member picked up the assignment of one finished
    /// rebalance: checked on the consumers first (cheap), then confirmed
    /// with `describe_group`.
    fn settled(&self) -> bool {
        let mut generation = None;
        let mut owned = vec![false; REBALANCE_PARTITIONS as usize];
        for member in &self.members {
            let Some((_, member_generation)) = member.group_membership() else {
                return false;
            };
            if *generation.get_or_insert(member_generation) != member_generation {
                return false;
            }
            for tp in member.assignment() {
                let slot = &mut owned[tp.partition as usize];
                if *slot {
                    return false;
                }
                *slot = true;
            }
        }
        if owned.iter().any(|o| !o) {
            return false;
        }
        let description = self
            .log
            .describe_group(&self.group_id)
            .expect("describe the group");
        if description.state != GroupState::Stable
            || Some(description.generation) != generation
            || description.members.len() != self.members.len()
        {
            return false;
        }
        self.members.iter().all(|member| {
            let (member_id, _) = member.group_membership().expect("a member");
            let mut held = member.assignment();
            held.sort();
            description.members.iter().any(|d| {
                let mut assigned = d.assignment.clone();
                assigned.sort();
                d.member_id == member_id && assigned == held
            })
        })
    }

    /// Polls every member in turn until the group settles; returns the
    /// number of polling passes it took.
    fn settle(&mut self) -> usize {
        for pass in 0..MAX_PASSES {
            if self.settled() {
                return pass;
            }
            for member in &mut self.members {
                let records = member.poll(Duration::ZERO).expect("poll a member");
                assert!(records.is_empty(), "the rebalance topic is empty");
            }
        }
        panic!("the group did not settle within {MAX_PASSES} polling passes");
    }

    /// An 11th member joins: the time from `subscribe` until settled.
    fn join(&mut self) -> Rebalance {
        let mut consumer = self.log.consumer(self.config.clone());
        let cpu = thread_cpu_time();
        let start = Instant::now();
        consumer
            .subscribe(&[REBALANCE_TOPIC])
            .expect("subscribe the 11th member");
        self.members.push(consumer);
        let passes = self.settle();
        Rebalance {
            wall: start.elapsed(),
            cpu: thread_cpu_time() - cpu,
            passes,
        }
    }

    /// The 11th member leaves: the time from `close` until settled.
    fn leave(&mut self) -> Rebalance {
        assert_eq!(self.members.len(), MEMBERS + 1, "leave follows a join");
        let consumer = self.members.pop().expect("the 11th member");
        let cpu = thread_cpu_time();
        let start = Instant::now();
        consumer.close().expect("close the 11th member");
        let passes = self.settle();
        Rebalance {
            wall: start.elapsed(),
            cpu: thread_cpu_time() - cpu,
            passes,
        }
    }
}

/// One timed rebalance: wall-clock time, CPU time of the (only) thread
/// driving the group (not inflated by other processes taking the core),
/// and the polling passes it took.
#[derive(Clone, Copy, Debug)]
struct Rebalance {
    wall: Duration,
    cpu: Duration,
    passes: usize,
}

/// `count` joins and `count` leaves (alternating).
fn rebalance_samples(group: &mut RebalanceGroup, count: u64) -> (Vec<Rebalance>, Vec<Rebalance>) {
    let mut joins = Vec::new();
    let mut leaves = Vec::new();
    for _ in 0..count {
        joins.push(group.join());
        leaves.push(group.leave());
    }
    (joins, leaves)
}

fn rebalance_log(dir: &Path) -> Log {
    let log = Log::open(dir.join("rebalance"), LogConfig::default()).expect("open log");
    log.create_topic(
        REBALANCE_TOPIC,
        TopicConfig::default()
            .partitions(REBALANCE_PARTITIONS)
            .segment_bytes(1 << 20),
    )
    .expect("create the rebalance topic");
    log
}

// ---------------------------------------------------------------------------
// 2. Group consumption vs unrelated consumers
// ---------------------------------------------------------------------------

/// Appends `total` records spread evenly over the consumption topic's
/// partitions, in 1,000-record batches.
fn consume_log(dir: &Path, total: u64) -> Log {
    let log = Log::open(dir.join("consume"), LogConfig::default()).expect("open log");
    log.create_topic(
        CONSUME_TOPIC,
        TopicConfig::default()
            .partitions(CONSUME_PARTITIONS)
            .segment_bytes(256 << 20),
    )
    .expect("create the consumption topic");
    let records = make_records(RECORDS_PER_BATCH);
    let per_partition = total / u64::from(CONSUME_PARTITIONS);
    for partition in 0..CONSUME_PARTITIONS {
        let mut left = per_partition;
        while left > 0 {
            let n = left.min(RECORDS_PER_BATCH as u64) as usize;
            log.append(CONSUME_TOPIC, partition, &records[..n])
                .expect("append");
            left -= n as u64;
        }
    }
    log.flush().expect("flush");
    log
}

/// What one consumer thread saw: per partition, the next offset it expects
/// and how many records it read.
type Seen = BTreeMap<u32, (i64, u64)>;

/// Polls until `read` reaches `total`, checking each partition's records
/// come in offset order without gaps or repeats.
fn consume_thread(
    consumer: &mut Consumer,
    read: &AtomicU64,
    total: u64,
    start: &Barrier,
) -> (Seen, Duration) {
    let mut seen = Seen::new();
    let mut checksum = 0u64;
    start.wait();
    let cpu = thread_cpu_time();
    while read.load(Ordering::Acquire) < total {
        let records = consumer.poll(Duration::from_millis(1)).expect("poll");
        let mut n = 0u64;
        for record in &records {
            let (next, count) = seen.entry(record.partition).or_insert((0, 0));
            assert_eq!(
                record.offset, *next,
                "partition {} out of order or repeated",
                record.partition
            );
            *next += 1;
            *count += 1;
            let value = record.value.expect("a value");
            checksum = checksum.wrapping_add(u64::from(value[0]) + value.len() as u64);
            n += 1;
        }
        if n > 0 {
            read.fetch_add(n, Ordering::AcqRel);
        }
    }
    black_box(checksum);
    (seen, thread_cpu_time() - cpu)
}

/// Runs two prepared consumers on two threads until all `total` records
/// were read, checks each partition was read exactly once, and returns the
/// wall time and the two threads' CPU time.
fn consume_round(log: &Log, mut consumers: [Consumer; 2], total: u64) -> Timing {
    let read = AtomicU64::new(0);
    let start = Barrier::new(3);
    let (timing, seen) = thread::scope(|scope| {
        let handles: Vec<_> = consumers
            .iter_mut()
            .map(|consumer| {
                let (read, start) = (&read, &start);
                scope.spawn(move || consume_thread(consumer, read, total, start))
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let results: Vec<(Seen, Duration)> = handles
            .into_iter()
            .map(|h| h.join().expect("consumer thread"))
            .collect();
        let wall = began.elapsed();
        let cpu = results.iter().map(|(_, cpu)| *cpu).sum();
        let seen: Vec<Seen> = results.into_iter().map(|(seen, _)| seen).collect();
        (Timing { wall, cpu }, seen)
    });
    assert_eq!(
        read.load(Ordering::Acquire),
        total,
        "every record read once"
    );
    for partition in 0..CONSUME_PARTITIONS {
        let end = log
            .offsets(CONSUME_TOPIC, partition)
            .expect("offsets")
            .high_watermark;
        let readers: Vec<(i64, u64)> = seen
            .iter()
            .filter_map(|s| s.get(&partition).copied())
            .collect();
        assert_eq!(
            readers,
            vec![(end, u64::try_from(end).expect("non-negative end"))],
            "partition {partition} read whole by exactly one consumer"
        );
    }
    for consumer in consumers {
        consumer.close().expect("close consumer");
    }
    timing
}

fn group_round(log: &Log, round: u64, total: u64) -> Timing {
    let config = ConsumerConfig::group(format!("consume-{round}"))
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false);
    let mut a = log.consumer(config.clone());
    a.subscribe(&[CONSUME_TOPIC]).expect("subscribe");
    let mut b = log.consumer(config);
    b.subscribe(&[CONSUME_TOPIC]).expect("subscribe");
    // Both joined before either polls: the first polls finish the
    // rebalance, so no partition is read by both.
    consume_round(log, [a, b], total)
}

fn assigned_round(log: &Log, total: u64) -> Timing {
    let config = ConsumerConfig::default()
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false);
    let consumers = [[0, 1], [2, 3]].map(|partitions| {
        let mut consumer = log.consumer(config.clone());
        let tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|&p| TopicPartition::new(CONSUME_TOPIC, p))
            .collect();
        consumer.assign(&tps).expect("assign");
        consumer
    });
    consume_round(log, consumers, total)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn latency(&mut self, name: &str, samples: &[Rebalance]) {
        let wall: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
        let cpu: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
        let p50 = quantile(&wall, 0.5);
        let p99 = quantile(&wall, 0.99);
        let max = quantile(&wall, 1.0);
        let mean_passes =
            samples.iter().map(|s| s.passes).sum::<usize>() as f64 / samples.len() as f64;
        let verdict = |d: Duration| if d < REBALANCE_GOAL { "met" } else { "MISSED" };
        self.lines.push(format!(
            "rebalance {name:<42} median {:>7.1} µs, p99 {:>7.1} µs, max {:>7.1} µs \
             (goal < {} ms: median {}, p99 {}; {} samples, {mean_passes:.1} polling passes)",
            micros(p50),
            micros(p99),
            micros(max),
            REBALANCE_GOAL.as_millis(),
            verdict(p50),
            verdict(p99),
            samples.len(),
        ));
        self.lines.push(format!(
            "rebalance {:<42} median {:>7.1} µs, p99 {:>7.1} µs, max {:>7.1} µs (CPU time of the polling thread)",
            format!("cpu:{name}"),
            micros(quantile(&cpu, 0.5)),
            micros(quantile(&cpu, 0.99)),
            micros(quantile(&cpu, 1.0)),
        ));
    }

    fn rate(&mut self, name: &str, rates: &[f64]) {
        self.lines.push(rate_line(name, rates, None));
    }

    fn ratio(&mut self, name: &str, a: &[f64], b: &[f64], goal: Option<f64>) {
        self.lines.push(ratio_line_without_best(name, a, b, goal));
    }
}

fn main() {
    let full = bench_mode();
    print_load("start");
    let rebalances = size_from_env("BROOKLET_BENCH_REBALANCES", 300, full, 3);
    let total = size_from_env("BROOKLET_BENCH_GROUP_RECORDS", 6_000_000, full, 8_000)
        / u64::from(CONSUME_PARTITIONS)
        * u64::from(CONSUME_PARTITIONS);
    println!(
        "sizes: {rebalances} rebalances of each kind per strategy, {total} records to consume"
    );

    let dir = scratch_dir("groups-");
    let rebalance = rebalance_log(dir.path());
    let consume = consume_log(dir.path(), total);
    let strategies = [
        AssignmentStrategy::Range,
        AssignmentStrategy::CooperativeSticky,
    ];
    let mut groups: Vec<RebalanceGroup> = strategies
        .iter()
        .map(|&s| RebalanceGroup::new(&rebalance, s))
        .collect();

    let mut criterion = common::criterion(Duration::from_secs(2));

    let mut bench = criterion.benchmark_group("rebalance_10_members_100_partitions");
    for group in &mut groups {
        let name = strategy_name(group.strategy);
        bench.bench_function(format!("{name}/join"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    elapsed += group.join().wall;
                    group.leave();
                }
                elapsed
            })
        });
        bench.bench_function(format!("{name}/leave"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    group.join();
                    elapsed += group.leave().wall;
                }
                elapsed
            })
        });
    }
    bench.finish();

    let mut round = 0u64;
    let mut bench = criterion.benchmark_group("consume_4_partitions_2_consumers");
    bench.sampling_mode(SamplingMode::Flat);
    bench.throughput(Throughput::Elements(total));
    bench.bench_function("group_of_2", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    round += 1;
                    group_round(&consume, round, total).wall
                })
                .sum()
        })
    });
    bench.bench_function("unrelated_assigned", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| assigned_round(&consume, total).wall)
                .sum()
        })
    });
    bench.finish();
    criterion.final_summary();

    // The figures to quote.
    let mut report = Report::default();
    for group in &mut groups {
        let name = strategy_name(group.strategy);
        let (joins, leaves) = rebalance_samples(group, rebalances);
        report.latency(&format!("{name}_11th_joins"), &joins);
        report.latency(&format!("{name}_11th_leaves"), &leaves);
    }

    let mut wall = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for v in rotation(reps(full), 2) {
        let timing = if v == 0 {
            round += 1;
            group_round(&consume, round, total)
        } else {
            assigned_round(&consume, total)
        };
        wall[v].push(total as f64 / timing.wall.as_secs_f64());
        cpu[v].push(total as f64 / timing.cpu.as_secs_f64().max(1e-9));
    }
    report.rate("group of 2 (subscribe), 2 threads", &wall[0]);
    report.rate("2 unrelated consumers (assign), 2 threads", &wall[1]);
    report.ratio(
        "group_consume/unrelated_consume",
        &wall[0],
        &wall[1],
        Some(0.8),
    );
    report.ratio(
        "cpu:group_consume/unrelated_consume",
        &cpu[0],
        &cpu[1],
        None,
    );

    println!("\n=== groups: figures (Instant) ===");
    for line in &report.lines {
        println!("{line}");
    }
    print_parallelism();
    print_load("end");

    for group in groups {
        for member in group.members {
            member.close().expect("close a member");
        }
    }
    rebalance.close().expect("close the rebalance log");
    // Its data is about to be deleted: stop without flushing it.
    discard(consume);
    drop(dir);
}
