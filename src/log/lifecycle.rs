//! Opening and closing a log: the directory lock, the clean-shutdown
//! marker, the checkpoints, loading every partition, and the crash-like
//! [`Log::kill`] that tests and the simulated cluster use.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::log::producer_ids::ProducerIdAllocator;
use crate::log::{Log, LogInner, Registry, Topic, flusher};
use crate::notify::Notify;
use crate::storage::checkpoint::{read_offset_checkpoint, sync_dir, write_offset_checkpoint};
use crate::storage::{LoadHints, PartitionContext, PartitionLog};
use crate::topics::{load_configs, partition_dir};

/// Kafka's clean-shutdown marker, written last on a clean close.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
/// Kafka's per-directory checkpoint of recovery points.
pub(crate) const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Kafka's per-directory checkpoint of log start offsets.
pub(crate) const LOG_START_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Kafka's per-directory checkpoint of how far compaction has cleaned.
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// The file a process locks while it has the directory open.
pub(crate) const LOCK_FILE: &str = ".lock";

/// How much unflushed data a [`Log::kill`] loses, as a crash of the machine
/// (not just the process) would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailLoss {
    /// Nothing is lost: a process crash (the page cache survives).
    None,
    /// Every byte not yet flushed is lost.
    Unflushed,
    /// Each segment's unflushed tail is cut at a pseudo-random byte chosen
    /// from `seed`: a torn write.
    Random {
        /// Seed of the cut positions, for reproducible tests.
        seed: u64,
    },
}

impl Log {
    /// Opens (creating if needed) the log in `dir`. The directory stays
    /// locked until the log is closed; a second open, from this process or
    /// another, fails with [`Error::AlreadyOpen`].
    ///
    /// After a clean shutdown this reads only checkpoints and the tail of
    /// each partition's active segment. After a crash it re-reads every
    /// segment written since the last recovery point, cuts each partition
    /// after its last valid batch and rebuilds the indexes.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        open(dir.as_ref().to_owned(), config, false)
    }

    /// Opens a log in a fresh temporary directory that is removed when the
    /// log is closed or dropped: for tests.
    pub fn temporary(config: LogConfig) -> Result<Log> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("brooklet-{}-{nanos}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return open(dir, config, true),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err).at(dir),
            }
        }
    }

    /// Closes the log cleanly: flushes every partition, writes the
    /// checkpoints and the clean-shutdown marker, joins the background
    /// thread and releases the directory. Other handles see
    /// [`Error::Closed`] from then on.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }

    /// Stops the log as a crash would: no flush, no checkpoints, no
    /// clean-shutdown marker, and `loss` decides how much unflushed data
    /// the files lose. The next open runs crash recovery. Threads are still
    /// joined and the directory released.
    pub fn kill(self, loss: TailLoss) -> Result<()> {
        self.inner.kill(loss)
    }
}

fn open(dir: PathBuf, config: LogConfig, remove_on_drop: bool) -> Result<Log> {
    fs::create_dir_all(&dir).at(&dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .at(&lock_path)?;
    match lock_file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(Error::AlreadyOpen { path: dir }),
        Err(fs::TryLockError::Error(err)) => return Err(err).at(lock_path),
    }
    let clock = config.clock;
    let offsets_topic_partitions = config.offsets_topic_partitions;
    let to_ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let retention_check_interval_ms = to_ms(config.retention_check_interval).max(1);
    let cleaner_backoff_ms = to_ms(config.cleaner_backoff).max(1);
    let cleaner_buffer_bytes = config.cleaner_buffer_bytes;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let mut clean_shutdown = marker.exists();
    let mut checkpoint = |name: &str| -> HashMap<(String, u32), i64> {
        match read_offset_checkpoint(&dir.join(name)) {
            Ok(entries) => entries.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
            // An unreadable checkpoint is not trusted: recover everything.
            Err(_) => {
                clean_shutdown = false;
                HashMap::new()
            }
        }
    };
    let recovery_points = checkpoint(RECOVERY_POINT_CHECKPOINT);
    let log_starts = checkpoint(LOG_START_CHECKPOINT);
    let cleaned = checkpoint(CLEANER_CHECKPOINT);
    let background = Notify::new(&*clock);
    let mut topics = BTreeMap::new();
    for (name, topic_config) in load_configs(&dir)? {
        let topic_config = Arc::new(topic_config);
        let mut partitions = Vec::new();
        for partition in 0..topic_config.partitions {
            let key = (name.clone(), partition);
            let ctx = PartitionContext {
                topic: &name,
                partition,
                dir: partition_dir(&dir, &name, partition),
                config: Arc::clone(&topic_config),
                clock: Arc::clone(&clock),
                background: Arc::clone(&background),
            };
            let log = if ctx.dir.is_dir() {
                let hints = LoadHints {
                    clean_shutdown,
                    recovery_point: recovery_points.get(&key).copied(),
                    log_start_offset: log_starts.get(&key).copied(),
                    first_dirty_offset: cleaned.get(&key).copied(),
                };
                PartitionLog::load(ctx, hints)?
            } else {
                // An add-partitions interrupted before its config was
                // written leaves no directory; one interrupted after leaves
                // the config: create what the config promises.
                PartitionLog::create(ctx)?
            };
            partitions.push(Arc::new(log));
        }
        let topic = Topic {
            name: name.clone(),
            config: topic_config,
            partitions: RwLock::new(partitions),
        };
        topics.insert(name, Arc::new(topic));
    }
    if marker.exists() {
        // From here on a crash must be seen as one.
        fs::remove_file(&marker).at(&marker)?;
        sync_dir(&dir).at(&dir)?;
    }
    let producer_ids = ProducerIdAllocator::open(&dir)?;
    let registry = Arc::new(Registry {
        producer_ids,
        metadata_version: AtomicU64::new(0),
        offsets_topic_partitions,
        cleaner_wake: Notify::new(&*clock),
        retention_check_interval_ms,
        cleaner_backoff_ms,
        cleaner_buffer_bytes,
        checkpoint_lock: Mutex::new(()),
        offset_store: Default::default(),
        group_coordinator: Default::default(),
        metadata_watchers: Mutex::new(Vec::new()),
        dir,
        clock,
        topics: RwLock::new(topics),
        background,
        shutting_down: AtomicBool::new(false),
    });
    let flusher = flusher::spawn(Arc::clone(&registry)).at(&registry.dir)?;
    let cleaner = crate::cleaner::spawn(Arc::clone(&registry)).at(&registry.dir)?;
    Ok(Log {
        inner: Arc::new(LogInner {
            registry,
            admin_lock: Mutex::new(()),
            lock_file: Mutex::new(Some(lock_file)),
            flusher: Mutex::new(Some(flusher)),
            cleaner: Mutex::new(Some(cleaner)),
            closed: AtomicBool::new(false),
            remove_on_drop,
        }),
    })
}

