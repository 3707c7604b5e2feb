//! A consumer's side of group membership: joining, following rebalances,
//! calling the [`RebalanceListener`], leaving.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::consumer::{Consumer, TopicPartition};
use crate::error::{Error, Result};
use crate::group::coordinator::{Action, JoinRequest, MemberLiveness, Subscription};

/// Told when a consumer's partitions change in a rebalance. Runs on the
/// consumer's thread, inside `poll`, and may use the consumer (to commit,
/// or seek).
pub trait RebalanceListener: Send {
    /// These partitions are being taken away; they go to no one else until
    /// this returns, so committing here loses and duplicates nothing.
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// These partitions were assigned.
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// These partitions were lost without a revoke (the member was removed
    /// from the group); they may already belong to another member, so
    /// commits for them are refused. Defaults to `on_partitions_revoked`,
    /// as in Kafka.
    fn on_partitions_lost(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(consumer, partitions);
    }
}

/// A consumer's membership in its group.
pub(crate) struct Membership {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) liveness: Arc<MemberLiveness>,
    subscription: Subscription,
}

enum Callback {
    Revoked,
    Assigned,
    Lost,
}

impl Consumer {
    /// Sets the listener told of rebalances.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// The member id and generation, while in a group.
    pub fn group_membership(&self) -> Option<(String, i32)> {
        self.membership
            .as_ref()
            .map(|m| (m.member_id.clone(), m.generation))
    }

    fn call_listener(&mut self, which: Callback, partitions: &[TopicPartition]) {
        if let Some(mut listener) = self.listener.take() {
            match which {
                Callback::Revoked => listener.on_partitions_revoked(self, partitions),
                Callback::Assigned => listener.on_partitions_assigned(self, partitions),
                Callback::Lost => listener.on_partitions_lost(self, partitions),
            }
            self.listener = Some(listener);
        }
    }

    /// Joins the group with this subscription (leaving first if already a
    /// member with another).
    pub(crate) fn join_group(&mut self, subscription: Subscription) -> Result<()> {
        self.leave_group(true);
        let group_id = self.group()?.to_owned();
        let now_ms = self.log.clock().now_ms();
        let liveness = MemberLiveness::new(now_ms);
        let to_ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let request = JoinRequest {
            instance_id: self.config.group_instance_id.clone(),
            client_id: self.config.client_id.clone(),
            subscription: subscription.clone(),
            strategy: self.config.assignment_strategy,
            session_timeout_ms: to_ms(self.config.session_timeout),
            max_poll_interval_ms: to_ms(self.config.max_poll_interval),
            liveness: Arc::clone(&liveness),
            wake: Arc::downgrade(&self.wake),
        };
        let member_id = self
            .log
            .group_coordinator()
            .join(&self.log, &group_id, request)?;
        self.membership = Some(Membership {
            group_id,
            member_id,
            generation: -1,
            liveness,
            subscription,
        });
        // In one process the join completes at once when no other member
        // has to re-join (a group of one): take the assignment now rather
        // than at the first poll.
        self.sync_group()
    }

    /// Leaves the group: revoking (with `revoke`) what it owns. A static
    /// member does not leave; it is marked gone and keeps its place for
    /// its session time-out, as in Kafka.
    pub(crate) fn leave_group(&mut self, revoke: bool) {
        let Some(membership) = &self.membership else {
            return;
        };
        let (group_id, member_id) = (membership.group_id.clone(), membership.member_id.clone());
        let owned = self.assignment();
        if revoke && !owned.is_empty() {
            self.call_listener(Callback::Revoked, &owned);
        }
        self.set_assignment(Vec::new());
        if let Some(membership) = self.membership.take() {
            if self.config.group_instance_id.is_some() {
                membership
                    .liveness
                    .gone_at_ms
                    .store(self.log.clock().now_ms(), Ordering::SeqCst);
            } else {
                self.log
                    .group_coordinator()
                    .leave(&self.log, &group_id, &member_id);
            }
        }
    }

