//! Polling: the long-poll loop, and fetching from assigned partitions
//! fairly, a fetch buffer each, decoded once.

use std::sync::Arc;
use std::time::Duration;

use crate::consumer::records::{PartitionRecords, count_records};
use crate::consumer::{Consumer, ConsumerRecords, OffsetReset};
use crate::error::{Error, Result};
use crate::log::deadline_after;
use crate::storage::Fetch;

/// Fetches in a row that may hold nothing to return before a poll gives up
/// on a partition for this round.
const MAX_EMPTY_FETCHES: usize = 64;

impl Consumer {
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
            let Some((fetch, from)) = assigned.buffered.take() else {
                continue;
            };
            let (take, end) = count_records(&fetch, from, remaining)?;
            remaining -= take;
            if end >= fetch.next_offset() {
                assigned.position = Some(fetch.next_offset());
                assigned.spent = Some(Arc::clone(&fetch));
            } else {
                assigned.position = Some(end);
                assigned.buffered = Some((Arc::clone(&fetch), end));
            }
            if take > 0 {
                out.parts.push(PartitionRecords {
                    topic: Arc::clone(&assigned.topic),
                    partition: assigned.tp.partition,
                    fetch,
                    from,
                    end,
                    count: take,
                });
            }
        }
        Ok(out)
    }

    /// Fetches the next batches of partition `i` into its buffer; false if
    /// there were none.
    fn fill(&mut self, i: usize, budget: &mut usize) -> Result<bool> {
        let mut fetch = match self.assignment[i].spent.take().map(Arc::try_unwrap) {
            Some(Ok(spent)) => spent,
            _ => Fetch::new(),
        };
        // A fetch may hold no record to return (only batches compaction
        // emptied, or control batches): move past it and read on, a bounded
        // number of times.
        for _ in 0..MAX_EMPTY_FETCHES {
            let mut position = self.resolve_position(i)?;
            let max_bytes = self.config.max_partition_fetch_bytes.min(*budget);
            if max_bytes == 0 {
                return Ok(false);
            }
            let mut retried = false;
            loop {
                let assigned = &self.assignment[i];
                match assigned.log.read_into(
                    position,
                    max_bytes,
                    assigned.cursor.as_ref(),
                    &mut fetch,
                ) {
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
            // Checksums are checked here, once; records are decoded as the
            // caller iterates.
            fetch.verify()?;
            if count_records(&fetch, position, 1)?.0 == 0 {
                assigned.position = Some(fetch.next_offset());
                continue;
            }
            assigned.buffered = Some((Arc::new(fetch), position));
            return Ok(true);
        }
        Ok(false)
    }
}
