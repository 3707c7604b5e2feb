//! A consumer group never lets two members own one partition. A property
//! test drives one group (each case with one assignment strategy, eager or
//! cooperative) through random joins, polls, commits, closes, kills,
//! members that stop polling, static members that restart or get fenced,
//! clock jumps past the session and poll time-outs, new partitions and new
//! topics. After every step: no two consumers claim one partition in the
//! same generation, no two current members claim one at all, a member of
//! the current generation holds exactly what `describe_group` gives it (an
//! eager member may hold nothing while it re-joins), and a commit succeeds
//! exactly when the committer is a member of the current generation. Once
//! every live consumer has polled a few times without the clock moving, the
//! group is stable, every subscribed partition has exactly one owner, and
//! each member's own assignment equals what `describe_group` says. A
//! threaded stress test checks the same invariant while members join,
//! close and crash in a seeded order and a controller moves the clock
//! concurrently. Smaller tests show that a member blocked in `poll` is
//! woken by a rebalance without the clock moving, that a topic created
//! after subscribing is picked up, and (a bug, see its comment) that a
//! static member coming back with another subscription gets only its own
//! topics.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use brooklet::{
    AssignmentStrategy, Clock, Consumer, ConsumerConfig, ConsumerRecords, Error, GroupDescription,
    GroupState, Log, ManualClock, OffsetReset, Record, TopicConfig, TopicPartition,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

// The stress test draws its seeded order of events from this.
use common::XorShift64Star as Rng;

const GROUP: &str = "g";
const SESSION_MS: i64 = 10_000;
const MAX_POLL_MS: i64 = 30_000;
const START_MS: i64 = 1_000_000;
const MAX_TOPICS: usize = 3;
const MAX_PARTITIONS: u32 = 5;
const MAX_LIVE: usize = 5;
const MAX_OPS: usize = 50;
/// Cases when the logs live in memory (about 2 ms each), and on disk
/// (about 100 ms each, mostly creating and syncing files).
const DEFAULT_CASES_IN_MEMORY: u32 = 400;
const DEFAULT_CASES_ON_DISK: u32 = 64;
/// Rounds of "every live consumer polls once" that a settled group needs at
/// most: re-join, pick up, and for cooperative-sticky a follow-up round.
const SETTLE_PASSES: usize = 12;

const STRATEGIES: [AssignmentStrategy; 4] = [
    AssignmentStrategy::Range,
    AssignmentStrategy::RoundRobin,
    AssignmentStrategy::Sticky,
    AssignmentStrategy::CooperativeSticky,
];

type Tps = BTreeSet<TopicPartition>;

fn topic_name(i: usize) -> String {
    format!("t{i}")
}

/// A log on a manual clock. These tests exercise the group protocol, not
/// storage: the log lives in memory-backed `/dev/shm` where there is one,
/// which makes a property-test case about ten times faster than on disk.
fn manual_log() -> (Log, Arc<ManualClock>, tempfile::TempDir) {
    common::shm_manual_log("brooklet-groups-", START_MS)
}

fn member_config(strategy: AssignmentStrategy, client: &str) -> ConsumerConfig {
    ConsumerConfig::group(GROUP)
        .client_id(client)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .session_timeout(Duration::from_millis(SESSION_MS as u64))
        .max_poll_interval(Duration::from_millis(MAX_POLL_MS as u64))
        .assignment_strategy(strategy)
}

fn fill_partition(log: &Log, topic: &str, partition: u32) -> Result<(), String> {
    log.append(
        topic,
        partition,
        &[Record::new("a").key("k"), Record::new("b").key("k")],
    )
    .map(|_| ())
    .map_err(|e| format!("append to {topic}-{partition}: {e}"))
}

/// Records a poll returned must come from partitions the consumer holds
/// after the poll.
fn check_records(label: &str, records: &ConsumerRecords, held: &Tps) -> Result<(), String> {
    for r in records {
        let tp = TopicPartition::new(r.topic, r.partition);
        if !held.contains(&tp) {
            return Err(format!(
                "{label} got offset {} of {tp}, which it does not hold ({held:?})",
                r.offset
            ));
        }
    }
    Ok(())
}

/// What one live consumer says about itself.
#[derive(Clone, Debug)]
struct View {
    label: String,
    member_id: String,
    generation: i32,
    claimed: Tps,
}

fn view_of(label: String, consumer: &Consumer) -> Option<View> {
    consumer
        .group_membership()
        .map(|(member_id, generation)| View {
            label,
            member_id,
            generation,
            claimed: consumer.assignment().into_iter().collect(),
        })
}