    /// Acts on what the coordinator has for this member: revoke and re-join
    /// for a rebalance, adopt a new assignment, or start over after being
    /// removed.
    pub(crate) fn sync_group(&mut self) -> Result<()> {
        // Bounded: each step moves the member forward, and a round can only
        // ask for a few (re-join, assignment, follow-up re-join).
        for _ in 0..8 {
            let Some(membership) = &self.membership else {
                return Ok(());
            };
            let (group_id, member_id) = (membership.group_id.clone(), membership.member_id.clone());
            let log = self.log.clone();
            let coordinator = log.group_coordinator();
            match coordinator.sync(&log, &group_id, &member_id) {
                Ok(Action::None | Action::Waiting) => return Ok(()),
                Ok(Action::Rejoin { revoke_all }) => {
                    if revoke_all {
                        let owned = self.assignment();
                        if !owned.is_empty() {
                            self.call_listener(Callback::Revoked, &owned);
                        }
                        self.set_assignment(Vec::new());
                    }
                    let owned = self.assignment();
                    match coordinator.rejoin(&log, &group_id, &member_id, owned) {
                        Ok(()) => {}
                        // Removed while it revoked (its callback outlasted the
                        // poll interval): start over as a new member.
                        Err(Error::UnknownMember { .. }) => self.rejoin_as_new_member()?,
                        Err(err) => return Err(err),
                    }
                }
                Ok(Action::Assignment {
                    generation,
                    partitions,
                }) => {
                    if let Some(membership) = &mut self.membership {
                        membership.generation = generation;
                    }
                    let owned = self.assignment();
                    let removed: Vec<_> = owned
                        .iter()
                        .filter(|tp| !partitions.contains(tp))
                        .cloned()
                        .collect();
                    let added: Vec<_> = partitions
                        .iter()
                        .filter(|tp| !owned.contains(tp))
                        .cloned()
                        .collect();
                    if !removed.is_empty() {
                        self.call_listener(Callback::Revoked, &removed);
                    }
                    let mut wanted = Vec::with_capacity(partitions.len());
                    for tp in partitions {
                        match self.log.partition(&tp.topic, tp.partition) {
                            Ok(log) => wanted.push((tp, log)),
                            // Deleted since the assignment: the next round drops it.
                            Err(Error::UnknownTopic(_) | Error::UnknownPartition { .. }) => {}
                            Err(err) => return Err(err),
                        }
                    }
                    self.set_assignment(wanted);
                    self.call_listener(Callback::Assigned, &added);
                }
                Err(Error::UnknownMember { .. }) => self.rejoin_as_new_member()?,
                Err(err @ Error::FencedInstanceId { .. }) => {
                    let owned = self.assignment();
                    if !owned.is_empty() {
                        self.call_listener(Callback::Lost, &owned);
                    }
                    self.set_assignment(Vec::new());
                    self.membership = None;
                    return Err(err);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The group removed this member: its partitions are lost (they may
    /// belong to others already), and it joins again as a new member, as
    /// Kafka's consumer does after `UNKNOWN_MEMBER_ID`.
    fn rejoin_as_new_member(&mut self) -> Result<()> {
        let owned = self.assignment();
        if !owned.is_empty() {
            self.call_listener(Callback::Lost, &owned);
        }
        self.set_assignment(Vec::new());
        match self.membership.take() {
            Some(membership) => self.join_group(membership.subscription),
            None => Ok(()),
        }
    }

    /// Stops as a crashed process would: no commit, no leave. The group
    /// notices after the session time-out.
    pub fn kill(mut self) {
        if let Some(membership) = self.membership.take() {
            membership
                .liveness
                .gone_at_ms
                .store(self.log.clock().now_ms(), Ordering::SeqCst);
        }
        self.closed = true;
    }
}
