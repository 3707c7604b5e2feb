//! The group coordinator: one per log, keeping each consumer group's
//! members, generation, assignment and state, and running rebalances.
//!
//! Kafka splits this between a broker-side coordinator and a client-side
//! assignor; in one process the coordinator computes assignments itself.
//! A rebalance is a round: every member must come back (re-join) within the
//! rebalance time-out, revoking first what it must give up; then the
//! assignor runs and the generation moves on. Partitions therefore never
//! have two owners in one generation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::consumer::{OffsetAndMetadata, TopicPartition};
use crate::error::{Error, Result};
use crate::group::assignor::{AssignmentStrategy, MemberSubscription, assign};
use crate::log::Log;
use crate::notify::Notify;

/// Kafka's group states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (committed offsets may remain).
    Empty,
    /// Waiting for members to re-join.
    PreparingRebalance,
    /// Assignment being computed. In one process this is instantaneous; the
    /// state is reported for Kafka parity and never observed between calls.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted.
    Dead,
}

/// How a member is seen to be alive, without a heartbeat thread: its
/// consumer handle records polls, and when it goes away without leaving
/// (a crash, or a static member closing) the time it went.
#[derive(Debug)]
pub(crate) struct MemberLiveness {
    pub(crate) in_poll: AtomicBool,
    pub(crate) last_poll_ms: AtomicI64,
    /// -1 while the consumer handle lives.
    pub(crate) gone_at_ms: AtomicI64,
    /// Set by the coordinator when the member has something to act on.
    pub(crate) news: AtomicBool,
}

impl MemberLiveness {
    pub(crate) fn new(now_ms: i64) -> Arc<Self> {
        Arc::new(MemberLiveness {
            in_poll: AtomicBool::new(false),
            last_poll_ms: AtomicI64::new(now_ms),
            gone_at_ms: AtomicI64::new(-1),
            news: AtomicBool::new(false),
        })
    }
}

/// What a member asks to join with.
pub(crate) struct JoinRequest {
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) subscription: Subscription,
    pub(crate) strategy: AssignmentStrategy,
    pub(crate) session_timeout_ms: i64,
    pub(crate) max_poll_interval_ms: i64,
    pub(crate) liveness: Arc<MemberLiveness>,
    pub(crate) wake: Weak<Notify>,
}

/// The topics a member wants: names, or a pattern resolved against the
/// log's topics at each assignment.
#[derive(Clone, Debug)]
pub(crate) enum Subscription {
    Topics(BTreeSet<String>),
    Pattern(regex_lite::Regex),
}

impl Subscription {
    fn resolve(&self, log: &Log) -> BTreeSet<String> {
        match self {
            Subscription::Topics(topics) => topics.clone(),
            Subscription::Pattern(regex) => log
                .topics()
                .into_iter()
                .filter(|t| !t.starts_with("__") && regex.is_match(t))
                .collect(),
        }
    }
}

/// What a member must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing new.
    None,
    /// A rebalance started: revoke (everything, unless cooperative) and
    /// re-join.
    Rejoin { revoke_all: bool },
    /// Re-joined; waiting for the others.
    Waiting,
    /// The assignment of a new generation.
    Assignment {
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
}

struct Member {
    member_id: String,
    instance_id: Option<String>,
    subscription: Subscription,
    session_timeout_ms: i64,
    max_poll_interval_ms: i64,
    liveness: Arc<MemberLiveness>,
    wake: Weak<Notify>,
    /// What it owned when it last re-joined.
    owned: Vec<TopicPartition>,
    /// Its assignment in the current generation.
    assignment: Vec<TopicPartition>,
    /// The last generation whose assignment it picked up.
    acked_generation: i32,
    /// Whether it has re-joined in the current round.
    rejoined: bool,
}