/// The ownership invariant at one instant: `views` are the live consumers
/// (not known to be fenced), `description` the coordinator's state at the
/// same instant.
fn check_snapshot(
    description: &GroupDescription,
    views: &[View],
    eager: bool,
    existing: Option<&Tps>,
) -> Result<(), String> {
    // A partition of a deleted topic may linger in an assignment, or in what
    // a consumer holds, until the next round; only existing ones count.
    let exists = |tp: &TopicPartition| existing.is_none_or(|e| e.contains(tp));
    let mut described_owner: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for member in &description.members {
        for tp in &member.assignment {
            if let Some(other) = described_owner.insert(tp, &member.member_id) {
                return Err(format!(
                    "describe_group gives {tp} to {other} and {}: {description:?}",
                    member.member_id
                ));
            }
        }
    }
    for lag in &description.partitions {
        let expected = described_owner.get(&lag.partition).map(|o| o.to_string());
        if lag.owner != expected {
            return Err(format!(
                "partition {} reported owned by {:?}, assignments say {expected:?}",
                lag.partition, lag.owner
            ));
        }
    }
    let members: BTreeMap<&str, Tps> = description
        .members
        .iter()
        .map(|m| {
            let assignment = m.assignment.iter().filter(|tp| exists(tp)).cloned();
            (m.member_id.as_str(), assignment.collect())
        })
        .collect();
    let mut by_generation: HashMap<(i32, &TopicPartition), &str> = HashMap::new();
    let mut by_member: HashMap<&TopicPartition, &str> = HashMap::new();
    for view in views {
        let claimed: Tps = view
            .claimed
            .iter()
            .filter(|tp| exists(tp))
            .cloned()
            .collect();
        for tp in &view.claimed {
            if let Some(other) = by_generation.insert((view.generation, tp), &view.label) {
                return Err(format!(
                    "{other} and {} both claim {tp} in generation {}",
                    view.label, view.generation
                ));
            }
        }
        let Some(described) = members.get(view.member_id.as_str()) else {
            // Removed from the group; it learns so at its next poll.
            continue;
        };
        for tp in &view.claimed {
            if let Some(other) = by_member.insert(tp, &view.label) {
                return Err(format!(
                    "current members {other} and {} both hold {tp}",
                    view.label
                ));
            }
        }
        if view.generation == description.generation {
            let revoked_to_rejoin =
                eager && description.state == GroupState::PreparingRebalance && claimed.is_empty();
            if claimed != *described && !revoked_to_rejoin {
                return Err(format!(
                    "{} ({}) holds {:?} in generation {} but the group gives it {described:?} ({:?})",
                    view.label, view.member_id, view.claimed, view.generation, description.state
                ));
            }
        } else if view.generation > description.generation {
            return Err(format!(
                "{} believes in generation {} beyond the group's {}",
                view.label, view.generation, description.generation
            ));
        } else if eager && !claimed.is_empty() {
            return Err(format!(
                "eager member {} still holds {:?} from generation {} in generation {}",
                view.label, view.claimed, view.generation, description.generation
            ));
        }
    }
    Ok(())
}

/// Whether the group has settled: stable, every live consumer a member of
/// the current generation holding what the group gives it, and every
/// partition in `expected` owned once.
fn settled(description: &GroupDescription, views: &[View], expected: &Tps) -> bool {
    if views.is_empty() {
        return description.state == GroupState::Empty && description.members.is_empty();
    }
    if description.state != GroupState::Stable || description.members.len() != views.len() {
        return false;
    }
    let owned: Tps = description
        .members
        .iter()
        .flat_map(|m| m.assignment.iter().cloned())
        .collect();
    let owned_count: usize = description.members.iter().map(|m| m.assignment.len()).sum();
    owned == *expected
        && owned_count == expected.len()
        && views.iter().all(|view| {
            view.generation == description.generation
                && description.members.iter().any(|m| {
                    m.member_id == view.member_id
                        && m.assignment.iter().cloned().collect::<Tps>() == view.claimed
                })
        })
}

// ---------------------------------------------------------------------
// The property test.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Sub {
    /// `t0`.
    First,
    /// `t0` and `t1` (which may not exist yet).
    FirstTwo,
    /// Every `t<n>`, by pattern.
    Pattern,
}

#[derive(Clone, Debug)]
struct Setup {
    strategy: AssignmentStrategy,
    first_partitions: u32,
    second_partitions: Option<u32>,
}

