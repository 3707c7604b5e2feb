//! The cleaner: retention (delete whole old segments) and log compaction
//! (keep the last record per key), on demand and on a background thread the
//! [`Log`] owns, scheduled by the log's clock.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};

use crate::error::{Error, Result};
use crate::log::{Log, Registry};
use crate::storage::{CompactionStats, PartitionLog};

impl Log {
    /// Deletes the segments every partition's retention allows (by time, by
    /// size, and below its log start offset) and returns how many went.
    /// The background cleaner does this every `retention_check_interval`.
    pub fn enforce_retention(&self) -> Result<usize> {
        self.check_open()?;
        let registry = &self.registry();
        let deleted = enforce_retention(registry)?;
        if deleted > 0 {
            registry.write_checkpoints()?;
        }
        Ok(deleted)
    }

    /// Moves a partition's log start offset forward to `before_offset`
    /// (Kafka's DeleteRecords): records below it are gone for readers at
    /// once, and whole segments below it are deleted. Returns the new log
    /// start offset.
    pub fn delete_records(&self, topic: &str, partition: u32, before_offset: i64) -> Result<i64> {
        let log_start = self
            .partition(topic, partition)?
            .delete_records(before_offset)?;
        self.registry().write_checkpoints()?;
        Ok(log_start)
    }

    /// Compacts a partition of a compacted topic now, whatever its dirty
    /// ratio, until everything cleanable is clean.
    pub fn compact_now(&self, topic: &str, partition: u32) -> Result<CompactionStats> {
        let partition = self.partition(topic, partition)?;
        let registry = &self.registry();
        let mut total = CompactionStats::default();
        // Each pass cleans at least one batch, so this ends; the bound only
        // guards against a bug turning it into a spin.
        for _ in 0..10_000 {
            let now_ms = registry.clock.now_ms();
            match partition.compact(now_ms, registry.cleaner_buffer_bytes)? {
                Some(stats) => {
                    total.cleaned_up_to = stats.cleaned_up_to;
                    total.bytes_read += stats.bytes_read;
                    total.bytes_written += stats.bytes_written;
                    total.records_removed += stats.records_removed;
                }
                None => break,
            }
        }
        registry.write_checkpoints()?;
        Ok(total)
    }
}

fn enforce_retention(registry: &Registry) -> Result<usize> {
    let now_ms = registry.clock.now_ms();
    let mut deleted = 0;
    for partition in registry.all_partitions() {
        deleted += partition.enforce_retention(now_ms)?;
    }
    Ok(deleted)
}

/// The compacted partition most in need of cleaning: the highest dirty
/// ratio above its topic's minimum (Kafka's test is strict), or any with
/// overdue dirty data.
fn dirtiest(registry: &Registry, now_ms: i64) -> Option<Arc<PartitionLog>> {
    let mut best: Option<(f64, Arc<PartitionLog>)> = None;
    for partition in registry.all_partitions() {
        let Ok(Some(dirt)) = partition.dirtiness(now_ms) else {
            continue;
        };
        let total = dirt.clean_bytes + dirt.dirty_bytes;
        if dirt.dirty_bytes == 0 || total == 0 {
            continue;
        }
        let ratio = dirt.dirty_bytes as f64 / total as f64;
        let minimum = f64::from(partition.config.min_cleanable_dirty_ratio_percent) / 100.0;
        if (ratio > minimum || dirt.overdue) && best.as_ref().is_none_or(|(r, _)| ratio > *r) {
            best = Some((ratio, partition));
        }
    }
    best.map(|(_, partition)| partition)
}

pub(crate) fn spawn(registry: Arc<Registry>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("brooklet-cleaner".into())
        .spawn(move || run(&registry))
}

fn run(registry: &Registry) {
    let mut next_retention_ms = registry
        .clock
        .now_ms()
        .saturating_add(registry.retention_check_interval_ms);
    loop {
        if registry.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let now_ms = registry.clock.now_ms();
        let mut changed = false;
        if now_ms >= next_retention_ms {
            // Errors leave the segments in place for the next round.
            changed |= enforce_retention(registry).is_ok_and(|deleted| deleted > 0);
            next_retention_ms = now_ms.saturating_add(registry.retention_check_interval_ms);
        }
        let mut cleaned = false;
        if let Some(partition) = dirtiest(registry, now_ms) {
            // A panic in a pass is a bug; the partition it hit is poisoned so
            // nothing works on possibly broken state, and the rest go on.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                partition.compact(now_ms, registry.cleaner_buffer_bytes)
            }));
            match outcome {
                Ok(Ok(Some(_))) => cleaned = true,
                Ok(Ok(None)) => {}
                Ok(Err(Error::Closed)) => {}
                Ok(Err(err)) => partition.poison(format!("compaction failed: {err}")),
                Err(_) => partition.poison("compaction panicked".to_owned()),
            }
        }
        if changed || cleaned {
            let _ = registry.write_checkpoints();
        }
        if cleaned {
            continue;
        }
        let deadline_ms = next_retention_ms.min(now_ms.saturating_add(registry.cleaner_backoff_ms));
        registry
            .cleaner_wake
            .wait_until(&*registry.clock, deadline_ms, || {
                registry.cleaner_wake.is_signalled()
                    || registry.shutting_down.load(Ordering::SeqCst)
            });
        registry.cleaner_wake.take_signal();
    }
}