struct Group {
    state: GroupState,
    generation: i32,
    strategy: AssignmentStrategy,
    members: BTreeMap<String, Member>,
    /// Member ids replaced by a newer static member (with their instance
    /// id): fenced, not merely unknown.
    fenced: HashMap<String, String>,
    round_started_ms: i64,
    /// A cooperative round withheld moved partitions: run another round
    /// once everyone has picked up this one.
    followup_needed: bool,
    /// Partitions per subscribed topic when the assignment was made.
    assigned_topics: BTreeMap<String, u32>,
    assigned_metadata_version: u64,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            strategy: AssignmentStrategy::Range,
            members: BTreeMap::new(),
            fenced: HashMap::new(),
            round_started_ms: 0,
            followup_needed: false,
            assigned_topics: BTreeMap::new(),
            assigned_metadata_version: 0,
        }
    }

    fn tell_everyone(&self, wakers: &mut Vec<Arc<Notify>>) {
        for member in self.members.values() {
            member.liveness.news.store(true, Ordering::SeqCst);
            wakers.extend(member.wake.upgrade());
        }
    }

    /// Starts a rebalance round: every member must re-join.
    fn start_round(&mut self, now_ms: i64, wakers: &mut Vec<Arc<Notify>>) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            return;
        }
        self.state = GroupState::PreparingRebalance;
        self.round_started_ms = now_ms;
        self.followup_needed = false;
        for member in self.members.values_mut() {
            member.rejoined = false;
        }
        self.tell_everyone(wakers);
    }

    fn partitions_per_topic(&self, log: &Log) -> BTreeMap<String, u32> {
        let mut topics = BTreeMap::new();
        for member in self.members.values() {
            for topic in member.subscription.resolve(log) {
                if let Ok(count) = log.partition_count(&topic) {
                    topics.insert(topic, count);
                }
            }
        }
        topics
    }

    /// Finishes the round if every member re-joined: runs the assignor and
    /// moves to the next generation.
    fn try_complete(&mut self, log: &Log, wakers: &mut Vec<Arc<Notify>>) {
        if self.state != GroupState::PreparingRebalance
            || self.members.values().any(|m| !m.rejoined)
        {
            return;
        }
        self.state = GroupState::CompletingRebalance;
        let version = log.metadata_version();
        let topics = self.partitions_per_topic(log);
        let cooperative = self.strategy.is_cooperative();
        let subscriptions: Vec<MemberSubscription> = self
            .members
            .values()
            .map(|m| MemberSubscription {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                topics: m.subscription.resolve(log),
                // Eager members revoked everything before re-joining; the
                // sticky assignor still wants to know what they had.
                owned: if cooperative {
                    m.owned.clone()
                } else {
                    m.assignment.clone()
                },
            })
            .collect();
        let mut target = assign(self.strategy, &subscriptions, &topics);
        if cooperative {
            // A partition still owned by another member is withheld from its
            // new owner until the old one has revoked it (next round).
            let owner: BTreeMap<&TopicPartition, &str> = self
                .members
                .values()
                .flat_map(|m| m.owned.iter().map(move |tp| (tp, m.member_id.as_str())))
                .collect();
            for (member_id, partitions) in target.iter_mut() {
                let before = partitions.len();
                partitions.retain(|tp| owner.get(tp).is_none_or(|o| *o == member_id));
                if partitions.len() != before {
                    self.followup_needed = true;
                }
            }
        }
        self.generation += 1;
        for member in self.members.values_mut() {
            member.assignment = target.remove(&member.member_id).unwrap_or_default();
        }
        self.assigned_topics = topics;
        self.assigned_metadata_version = version;
        self.state = GroupState::Stable;
        self.tell_everyone(wakers);
    }

    /// Removes members whose handle went away longer than their session
    /// time-out ago, that stopped polling for longer than their poll
    /// interval, or that did not re-join within the rebalance time-out.
    fn expire(&mut self, log: &Log, now_ms: i64, wakers: &mut Vec<Arc<Notify>>) {
        let round_started = self.round_started_ms;
        let preparing = self.state == GroupState::PreparingRebalance;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let gone_at = m.liveness.gone_at_ms.load(Ordering::SeqCst);
                let polling = m.liveness.in_poll.load(Ordering::SeqCst);
                let last_poll = m.liveness.last_poll_ms.load(Ordering::SeqCst);
                (gone_at >= 0 && now_ms - gone_at >= m.session_timeout_ms)
                    || (!polling && gone_at < 0 && now_ms - last_poll >= m.max_poll_interval_ms)
                    || (preparing
                        && !m.rejoined
                        && now_ms - round_started >= m.max_poll_interval_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for member_id in expired {
            if let Some(member) = self.members.remove(&member_id) {
                member.liveness.news.store(true, Ordering::SeqCst);
                wakers.extend(member.wake.upgrade());
            }
        }
        self.start_round(now_ms, wakers);
        self.try_complete(log, wakers);
    }

    /// The earliest clock time at which a member could expire.
    fn next_deadline_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| {
                let gone_at = m.liveness.gone_at_ms.load(Ordering::SeqCst);
                let mut deadline = if gone_at >= 0 {
                    gone_at + m.session_timeout_ms
                } else {
                    m.liveness.last_poll_ms.load(Ordering::SeqCst) + m.max_poll_interval_ms
                };
                if self.state == GroupState::PreparingRebalance && !m.rejoined {
                    deadline = deadline.min(self.round_started_ms + m.max_poll_interval_ms);
                }
                deadline
            })
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// One member as [`Log::describe_group`](crate::Log::describe_group)
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// Its static instance id, if any.
    pub group_instance_id: Option<String>,
    /// Its partitions in the current generation.
    pub assignment: Vec<TopicPartition>,
}