#[derive(Clone, Debug)]
enum Op {
    Join {
        sub: Sub,
        static_member: bool,
    },
    Poll(usize),
    Commit(usize),
    Close(usize),
    Kill(usize),
    StopPolling(usize),
    RestartStatic(usize),
    /// Subscribe again (to the same or other topics): leave, then join.
    Resubscribe(usize, Sub),
    Unsubscribe(usize),
    AdvanceClock(i64),
    AddPartition(usize),
    /// Creates the lowest-numbered missing topic `t<n>`.
    CreateTopic(u32),
    DeleteTopic(usize),
    Settle,
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (0..STRATEGIES.len(), 1..=4u32, prop::option::of(1..=3u32)).prop_map(
        |(s, first_partitions, second_partitions)| Setup {
            strategy: STRATEGIES[s],
            first_partitions,
            second_partitions,
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let sub = prop_oneof![Just(Sub::First), Just(Sub::FirstTwo), Just(Sub::Pattern)].boxed();
    let advance = prop_oneof![
        Just(1_000i64),
        Just(SESSION_MS - 1),
        Just(SESSION_MS),
        Just(MAX_POLL_MS - 1),
        Just(MAX_POLL_MS),
        0..=2 * MAX_POLL_MS,
    ];
    prop_oneof![
        4 => (sub.clone(), prop::bool::weighted(0.3))
            .prop_map(|(sub, static_member)| Op::Join { sub, static_member }),
        8 => any::<usize>().prop_map(Op::Poll),
        2 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Close),
        1 => any::<usize>().prop_map(Op::Kill),
        1 => any::<usize>().prop_map(Op::StopPolling),
        1 => any::<usize>().prop_map(Op::RestartStatic),
        1 => (any::<usize>(), sub.clone()).prop_map(|(i, sub)| Op::Resubscribe(i, sub)),
        1 => any::<usize>().prop_map(Op::Unsubscribe),
        2 => advance.prop_map(Op::AdvanceClock),
        1 => any::<usize>().prop_map(Op::AddPartition),
        1 => (1..=2u32).prop_map(Op::CreateTopic),
        1 => any::<usize>().prop_map(Op::DeleteTopic),
        1 => Just(Op::Settle),
    ]
}

#[derive(Default, Debug)]
struct Stats {
    polls: Cell<u32>,
    records: Cell<u32>,
    commits_accepted: Cell<u32>,
    commits_refused: Cell<u32>,
    fenced: Cell<u32>,
    removed_and_rejoined: Cell<u32>,
    settles: Cell<u32>,
    cooperative_settles: Cell<u32>,
    resubscribes: Cell<u32>,
    topics_created: Cell<u32>,
    topics_deleted: Cell<u32>,
    max_generation: Cell<i32>,
}

fn bump(counter: &Cell<u32>) {
    counter.set(counter.get() + 1);
}

struct Handle {
    consumer: Option<Consumer>,
    /// None after `unsubscribe`.
    sub: Option<Sub>,
    instance: Option<String>,
    /// Not polled until the next settle.
    stopped: bool,
    /// Replaced by a newer consumer with the same instance id while live.
    fenced: bool,
    last_member_id: Option<String>,
}

fn subscribe_to(consumer: &mut Consumer, sub: Sub) -> brooklet::Result<()> {
    match sub {
        Sub::First => consumer.subscribe(&["t0"]),
        Sub::FirstTwo => consumer.subscribe(&["t0", "t1"]),
        Sub::Pattern => consumer.subscribe_pattern("t[0-9]+"),
    }
}

struct World<'a> {
    log: Log,
    clock: Arc<ManualClock>,
    strategy: AssignmentStrategy,
    handles: Vec<Handle>,
    /// Indexes of the topics `t<n>` that exist.
    topics: BTreeSet<usize>,
    next_instance: usize,
    stats: &'a Stats,
    /// Dropped last: the consumers hold clones of the log, which closes
    /// with the last of them, before its directory goes.
    _dir: tempfile::TempDir,
}

