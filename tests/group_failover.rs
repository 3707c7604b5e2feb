//! Consumer groups fail over and rebalance without losing or repeating
//! work. A crashed member's partitions move after the session time-out and
//! one that stops polling loses them after the poll interval; the others
//! resume at its committed offsets and its late commits are refused. A
//! member joining a cooperative-sticky group moves only what it must: the
//! others keep consuming what they keep and revoke only what moves.
//! Members that commit in `on_partitions_revoked` while others come and go
//! process every record exactly once, with every strategy. A static member
//! that comes back within its session time-out gets its partitions back
//! without a rebalance, and a second live consumer with the same instance
//! id fences the first. Group administration lists, describes (with lag),
//! resets and deletes groups, refusing while members remain. The range
//! and round-robin assignors give Kafka's answers in cases taken from
//! Kafka's own tests, and the sticky assignors stay balanced and keep as
//! much as balance allows. The last three tests are regressions for bugs
//! they found (see their comments).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brooklet::{
    AssignmentStrategy, Consumer, ConsumerConfig, Error, GroupDescription, GroupState, Log,
    ManualClock, MemberSubscription, OffsetAndMetadata, OffsetReset, OffsetSpec, RebalanceListener,
    Record, TopicConfig, TopicPartition, assign,
};
use proptest::prelude::*;

// The exactly-once test draws its seeded order of events from this.
use common::XorShift64Star as Rng;

const GROUP: &str = "g";
const SESSION_MS: i64 = 10_000;
const MAX_POLL_MS: i64 = 60_000;
const START_MS: i64 = 1_000_000;
/// Polls every member gets at most while a group settles.
const SETTLE_PASSES: usize = 20;

const STRATEGIES: [AssignmentStrategy; 4] = [
    AssignmentStrategy::Range,
    AssignmentStrategy::RoundRobin,
    AssignmentStrategy::Sticky,
    AssignmentStrategy::CooperativeSticky,
];

type Tps = BTreeSet<TopicPartition>;

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn tps(list: &[(&str, u32)]) -> Vec<TopicPartition> {
    list.iter().map(|(t, p)| tp(t, *p)).collect()
}

fn set(list: &[(&str, u32)]) -> Tps {
    list.iter().map(|(t, p)| tp(t, *p)).collect()
}

/// A log on a manual clock, in memory-backed `/dev/shm` where there is one
/// (these tests are about the group protocol, not storage).
fn manual_log() -> (Log, Arc<ManualClock>, tempfile::TempDir) {
    common::shm_manual_log("brooklet-failover-", START_MS)
}

fn config(strategy: AssignmentStrategy, client: &str) -> ConsumerConfig {
    ConsumerConfig::group(GROUP)
        .client_id(client)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .session_timeout(Duration::from_millis(SESSION_MS as u64))
        .max_poll_interval(Duration::from_millis(MAX_POLL_MS as u64))
        .assignment_strategy(strategy)
}

/// Appends `count` records to a partition, one batch each.
fn produce(log: &Log, topic: &str, partition: u32, count: usize) {
    for _ in 0..count {
        log.append(topic, partition, &[Record::new("v").key("k")])
            .expect("append");
    }
}

/// What a member's rebalance listener saw.
#[derive(Debug, Default)]
struct ListenerLog {
    revoked: Vec<Vec<TopicPartition>>,
    assigned: Vec<Vec<TopicPartition>>,
    lost: Vec<Vec<TopicPartition>>,
    commit_errors: Vec<String>,
}

impl ListenerLog {
    fn all_revoked(&self) -> Tps {
        self.revoked.iter().flatten().cloned().collect()
    }
}

/// Records every callback; with `commit_on_revoke`, commits the consumer's
/// positions of the revoked partitions first (Kafka's recommended use).
struct Recorder {
    log: Arc<Mutex<ListenerLog>>,
    commit_on_revoke: bool,
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let mut log = self.log.lock().expect("listener log");
        if self.commit_on_revoke && !partitions.is_empty() {
            let mut offsets = Vec::new();
            for tp in partitions {
                match consumer.position(tp) {
                    Ok(position) => offsets.push((tp.clone(), OffsetAndMetadata::new(position))),
                    Err(e) => log.commit_errors.push(format!("position of {tp}: {e}")),
                }
            }
            if let Err(e) = consumer.commit_offsets(&offsets) {
                log.commit_errors.push(format!("commit {offsets:?}: {e}"));
            }
        }
        log.revoked.push(partitions.to_vec());
    }

    fn on_partitions_assigned(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let mut log = self.log.lock().expect("listener log");
        log.assigned.push(partitions.to_vec());
    }

    fn on_partitions_lost(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let mut log = self.log.lock().expect("listener log");
        log.lost.push(partitions.to_vec());
    }
}

/// A consumer with a recording listener and the records it was given.
struct Member {
    name: String,
    consumer: Consumer,
    seen: Vec<(TopicPartition, i64)>,
    events: Arc<Mutex<ListenerLog>>,
}

impl Member {
    fn new(log: &Log, name: &str, config: ConsumerConfig, commit_on_revoke: bool) -> Member {
        let events = Arc::new(Mutex::new(ListenerLog::default()));
        let mut consumer = log.consumer(config);
        consumer.set_rebalance_listener(Recorder {
            log: Arc::clone(&events),
            commit_on_revoke,
        });
        Member {
            name: name.to_owned(),
            consumer,
            seen: Vec::new(),
            events,
        }
    }

    fn join(log: &Log, name: &str, config: ConsumerConfig, topic: &str) -> Member {
        let mut member = Member::new(log, name, config, true);
        member.consumer.subscribe(&[topic]).expect("subscribe");
        member
    }

    /// Polls once without waiting; returns the partitions records came
    /// from.
    fn poll(&mut self) -> Tps {
        let records = self
            .consumer
            .poll(Duration::ZERO)
            .unwrap_or_else(|e| panic!("{} polls: {e}", self.name));
        let held = self.held();
        let mut from = Tps::new();
        for r in &records {
            let tp = tp(r.topic, r.partition);
            assert!(
                held.contains(&tp),
                "{} got {tp} which it does not hold",
                self.name
            );
            from.insert(tp.clone());
            self.seen.push((tp, r.offset));
        }
        from
    }

    fn held(&self) -> Tps {
        self.consumer.assignment().into_iter().collect()
    }

    fn member_id(&self) -> String {
        self.consumer
            .group_membership()
            .map(|(id, _)| id)
            .unwrap_or_default()
    }

    fn events(&self) -> std::sync::MutexGuard<'_, ListenerLog> {
        self.events.lock().expect("listener log")
    }
}