/// The coordinator of every consumer group of one log.
#[derive(Default)]
pub(crate) struct GroupCoordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    next_member: AtomicU64,
}

fn wake_all(wakers: Vec<Arc<Notify>>) {
    // Called with no coordinator lock held: a member's Notify lock is
    // taken inside its own wait, which may look at coordinator state.
    for waker in wakers {
        waker.notify();
    }
}

impl GroupCoordinator {
    fn with_group<T>(
        &self,
        log: &Log,
        group_id: &str,
        f: impl FnOnce(&mut Group, i64, &mut Vec<Arc<Notify>>) -> Result<T>,
    ) -> Result<T> {
        let now_ms = log.clock().now_ms();
        let mut wakers = Vec::new();
        let result = {
            let mut groups = self.groups.lock();
            let group = groups.entry(group_id.to_owned()).or_insert_with(Group::new);
            group.expire(log, now_ms, &mut wakers);
            f(group, now_ms, &mut wakers)
        };
        wake_all(wakers);
        result
    }

    /// Adds a member (or takes over a static member's place) and returns its
    /// member id.
    pub(crate) fn join(&self, log: &Log, group_id: &str, request: JoinRequest) -> Result<String> {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        let member_id = format!("{}-{n}", request.client_id);
        self.with_group(log, group_id, |group, now_ms, wakers| {
            if !group.members.is_empty() && group.strategy != request.strategy {
                return Err(Error::InconsistentGroupProtocol {
                    group: group_id.to_owned(),
                    current: group.strategy.name(),
                    requested: request.strategy.name(),
                });
            }
            group.strategy = request.strategy;
            let replaced = request.instance_id.as_ref().and_then(|instance| {
                group
                    .members
                    .values()
                    .find(|m| m.instance_id.as_ref() == Some(instance))
                    .map(|m| (m.member_id.clone(), instance.clone()))
            });
            let mut member = Member {
                member_id: member_id.clone(),
                instance_id: request.instance_id.clone(),
                subscription: request.subscription,
                session_timeout_ms: request.session_timeout_ms,
                max_poll_interval_ms: request.max_poll_interval_ms,
                liveness: request.liveness,
                wake: request.wake,
                owned: Vec::new(),
                assignment: Vec::new(),
                acked_generation: -1,
                rejoined: true,
            };
            if let Some((old_id, instance_id)) = replaced {
                // Static membership: the new instance takes the old one's
                // place and assignment without a rebalance; the old handle is
                // fenced.
                let mut resubscribed = false;
                if let Some(old) = group.members.remove(&old_id) {
                    resubscribed =
                        old.subscription.resolve(log) != member.subscription.resolve(log);
                    member.assignment = old.assignment;
                    member.rejoined = old.rejoined;
                    old.liveness.news.store(true, Ordering::SeqCst);
                    wakers.extend(old.wake.upgrade());
                }
                group.fenced.insert(old_id, instance_id);
                group.members.insert(member_id.clone(), member);
                if resubscribed {
                    // Its old assignment may cover topics it no longer wants.
                    group.start_round(now_ms, wakers);
                    if let Some(member) = group.members.get_mut(&member_id) {
                        member.rejoined = true;
                    }
                }
                if group.state == GroupState::PreparingRebalance {
                    group.try_complete(log, wakers);
                }
                return Ok(member_id.clone());
            }
            group.members.insert(member_id.clone(), member);
            group.start_round(now_ms, wakers);
            if let Some(member) = group.members.get_mut(&member_id) {
                member.rejoined = true;
            }
            group.try_complete(log, wakers);
            Ok(member_id.clone())
        })
    }