impl World<'_> {
    fn new<'s>(setup: &Setup, stats: &'s Stats) -> Result<World<'s>, String> {
        let (log, clock, dir) = manual_log();
        let mut world = World {
            log,
            clock,
            strategy: setup.strategy,
            handles: Vec::new(),
            topics: BTreeSet::new(),
            next_instance: 0,
            stats,
            _dir: dir,
        };
        world.create_topic(setup.first_partitions)?;
        if let Some(partitions) = setup.second_partitions {
            world.create_topic(partitions)?;
        }
        Ok(world)
    }

    fn eager(&self) -> bool {
        !self.strategy.is_cooperative()
    }

    fn create_topic(&mut self, partitions: u32) -> Result<(), String> {
        let Some(index) = (0..MAX_TOPICS).find(|i| !self.topics.contains(i)) else {
            return Ok(());
        };
        let name = topic_name(index);
        self.log
            .create_topic(&name, TopicConfig::default().partitions(partitions))
            .map_err(|e| format!("create {name}: {e}"))?;
        for p in 0..partitions {
            fill_partition(&self.log, &name, p)?;
        }
        self.topics.insert(index);
        bump(&self.stats.topics_created);
        Ok(())
    }

    fn existing_partitions(&self) -> Result<Tps, String> {
        let mut existing = Tps::new();
        for &index in &self.topics {
            let topic = topic_name(index);
            let count = self
                .log
                .partition_count(&topic)
                .map_err(|e| format!("partition count of {topic}: {e}"))?;
            existing.extend((0..count).map(|p| TopicPartition::new(topic.clone(), p)));
        }
        Ok(existing)
    }

    fn live(&self) -> Vec<usize> {
        (0..self.handles.len())
            .filter(|&i| self.handles[i].consumer.is_some())
            .collect()
    }

    fn pick(&self, i: usize) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[i % live.len()])
    }

    fn describe(&self) -> Result<Option<GroupDescription>, String> {
        match self.log.describe_group(GROUP) {
            Ok(d) => {
                let max = self.stats.max_generation.get().max(d.generation);
                self.stats.max_generation.set(max);
                Ok(Some(d))
            }
            Err(Error::UnknownGroup(_)) => Ok(None),
            Err(e) => Err(format!("describe_group: {e}")),
        }
    }

    fn views(&self) -> Vec<View> {
        self.handles
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.fenced)
            .filter_map(|(i, h)| {
                h.consumer
                    .as_ref()
                    .and_then(|c| view_of(format!("c{i}"), c))
            })
            .collect()
    }

    fn check(&self) -> Result<(), String> {
        if let Some(d) = self.describe()? {
            let existing = self.existing_partitions()?;
            check_snapshot(&d, &self.views(), self.eager(), Some(&existing))?;
        }
        Ok(())
    }

    fn subscribe(&mut self, sub: Sub, instance: Option<String>) -> Result<(), String> {
        let index = self.handles.len();
        let mut config = member_config(self.strategy, &format!("c{index}"));
        if let Some(instance) = &instance {
            config = config.group_instance_id(instance.clone());
        }
        let mut consumer = self.log.consumer(config);
        subscribe_to(&mut consumer, sub).map_err(|e| format!("c{index} subscribes: {e}"))?;
        let last_member_id = consumer.group_membership().map(|(id, _)| id);
        self.handles.push(Handle {
            consumer: Some(consumer),
            sub: Some(sub),
            instance,
            stopped: false,
            fenced: false,
            last_member_id,
        });
        Ok(())
    }

    fn poll(&mut self, i: usize) -> Result<(), String> {
        let stats = self.stats;
        let handle = &mut self.handles[i];
        let Some(consumer) = handle.consumer.as_mut() else {
            return Ok(());
        };
        let result = consumer.poll(Duration::ZERO);
        if handle.fenced {
            return match result {
                Err(Error::FencedInstanceId { .. }) => {
                    bump(&stats.fenced);
                    handle.consumer = None;
                    Ok(())
                }
                other => Err(format!("fenced c{i} polled: {other:?}")),
            };
        }
        let records = result.map_err(|e| format!("c{i} polls: {e}"))?;
        bump(&stats.polls);
        stats
            .records
            .set(stats.records.get() + u32::try_from(records.len()).unwrap_or(u32::MAX));
        let held: Tps = consumer.assignment().into_iter().collect();
        check_records(&format!("c{i}"), &records, &held)?;
        let member_id = consumer.group_membership().map(|(id, _)| id);
        if member_id.is_none() != handle.sub.is_none() {
            return Err(format!(
                "c{i} (subscription {:?}) has membership {member_id:?} after polling",
                handle.sub
            ));
        }
        if member_id.is_none() {
            return Ok(());
        }
        if handle.last_member_id.is_some() && handle.last_member_id != member_id {
            bump(&stats.removed_and_rejoined);
        }
        handle.last_member_id = member_id;
        Ok(())
    }

    fn commit(&mut self, i: usize) -> Result<(), String> {
        let description = self.describe()?;
        let stats = self.stats;
        let handle = &mut self.handles[i];
        let Some(consumer) = handle.consumer.as_mut() else {
            return Ok(());
        };
        let membership = consumer.group_membership();
        let result = consumer.commit();
        if handle.fenced {
            return match result {
                Err(Error::FencedInstanceId { .. }) => {
                    bump(&stats.commits_refused);
                    Ok(())
                }
                other => Err(format!("fenced c{i} committed: {other:?}")),
            };
        }
        let Some((member_id, generation)) = membership else {
            // Outside the group: only while it has no members.
            let empty = description.as_ref().is_none_or(|d| d.members.is_empty());
            return match result {
                Ok(()) if empty => Ok(()),
                Err(Error::GroupNotEmpty(_)) if !empty => {
                    bump(&stats.commits_refused);
                    Ok(())
                }
                other => Err(format!(
                    "c{i} outside the group committed: {other:?}; group: {description:?}"
                )),
            };
        };
        let in_group = description
            .as_ref()
            .is_some_and(|d| d.members.iter().any(|m| m.member_id == member_id));
        let current = description
            .as_ref()
            .is_some_and(|d| d.generation == generation);
        match result {
            Ok(()) if in_group && current => bump(&stats.commits_accepted),
            Err(Error::UnknownMember { .. }) if !in_group => bump(&stats.commits_refused),
            Err(Error::IllegalGeneration { .. }) if in_group && !current => {
                bump(&stats.commits_refused);
            }
            other => {
                return Err(format!(
                    "c{i} ({member_id}, generation {generation}, in group: {in_group}) committed: \
                     {other:?}; group: {description:?}"
                ));
            }
        }
        Ok(())
    }

    fn restart_static(&mut self, i: usize) -> Result<(), String> {
        let statics: Vec<usize> = (0..self.handles.len())
            .filter(|&h| self.handles[h].instance.is_some())
            .collect();
        if statics.is_empty() || self.live().len() > MAX_LIVE {
            return Ok(());
        }
        let source = statics[i % statics.len()];
        let instance = self.handles[source].instance.clone();
        let sub = self.handles[source].sub.unwrap_or(Sub::First);
        let description = self.describe()?;
        let holder = (0..self.handles.len()).find(|&h| {
            let handle = &self.handles[h];
            handle.consumer.is_some() && !handle.fenced && handle.instance == instance
        });
        if let Some(holder) = holder {
            // Only a holder that is still a member is fenced; one that was
            // removed would re-join under the same instance id instead.
            let member_id = self.handles[holder]
                .consumer
                .as_ref()
                .and_then(Consumer::group_membership)
                .map(|(id, _)| id);
            let in_group = description.as_ref().is_some_and(|d| {
                d.members
                    .iter()
                    .any(|m| Some(&m.member_id) == member_id.as_ref())
            });
            if !in_group {
                return Ok(());
            }
            self.handles[holder].fenced = true;
        }
        self.subscribe(sub, instance)
    }

    fn expected_partitions(&self) -> Result<Tps, String> {
        let mut topics = BTreeSet::new();
        for handle in &self.handles {
            if handle.consumer.is_none() || handle.fenced {
                continue;
            }
            match handle.sub {
                None => {}
                Some(Sub::First) => {
                    topics.insert(topic_name(0));
                }
                Some(Sub::FirstTwo) => {
                    topics.insert(topic_name(0));
                    topics.insert(topic_name(1));
                }
                Some(Sub::Pattern) => topics.extend(self.topics.iter().map(|&i| topic_name(i))),
            }
        }
        let mut expected = Tps::new();
        for topic in topics {
            let count = match self.log.partition_count(&topic) {
                Ok(count) => count,
                Err(Error::UnknownTopic(_)) => continue,
                Err(e) => return Err(format!("partition count of {topic}: {e}")),
            };
            expected.extend((0..count).map(|p| TopicPartition::new(topic.clone(), p)));
        }
        Ok(expected)
    }

    /// Every live consumer polls until the group is stable; dead members
    /// (killed, or static and closed) are first left to expire.
    fn settle(&mut self) -> Result<(), String> {
        let live_ids: BTreeSet<String> = self.views().into_iter().map(|v| v.member_id).collect();
        if let Some(d) = self.describe()?
            && d.members.iter().any(|m| !live_ids.contains(&m.member_id))
        {
            self.clock.advance_ms(SESSION_MS);
        }
        for handle in &mut self.handles {
            handle.stopped = false;
        }
        let mut last = None;
        for _ in 0..SETTLE_PASSES {
            for i in self.live() {
                self.poll(i)?;
                self.check()?;
            }
            let Some(d) = self.describe()? else {
                return Ok(());
            };
            let views = self.views();
            let expected = self.expected_partitions()?;
            if settled(&d, &views, &expected) {
                bump(&self.stats.settles);
                if !self.eager() {
                    bump(&self.stats.cooperative_settles);
                }
                return Ok(());
            }
            last = Some((d, views, expected));
        }
        Err(format!(
            "the group did not settle in {SETTLE_PASSES} passes: {last:#?}"
        ))
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Join { sub, static_member } => {
                if self.live().len() < MAX_LIVE {
                    let instance = static_member.then(|| {
                        self.next_instance += 1;
                        format!("instance-{}", self.next_instance)
                    });
                    self.subscribe(sub, instance)?;
                }
            }
            Op::Poll(i) => {
                if let Some(i) = self.pick(i)
                    && !self.handles[i].stopped
                {
                    self.poll(i)?;
                }
            }
            Op::Commit(i) => {
                if let Some(i) = self.pick(i) {
                    self.commit(i)?;
                }
            }
            Op::Close(i) => {
                if let Some(i) = self.pick(i)
                    && let Some(consumer) = self.handles[i].consumer.take()
                {
                    let fenced = self.handles[i].fenced;
                    match consumer.close() {
                        Ok(()) => {}
                        Err(Error::FencedInstanceId { .. }) if fenced => {}
                        Err(e) => return Err(format!("c{i} closes: {e}")),
                    }
                }
            }
            Op::Kill(i) => {
                if let Some(i) = self.pick(i)
                    && let Some(consumer) = self.handles[i].consumer.take()
                {
                    consumer.kill();
                }
            }
            Op::StopPolling(i) => {
                if let Some(i) = self.pick(i) {
                    self.handles[i].stopped = true;
                }
            }
            Op::RestartStatic(i) => self.restart_static(i)?,
            Op::Resubscribe(i, sub) => {
                if let Some(i) = self.pick(i)
                    && !self.handles[i].fenced
                {
                    let handle = &mut self.handles[i];
                    if let Some(consumer) = handle.consumer.as_mut() {
                        subscribe_to(consumer, sub)
                            .map_err(|e| format!("c{i} subscribes again: {e}"))?;
                        handle.sub = Some(sub);
                        handle.last_member_id = consumer.group_membership().map(|(id, _)| id);
                        bump(&self.stats.resubscribes);
                    }
                }
            }
            Op::Unsubscribe(i) => {
                if let Some(i) = self.pick(i)
                    && !self.handles[i].fenced
                {
                    let handle = &mut self.handles[i];
                    if let Some(consumer) = handle.consumer.as_mut() {
                        consumer.unsubscribe();
                        handle.sub = None;
                        handle.last_member_id = None;
                    }
                }
            }
            Op::AdvanceClock(ms) => self.clock.advance_ms(ms),
            Op::AddPartition(t) => {
                let existing: Vec<usize> = self.topics.iter().copied().collect();
                if existing.is_empty() {
                    return Ok(());
                }
                let name = topic_name(existing[t % existing.len()]);
                let count = self
                    .log
                    .partition_count(&name)
                    .map_err(|e| format!("partition count of {name}: {e}"))?;
                if count < MAX_PARTITIONS {
                    self.log
                        .add_partitions(&name, count + 1)
                        .map_err(|e| format!("add a partition to {name}: {e}"))?;
                    fill_partition(&self.log, &name, count)?;
                }
            }
            Op::CreateTopic(partitions) => self.create_topic(partitions)?,
            Op::DeleteTopic(t) => {
                let existing: Vec<usize> = self.topics.iter().copied().collect();
                if !existing.is_empty() {
                    let index = existing[t % existing.len()];
                    self.log
                        .delete_topic(&topic_name(index))
                        .map_err(|e| format!("delete t{index}: {e}"))?;
                    self.topics.remove(&index);
                    bump(&self.stats.topics_deleted);
                }
            }
            Op::Settle => self.settle()?,
        }
        Ok(())
    }
}