/// Whether the group is stable with exactly these members, each holding
/// what the group gives it in the current generation, and `partitions`
/// partitions owned in all.
fn is_settled(description: &GroupDescription, members: &[&mut Member], partitions: usize) -> bool {
    description.state == GroupState::Stable
        && description.members.len() == members.len()
        && description
            .members
            .iter()
            .map(|m| m.assignment.len())
            .sum::<usize>()
            == partitions
        && members.iter().all(|member| {
            member
                .consumer
                .group_membership()
                .is_some_and(|(id, generation)| {
                    generation == description.generation
                        && description.members.iter().any(|m| {
                            m.member_id == id
                                && m.assignment.iter().cloned().collect::<Tps>() == member.held()
                        })
                })
        })
}

/// Polls every member in turn until the group has settled.
fn settle(log: &Log, members: &mut [&mut Member], partitions: usize) -> GroupDescription {
    for _ in 0..SETTLE_PASSES {
        for member in members.iter_mut() {
            member.poll();
        }
        let description = log.describe_group(GROUP).expect("describe");
        if is_settled(&description, members, partitions) {
            return description;
        }
    }
    panic!("the group did not settle: {:#?}", log.describe_group(GROUP));
}

fn committed(log: &Log, partitions: &Tps) -> BTreeMap<TopicPartition, i64> {
    log.committed_offsets(GROUP)
        .expect("committed offsets")
        .into_iter()
        .filter(|(tp, _)| partitions.contains(tp))
        .map(|(tp, o)| (tp, o.offset))
        .collect()
}

fn first_offsets(seen: &[(TopicPartition, i64)]) -> BTreeMap<TopicPartition, i64> {
    let mut first = BTreeMap::new();
    for (tp, offset) in seen {
        first.entry(tp.clone()).or_insert(*offset);
    }
    first
}

/// How often each record was given out, over all members.
fn deliveries<'a>(
    members: impl IntoIterator<Item = &'a Member>,
) -> BTreeMap<(TopicPartition, i64), usize> {
    let mut count = BTreeMap::new();
    for member in members {
        for (tp, offset) in &member.seen {
            *count.entry((tp.clone(), *offset)).or_insert(0) += 1;
        }
    }
    count
}

// ---------------------------------------------------------------------
// Failover.
// ---------------------------------------------------------------------

/// a, b and c share six partitions (range: two each); c consumes some,
/// commits, consumes more, and then either crashes or stops polling.
struct Failover {
    log: Log,
    clock: Arc<ManualClock>,
    a: Member,
    b: Member,
    c: Member,
    c_id: String,
    c_partitions: Tps,
    c_committed: BTreeMap<TopicPartition, i64>,
    /// Records c was given after its commit: the new owners repeat them.
    c_uncommitted: BTreeSet<(TopicPartition, i64)>,
    generation: i32,
    _dir: tempfile::TempDir,
}

const FAILOVER_RECORDS: usize = 10;

fn failover_setup() -> Failover {
    let (log, clock, dir) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(6))
        .expect("create");
    let strategy = AssignmentStrategy::Range;
    let cfg = |name: &str| config(strategy, name).max_poll_records(5);
    let mut a = Member::join(&log, "a", cfg("a"), "t");
    let mut b = Member::join(&log, "b", cfg("b"), "t");
    let mut c = Member::join(&log, "c", cfg("c"), "t");
    let description = settle(&log, &mut [&mut a, &mut b, &mut c], 6);
    let c_partitions = c.held();
    assert_eq!(
        c_partitions,
        set(&[("t", 4), ("t", 5)]),
        "range by member id"
    );
    for p in 0..6 {
        produce(&log, "t", p, FAILOVER_RECORDS);
    }
    // c takes two polls of five, commits, and takes five more.
    c.poll();
    c.poll();
    c.consumer.commit().expect("c commits");
    let c_committed = committed(&log, &c_partitions);
    assert_eq!(c_committed.len(), 2, "{c_committed:?}");
    assert!(
        c_committed
            .values()
            .any(|&o| o > 0 && o < FAILOVER_RECORDS as i64),
        "a commit in the middle of a partition: {c_committed:?}"
    );
    let before = c.seen.len();
    c.poll();
    let c_uncommitted: BTreeSet<_> = c.seen[before..].iter().cloned().collect();
    assert_eq!(c_uncommitted.len(), 5);
    for (tp, offset) in &c_uncommitted {
        assert!(*offset >= c_committed[tp]);
    }
    // a and b read a little of theirs.
    a.poll();
    b.poll();
    let c_id = c.member_id();
    Failover {
        log,
        clock,
        a,
        b,
        c,
        c_id,
        c_partitions,
        c_committed,
        c_uncommitted,
        generation: description.generation,
        _dir: dir,
    }
}

impl Failover {
    /// c is still a member with its partitions, nothing moved.
    fn assert_c_still_owns_its_partitions(&mut self) {
        for member in [&mut self.a, &mut self.b] {
            let from = member.poll();
            assert!(from.is_disjoint(&self.c_partitions), "{from:?}");
            assert_eq!(member.held().len(), 2);
        }
        let d = self.log.describe_group(GROUP).expect("describe");
        assert_eq!(d.generation, self.generation, "no rebalance yet");
        assert_eq!(d.state, GroupState::Stable);
        let c_desc = d
            .members
            .iter()
            .find(|m| m.member_id == self.c_id)
            .expect("c still a member");
        assert_eq!(
            c_desc.assignment.iter().cloned().collect::<Tps>(),
            self.c_partitions
        );
    }

    /// a and b have taken over; both read every record to the end.
    fn assert_taken_over_at_the_commits(&mut self) {
        let d = settle(&self.log, &mut [&mut self.a, &mut self.b], 6);
        assert!(d.generation > self.generation);
        assert_eq!(d.members.len(), 2);
        assert_eq!(self.a.held().len() + self.b.held().len(), 6);
        // Nobody committed c's partitions since c did.
        assert_eq!(committed(&self.log, &self.c_partitions), self.c_committed);
        for _ in 0..FAILOVER_RECORDS {
            self.a.poll();
            self.b.poll();
        }
        // The new owners' first record of each of c's partitions is c's
        // committed offset.
        let mut first = first_offsets(&self.a.seen);
        first.extend(first_offsets(&self.b.seen));
        for tp in &self.c_partitions {
            assert_eq!(
                first[tp], self.c_committed[tp],
                "{tp} resumed at c's commit"
            );
        }
        // Every record was processed, and only c's uncommitted ones twice
        // (a and b commit on revoke, so their own rebalance repeats
        // nothing).
        let count = deliveries([&self.a, &self.b, &self.c]);
        assert_eq!(count.len(), 6 * FAILOVER_RECORDS, "no record lost");
        let twice: BTreeSet<_> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(r, _)| r.clone())
            .collect();
        assert_eq!(twice, self.c_uncommitted);
        assert!(count.values().all(|&n| n <= 2));
        for member in [&self.a, &self.b] {
            let events = member.events();
            assert!(
                events.commit_errors.is_empty(),
                "{:?}",
                events.commit_errors
            );
            assert!(events.lost.is_empty());
        }
    }
}