    fn member<'a>(group: &'a mut Group, group_id: &str, member_id: &str) -> Result<&'a mut Member> {
        if let Some(instance_id) = group.fenced.get(member_id) {
            return Err(Error::FencedInstanceId {
                group: group_id.to_owned(),
                instance_id: instance_id.clone(),
            });
        }
        group
            .members
            .get_mut(member_id)
            .ok_or_else(|| Error::UnknownMember {
                group: group_id.to_owned(),
                member_id: member_id.to_owned(),
            })
    }

    /// What the member must do next; also notices topic changes that need
    /// a rebalance.
    pub(crate) fn sync(&self, log: &Log, group_id: &str, member_id: &str) -> Result<Action> {
        self.with_group(log, group_id, |group, now_ms, wakers| {
            Self::member(group, group_id, member_id)?
                .liveness
                .news
                .store(false, Ordering::SeqCst);
            if group.state == GroupState::Stable
                && log.metadata_version() != group.assigned_metadata_version
            {
                let topics = group.partitions_per_topic(log);
                if topics == group.assigned_topics {
                    group.assigned_metadata_version = log.metadata_version();
                } else {
                    group.start_round(now_ms, wakers);
                }
            }
            if group.state == GroupState::PreparingRebalance {
                let cooperative = group.strategy.is_cooperative();
                let member = Self::member(group, group_id, member_id)?;
                if !member.rejoined {
                    return Ok(Action::Rejoin {
                        revoke_all: !cooperative,
                    });
                }
                group.try_complete(log, wakers);
                if group.state != GroupState::Stable {
                    return Ok(Action::Waiting);
                }
            }
            let generation = group.generation;
            let member = Self::member(group, group_id, member_id)?;
            if member.acked_generation < generation {
                member.acked_generation = generation;
                let partitions = member.assignment.clone();
                if group.followup_needed
                    && group
                        .members
                        .values()
                        .all(|m| m.acked_generation == generation)
                {
                    group.start_round(now_ms, wakers);
                }
                return Ok(Action::Assignment {
                    generation,
                    partitions,
                });
            }
            Ok(Action::None)
        })
    }

    /// The member is back for the current round, owning `owned`.
    pub(crate) fn rejoin(
        &self,
        log: &Log,
        group_id: &str,
        member_id: &str,
        owned: Vec<TopicPartition>,
    ) -> Result<()> {
        self.with_group(log, group_id, |group, _, wakers| {
            let member = Self::member(group, group_id, member_id)?;
            member.rejoined = true;
            member.owned = owned;
            group.try_complete(log, wakers);
            Ok(())
        })
    }

    /// The member leaves; the others rebalance.
    pub(crate) fn leave(&self, log: &Log, group_id: &str, member_id: &str) {
        let _ = self.with_group(log, group_id, |group, now_ms, wakers| {
            if group.members.remove(member_id).is_some() {
                if group.members.is_empty() {
                    group.state = GroupState::Empty;
                    group.generation += 1;
                } else {
                    group.start_round(now_ms, wakers);
                    group.try_complete(log, wakers);
                }
            }
            Ok(())
        });
    }

    /// Commits offsets after checking the committer may: a member of the
    /// current generation, or (`member` is `None`) anyone while the group
    /// has no members.
    pub(crate) fn commit(
        &self,
        log: &Log,
        group_id: &str,
        member: Option<(&str, i32)>,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.with_group(log, group_id, |group, _, _| {
            match member {
                None if !group.members.is_empty() => {
                    return Err(Error::GroupNotEmpty(group_id.to_owned()));
                }
                None => {}
                Some((member_id, generation)) => {
                    Self::member(group, group_id, member_id)?;
                    if generation != group.generation {
                        return Err(Error::IllegalGeneration {
                            group: group_id.to_owned(),
                            generation,
                            current: group.generation,
                        });
                    }
                    if group.state == GroupState::CompletingRebalance {
                        return Err(Error::RebalanceInProgress(group_id.to_owned()));
                    }
                }
            }
            log.offset_store().commit(log, group_id, offsets)
        })
    }

    /// The earliest clock time at which a member of the group could expire.
    pub(crate) fn next_deadline_ms(&self, group_id: &str) -> i64 {
        self.groups
            .lock()
            .get(group_id)
            .map_or(i64::MAX, Group::next_deadline_ms)
    }

    /// The group's state, generation, strategy and members.
    pub(crate) fn describe(
        &self,
        log: &Log,
        group_id: &str,
    ) -> Option<(GroupState, i32, AssignmentStrategy, Vec<MemberDescription>)> {
        let now_ms = log.clock().now_ms();
        let mut wakers = Vec::new();
        let described = {
            let mut groups = self.groups.lock();
            groups.get_mut(group_id).map(|group| {
                group.expire(log, now_ms, &mut wakers);
                let members = group
                    .members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        assignment: m.assignment.clone(),
                    })
                    .collect();
                (group.state, group.generation, group.strategy, members)
            })
        };
        wake_all(wakers);
        described
    }

    /// Names of the groups the coordinator knows.
    pub(crate) fn group_ids(&self) -> Vec<String> {
        self.groups.lock().keys().cloned().collect()
    }

    /// Runs `f` if the group has no members, holding the coordinator so no
    /// member joins meanwhile.
    pub(crate) fn while_empty<T>(
        &self,
        log: &Log,
        group_id: &str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.with_group(log, group_id, |group, _, _| {
            if !group.members.is_empty() {
                return Err(Error::GroupNotEmpty(group_id.to_owned()));
            }
            f()
        })
    }

    /// Forgets an empty group.
    pub(crate) fn remove_group(&self, group_id: &str) {
        let mut groups = self.groups.lock();
        if groups.get(group_id).is_some_and(|g| g.members.is_empty()) {
            groups.remove(group_id);
        }
    }
}
