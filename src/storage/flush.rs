//! Making a partition durable and closing it: flushes with group commit,
//! the clean-shutdown half of close, and waking readers that wait for data.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, IoContext, Result};
use crate::notify::Notify;
use crate::storage::checkpoint::sync_dir;
use crate::storage::partition::PartitionLog;
use crate::storage::producer_state::write_snapshot;

impl PartitionLog {
    /// Waits until every offset below `target` is on disk, flushing if no
    /// other thread is. Appenders that arrive while a flush runs share the
    /// next one (group commit) instead of each paying for an `fsync`.
    pub(crate) fn flush_to(&self, target: i64) -> Result<()> {
        let mut flush = self.flush.lock();
        loop {
            if flush.durable_offset >= target {
                return Ok(());
            }
            if flush.in_progress {
                self.flush_done.wait(&mut flush);
                continue;
            }
            flush.in_progress = true;
            drop(flush);
            let result = self.flush_now();
            flush = self.flush.lock();
            flush.in_progress = false;
            self.flush_done.notify_all();
            match result {
                Ok(durable) => flush.durable_offset = flush.durable_offset.max(durable),
                Err(err) => return Err(err),
            }
        }
    }

    /// Forces everything appended so far to disk and returns the offset it
    /// covers. Sealed segments' indexes go to disk too, so the recovery
    /// point can move past them.
    pub(crate) fn flush_now(&self) -> Result<i64> {
        let (segments, log_end, directory_dirty) = {
            let mut state = self.state.lock();
            let dirty = std::mem::take(&mut state.directory_dirty);
            (Arc::clone(&state.segments), state.next_offset, dirty)
        };
        #[cfg(test)]
        crate::storage::lock_tests::pause_point(&self.topic, self.partition);
        let result = (|| {
            if directory_dirty {
                sync_dir(&self.dir).at(&self.dir)?;
            }
            let last = segments.len() - 1;
            for (i, segment) in segments.iter().enumerate() {
                segment.sync()?;
                if i < last {
                    segment.sync_sealed_indexes()?;
                }
            }
            Ok(())
        })();
        let mut state = self.state.lock();
        if let Err(err) = result {
            // After a failed fsync the kernel may have dropped the dirty
            // pages: what is in the file is unknown until recovery reads it.
            state.directory_dirty |= directory_dirty;
            state.poisoned = Some(format!("flush failed: {err}"));
            return Err(err);
        }
        state.recovery_point = state.recovery_point.max(log_end);
        self.last_flush_ms
            .store(self.clock.now_ms(), Ordering::Release);
        Ok(log_end)
    }

    /// Writes the active segment's index entries and flushes everything:
    /// the clean-shutdown half of closing. Returns the recovery point.
    pub(crate) fn close(&self) -> Result<i64> {
        // Refuse appends first, so none can land after the final flush and
        // be taken for flushed by the clean-shutdown marker.
        self.mark_closed();
        let flushed = self.flush_now();
        let (active, snapshot) = {
            let mut state = self.state.lock();
            state.producers.expire(self.clock.now_ms());
            let snapshot =
                write_snapshot(&self.dir, state.next_offset, &state.producers).at(&self.dir);
            (Arc::clone(state.active()), snapshot)
        };
        // As Kafka does on close: the largest timestamp gets its entry, so
        // the next open finds it without a scan.
        active
            .indexes
            .lock()
            .append_time_entry(active.base_offset());
        let persisted = active.persist_indexes(true);
        let released = active.release_reserved();
        flushed?;
        released?;
        persisted?;
        snapshot?;
        Ok(self.state.lock().recovery_point)
    }

    /// Refuses further writes until the log is reopened (which recovers the
    /// partition).
    pub(crate) fn poison(&self, reason: String) {
        self.state.lock().poisoned = Some(reason);
    }

    /// Refuses further appends and wakes waiting readers.
    pub(crate) fn mark_closed(&self) {
        self.state.lock().closed = true;
        self.closed.store(true, Ordering::Release);
        self.wake_readers();
    }

    /// Wakes readers waiting for data on this partition, and consumers
    /// waiting on it among others.
    pub(crate) fn wake_readers(&self) {
        self.data_arrived.notify();
        // SeqCst pairs with `watch`: a watcher registered before the data
        // was published is seen here.
        if self.watcher_count.load(Ordering::SeqCst) > 0 {
            let mut watchers = self.watchers.lock();
            watchers.retain(|watcher| match watcher.upgrade() {
                Some(notify) => {
                    notify.notify();
                    true
                }
                None => false,
            });
            self.watcher_count.store(watchers.len(), Ordering::SeqCst);
        }
    }

    /// Registers `notify` to be woken by every append to this partition
    /// until it is dropped or [`PartitionLog::unwatch`]ed.
    pub(crate) fn watch(&self, notify: &Arc<Notify>) {
        let mut watchers = self.watchers.lock();
        watchers.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(notify)));
        watchers.push(Arc::downgrade(notify));
        self.watcher_count.store(watchers.len(), Ordering::SeqCst);
    }

    /// Stops waking `notify`.
    pub(crate) fn unwatch(&self, notify: &Arc<Notify>) {
        let mut watchers = self.watchers.lock();
        watchers.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(notify)));
        self.watcher_count.store(watchers.len(), Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Blocks until the high watermark passes `offset` or the clock reaches
    /// `deadline_ms`; true if data is there.
    pub(crate) fn wait_for_data(&self, offset: i64, deadline_ms: i64) -> Result<bool> {
        let arrived = self.data_arrived.wait_until(&*self.clock, deadline_ms, || {
            self.high_watermark() > offset || self.is_closed()
        });
        if self.is_closed() && (self.high_watermark() <= offset) {
            return Err(Error::Closed);
        }
        Ok(arrived)
    }
}