#[test]
fn a_crashed_member_s_partitions_move_after_the_session_timeout_to_its_commits() {
    let mut f = failover_setup();
    let c_id = f.c_id.clone();
    // Crash c; what it was given stays in `f.c.seen`.
    let placeholder = f.log.consumer(ConsumerConfig::default());
    std::mem::replace(&mut f.c.consumer, placeholder).kill();
    f.clock.advance_ms(SESSION_MS - 1);
    f.assert_c_still_owns_its_partitions();
    f.clock.advance_ms(1);
    let d = f.log.describe_group(GROUP).expect("describe");
    assert!(d.members.iter().all(|m| m.member_id != c_id), "c expired");
    f.assert_taken_over_at_the_commits();
}

#[test]
fn a_member_that_stops_polling_loses_its_partitions_after_the_poll_interval() {
    let mut f = failover_setup();
    let c_id = f.c_id.clone();
    // c stops polling; a and b poll every 20 s. Past the session time-out c
    // is still a member: it is alive, only slow.
    for _ in 0..2 {
        f.clock.advance_ms(20_000);
        f.assert_c_still_owns_its_partitions();
    }
    f.clock.advance_ms(MAX_POLL_MS - 40_000 - 1);
    f.assert_c_still_owns_its_partitions();
    f.clock.advance_ms(1);
    f.a.poll();
    let d = f.log.describe_group(GROUP).expect("describe");
    assert!(d.members.iter().all(|m| m.member_id != c_id), "c removed");
    f.assert_taken_over_at_the_commits();

    // c wakes up: its commits are refused and change nothing.
    let err = f.c.consumer.commit().expect_err("c is no longer a member");
    assert!(matches!(err, Error::UnknownMember { .. }), "{err}");
    let moved = f.c_partitions.first().expect("a partition").clone();
    let err =
        f.c.consumer
            .commit_offsets(&[(moved.clone(), OffsetAndMetadata::new(1))])
            .expect_err("c is no longer a member");
    assert!(matches!(err, Error::UnknownMember { .. }), "{err}");
    assert_eq!(committed(&f.log, &f.c_partitions), f.c_committed);
    // Its next poll reports the partitions lost (not revoked: it may not
    // commit them) and joins again as a new member.
    f.c.poll();
    assert_eq!(
        f.c.events().lost,
        vec![f.c_partitions.iter().cloned().collect::<Vec<_>>()]
    );
    assert!(f.c.events().revoked.is_empty());
    assert_ne!(f.c.member_id(), c_id);
    let (a, b, c) = (&mut f.a, &mut f.b, &mut f.c);
    let d = settle(&f.log, &mut [a, b, c], 6);
    assert_eq!(d.members.len(), 3);
}

// ---------------------------------------------------------------------
// Cooperative-sticky.
// ---------------------------------------------------------------------

#[test]
fn a_member_joining_a_cooperative_group_moves_only_what_it_must() {
    let (log, _clock, _dir) = manual_log();
    const PARTITIONS: u32 = 12;
    const RECORDS: usize = 30;
    log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
        .expect("create");
    // One record per partition per poll: each poll shows which partitions
    // are being consumed.
    let cfg = |name: &str| {
        config(AssignmentStrategy::CooperativeSticky, name).max_partition_fetch_bytes(1)
    };
    let mut a = Member::join(&log, "a", cfg("a"), "t");
    let mut b = Member::join(&log, "b", cfg("b"), "t");
    let mut c = Member::join(&log, "c", cfg("c"), "t");
    settle(&log, &mut [&mut a, &mut b, &mut c], PARTITIONS as usize);
    for p in 0..PARTITIONS {
        produce(&log, "t", p, RECORDS);
    }
    let before: Vec<Tps> = [&a, &b, &c].iter().map(|m| m.held()).collect();
    assert!(before.iter().all(|held| held.len() == 4), "{before:?}");
    for m in [&a, &b, &c] {
        m.events().revoked.clear();
    }

    let mut d = Member::join(&log, "d", cfg("d"), "t");
    // Until the group settles, a, b and c keep consuming every partition
    // they hold, and they never hold less than they keep in the end.
    let mut passes = 0;
    let mut kept_polls: Vec<Vec<Tps>> = vec![Vec::new(); 3];
    let description = loop {
        passes += 1;
        assert!(passes <= SETTLE_PASSES, "the group did not settle");
        for (i, m) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
            let from = m.poll();
            assert_eq!(from, m.held(), "{} consumes everything it holds", m.name);
            kept_polls[i].push(from);
        }
        d.poll();
        let description = log.describe_group(GROUP).expect("describe");
        if is_settled(
            &description,
            &[&mut a, &mut b, &mut c, &mut d],
            PARTITIONS as usize,
        ) {
            break description;
        }
    };
    assert!(passes >= 2, "the rebalance took {passes} passes");
    assert_eq!(description.members.len(), 4);
    let after: Vec<Tps> = [&a, &b, &c].iter().map(|m| m.held()).collect();
    let mut moved = Tps::new();
    for (i, m) in [&a, &b, &c].into_iter().enumerate() {
        assert_eq!(after[i].len(), 3, "{after:?}");
        assert!(after[i].is_subset(&before[i]), "{} only gives up", m.name);
        let kept = &after[i];
        for from in &kept_polls[i] {
            assert!(kept.is_subset(from), "{} kept consuming {kept:?}", m.name);
        }
        let gone: Tps = before[i].difference(&after[i]).cloned().collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(
            m.events().all_revoked(),
            gone,
            "{} revoked only what moved",
            m.name
        );
        assert!(m.events().lost.is_empty());
        moved.extend(gone);
    }
    assert_eq!(d.held(), moved, "d got exactly the moved partitions");
    let d_assigned: Tps = d.events().assigned.iter().flatten().cloned().collect();
    assert_eq!(d_assigned, moved);
    // Commit-on-revoke hands over exactly: no record is given twice and
    // each partition is read from its start without a gap.
    for _ in 0..RECORDS {
        for m in [&mut a, &mut b, &mut c, &mut d] {
            m.poll();
        }
    }
    let count = deliveries([&a, &b, &c, &d]);
    assert_eq!(count.len(), PARTITIONS as usize * RECORDS);
    assert!(count.values().all(|&n| n == 1), "a record was given twice");
}

// ---------------------------------------------------------------------
// Exactly once with commit-on-revoke.
// ---------------------------------------------------------------------

