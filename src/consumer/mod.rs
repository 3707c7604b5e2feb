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
mod polling;
mod positions;
mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::group::coordinator::Subscription as GroupSubscription;
use crate::log::Log;
use crate::notify::Notify;
use crate::storage::fetch::ReadCursor;
use crate::storage::{Fetch, PartitionLog};
use crate::topics::validate_topic_name;

pub use config::{ConsumerConfig, OffsetReset};
use membership::Membership;
pub use membership::RebalanceListener;
pub use offsets::{
    DEFAULT_OFFSETS_TOPIC_PARTITIONS, OFFSETS_TOPIC, OffsetAndMetadata, TopicPartition,
};
pub use records::{ConsumerRecord, ConsumerRecords, Iter as ConsumerRecordsIter};

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
    /// A checked fetch with records not yet returned, and the offset of the
    /// next one.
    buffered: Option<(Arc<Fetch>, i64)>,
    /// The last fetch handed out whole: its buffers are reused once the
    /// caller has dropped the records that borrow them.
    spent: Option<Arc<Fetch>>,
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