fn run_case(setup: &Setup, ops: &[Op], stats: &Stats) -> Result<(), String> {
    let mut world = World::new(setup, stats)?;
    for (step, op) in ops.iter().enumerate() {
        world
            .apply(op)
            .and_then(|()| world.check())
            .map_err(|why| format!("step {step} ({op:?}) of {setup:?}: {why}"))?;
    }
    world
        .settle()
        .map_err(|why| format!("final settle of {setup:?}: {why}"))
}

#[test]
fn no_partition_has_two_owners_and_the_group_settles() {
    let default_cases = if std::path::Path::new(common::SHM).is_dir() {
        DEFAULT_CASES_IN_MEMORY
    } else {
        DEFAULT_CASES_ON_DISK
    };
    let config = Config {
        max_shrink_iters: 2_000,
        ..common::proptest_config(default_cases, 0x6772_6f75_7073)
    };
    let stats = Stats::default();
    let strategy = (
        setup_strategy(),
        prop::collection::vec(op_strategy(), 1..=MAX_OPS),
    );
    common::check_property(config, &strategy, |(setup, ops)| {
        run_case(&setup, &ops, &stats)
    });
    // Shown with --nocapture: what the cases reached.
    eprintln!("{stats:?}");
    assert!(stats.polls.get() > 500, "{stats:?}");
    assert!(stats.records.get() > 100, "{stats:?}");
    assert!(stats.commits_accepted.get() > 10, "{stats:?}");
    assert!(stats.commits_refused.get() > 10, "{stats:?}");
    assert!(stats.fenced.get() > 0, "{stats:?}");
    assert!(stats.removed_and_rejoined.get() > 10, "{stats:?}");
    assert!(stats.cooperative_settles.get() > 10, "{stats:?}");
    assert!(stats.resubscribes.get() > 10, "{stats:?}");
    assert!(stats.topics_deleted.get() > 10, "{stats:?}");
    assert!(stats.max_generation.get() > 5, "{stats:?}");
}