fn exactly_once(strategy: AssignmentStrategy, seed: u64) {
    const PARTITIONS: u32 = 8;
    let (log, _clock, _dir) = manual_log();
    log.create_topic("w", TopicConfig::default().partitions(PARTITIONS))
        .expect("create");
    let mut rng = Rng(seed);
    let mut produced = 0usize;
    let mut joined = 0usize;
    let mut live: Vec<Member> = Vec::new();
    let mut departed: Vec<Member> = Vec::new();
    let mut join = |live: &mut Vec<Member>| {
        joined += 1;
        let name = format!("m{joined}");
        let cfg = config(strategy, &name).max_poll_records(3);
        live.push(Member::join(&log, &name, cfg, "w"));
    };
    join(&mut live);
    join(&mut live);
    let (mut joins, mut leaves) = (0, 0);
    for _ in 0..400 {
        match rng.below(20) {
            0..=5 => {
                let p = u32::try_from(rng.below(u64::from(PARTITIONS))).expect("small");
                let n = 1 + rng.below(3) as usize;
                produce(&log, "w", p, n);
                produced += n;
            }
            6 if live.len() < 5 => {
                join(&mut live);
                joins += 1;
            }
            7 if live.len() > 1 => {
                // Leaving revokes (and so commits) first. Kafka's close()
                // does that too; brooklet's does not (see
                // `close_calls_on_partitions_revoked`), hence unsubscribe.
                let mut gone = live.remove(rng.below(live.len() as u64) as usize);
                gone.consumer.unsubscribe();
                departed.push(gone);
                leaves += 1;
            }
            _ => {
                let i = rng.below(live.len() as u64) as usize;
                live[i].poll();
            }
        }
    }
    assert!(joins > 5 && leaves > 5, "{joins} joins, {leaves} leaves");
    // Drain.
    for _ in 0..200 {
        if deliveries(live.iter().chain(&departed)).len() == produced {
            break;
        }
        for member in &mut live {
            member.poll();
        }
    }
    let count = deliveries(live.iter().chain(&departed));
    assert_eq!(
        count.len(),
        produced,
        "{strategy:?}: every record processed"
    );
    let repeated: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{strategy:?}: records processed twice: {repeated:?}"
    );
    for member in live.iter().chain(&departed) {
        let events = member.events();
        assert!(
            events.commit_errors.is_empty(),
            "{strategy:?} {}: {:?}",
            member.name,
            events.commit_errors
        );
        assert!(events.lost.is_empty(), "{strategy:?} {}", member.name);
    }
}

#[test]
fn commit_on_revoke_processes_every_record_exactly_once_while_members_come_and_go() {
    for (i, strategy) in STRATEGIES.into_iter().enumerate() {
        exactly_once(strategy, 0x0e0e_0000 + i as u64);
    }
}

// ---------------------------------------------------------------------
// Static membership.
// ---------------------------------------------------------------------

fn static_config(instance: &str) -> ConsumerConfig {
    config(AssignmentStrategy::Range, instance).group_instance_id(instance)
}

fn static_pair(log: &Log) -> (Member, Member, GroupDescription) {
    log.create_topic("t", TopicConfig::default().partitions(4))
        .expect("create");
    let mut a = Member::join(log, "a", static_config("worker-a"), "t");
    let mut b = Member::join(log, "b", static_config("worker-b"), "t");
    let description = settle(log, &mut [&mut a, &mut b], 4);
    for m in [&a, &b] {
        m.events().revoked.clear();
        m.events().assigned.clear();
    }
    (a, b, description)
}

#[test]
fn a_static_member_back_within_its_session_timeout_keeps_its_partitions() {
    let (log, clock, _dir) = manual_log();
    let (a, mut b, before) = static_pair(&log);
    let a_held = a.held();
    let b_held = b.held();
    let a_id = a.member_id();
    a.consumer.close().expect("close a");
    // A static member does not leave on close: it keeps its place.
    let d = log.describe_group(GROUP).expect("describe");
    assert_eq!(d.generation, before.generation);
    assert_eq!(d.state, GroupState::Stable);
    let kept = d
        .members
        .iter()
        .find(|m| m.member_id == a_id)
        .expect("a keeps its place");
    assert_eq!(kept.group_instance_id.as_deref(), Some("worker-a"));
    clock.advance_ms(SESSION_MS - 1);
    b.poll();
    assert_eq!(b.held(), b_held);
    // A new consumer with a's instance id takes its place and partitions at
    // once, without a rebalance.
    let a2 = Member::join(&log, "a2", static_config("worker-a"), "t");
    assert_eq!(a2.held(), a_held);
    let (_, generation) = a2.consumer.group_membership().expect("a member");
    assert_eq!(generation, before.generation);
    b.poll();
    assert_eq!(b.held(), b_held);
    assert!(b.events().revoked.is_empty() && b.events().assigned.is_empty());
    let d = log.describe_group(GROUP).expect("describe");
    assert_eq!(d.generation, before.generation, "no rebalance");
    assert_eq!(d.members.len(), 2);
    assert!(d.members.iter().all(|m| m.member_id != a_id));
}

#[test]
fn a_static_member_not_back_within_its_session_timeout_is_replaced() {
    let (log, clock, _dir) = manual_log();
    let (a, mut b, before) = static_pair(&log);
    a.consumer.close().expect("close a");
    clock.advance_ms(SESSION_MS);
    b.poll();
    let d = settle(&log, &mut [&mut b], 4);
    assert!(d.generation > before.generation);
    assert_eq!(b.held().len(), 4);
}

#[test]
fn a_second_live_consumer_with_the_same_instance_id_fences_the_first() {
    let (log, _clock, _dir) = manual_log();
    let (mut a, mut b, before) = static_pair(&log);
    let a_held = a.held();
    let a2 = Member::join(&log, "a2", static_config("worker-a"), "t");
    assert_eq!(a2.held(), a_held);
    let (_, generation) = a2.consumer.group_membership().expect("a member");
    assert_eq!(generation, before.generation, "no rebalance");
    let err = a.consumer.commit().expect_err("fenced");
    assert!(matches!(err, Error::FencedInstanceId { .. }), "{err}");
    let err = a.consumer.poll(Duration::ZERO).expect_err("fenced");
    assert!(matches!(err, Error::FencedInstanceId { .. }), "{err}");
    assert!(
        a.held().is_empty(),
        "the fenced consumer gives up its partitions"
    );
    assert_eq!(
        a.events().lost,
        vec![a_held.iter().cloned().collect::<Vec<_>>()]
    );
    b.poll();
    let d = log.describe_group(GROUP).expect("describe");
    assert_eq!(d.generation, before.generation);
    assert_eq!(d.members.len(), 2);
}

// ---------------------------------------------------------------------
// Administration.
// ---------------------------------------------------------------------