impl Registry {
    /// Writes the recovery-point and log-start checkpoints for every
    /// partition.
    pub(crate) fn write_checkpoints(&self) -> Result<()> {
        let _writer = self.checkpoint_lock.lock();
        let mut recovery_points = Vec::new();
        let mut log_starts = Vec::new();
        let mut cleaned = Vec::new();
        for topic in self.topics.read().values() {
            for (partition, log) in topic.partitions.read().iter().enumerate() {
                let partition = u32::try_from(partition).unwrap_or(u32::MAX);
                let state = log.state.lock();
                recovery_points.push((topic.name.clone(), partition, state.recovery_point));
                log_starts.push((topic.name.clone(), partition, state.log_start_offset));
                if state.first_dirty_offset > state.log_start_offset {
                    cleaned.push((topic.name.clone(), partition, state.first_dirty_offset));
                }
            }
        }
        write_offset_checkpoint(&self.dir.join(RECOVERY_POINT_CHECKPOINT), &recovery_points)?;
        write_offset_checkpoint(&self.dir.join(LOG_START_CHECKPOINT), &log_starts)?;
        write_offset_checkpoint(&self.dir.join(CLEANER_CHECKPOINT), &cleaned)
    }
}

impl LogInner {
    fn stop_flusher(&self) {
        self.registry.shutting_down.store(true, Ordering::SeqCst);
        self.registry.background.signal();
        self.registry.cleaner_wake.signal();
        for thread in [&self.flusher, &self.cleaner] {
            if let Some(handle) = thread.lock().take() {
                // A panicked thread has nothing left to clean up.
                let _ = handle.join();
            }
        }
    }

    /// Unlocks the directory. Explicitly, not by closing the file: a child
    /// process forked meanwhile (by any thread, until it `exec`s) shares
    /// the lock's open file, which would keep the lock held.
    fn release_lock(&self) {
        if let Some(file) = self.lock_file.lock().take() {
            let _ = file.unlock();
        }
    }

    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_flusher();
        let mut first_error = None;
        for partition in self.registry.all_partitions() {
            if let Err(err) = partition.close() {
                first_error.get_or_insert(err);
            }
        }
        if first_error.is_none()
            && let Err(err) = self.registry.write_checkpoints()
        {
            first_error.get_or_insert(err);
        }
        if first_error.is_none() {
            // The marker goes last: it promises that everything before it
            // is complete and on disk.
            let marker = self.registry.dir.join(CLEAN_SHUTDOWN_FILE);
            let written =
                crate::storage::checkpoint::write_atomically(&marker, b"", true).at(&marker);
            if let Err(err) = written {
                first_error.get_or_insert(err);
            }
        }
        self.release_lock();
        first_error.map_or(Ok(()), Err)
    }

    pub(crate) fn kill(&self, loss: TailLoss) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Closed);
        }
        self.stop_flusher();
        let mut seed = match loss {
            TailLoss::Random { seed } => seed | 1,
            _ => 1,
        };
        let mut first_error = None;
        for partition in self.registry.all_partitions() {
            partition.mark_closed();
            if loss == TailLoss::None {
                continue;
            }
            let segments = Arc::clone(&partition.state.lock().segments);
            for segment in segments.iter() {
                let (flushed, written) = (segment.flushed_size(), segment.size());
                if flushed >= written {
                    continue;
                }
                let cut = match loss {
                    TailLoss::Random { .. } => {
                        flushed + next_random(&mut seed) % (written - flushed + 1)
                    }
                    _ => flushed,
                };
                if let Err(err) = segment.truncate_file(cut) {
                    first_error.get_or_insert(err);
                }
            }
        }
        self.release_lock();
        first_error.map_or(Ok(()), Err)
    }
}

/// xorshift64: reproducible cut positions without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl Drop for LogInner {
    fn drop(&mut self) {
        // Errors can not be returned from drop; `Log::close` reports them.
        let _ = self.close();
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.registry.dir);
        }
    }
}
