//! A consumer's place in each partition: positions, seeks (by offset,
//! timestamp, beginning or end), and pausing.

use crate::consumer::{Consumer, OffsetReset, TopicPartition};
use crate::error::{Error, Result};
use crate::storage::TimestampOffset;

impl Consumer {
    pub(super) fn index_of(&self, tp: &TopicPartition) -> Result<usize> {
        self.assignment
            .iter()
            .position(|a| &a.tp == tp)
            .ok_or_else(|| Error::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            })
    }

    /// The offset `auto_offset_reset` gives partition `i`.
    pub(super) fn reset_offset(&self, i: usize) -> Result<i64> {
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
    pub(super) fn resolve_position(&mut self, i: usize) -> Result<i64> {
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
}