// ---------------------------------------------------------------------
// The threaded stress test.
// ---------------------------------------------------------------------

const STRESS_TOPIC: &str = "s";
const STRESS_PARTITIONS: u32 = 6;
const STRESS_WORKERS: usize = 4;
const STRESS_PHASES: usize = 120;

#[derive(Clone, Copy, Debug)]
enum Action {
    Join,
    Poll(u32),
    Commit,
    Close,
    Kill,
}

enum Command {
    Phase(Vec<Action>),
    Stop,
}

struct Report {
    worker: usize,
    /// The consumer's view after each of its polls this phase.
    observed: Vec<View>,
    /// Its view at the end of the phase (None without a consumer).
    now: Option<View>,
    errors: Vec<String>,
}

fn stress_worker(
    worker: usize,
    log: Log,
    strategy: AssignmentStrategy,
    commands: mpsc::Receiver<Command>,
    reports: mpsc::Sender<Report>,
) {
    let mut consumer: Option<Consumer> = None;
    let mut incarnation = 0;
    while let Ok(Command::Phase(actions)) = commands.recv() {
        let mut report = Report {
            worker,
            observed: Vec::new(),
            now: None,
            errors: Vec::new(),
        };
        let label = |incarnation: u32| format!("w{worker}.{incarnation}");
        for action in actions {
            match (action, consumer.as_mut()) {
                (Action::Join, None) => {
                    incarnation += 1;
                    let mut c =
                        log.consumer(member_config(strategy, &format!("w{worker}-{incarnation}")));
                    if let Err(e) = c.subscribe(&[STRESS_TOPIC]) {
                        report
                            .errors
                            .push(format!("{} subscribes: {e}", label(incarnation)));
                    }
                    consumer = Some(c);
                }
                (Action::Poll(n), Some(c)) => {
                    for _ in 0..n {
                        match c.poll(Duration::ZERO) {
                            Ok(records) => {
                                let held: Tps = c.assignment().into_iter().collect();
                                if let Err(e) = check_records(&label(incarnation), &records, &held)
                                {
                                    report.errors.push(e);
                                }
                                report.observed.extend(view_of(label(incarnation), c));
                            }
                            Err(e) => report
                                .errors
                                .push(format!("{} polls: {e:?}", label(incarnation))),
                        }
                    }
                }
                (Action::Commit, Some(c)) => match c.commit() {
                    Ok(()) | Err(Error::UnknownMember { .. } | Error::IllegalGeneration { .. }) => {
                    }
                    Err(e) => report
                        .errors
                        .push(format!("{} commits: {e:?}", label(incarnation))),
                },
                (Action::Close, Some(_)) => {
                    if let Some(c) = consumer.take()
                        && let Err(e) = c.close()
                    {
                        report
                            .errors
                            .push(format!("{} closes: {e:?}", label(incarnation)));
                    }
                }
                (Action::Kill, Some(_)) => {
                    if let Some(c) = consumer.take() {
                        c.kill();
                    }
                }
                _ => {}
            }
        }
        report.now = consumer
            .as_ref()
            .and_then(|c| view_of(label(incarnation), c));
        if reports.send(report).is_err() {
            return;
        }
    }
}

/// Aborts the test process if the stress test hangs (a lost wake-up or a
/// deadlock would otherwise block `cargo test` forever). Real time is only
/// a bound here, never part of what is checked.
fn watchdog(limit: Duration) -> mpsc::Sender<()> {
    let (done, wait) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
            eprintln!("group ownership test hung for {limit:?}; aborting");
            std::process::abort();
        }
    });
    done
}

#[derive(Default, Debug)]
struct StressStats {
    generations: BTreeSet<i32>,
    observations: usize,
    kills: usize,
    closes: usize,
    joins: usize,
}

