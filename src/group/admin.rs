//! Group administration: list, describe (with lag), reset offsets and
//! delete, as Kafka's `kafka-consumer-groups` tool does.

use crate::consumer::{OffsetAndMetadata, TopicPartition};
use crate::error::{Error, Result};
use crate::group::assignor::AssignmentStrategy;
use crate::group::coordinator::{GroupState, MemberDescription};
use crate::log::Log;

/// Where [`Log::reset_group_offsets`] moves a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Each partition's log start.
    Earliest,
    /// Each partition's end.
    Latest,
    /// Each partition's first record at or after this time (its end if
    /// there is none).
    Timestamp(i64),
    /// This offset, clamped into each partition's range.
    Offset(i64),
}

/// One partition's progress in a [`GroupDescription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset, if any.
    pub committed_offset: Option<i64>,
    /// The partition's end (high watermark).
    pub log_end_offset: i64,
    /// Records between the committed offset and the end (the whole
    /// partition if nothing is committed).
    pub lag: i64,
    /// The member that owns the partition now, if any.
    pub owner: Option<String>,
}

/// A consumer group as [`Log::describe_group`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// Its generation.
    pub generation: i32,
    /// Its assignment strategy.
    pub strategy: AssignmentStrategy,
    /// Its members and their partitions.
    pub members: Vec<MemberDescription>,
    /// Committed offset, end and lag of every partition the group owns or
    /// has committed.
    pub partitions: Vec<PartitionLag>,
}

impl Log {
    /// Every group that has members or committed offsets.
    pub fn list_groups(&self) -> Result<Vec<String>> {
        let mut groups = self.group_coordinator().group_ids();
        groups.extend(self.offset_store().groups(self)?);
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// A group's state, members, assignments, and per partition its
    /// committed offset, end offset and lag.
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let described = self.group_coordinator().describe(self, group_id);
        let committed = self.offset_store().group_offsets(self, group_id)?;
        let (state, generation, strategy, members) = match described {
            Some(described) => described,
            None if !committed.is_empty() => {
                (GroupState::Empty, 0, AssignmentStrategy::Range, Vec::new())
            }
            None => return Err(Error::UnknownGroup(group_id.to_owned())),
        };
        let mut partitions: Vec<TopicPartition> =
            committed.iter().map(|(tp, _)| tp.clone()).collect();
        partitions.extend(members.iter().flat_map(|m| m.assignment.iter().cloned()));
        partitions.sort();
        partitions.dedup();
        let mut lags = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let committed_offset = committed
                .iter()
                .find(|(c, _)| *c == tp)
                .map(|(_, o)| o.offset);
            let (log_start, log_end_offset) = match self.offsets(&tp.topic, tp.partition) {
                Ok(offsets) => (offsets.log_start_offset, offsets.high_watermark),
                // A committed topic that was deleted since.
                Err(Error::UnknownTopic(_) | Error::UnknownPartition { .. }) => continue,
                Err(err) => return Err(err),
            };
            let owner = members
                .iter()
                .find(|m| m.assignment.contains(&tp))
                .map(|m| m.member_id.clone());
            lags.push(PartitionLag {
                lag: log_end_offset - committed_offset.unwrap_or(log_start).max(log_start),
                partition: tp,
                committed_offset,
                log_end_offset,
                owner,
            });
        }
        Ok(GroupDescription {
            group_id: group_id.to_owned(),
            state,
            generation,
            strategy,
            members,
            partitions: lags,
        })
    }

    /// Moves a group's committed offsets for `partitions` (all partitions of
    /// the topics it has committed if empty) while the group has no
    /// members; fails with [`Error::GroupNotEmpty`] otherwise.
    pub fn reset_group_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
        to: OffsetSpec,
    ) -> Result<()> {
        let targets: Vec<TopicPartition> = if partitions.is_empty() {
            self.offset_store()
                .group_offsets(self, group_id)?
                .into_iter()
                .map(|(tp, _)| tp)
                .collect()
        } else {
            partitions.to_vec()
        };
        let mut offsets = Vec::with_capacity(targets.len());
        for tp in targets {
            let bounds = self.offsets(&tp.topic, tp.partition)?;
            let offset = match to {
                OffsetSpec::Earliest => bounds.log_start_offset,
                OffsetSpec::Latest => bounds.high_watermark,
                OffsetSpec::Offset(offset) => {
                    offset.clamp(bounds.log_start_offset, bounds.high_watermark)
                }
                OffsetSpec::Timestamp(ts) => {
                    match self.offset_for_timestamp(&tp.topic, tp.partition, ts)? {
                        Some(found) => found.offset,
                        None => bounds.high_watermark,
                    }
                }
            };
            offsets.push((tp, OffsetAndMetadata::new(offset)));
        }
        self.group_coordinator()
            .commit(self, group_id, None, &offsets)
    }

    /// Deletes a group without members: its committed offsets are removed
    /// (tombstones in `__consumer_offsets`).
    pub fn delete_group(&self, group_id: &str) -> Result<()> {
        let coordinator = self.group_coordinator();
        coordinator.while_empty(self, group_id, || {
            self.offset_store().delete_group(self, group_id)
        })?;
        coordinator.remove_group(group_id);
        Ok(())
    }
}
