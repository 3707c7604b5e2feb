//! [`Consumer`]: reads topics in order, remembers its place in the log's
//! `__consumer_offsets`, and blocks in `poll` until data arrives.
//!
//! ```
//! use std::time::Duration;
//! use brooklet::{ConsumerConfig, Log, LogConfig, OffsetReset, Record, TopicConfig};
//!
//! let log = Log::temporary(LogConfig::default())?;
//! log.create_topic("orders", TopicConfig::default())?;
//! log.append("orders", 0, &[Record::new("created")])?;
//!
//! let mut consumer = log.consumer(
//!     ConsumerConfig::group("billing").auto_offset_reset(OffsetReset::Earliest),
//! );
//! consumer.subscribe(&["orders"])?;
//! let records = consumer.poll(Duration::from_millis(100))?;
//! assert_eq!(records.len(), 1);
//! consumer.commit()?;
//! # Ok::<(), brooklet::Error>(())
//! ```

mod config;
mod membership;
pub(crate) mod offsets;
mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::group::coordinator::Subscription as GroupSubscription;
use crate::log::{Log, deadline_after};
use crate::notify::Notify;
use crate::storage::fetch::ReadCursor;
use crate::storage::{Fetch, PartitionLog, TimestampOffset};
use crate::topics::validate_topic_name;

pub use config::{ConsumerConfig, OffsetReset};
use membership::Membership;
pub use membership::RebalanceListener;
pub use offsets::{
    DEFAULT_OFFSETS_TOPIC_PARTITIONS, OFFSETS_TOPIC, OffsetAndMetadata, TopicPartition,
};
pub use records::{ConsumerRecord, ConsumerRecords, Iter as ConsumerRecordsIter};
use records::{FetchedRecords, PartitionRecords};

enum Subscription {
    None,
    Topics(BTreeSet<String>),
    Pattern(regex_lite::Regex),
    Manual,
}

/// One assigned partition and the consumer's place in it.
struct Assigned {
    tp: TopicPartition,
    topic: Arc<str>,
    log: Arc<PartitionLog>,
    /// The next offset to return; `None` until looked up.
    position: Option<i64>,
    paused: bool,
    cursor: Option<ReadCursor>,
    /// Records fetched but not yet returned, and the index of the next.
    buffered: Option<(Arc<FetchedRecords>, usize)>,
    /// The last fetch handed out whole: its buffers are reused once the
    /// caller has dropped the records that borrow them.
    spent: Option<Arc<FetchedRecords>>,
}

impl Assigned {
    fn has_data(&self) -> bool {
        if self.buffered.is_some() {
            return true;
        }
        self.position
            .is_none_or(|position| self.log.high_watermark() > position)
    }

    fn set_position(&mut self, offset: i64) {
        self.position = Some(offset);
        self.cursor = None;
        self.buffered = None;
    }
}

/// Reads records from assigned or subscribed partitions. One consumer is
/// used from one thread at a time (it is `Send`, not `Sync`), as in Kafka.
pub struct Consumer {
    log: Log,
    config: ConsumerConfig,
    subscription: Subscription,
    assignment: Vec<Assigned>,
    /// The partition the next poll starts with, for fairness.
    next_index: usize,
    wake: Arc<Notify>,
    seen_metadata_version: u64,
    last_commit_ms: i64,
    closed: bool,
    membership: Option<Membership>,
    listener: Option<Box<dyn RebalanceListener>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// A consumer of this log's topics.
    pub fn consumer(&self, config: ConsumerConfig) -> Consumer {
        let wake = Notify::new(&**self.clock());
        self.watch_metadata(&wake);
        Consumer {
            log: self.clone(),
            last_commit_ms: self.clock().now_ms(),
            config,
            subscription: Subscription::None,
            assignment: Vec::new(),
            next_index: 0,
            wake,
            seen_metadata_version: u64::MAX,
            closed: false,
            membership: None,
            listener: None,
        }
    }

    /// The offsets a group has committed, by partition.
    pub fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(TopicPartition, OffsetAndMetadata)>> {
        self.offset_store().group_offsets(self, group)
    }