fn run_stress(strategy: AssignmentStrategy, seed: u64) -> StressStats {
    let (log, clock, _dir) = manual_log();
    log.create_topic(
        STRESS_TOPIC,
        TopicConfig::default().partitions(STRESS_PARTITIONS),
    )
    .expect("create the stress topic");
    for p in 0..STRESS_PARTITIONS {
        fill_partition(&log, STRESS_TOPIC, p).expect("fill");
    }
    let (report_tx, report_rx) = mpsc::channel();
    let mut command_txs = Vec::new();
    let mut threads = Vec::new();
    for worker in 0..STRESS_WORKERS {
        let (tx, rx) = mpsc::channel();
        command_txs.push(tx);
        let (log, reports) = (log.clone(), report_tx.clone());
        threads.push(thread::spawn(move || {
            stress_worker(worker, log, strategy, rx, reports);
        }));
    }
    drop(report_tx);
    let eager = !strategy.is_cooperative();
    let mut rng = Rng(seed);
    let mut stats = StressStats::default();
    let mut present = [false; STRESS_WORKERS];
    // Every (generation, partition) claim seen, with who claimed it: one
    // generation's assignment never gives a partition to two members.
    let mut claims: HashMap<(i32, TopicPartition), String> = HashMap::new();
    let mut record_claim = |view: &View, stats: &mut StressStats| {
        stats.generations.insert(view.generation);
        stats.observations += 1;
        for tp in &view.claimed {
            let claimer = claims
                .entry((view.generation, tp.clone()))
                .or_insert_with(|| view.member_id.clone());
            assert_eq!(
                *claimer, view.member_id,
                "{tp} claimed by two members in generation {} ({})",
                view.generation, view.label
            );
        }
    };
    let mut run_phase = |plans: Vec<Vec<Action>>,
                         advance_ms: i64,
                         stats: &mut StressStats,
                         rng: &mut Rng|
     -> (Vec<Option<View>>, GroupDescription) {
        for (tx, plan) in command_txs.iter().zip(plans) {
            tx.send(Command::Phase(plan)).expect("worker alive");
        }
        // Concurrently with the workers: move the clock in steps, look at
        // the group (which also expires members), append now and then.
        for step in 0..4 {
            clock.advance_ms(advance_ms / 4);
            if let Ok(d) = log.describe_group(GROUP) {
                check_snapshot(&d, &[], eager, None).expect("described assignments");
            }
            if step == 1 && rng.below(2) == 0 {
                let p = u32::try_from(rng.below(u64::from(STRESS_PARTITIONS))).expect("small");
                fill_partition(&log, STRESS_TOPIC, p).expect("append");
            }
        }
        // The barrier: every worker reports once it is done with the phase.
        let mut now = vec![None; STRESS_WORKERS];
        let mut errors = Vec::new();
        for _ in 0..STRESS_WORKERS {
            let report = report_rx.recv().expect("a worker report");
            for view in &report.observed {
                record_claim(view, stats);
            }
            if let Some(view) = &report.now {
                record_claim(view, stats);
            }
            errors.extend(report.errors);
            now[report.worker] = report.now;
        }
        assert!(errors.is_empty(), "worker errors: {errors:#?}");
        // Everyone is between phases: the snapshot invariant must hold.
        let d = log.describe_group(GROUP).expect("describe");
        let views: Vec<View> = now.iter().flatten().cloned().collect();
        if let Err(why) = check_snapshot(&d, &views, eager, None) {
            panic!("{strategy:?}: {why}\n{d:#?}\n{views:#?}");
        }
        (now, d)
    };

    for _ in 0..STRESS_PHASES {
        let mut plans = Vec::new();
        for is_present in &mut present {
            let plan = if *is_present {
                match rng.below(20) {
                    0 => {
                        *is_present = false;
                        stats.kills += 1;
                        vec![Action::Poll(1), Action::Kill]
                    }
                    1 => {
                        *is_present = false;
                        stats.closes += 1;
                        vec![Action::Poll(1), Action::Close]
                    }
                    2 | 3 => vec![],
                    4 | 5 => vec![Action::Poll(1), Action::Commit, Action::Poll(1)],
                    _ => vec![Action::Poll(
                        1 + u32::try_from(rng.below(3)).expect("small"),
                    )],
                }
            } else if rng.below(3) > 0 {
                *is_present = true;
                stats.joins += 1;
                vec![Action::Join, Action::Poll(1)]
            } else {
                vec![]
            };
            plans.push(plan);
        }
        let advance_ms = match rng.below(10) {
            0 => SESSION_MS + 4,
            1 => MAX_POLL_MS + 4,
            2..=4 => 1_000,
            _ => 0,
        };
        run_phase(plans, advance_ms, &mut stats, &mut rng);
    }

    // Settle: everyone back in, killed members expired, then polls only.
    clock.advance_ms(SESSION_MS);
    let mut settled_ok = false;
    let mut last = None;
    for _ in 0..SETTLE_PASSES {
        let plans = vec![vec![Action::Join, Action::Poll(1)]; STRESS_WORKERS];
        let (now, d) = run_phase(plans, 0, &mut stats, &mut rng);
        let views: Vec<View> = now.into_iter().flatten().collect();
        let expected: Tps = (0..STRESS_PARTITIONS)
            .map(|p| TopicPartition::new(STRESS_TOPIC, p))
            .collect();
        if views.len() == STRESS_WORKERS && settled(&d, &views, &expected) {
            settled_ok = true;
            break;
        }
        last = Some((d, views));
    }
    assert!(settled_ok, "{strategy:?} did not settle: {last:#?}");
    for tx in &command_txs {
        tx.send(Command::Stop).expect("worker alive");
    }
    for thread in threads {
        thread.join().expect("worker thread");
    }
    drop(log);
    stats
}

