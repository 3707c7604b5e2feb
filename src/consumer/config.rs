//! Settings of a [`Consumer`](crate::Consumer)(crate::Consumer), with Kafka's names and
//! defaults.

use std::time::Duration;

use crate::group::AssignmentStrategy;

/// Where a consumer starts in a partition it has no committed offset for,
/// or whose offset fell out of the log (`auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The end: only records appended from now on (Kafka's default).
    #[default]
    Latest,
    /// Fail with [`Error::NoOffsetForPartition`](crate::Error::NoOffsetForPartition) or
    /// [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange).
    None,
}

/// Settings of a [`Consumer`](crate::Consumer), with Kafka's defaults.
#[derive(Clone, Debug)]
#[must_use]
pub struct ConsumerConfig {
    pub(crate) group_id: Option<String>,
    pub(crate) auto_offset_reset: OffsetReset,
    pub(crate) enable_auto_commit: bool,
    pub(crate) auto_commit_interval: Duration,
    pub(crate) max_poll_records: usize,
    pub(crate) fetch_max_bytes: usize,
    pub(crate) max_partition_fetch_bytes: usize,
    pub(crate) client_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) assignment_strategy: AssignmentStrategy,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            max_poll_records: 500,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            client_id: "consumer".to_owned(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            assignment_strategy: AssignmentStrategy::Range,
        }
    }
}

impl ConsumerConfig {
    /// A consumer in group `group_id`, with every other setting at its
    /// default.
    pub fn group(group_id: impl Into<String>) -> Self {
        ConsumerConfig::default().group_id(group_id)
    }
    /// The group whose committed offsets the consumer uses (`group.id`).
    /// Defaults to none: no commits.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }
    /// Where to start without a committed offset (`auto.offset.reset`).
    /// Defaults to [`OffsetReset::Latest`].
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }
    /// Commit positions periodically from `poll`, and on close
    /// (`enable.auto.commit`). Defaults to on; needs a group.
    pub fn enable_auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self
    }
    /// Time between automatic commits, by the log's clock
    /// (`auto.commit.interval.ms`). Defaults to 5 s.
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.auto_commit_interval = interval;
        self
    }
    /// Most records one poll returns (`max.poll.records`). Defaults to 500.
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.max_poll_records = records.max(1);
        self
    }
    /// Most bytes one poll reads over all partitions (`fetch.max.bytes`).
    /// Defaults to 50 MiB.
    pub fn fetch_max_bytes(mut self, bytes: usize) -> Self {
        self.fetch_max_bytes = bytes.max(1);
        self
    }
    /// Most bytes one poll reads from a partition
    /// (`max.partition.fetch.bytes`). Defaults to 1 MiB.
    pub fn max_partition_fetch_bytes(mut self, bytes: usize) -> Self {
        self.max_partition_fetch_bytes = bytes.max(1);
        self
    }
    /// Prefix of the member id (`client.id`). Defaults to `consumer`.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }
    /// A static member id (`group.instance.id`): a consumer that comes back
    /// with it within the session time-out gets its partitions back without
    /// a rebalance. Defaults to none.
    pub fn group_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.group_instance_id = Some(instance_id.into());
        self
    }
    /// How long a member whose consumer went away without leaving (a
    /// crash, or a static member's close) keeps its place, by the log's
    /// clock (`session.timeout.ms`). Defaults to 45 s.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }
    /// Longest time between polls, and to re-join in a rebalance, before a
    /// member is removed, by the log's clock (`max.poll.interval.ms`).
    /// Defaults to 300 s.
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }
    /// How the group divides partitions (`partition.assignment.strategy`).
    /// Defaults to [`AssignmentStrategy::Range`].
    pub fn assignment_strategy(mut self, strategy: AssignmentStrategy) -> Self {
        self.assignment_strategy = strategy;
        self
    }
}