#[test]
fn group_admin_lists_describes_resets_and_deletes() {
    let (log, clock, _dir) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .expect("create");
    // Partition p's record i has timestamp 1000 * (i + 1).
    for p in 0..2 {
        for i in 0..10 {
            log.append("t", p, &[Record::new("v").timestamp_ms(1_000 * (i + 1))])
                .expect("append");
        }
    }
    let mut a = Member::join(
        &log,
        "a",
        config(AssignmentStrategy::Range, "a").max_poll_records(4),
        "t",
    );
    for _ in 0..4 {
        a.poll();
    }
    a.consumer.commit().expect("commit");
    let positions: BTreeMap<_, _> = [tp("t", 0), tp("t", 1)]
        .into_iter()
        .map(|tp| {
            let position = a.consumer.position(&tp).expect("position");
            (tp, position)
        })
        .collect();
    assert_eq!(positions.values().sum::<i64>(), 16);
    assert!(
        positions.values().all(|&p| p > 0 && p < 10),
        "{positions:?}"
    );
    // A second group with only committed offsets.
    log.commit_offsets("h", &[(tp("t", 0), OffsetAndMetadata::new(3))])
        .expect("commit for an empty group");
    let groups = log.list_groups().expect("list");
    assert!(groups.contains(&"g".to_owned()) && groups.contains(&"h".to_owned()));

    let d = log.describe_group(GROUP).expect("describe");
    assert_eq!(d.group_id, GROUP);
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.strategy, AssignmentStrategy::Range);
    assert!(d.generation >= 1);
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, a.member_id());
    assert_eq!(d.members[0].group_instance_id, None);
    assert_eq!(d.members[0].assignment, tps(&[("t", 0), ("t", 1)]));
    assert_eq!(d.partitions.len(), 2);
    for lag in &d.partitions {
        let position = positions[&lag.partition];
        assert_eq!(lag.committed_offset, Some(position));
        assert_eq!(lag.log_end_offset, 10);
        assert_eq!(lag.lag, 10 - position);
        assert_eq!(lag.owner.as_deref(), Some(a.member_id().as_str()));
    }
    let h = log.describe_group("h").expect("describe h");
    assert_eq!(h.state, GroupState::Empty);
    assert!(h.members.is_empty());
    assert_eq!(h.partitions.len(), 1);
    assert_eq!(h.partitions[0].lag, 7);
    assert_eq!(h.partitions[0].owner, None);
    let err = log.describe_group("nobody").expect_err("unknown");
    assert!(matches!(err, Error::UnknownGroup(_)), "{err}");

    // Members present: no reset, no delete.
    for result in [
        log.reset_group_offsets(GROUP, &[], OffsetSpec::Earliest),
        log.delete_group(GROUP),
    ] {
        let err = result.expect_err("the group has a member");
        assert!(matches!(err, Error::GroupNotEmpty(_)), "{err}");
    }
    a.consumer.close().expect("close");
    let d = log.describe_group(GROUP).expect("describe");
    assert_eq!(d.state, GroupState::Empty);
    assert!(d.members.is_empty());
    assert!(d.partitions.iter().all(|lag| lag.owner.is_none()));
    assert_eq!(
        committed(&log, &set(&[("t", 0), ("t", 1)])),
        positions,
        "closing keeps the commits"
    );

    let all = set(&[("t", 0), ("t", 1)]);
    let reset = |spec: OffsetSpec, partitions: &[TopicPartition]| {
        log.reset_group_offsets(GROUP, partitions, spec)
            .expect("reset");
        committed(&log, &all)
    };
    let both = |a: i64, b: i64| BTreeMap::from([(tp("t", 0), a), (tp("t", 1), b)]);
    assert_eq!(reset(OffsetSpec::Earliest, &[]), both(0, 0));
    assert_eq!(reset(OffsetSpec::Latest, &[]), both(10, 10));
    assert_eq!(reset(OffsetSpec::Timestamp(3_500), &[]), both(3, 3));
    assert_eq!(reset(OffsetSpec::Timestamp(99_000), &[]), both(10, 10));
    assert_eq!(reset(OffsetSpec::Offset(5), &[]), both(5, 5));
    assert_eq!(reset(OffsetSpec::Offset(7), &[tp("t", 1)]), both(5, 7));
    assert_eq!(reset(OffsetSpec::Offset(100), &[]), both(10, 10));
    assert_eq!(reset(OffsetSpec::Offset(-5), &[]), both(0, 0));
    assert_eq!(reset(OffsetSpec::Offset(4), &[]), both(4, 4));
    // A new member starts where the reset put the group.
    let mut fresh = Member::join(&log, "fresh", config(AssignmentStrategy::Range, "f"), "t");
    fresh.poll();
    assert_eq!(
        first_offsets(&fresh.seen),
        BTreeMap::from([(tp("t", 0), 4), (tp("t", 1), 4)])
    );
    // A crashed member still counts until its session times out.
    fresh.consumer.kill();
    let err = log
        .delete_group(GROUP)
        .expect_err("a member until it expires");
    assert!(matches!(err, Error::GroupNotEmpty(_)), "{err}");
    clock.advance_ms(SESSION_MS);
    log.delete_group(GROUP).expect("delete");
    assert!(log.committed_offsets(GROUP).expect("committed").is_empty());
    assert!(!log.list_groups().expect("list").contains(&GROUP.to_owned()));
    let err = log.describe_group(GROUP).expect_err("deleted");
    assert!(matches!(err, Error::UnknownGroup(_)), "{err}");
    assert_eq!(
        log.committed_offsets("h").expect("h").len(),
        1,
        "other groups keep theirs"
    );
}

// ---------------------------------------------------------------------
// Assignors against Kafka's tests.
// ---------------------------------------------------------------------

fn subscription(id: &str, instance: Option<&str>, topics: &[&str]) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_owned(),
        instance_id: instance.map(str::to_owned),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        owned: Vec::new(),
    }
}