#[test]
fn stress_members_join_leave_and_crash_while_the_clock_moves() {
    let done = watchdog(Duration::from_secs(120));
    for (i, strategy) in STRATEGIES.into_iter().enumerate() {
        let stats = run_stress(strategy, 0x5eed_0000 + i as u64);
        eprintln!("{strategy:?}: {stats:?}");
        assert!(stats.generations.len() > 10, "{strategy:?}: {stats:?}");
        assert!(
            stats.kills > 2 && stats.closes > 2,
            "{strategy:?}: {stats:?}"
        );
        assert!(stats.observations > 200, "{strategy:?}: {stats:?}");
    }
    let _ = done.send(());
}

// ---------------------------------------------------------------------
// Topics created after subscribing, and wake-up.
// ---------------------------------------------------------------------

/// Regression: `Log::create_topic` did not bump the metadata version, so
/// the coordinator never noticed a new topic and a member subscribed to a
/// topic that did not exist yet never got its partitions.
#[test]
fn a_member_gets_a_topic_created_after_it_subscribed() {
    let (log, _clock, _dir) = manual_log();
    log.create_topic("t0", TopicConfig::default().partitions(1))
        .expect("create t0");
    let mut named = log.consumer(member_config(AssignmentStrategy::Range, "named"));
    named.subscribe(&["t0", "t1"]).expect("subscribe");
    assert_eq!(named.assignment(), vec![TopicPartition::new("t0", 0)]);
    log.create_topic("t1", TopicConfig::default().partitions(2))
        .expect("create t1");
    for _ in 0..3 {
        named.poll(Duration::ZERO).expect("poll");
    }
    assert_eq!(
        named.assignment(),
        vec![
            TopicPartition::new("t0", 0),
            TopicPartition::new("t1", 0),
            TopicPartition::new("t1", 1)
        ],
        "the new topic is assigned: {:?}",
        log.describe_group(GROUP)
    );
    drop((named, log));
}

/// Regression (src/group/coordinator.rs `join`, the static-member branch): a
/// consumer that took a static member's place took its assignment
/// without a rebalance even when it subscribed to other topics, so it was
/// given (and read) partitions of a topic it never subscribed to, and no
/// later event corrected that while the group stayed stable. The same
/// happened when a live static member called `subscribe` with new topics.
/// Kafka's coordinator rebalances when a returning static member's
/// subscription changed.
#[test]
fn a_static_member_back_with_another_subscription_gets_only_its_topics() {
    let (log, _clock, _dir) = manual_log();
    for topic in ["t0", "t1"] {
        log.create_topic(topic, TopicConfig::default().partitions(1))
            .expect("create");
        fill_partition(&log, topic, 0).expect("fill");
    }
    let config = member_config(AssignmentStrategy::Range, "w").group_instance_id("worker");
    let mut first = log.consumer(config.clone());
    first.subscribe(&["t0", "t1"]).expect("subscribe");
    assert_eq!(first.assignment().len(), 2);
    first.close().expect("close");
    // The same instance comes back, now only for t0.
    let mut second = log.consumer(config);
    second.subscribe(&["t0"]).expect("subscribe");
    let mut topics = BTreeSet::new();
    for _ in 0..4 {
        let records = second.poll(Duration::ZERO).expect("poll");
        topics.extend(records.iter().map(|r| r.topic.to_owned()));
    }
    assert_eq!(
        second.assignment(),
        vec![TopicPartition::new("t0", 0)],
        "{:?}",
        log.describe_group(GROUP)
    );
    assert_eq!(topics, BTreeSet::from(["t0".to_owned()]));
    drop((second, log));
}

#[test]
fn a_member_blocked_in_poll_is_woken_by_a_rebalance() {
    let done = watchdog(Duration::from_secs(60));
    let (log, clock, _dir) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .expect("create");
    for p in 0..2 {
        fill_partition(&log, "t", p).expect("fill");
    }
    let strategy = AssignmentStrategy::Range;
    let mut a = log.consumer(member_config(strategy, "a"));
    a.subscribe(&["t"]).expect("a subscribes");
    let mut consumed = 0;
    for _ in 0..4 {
        consumed += a.poll(Duration::ZERO).expect("a polls").len();
    }
    assert_eq!(consumed, 4, "a alone reads both partitions");
    // a blocks: no new data, and the clock does not move.
    let blocked = thread::spawn(move || {
        let records = a.poll(Duration::from_secs(3_600)).expect("a's long poll");
        let partitions: Tps = records
            .iter()
            .map(|r| TopicPartition::new(r.topic, r.partition))
            .collect();
        (a, partitions)
    });
    let mut b = log.consumer(member_config(strategy, "b"));
    b.subscribe(&["t"]).expect("b subscribes");
    // b's poll returns only once the round completed, which needs a to wake
    // up and re-join from inside its blocked poll.
    let records = b.poll(Duration::from_secs(3_600)).expect("b's long poll");
    let (a, a_partitions) = blocked.join().expect("a's thread");
    assert_eq!(clock.now_ms(), START_MS, "nobody moved the clock");
    let b_partitions: Tps = records
        .iter()
        .map(|r| TopicPartition::new(r.topic, r.partition))
        .collect();
    let a_held: Tps = a.assignment().into_iter().collect();
    let b_held: Tps = b.assignment().into_iter().collect();
    assert_eq!(a_held.len(), 1, "{a_held:?}");
    assert_eq!(b_held.len(), 1, "{b_held:?}");
    assert!(a_held.is_disjoint(&b_held));
    // Nothing was committed: each starts its new partition from the start.
    assert_eq!(a_partitions, a_held);
    assert_eq!(b_partitions, b_held);
    drop((a, b, log));
    let _ = done.send(());
}
