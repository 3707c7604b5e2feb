//! The log's background thread: makes rolled segments durable and moves
//! recovery points forward, flushes `Durability::Interval` topics on time,
//! and writes the recovery-point checkpoint. Waits on a notification and
//! the log's clock, never in a sleep loop.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};

use crate::config::Durability;
use crate::log::Registry;

pub(crate) fn spawn(registry: Arc<Registry>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("brooklet-flusher".into())
        .spawn(move || run(&registry))
}

fn run(registry: &Registry) {
    loop {
        if registry.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        registry.background.take_signal();
        let now_ms = registry.clock.now_ms();
        let mut next_deadline_ms = i64::MAX;
        let mut moved_recovery_point = false;
        for partition in registry.all_partitions() {
            if partition.is_closed() {
                continue;
            }
            let rolled = partition
                .needs_background_flush
                .swap(false, Ordering::AcqRel);
            let interval_ms = match partition.config.durability {
                Durability::Interval(interval) => {
                    Some(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX))
                }
                _ => None,
            };
            let due_ms = interval_ms.map(|ms| {
                partition
                    .last_flush_ms
                    .load(Ordering::Acquire)
                    .saturating_add(ms)
            });
            if rolled || due_ms.is_some_and(|due| now_ms >= due) {
                // A failed flush poisons the partition; appends report it.
                if partition.flush_now().is_ok() {
                    moved_recovery_point = true;
                }
            }
            if let Some(ms) = interval_ms {
                let next = partition
                    .last_flush_ms
                    .load(Ordering::Acquire)
                    .saturating_add(ms);
                next_deadline_ms = next_deadline_ms.min(next);
            }
        }
        if moved_recovery_point {
            // Best effort: a stale checkpoint only means more to re-check
            // after a crash.
            let _ = registry.write_checkpoints();
        }
        registry
            .background
            .wait_until(&*registry.clock, next_deadline_ms, || {
                registry.background.is_signalled() || registry.shutting_down.load(Ordering::SeqCst)
            });
    }
}