fn partition_counts(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
    list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

/// One case from Kafka's `RangeAssignorTest` and `RoundRobinAssignorTest`:
/// the members, the topics, and each assignor's expected answer.
struct KafkaCase {
    name: &'static str,
    members: Vec<MemberSubscription>,
    topics: BTreeMap<String, u32>,
    range: Vec<(&'static str, Vec<TopicPartition>)>,
    round_robin: Vec<(&'static str, Vec<TopicPartition>)>,
}

fn kafka_cases() -> Vec<KafkaCase> {
    let both = ["topic1", "topic2"];
    let same = |expected: Vec<(&'static str, Vec<TopicPartition>)>| (expected.clone(), expected);
    let mut cases = Vec::new();
    let (range, round_robin) = same(vec![("consumer", vec![])]);
    cases.push(KafkaCase {
        name: "testOneConsumerNoTopic",
        members: vec![subscription("consumer", None, &[])],
        topics: partition_counts(&[]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![("consumer", vec![])]);
    cases.push(KafkaCase {
        name: "testOneConsumerNonexistentTopic",
        members: vec![subscription("consumer", None, &["topic"])],
        topics: partition_counts(&[]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![(
        "consumer",
        tps(&[("topic", 0), ("topic", 1), ("topic", 2)]),
    )]);
    cases.push(KafkaCase {
        name: "testOneConsumerOneTopic",
        members: vec![subscription("consumer", None, &["topic"])],
        topics: partition_counts(&[("topic", 3)]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![(
        "consumer",
        tps(&[("topic", 0), ("topic", 1), ("topic", 2)]),
    )]);
    cases.push(KafkaCase {
        name: "testOnlyAssignsPartitionsFromSubscribedTopics",
        members: vec![subscription("consumer", None, &["topic"])],
        topics: partition_counts(&[("topic", 3), ("other", 3)]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![(
        "consumer",
        tps(&[("topic1", 0), ("topic2", 0), ("topic2", 1)]),
    )]);
    cases.push(KafkaCase {
        name: "testOneConsumerMultipleTopics",
        members: vec![subscription("consumer", None, &both)],
        topics: partition_counts(&[("topic1", 1), ("topic2", 2)]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![
        ("consumer1", tps(&[("topic", 0)])),
        ("consumer2", vec![]),
    ]);
    cases.push(KafkaCase {
        name: "testTwoConsumersOneTopicOnePartition",
        members: vec![
            subscription("consumer1", None, &["topic"]),
            subscription("consumer2", None, &["topic"]),
        ],
        topics: partition_counts(&[("topic", 1)]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![
        ("consumer1", tps(&[("topic", 0)])),
        ("consumer2", tps(&[("topic", 1)])),
    ]);
    cases.push(KafkaCase {
        name: "testTwoConsumersOneTopicTwoPartitions",
        members: vec![
            subscription("consumer1", None, &["topic"]),
            subscription("consumer2", None, &["topic"]),
        ],
        topics: partition_counts(&[("topic", 2)]),
        range,
        round_robin,
    });
    let (range, round_robin) = same(vec![
        ("consumer1", tps(&[("topic1", 0)])),
        (
            "consumer2",
            tps(&[("topic1", 1), ("topic2", 0), ("topic2", 1)]),
        ),
        ("consumer3", tps(&[("topic1", 2)])),
    ]);
    cases.push(KafkaCase {
        name: "testMultipleConsumersMixedTopics",
        members: vec![
            subscription("consumer1", None, &["topic1"]),
            subscription("consumer2", None, &both),
            subscription("consumer3", None, &["topic1"]),
        ],
        topics: partition_counts(&[("topic1", 3), ("topic2", 2)]),
        range,
        round_robin,
    });
    cases.push(KafkaCase {
        name: "testTwoConsumersTwoTopicsSixPartitions",
        members: vec![
            subscription("consumer1", None, &both),
            subscription("consumer2", None, &both),
        ],
        topics: partition_counts(&[("topic1", 3), ("topic2", 3)]),
        range: vec![
            (
                "consumer1",
                tps(&[("topic1", 0), ("topic1", 1), ("topic2", 0), ("topic2", 1)]),
            ),
            ("consumer2", tps(&[("topic1", 2), ("topic2", 2)])),
        ],
        round_robin: vec![
            (
                "consumer1",
                tps(&[("topic1", 0), ("topic1", 2), ("topic2", 1)]),
            ),
            (
                "consumer2",
                tps(&[("topic1", 1), ("topic2", 0), ("topic2", 2)]),
            ),
        ],
    });
    // Static members are ordered by instance id, not member id; and before
    // dynamic members.
    for (name, high_instance) in [
        (
            "testTwoStaticConsumersTwoTopicsSixPartitions",
            Some("instance2"),
        ),
        (
            "testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions",
            None,
        ),
    ] {
        cases.push(KafkaCase {
            name,
            members: vec![
                subscription("consumer-b", Some("instance1"), &both),
                subscription("consumer-a", high_instance, &both),
            ],
            topics: partition_counts(&[("topic1", 3), ("topic2", 3)]),
            range: vec![
                (
                    "consumer-b",
                    tps(&[("topic1", 0), ("topic1", 1), ("topic2", 0), ("topic2", 1)]),
                ),
                ("consumer-a", tps(&[("topic1", 2), ("topic2", 2)])),
            ],
            round_robin: vec![
                (
                    "consumer-b",
                    tps(&[("topic1", 0), ("topic1", 2), ("topic2", 1)]),
                ),
                (
                    "consumer-a",
                    tps(&[("topic1", 1), ("topic2", 0), ("topic2", 2)]),
                ),
            ],
        });
    }
    cases
}

fn check_kafka_case(strategy: AssignmentStrategy, case: &KafkaCase) {
    let expected = match strategy {
        AssignmentStrategy::Range => &case.range,
        _ => &case.round_robin,
    };
    let result = assign(strategy, &case.members, &case.topics);
    let expected: BTreeMap<String, Vec<TopicPartition>> = expected
        .iter()
        .map(|(id, partitions)| ((*id).to_owned(), partitions.clone()))
        .collect();
    assert_eq!(result, expected, "{strategy:?} {}", case.name);
}

#[test]
fn range_and_round_robin_match_kafkas_assignor_tests() {
    let cases = kafka_cases();
    assert_eq!(cases.len(), 11);
    for case in &cases {
        check_kafka_case(AssignmentStrategy::Range, case);
        check_kafka_case(AssignmentStrategy::RoundRobin, case);
    }
}

#[test]
fn static_members_keep_their_assignment_when_a_dynamic_member_is_replaced() {
    // Kafka's RangeAssignorTest.testStaticMemberRangeAssignmentPersistent
    // and RoundRobinAssignorTest.testStaticMemberAssignmentPersistent.
    let both = ["topic1", "topic2"];
    let statics = [
        subscription("consumer1", Some("instance1"), &both),
        subscription("consumer2", Some("instance2"), &both),
        subscription("consumer3", Some("instance3"), &both),
    ];
    let expect = |list: Vec<(&str, Vec<TopicPartition>)>| -> BTreeMap<String, Vec<TopicPartition>> {
        list.into_iter().map(|(id, p)| (id.to_owned(), p)).collect()
    };
    for (strategy, topics, static_part, dynamic_part) in [
        (
            AssignmentStrategy::Range,
            partition_counts(&[("topic1", 5), ("topic2", 4)]),
            vec![
                (
                    "consumer1",
                    tps(&[("topic1", 0), ("topic1", 1), ("topic2", 0)]),
                ),
                ("consumer2", tps(&[("topic1", 2), ("topic2", 1)])),
                ("consumer3", tps(&[("topic1", 3), ("topic2", 2)])),
            ],
            tps(&[("topic1", 4), ("topic2", 3)]),
        ),
        (
            AssignmentStrategy::RoundRobin,
            partition_counts(&[("topic1", 3), ("topic2", 3)]),
            vec![
                ("consumer1", tps(&[("topic1", 0), ("topic2", 1)])),
                ("consumer2", tps(&[("topic1", 1), ("topic2", 2)])),
                ("consumer3", tps(&[("topic1", 2)])),
            ],
            tps(&[("topic2", 0)]),
        ),
    ] {
        for dynamic in ["consumer4", "consumer5"] {
            let mut members = statics.to_vec();
            members.push(subscription(dynamic, None, &both));
            let mut expected = static_part.clone();
            expected.push((dynamic, dynamic_part.clone()));
            assert_eq!(
                assign(strategy, &members, &topics),
                expect(expected),
                "{strategy:?} with {dynamic}"
            );
        }
    }
}

// ---------------------------------------------------------------------
// Assignor properties.
// ---------------------------------------------------------------------

#[derive(Clone, Debug)]
struct AssignInput {
    members: usize,
    topics: Vec<u32>,
    /// Per partition (in topic order), the index of its previous owner, or
    /// an index past the members (a member that left) or none.
    owners: Vec<Option<usize>>,
    /// Per member, a bit mask of the topics it subscribes to.
    masks: Vec<u8>,
}

fn assign_input() -> impl Strategy<Value = AssignInput> {
    (1..=6usize, prop::collection::vec(1..=8u32, 1..=3)).prop_flat_map(|(members, topics)| {
        let total = topics.iter().sum::<u32>() as usize;
        let topic_count = topics.len();
        (
            Just(members),
            Just(topics),
            prop::collection::vec(prop::option::of(0..members + 2), total),
            prop::collection::vec(1u8..(1 << topic_count), members),
        )
            .prop_map(|(members, topics, owners, masks)| AssignInput {
                members,
                topics,
                owners,
                masks,
            })
    })
}

fn topic_list(input: &AssignInput) -> Vec<(String, u32)> {
    input
        .topics
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("topic{i}"), n))
        .collect()
}

fn all_partitions(input: &AssignInput) -> Vec<TopicPartition> {
    topic_list(input)
        .into_iter()
        .flat_map(|(t, n)| (0..n).map(move |p| tp(&t, p)))
        .collect()
}

/// Members `m00`, `m01`, … with the owned partitions of `input.owners`;
/// with `equal` every member subscribes to every topic.
fn member_subscriptions(input: &AssignInput, equal: bool) -> Vec<MemberSubscription> {
    let topics = topic_list(input);
    let partitions = all_partitions(input);
    (0..input.members)
        .map(|m| MemberSubscription {
            member_id: format!("m{m:02}"),
            instance_id: None,
            topics: topics
                .iter()
                .enumerate()
                .filter(|(i, _)| equal || input.masks[m] & (1 << i) != 0)
                .map(|(_, (t, _))| t.clone())
                .collect(),
            owned: partitions
                .iter()
                .zip(&input.owners)
                .filter(|(_, owner)| **owner == Some(m))
                .map(|(tp, _)| tp.clone())
                .collect(),
        })
        .collect()
}

/// Every partition of a subscribed topic goes to exactly one subscriber;
/// nothing else is assigned; every member has an entry.
fn check_valid(
    members: &[MemberSubscription],
    counts: &BTreeMap<String, u32>,
    result: &BTreeMap<String, Vec<TopicPartition>>,
) -> Result<(), String> {
    let ids: BTreeSet<&String> = members.iter().map(|m| &m.member_id).collect();
    if result.keys().collect::<BTreeSet<_>>() != ids {
        return Err(format!("members {ids:?}, result {result:?}"));
    }
    let mut owner: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for member in members {
        for tp in &result[&member.member_id] {
            if !member.topics.contains(&tp.topic) {
                return Err(format!(
                    "{tp} given to {} which does not subscribe",
                    member.member_id
                ));
            }
            if owner.insert(tp, &member.member_id).is_some() {
                return Err(format!("{tp} given twice: {result:?}"));
            }
        }
    }
    for (topic, &count) in counts {
        let subscribed = members.iter().any(|m| m.topics.contains(topic));
        for p in 0..count {
            if owner.contains_key(&tp(topic, p)) != subscribed {
                return Err(format!("{topic}-{p}: subscribed {subscribed}, {result:?}"));
            }
        }
    }
    Ok(())
}

fn sizes(result: &BTreeMap<String, Vec<TopicPartition>>) -> (usize, usize) {
    let lens = result.values().map(Vec::len);
    (lens.clone().min().unwrap_or(0), lens.max().unwrap_or(0))
}

fn check_sticky(input: &AssignInput) -> Result<(), String> {
    let counts: BTreeMap<String, u32> = topic_list(input).into_iter().collect();
    let total = input.topics.iter().sum::<u32>() as usize;
    for strategy in [
        AssignmentStrategy::Sticky,
        AssignmentStrategy::CooperativeSticky,
    ] {
        // Any subscriptions: a valid assignment.
        let mixed = member_subscriptions(input, false);
        check_valid(&mixed, &counts, &assign(strategy, &mixed, &counts))?;

        // Equal subscriptions, any previous owners: balanced within one,
        // keeping as many owned partitions as balance allows.
        let members = member_subscriptions(input, true);
        let result = assign(strategy, &members, &counts);
        check_valid(&members, &counts, &result)?;
        let (min, max) = sizes(&result);
        if max - min > 1 {
            return Err(format!("{strategy:?} unbalanced: {result:?}"));
        }
        let quota = total / members.len();
        let extra = total % members.len();
        let max_kept = members
            .iter()
            .map(|m| m.owned.len().min(quota))
            .sum::<usize>()
            + extra.min(members.iter().filter(|m| m.owned.len() > quota).count());
        let kept: usize = members
            .iter()
            .map(|m| {
                result[&m.member_id]
                    .iter()
                    .filter(|tp| m.owned.contains(tp))
                    .count()
            })
            .sum();
        if kept != max_kept {
            return Err(format!(
                "{strategy:?} kept {kept} owned partitions, balance allows {max_kept}: \
                 {members:?} -> {result:?}"
            ));
        }

        // From a balanced assignment: a member joining only takes, a member
        // leaving only gives.
        let mut owned_now: Vec<MemberSubscription> = members
            .iter()
            .map(|m| MemberSubscription {
                owned: result[&m.member_id].clone(),
                ..m.clone()
            })
            .collect();
        let mut joined = owned_now.clone();
        joined.push(MemberSubscription {
            member_id: "new".to_owned(),
            owned: Vec::new(),
            ..members[0].clone()
        });
        let after_join = assign(strategy, &joined, &counts);
        check_valid(&joined, &counts, &after_join)?;
        let (min, max) = sizes(&after_join);
        if max - min > 1 {
            return Err(format!(
                "{strategy:?} unbalanced after a join: {after_join:?}"
            ));
        }
        for m in &owned_now {
            if !after_join[&m.member_id]
                .iter()
                .all(|tp| m.owned.contains(tp))
            {
                return Err(format!(
                    "{strategy:?}: {} gained in a join: {:?} -> {:?}",
                    m.member_id, m.owned, after_join[&m.member_id]
                ));
            }
        }
        if owned_now.len() > 1 {
            owned_now.remove(0);
            let after_leave = assign(strategy, &owned_now, &counts);
            check_valid(&owned_now, &counts, &after_leave)?;
            for m in &owned_now {
                if !m
                    .owned
                    .iter()
                    .all(|tp| after_leave[&m.member_id].contains(tp))
                {
                    return Err(format!(
                        "{strategy:?}: {} lost partitions when another left: {:?} -> {:?}",
                        m.member_id, m.owned, after_leave[&m.member_id]
                    ));
                }
            }
        }
    }
    // Range and round-robin: valid for any subscriptions; round-robin is
    // balanced within one for equal ones.
    let mixed = member_subscriptions(input, false);
    let equal = member_subscriptions(input, true);
    for strategy in [AssignmentStrategy::Range, AssignmentStrategy::RoundRobin] {
        check_valid(&mixed, &counts, &assign(strategy, &mixed, &counts))?;
        check_valid(&equal, &counts, &assign(strategy, &equal, &counts))?;
    }
    let (min, max) = sizes(&assign(AssignmentStrategy::RoundRobin, &equal, &counts));
    if max - min > 1 {
        return Err("round-robin unbalanced for equal subscriptions".to_owned());
    }
    Ok(())
}

#[test]
fn sticky_assignors_are_balanced_and_keep_what_balance_allows() {
    common::check_property(
        common::proptest_config(512, 0x7374_6963_6b79),
        &assign_input(),
        |input| check_sticky(&input),
    );
}

// ---------------------------------------------------------------------
// Regressions: each of these tests failed once; its comment says what broke.
// ---------------------------------------------------------------------

/// Regression (src/consumer/mod.rs, `poll_until` → `maybe_auto_commit`): with
/// auto-commit on (the default), `poll` failed with `IllegalGeneration`
/// when the member re-joined a new round before it picked up the previous
/// generation: it is waiting, its generation is one behind, and the
/// auto-commit's error is returned from `poll`. Kafka logs failed
/// auto-commits and never throws them from `poll`.
#[test]
fn poll_with_auto_commit_does_not_fail_while_the_member_waits_for_a_rebalance() {
    let (log, clock, _dir) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(6))
        .expect("create");
    // Kafka's defaults otherwise: auto-commit every 5 s, range.
    let cfg = |name: &str| {
        ConsumerConfig::group(GROUP)
            .client_id(name)
            .auto_offset_reset(OffsetReset::Earliest)
    };
    let mut a = log.consumer(cfg("a"));
    a.subscribe(&["t"]).expect("a subscribes");
    let mut b = log.consumer(cfg("b"));
    b.subscribe(&["t"]).expect("b subscribes");
    a.poll(Duration::ZERO).expect("poll");
    b.poll(Duration::ZERO).expect("poll");
    a.poll(Duration::ZERO).expect("poll");
    let mut c = log.consumer(cfg("c"));
    c.subscribe(&["t"]).expect("c subscribes");
    a.poll(Duration::ZERO).expect("a re-joins and waits");
    b.poll(Duration::ZERO)
        .expect("b re-joins; the round completes");
    // A new round starts before a picked up the last generation.
    let mut d = log.consumer(cfg("d"));
    d.subscribe(&["t"]).expect("d subscribes");
    clock.advance_ms(5_000);
    a.poll(Duration::ZERO)
        .expect("a re-joins and waits; its auto-commit must not fail the poll");
    drop((a, b, c, d));
}

/// Regression (Kafka parity; src/consumer/mod.rs `close_inner` called
/// `leave_group(false)`): `close()` did not call `on_partitions_revoked`.
/// Kafka's `KafkaConsumer.close()` does (`onLeavePrepare`), and committing
/// in that callback is the documented way not to repeat work when a member
/// leaves; with brooklet's close the next owner repeats everything since
/// the last commit (`unsubscribe()` does call it).
#[test]
fn close_calls_on_partitions_revoked() {
    let (log, _clock, _dir) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .expect("create");
    produce(&log, "t", 0, 3);
    produce(&log, "t", 1, 3);
    let mut a = Member::join(&log, "a", config(AssignmentStrategy::Range, "a"), "t");
    a.poll();
    assert_eq!(a.seen.len(), 6);
    let events = Arc::clone(&a.events);
    a.consumer.close().expect("close");
    let events = events.lock().expect("listener log");
    assert_eq!(events.revoked, vec![tps(&[("t", 0), ("t", 1)])]);
    assert_eq!(
        committed(&log, &set(&[("t", 0), ("t", 1)])),
        BTreeMap::from([(tp("t", 0), 3), (tp("t", 1), 3)]),
        "committed in on_partitions_revoked"
    );
}

/// Regression (src/consumer/membership.rs `sync_group`, the `Rejoin` arm:
/// `coordinator.rejoin(..)?`): when the member is removed between being
/// told to re-join and re-joining — here because its revoke callback took
/// longer than `max_poll_interval`, which another thread's poll or
/// `describe_group` can equally cause — `poll` failed with `UnknownMember`
/// instead of joining again as a new member (the `sync` arm of the same
/// function handles `UnknownMember` that way, and Kafka's consumer
/// re-joins after an UNKNOWN_MEMBER_ID join response).
#[test]
fn a_member_removed_while_it_revokes_joins_again_instead_of_failing_poll() {
    /// Takes longer than the poll interval, once.
    struct SlowRevoke(Option<Arc<ManualClock>>);
    impl RebalanceListener for SlowRevoke {
        fn on_partitions_revoked(&mut self, _: &mut Consumer, partitions: &[TopicPartition]) {
            if !partitions.is_empty()
                && let Some(clock) = self.0.take()
            {
                clock.advance_ms(MAX_POLL_MS);
            }
        }
    }
    let (log, clock, _dir) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(4))
        .expect("create");
    let cfg = |name: &str| config(AssignmentStrategy::Range, name);
    let mut a = log.consumer(cfg("a"));
    a.subscribe(&["t"]).expect("a subscribes");
    assert_eq!(a.assignment().len(), 4);
    a.set_rebalance_listener(SlowRevoke(Some(Arc::clone(&clock))));
    let mut b = log.consumer(cfg("b"));
    b.subscribe(&["t"]).expect("b subscribes");
    // a is told to re-join, revokes slowly, and is removed meanwhile.
    a.poll(Duration::ZERO)
        .expect("a joins again as a new member rather than failing");
    let mut a_ok = false;
    for _ in 0..SETTLE_PASSES {
        a.poll(Duration::ZERO).expect("a polls");
        b.poll(Duration::ZERO).expect("b polls");
        let d = log.describe_group(GROUP).expect("describe");
        if d.state == GroupState::Stable && d.members.len() == 2 {
            a_ok = a.assignment().len() == 2;
            break;
        }
    }
    assert!(a_ok, "{:?}", log.describe_group(GROUP));
}