    /// Every group that has committed offsets.
    pub fn consumer_groups(&self) -> Result<Vec<String>> {
        self.offset_store().groups(self)
    }

    /// Commits offsets for a group from outside it, as Kafka's admin client
    /// does: only while the group has no members ([`Error::GroupNotEmpty`]
    /// otherwise).
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.group_coordinator().commit(self, group, None, offsets)
    }
}

impl Consumer {
    /// Subscribes to these topics (replacing any earlier subscription).
    /// With a group id the consumer joins the group and gets its share of
    /// the partitions at the next poll; without one it reads every
    /// partition. Topics that do not exist yet are picked up when created.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        for topic in topics {
            validate_topic_name(topic)?;
        }
        let topics: BTreeSet<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        if self.config.group_id.is_some() {
            self.subscription = Subscription::None;
            return self.join_group(GroupSubscription::Topics(topics));
        }
        self.subscription = Subscription::Topics(topics);
        self.seen_metadata_version = u64::MAX;
        self.refresh_subscription()
    }

    /// Subscribes to every topic whose whole name matches the regular
    /// expression `pattern`, now and as topics are created. Internal topics
    /// (`__consumer_offsets`) are left out.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<()> {
        let regex = regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|err| {
            Error::InvalidPattern {
                pattern: pattern.to_owned(),
                reason: err.to_string(),
            }
        })?;
        if self.config.group_id.is_some() {
            self.subscription = Subscription::None;
            return self.join_group(GroupSubscription::Pattern(regex));
        }
        self.subscription = Subscription::Pattern(regex);
        self.seen_metadata_version = u64::MAX;
        self.refresh_subscription()
    }

    /// Assigns these partitions, replacing any subscription (Kafka's
    /// manual assignment).
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let mut wanted = Vec::with_capacity(partitions.len());
        for tp in partitions {
            wanted.push((tp.clone(), self.log.partition(&tp.topic, tp.partition)?));
        }
        self.leave_group(true);
        self.subscription = Subscription::Manual;
        self.set_assignment(wanted);
        Ok(())
    }

    /// Drops the subscription and the assignment, leaving the group.
    pub fn unsubscribe(&mut self) {
        self.leave_group(true);
        self.subscription = Subscription::None;
        self.set_assignment(Vec::new());
    }

    /// The partitions this consumer reads, in order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.iter().map(|a| a.tp.clone()).collect()
    }

    fn set_assignment(&mut self, wanted: Vec<(TopicPartition, Arc<PartitionLog>)>) {
        let mut previous: BTreeMap<TopicPartition, Assigned> = self
            .assignment
            .drain(..)
            .map(|a| (a.tp.clone(), a))
            .collect();
        for (tp, log) in wanted {
            match previous.remove(&tp) {
                Some(kept) if Arc::ptr_eq(&kept.log, &log) => self.assignment.push(kept),
                _ => {
                    log.watch(&self.wake);
                    self.assignment.push(Assigned {
                        topic: Arc::from(tp.topic.as_str()),
                        tp,
                        log,
                        position: None,
                        paused: false,
                        cursor: None,
                        buffered: None,
                        spent: None,
                    });
                }
            }
        }
        for dropped in previous.into_values() {
            dropped.log.unwatch(&self.wake);
        }
        self.next_index = 0;
    }

    /// Re-reads which partitions a topic or pattern subscription covers,
    /// if topics changed since the last look.
    fn refresh_subscription(&mut self) -> Result<()> {
        let version = self.log.metadata_version();
        if version == self.seen_metadata_version {
            return Ok(());
        }
        let topics: Vec<String> = match &self.subscription {
            Subscription::None | Subscription::Manual => return Ok(()),
            Subscription::Topics(topics) => topics.iter().cloned().collect(),
            Subscription::Pattern(regex) => self
                .log
                .topics()
                .into_iter()
                .filter(|t| !t.starts_with("__") && regex.is_match(t))
                .collect(),
        };
        self.seen_metadata_version = version;
        let mut wanted = Vec::new();
        for topic in topics {
            let partitions = match self.log.partition_handles(&topic) {
                Ok(partitions) => partitions,
                Err(Error::UnknownTopic(_)) => continue,
                Err(err) => return Err(err),
            };
            for (i, log) in partitions.into_iter().enumerate() {
                wanted.push((TopicPartition::new(topic.clone(), i as u32), log));
            }
        }
        self.set_assignment(wanted);
        Ok(())
    }

    fn index_of(&self, tp: &TopicPartition) -> Result<usize> {
        self.assignment
            .iter()
            .position(|a| &a.tp == tp)
            .ok_or_else(|| Error::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            })
    }

    /// The offset `auto_offset_reset` gives partition `i`.
    fn reset_offset(&self, i: usize) -> Result<i64> {
        let assigned = &self.assignment[i];
        let (log_start, high_watermark, _) = assigned.log.offsets();
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => Ok(log_start),
            OffsetReset::Latest => Ok(high_watermark),
            OffsetReset::None => Err(Error::NoOffsetForPartition {
                topic: assigned.tp.topic.clone(),
                partition: assigned.tp.partition,
            }),
        }
    }

    /// The position of partition `i`, looking up the committed offset (or
    /// applying the reset policy) the first time.
    fn resolve_position(&mut self, i: usize) -> Result<i64> {
        if let Some(position) = self.assignment[i].position {
            return Ok(position);
        }
        let committed = match &self.config.group_id {
            Some(group) => {
                self.log
                    .offset_store()
                    .committed(&self.log, group, &self.assignment[i].tp)?
            }
            None => None,
        };
        let position = match committed {
            Some(commit) => commit.offset,
            None => self.reset_offset(i)?,
        };
        self.assignment[i].set_position(position);
        Ok(position)
    }

    /// The offset of the next record `poll` returns from a partition.
    pub fn position(&mut self, tp: &TopicPartition) -> Result<i64> {
        let i = self.index_of(tp)?;
        self.resolve_position(i)
    }

    /// Moves a partition's position to `offset`; the next poll reads from
    /// there (an offset outside the log follows `auto_offset_reset`).
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let i = self.index_of(tp)?;
        self.assignment[i].set_position(offset);
        Ok(())
    }

    fn selected(&self, partitions: &[TopicPartition]) -> Result<Vec<usize>> {
        if partitions.is_empty() {
            return Ok((0..self.assignment.len()).collect());
        }
        partitions.iter().map(|tp| self.index_of(tp)).collect()
    }

    /// Moves partitions (all assigned ones if `partitions` is empty) to
    /// their log start.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.selected(partitions)? {
            let (log_start, _, _) = self.assignment[i].log.offsets();
            self.assignment[i].set_position(log_start);
        }
        Ok(())
    }

    /// Moves partitions (all assigned ones if `partitions` is empty) to
    /// their end.
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.selected(partitions)? {
            let (_, high_watermark, _) = self.assignment[i].log.offsets();
            self.assignment[i].set_position(high_watermark);
        }
        Ok(())
    }

    /// Moves partitions (all assigned ones if `partitions` is empty) to
    /// their first record at or after `timestamp_ms`, or to their end if
    /// there is none.
    pub fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<()> {
        for i in self.selected(partitions)? {
            let log = &self.assignment[i].log;
            let offset = match log.offset_for_timestamp(timestamp_ms)? {
                Some(found) => found.offset,
                None => log.offsets().1,
            };
            self.assignment[i].set_position(offset);
        }
        Ok(())
    }

    /// For each partition, its first record at or after the timestamp
    /// (Kafka's `offsetsForTimes`).
    pub fn offsets_for_times(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Option<TimestampOffset>)>> {
        query
            .iter()
            .map(|(tp, ts)| {
                Ok((
                    tp.clone(),
                    self.log
                        .offset_for_timestamp(&tp.topic, tp.partition, *ts)?,
                ))
            })
            .collect()
    }

    /// Stops returning records from these partitions until resumed.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.selected(partitions)? {
            self.assignment[i].paused = true;
        }
        Ok(())
    }

    /// Returns records from these partitions again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.selected(partitions)? {
            self.assignment[i].paused = false;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter(|a| a.paused)
            .map(|a| a.tp.clone())
            .collect()
    }

    fn group(&self) -> Result<&str> {
        self.config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::InvalidConfig("committing offsets needs a group id".into()))
    }

    /// Commits the current position of every assigned partition: what
    /// earlier polls returned counts as consumed.
    pub fn commit(&mut self) -> Result<()> {
        let offsets: Vec<_> = self
            .assignment
            .iter()
            .filter_map(|a| {
                a.position
                    .map(|p| (a.tp.clone(), OffsetAndMetadata::new(p)))
            })
            .collect();
        self.commit_offsets(&offsets)
    }

    /// Commits these offsets for the consumer's group. A group member's
    /// commit is refused once it is no longer part of the group's current
    /// generation ([`Error::UnknownMember`], [`Error::IllegalGeneration`]);
    /// a consumer outside the group can only commit while the group has no
    /// members ([`Error::GroupNotEmpty`]).
    pub fn commit_offsets(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        let group = self.group()?.to_owned();
        let member = self
            .membership
            .as_ref()
            .map(|m| (m.member_id.clone(), m.generation));
        self.log.group_coordinator().commit(
            &self.log,
            &group,
            member
                .as_ref()
                .map(|(id, generation)| (id.as_str(), *generation)),
            offsets,
        )?;
        self.last_commit_ms = self.log.clock().now_ms();
        Ok(())
    }

    /// The group's committed offsets for these partitions.
    pub fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<OffsetAndMetadata>)>> {
        let group = self.group()?;
        partitions
            .iter()
            .map(|tp| {
                Ok((
                    tp.clone(),
                    self.log.offset_store().committed(&self.log, group, tp)?,
                ))
            })
            .collect()
    }

    fn maybe_auto_commit(&mut self) -> Result<()> {
        if !self.config.enable_auto_commit || self.config.group_id.is_none() {
            return Ok(());
        }
        let interval_ms =
            i64::try_from(self.config.auto_commit_interval.as_millis()).unwrap_or(i64::MAX);
        if self
            .log
            .clock()
            .now_ms()
            .saturating_sub(self.last_commit_ms)
            >= interval_ms
        {
            match self.commit() {
                Ok(()) => {}
                // As Kafka's asynchronous auto-commit: a commit the group
                // refuses mid-rebalance is retried later, not thrown from
                // `poll`.
                Err(
                    Error::UnknownMember { .. }
                    | Error::IllegalGeneration { .. }
                    | Error::RebalanceInProgress(_)
                    | Error::FencedInstanceId { .. },
                ) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Returns the records available now, in offset order per partition,
    /// starting with a different partition each time for fairness. If there
    /// are none, blocks until an append brings some or `timeout` passes on
    /// the log's clock, and then returns what there is (maybe nothing).
    pub fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        if self.closed {
            return Err(Error::Closed);
        }
        let clock = Arc::clone(self.log.clock());
        let deadline_ms = deadline_after(&*clock, timeout);
        self.mark_polling(true);
        let result = self.poll_until(deadline_ms);
        self.mark_polling(false);
        result
    }

    /// Tells the group coordinator this member is (or stopped) polling.
    fn mark_polling(&self, polling: bool) {
        if let Some(membership) = &self.membership {
            let liveness = &membership.liveness;
            liveness.last_poll_ms.store(
                self.log.clock().now_ms(),
                std::sync::atomic::Ordering::SeqCst,
            );
            liveness
                .in_poll
                .store(polling, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll_until(&mut self, deadline_ms: i64) -> Result<ConsumerRecords> {
        let clock = Arc::clone(self.log.clock());
        self.sync_group()?;
        self.maybe_auto_commit()?;
        loop {
            self.refresh_subscription()?;
            self.sync_group()?;
            let records = self.fetch_available()?;
            if !records.is_empty() {
                return Ok(records);
            }
            let wake = Arc::clone(&self.wake);
            let version = self.log.metadata_version();
            // Wake up in time to notice a member of the group expiring.
            let group_deadline_ms = self.membership.as_ref().map_or(i64::MAX, |m| {
                self.log.group_coordinator().next_deadline_ms(&m.group_id)
            });
            let news = self.membership.as_ref().map(|m| Arc::clone(&m.liveness));
            wake.wait_until(&*clock, deadline_ms.min(group_deadline_ms), || {
                self.log.metadata_version() != version
                    || news
                        .as_ref()
                        .is_some_and(|n| n.news.load(std::sync::atomic::Ordering::SeqCst))
                    || self.assignment.iter().any(|a| !a.paused && a.has_data())
                    || self.log.check_open().is_err()
            });
            self.log.check_open()?;
            if clock.now_ms() >= deadline_ms {
                self.sync_group()?;
                return self.fetch_available();
            }
        }
    }

    /// Reads what is there without waiting.
    fn fetch_available(&mut self) -> Result<ConsumerRecords> {
        let mut out = ConsumerRecords::default();
        let count = self.assignment.len();
        if count == 0 {
            return Ok(out);
        }
        let mut remaining = self.config.max_poll_records;
        let mut budget = self.config.fetch_max_bytes;
        let start = self.next_index % count;
        self.next_index = (start + 1) % count;
        for k in 0..count {
            if remaining == 0 {
                break;
            }
            let i = (start + k) % count;
            if self.assignment[i].paused {
                continue;
            }
            if self.assignment[i].buffered.is_none()
                && (budget == 0 || !self.fill(i, &mut budget)?)
            {
                continue;
            }
            let assigned = &mut self.assignment[i];
            let Some((fetched, next)) = assigned.buffered.take() else {
                continue;
            };
            let take = remaining.min(fetched.spans.len() - next);
            let end = next + take;
            remaining -= take;
            if end == fetched.spans.len() {
                assigned.position = Some(fetched.fetch.next_offset());
                assigned.spent = Some(Arc::clone(&fetched));
            } else {
                assigned.position = Some(fetched.spans[end].offset);
                assigned.buffered = Some((Arc::clone(&fetched), end));
            }
            out.parts.push(PartitionRecords {
                topic: Arc::clone(&assigned.topic),
                partition: assigned.tp.partition,
                fetched,
                range: next..end,
            });
        }
        Ok(out)
    }

    /// Fetches the next batches of partition `i` into its buffer; false if
    /// there were none.
    fn fill(&mut self, i: usize, budget: &mut usize) -> Result<bool> {
        let mut position = self.resolve_position(i)?;
        let max_bytes = self.config.max_partition_fetch_bytes.min(*budget);
        let (mut fetch, spans) = match self.assignment[i].spent.take().map(Arc::try_unwrap) {
            Some(Ok(spent)) => (spent.fetch, spent.spans),
            _ => (Fetch::new(), Vec::new()),
        };
        let mut retried = false;
        loop {
            let assigned = &self.assignment[i];
            match assigned
                .log
                .read_into(position, max_bytes, assigned.cursor.as_ref(), &mut fetch)
            {
                Ok(()) => break,
                Err(Error::OffsetOutOfRange { .. })
                    if !retried && self.config.auto_offset_reset != OffsetReset::None =>
                {
                    position = self.reset_offset(i)?;
                    self.assignment[i].set_position(position);
                    retried = true;
                }
                Err(err) => return Err(err),
            }
        }
        if fetch.is_empty() {
            return Ok(false);
        }
        *budget = budget.saturating_sub(fetch.bytes().len());
        let assigned = &mut self.assignment[i];
        assigned.cursor = fetch.cursor().cloned();
        let fetched = FetchedRecords::decode(fetch, spans)?;
        if fetched.spans.is_empty() {
            // Only control batches or records below the position.
            assigned.position = Some(fetched.fetch.next_offset());
            return Ok(false);
        }
        assigned.buffered = Some((Arc::new(fetched), 0));
        Ok(true)
    }

    /// Commits positions if auto-commit is on, and leaves. Later polls fail
    /// with [`Error::Closed`].
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let result = if self.config.enable_auto_commit && self.config.group_id.is_some() {
            self.commit()
        } else {
            Ok(())
        };
        // As Kafka's close: the rebalance listener hears of the revocation
        // (and may commit) before the member leaves.
        self.leave_group(true);
        self.set_assignment(Vec::new());
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Errors can not be returned from drop; `Consumer::close` reports
        // them.
        let _ = self.close_inner();
    }
}
