//! Model-based test of log compaction. Random appends to a compacted topic
//! (keys from a set of eight, the empty key among them, some records
//! tombstones) with small segments, interleaved with `compact_now`, clock
//! advances, reads at any offset, clean reopens and crashes
//! (`Log::kill(TailLoss::None)`), run against a model: every record ever
//! appended (offset, key, value, timestamp), the set of offsets compaction
//! must have kept, and the delete horizon stamped on each kept tombstone.
//!
//! After every pass, reading the partition from its start gives exactly the
//! model's kept records, byte for byte, in strictly increasing offsets, in
//! batches that keep their original base and last offsets and carry the
//! expected delete horizon. In particular: every key's latest value is
//! there; a tombstone stays until a pass runs at or after the time of its
//! first cleaning plus `delete_retention_ms`, and then goes; below
//! `CompactionStats::cleaned_up_to` no record survives that a later record
//! of its key (below that offset) replaces; a read at a removed offset
//! returns the next kept record; `records_removed` counts exactly what the
//! model removed. Readers open across a pass miss nothing: one caught up to
//! the log end sees exactly what is appended after the pass, one in the
//! middle of the log sees every record that survived the pass and nothing
//! that was never there. Half of the cases give the cleaner a 1 KiB key map
//! (16 keys) and draw from 40 keys, so `compact_now` takes several passes.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use brooklet::{
    CleanupPolicy, Clock, Fetch, Log, LogConfig, ManualClock, PartitionReader, Record, TailLoss,
    TopicConfig,
};
use common::{bump, ok};
use proptest::prelude::*;
use proptest::sample::Index;

const TOPIC: &str = "changelog";
const CLOCK_START_MS: i64 = 1_700_000_000_000;
/// A small key set, so keys repeat and compaction has work; the empty key
/// is a real key.
const KEYS: [&str; 8] = ["k0", "k1", "k2", "k3", "user-7", "order-42", "x", ""];
/// Keys of the cases with a small key map: more than its 16 entries.
const MANY_KEYS: usize = 40;

/// The name of generated key `i` (`KEYS`, then `key-<i>`).
fn key_name(i: usize) -> String {
    KEYS.get(i)
        .map_or_else(|| format!("key-{i}"), |k| (*k).to_owned())
}
const MAX_OPS: usize = 45;
const DEFAULT_CASES: u32 = 40;
/// Longer than any case runs on the manual clock: the background cleaner
/// then only looks at the log when it is opened (see `Harness::restart`).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

// ---------------------------------------------------------------------------
// What the generator produces.

#[derive(Clone)]
struct GenRecord {
    key: usize,
    /// `None` is a tombstone.
    value: Option<Vec<u8>>,
}

impl std::fmt::Debug for GenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "#{}={}B", self.key, value.len()),
            None => write!(f, "#{}=<tombstone>", self.key),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        advance_ms: i64,
        records: Vec<GenRecord>,
    },
    /// `compact_now`, with a reader at `reader_at` that has read one fetch
    /// before the pass and a reader caught up to the log end, then
    /// `append_after` is appended and both readers finish.
    Compact {
        reader_at: Index,
        append_after: Vec<GenRecord>,
    },
    Advance {
        ms: i64,
    },
    Read {
        at: Index,
        max_bytes: usize,
    },
    CleanReopen,
    Crash,
}

#[derive(Clone, Debug)]
struct Setup {
    segment_bytes: u32,
    index_interval_bytes: u32,
    delete_retention_ms: i64,
    /// A 1 KiB key map (16 keys) and 40 keys instead of the usual eight:
    /// `compact_now` then takes several passes.
    small_cleaner_buffer: bool,
}

fn record_strategy() -> impl Strategy<Value = GenRecord> {
    (
        0..MANY_KEYS,
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..100)),
    )
        .prop_map(|(key, value)| GenRecord { key, value })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0i64..300, prop::collection::vec(record_strategy(), 1..=8))
            .prop_map(|(advance_ms, records)| Op::Append { advance_ms, records }),
        4 => (any::<Index>(), prop::collection::vec(record_strategy(), 0..=3)).prop_map(
            |(reader_at, append_after)| Op::Compact {
                reader_at,
                append_after
            }
        ),
        2 => (0i64..8_000).prop_map(|ms| Op::Advance { ms }),
        2 => (any::<Index>(), prop_oneof![0usize..200, 200usize..4096])
            .prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::CleanReopen),
        1 => Just(Op::Crash),
    ]
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (1024u32..2560, 64u32..512, 1_000i64..6_000, any::<bool>()).prop_map(
        |(segment_bytes, index_interval_bytes, delete_retention_ms, small_cleaner_buffer)| Setup {
            segment_bytes,
            index_interval_bytes,
            delete_retention_ms,
            small_cleaner_buffer,
        },
    )
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelRecord {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    timestamp_ms: i64,
}

#[derive(Debug, Default)]
struct Model {
    /// Every record appended; a record's offset is its index.
    records: Vec<ModelRecord>,
    /// Base offset → last offset of every batch appended.
    batches: BTreeMap<i64, i64>,
    /// Offsets compaction has not removed.
    kept: BTreeSet<i64>,
    /// Delete horizon of each kept tombstone that a pass has cleaned.
    horizons: BTreeMap<i64, i64>,
    /// Delete horizon of each tombstone a pass removed as expired.
    expired: BTreeMap<i64, i64>,
    /// Base offset → delete horizon of each batch a pass has stamped.
    batch_horizons: BTreeMap<i64, i64>,
    /// `cleaned_up_to` and clock time of every `compact_now` that ran.
    batches_cleaned_at: Vec<(i64, i64)>,
    /// The topic's `delete_retention_ms`.
    delete_retention_ms: i64,
    /// `cleaned_up_to` of the last pass that ran.
    cleaned_up_to: i64,
    /// Clock time of the last pass that ran.
    last_pass_ms: Option<i64>,
}

impl Model {
    fn log_end(&self) -> i64 {
        self.records.len() as i64
    }

    fn append(&mut self, records: &[ModelRecord]) -> (i64, i64) {
        let base = self.log_end();
        let last = base + records.len() as i64 - 1;
        self.records.extend_from_slice(records);
        self.batches.insert(base, last);
        self.kept.extend(base..=last);
        (base, last)
    }

    /// Each key's last offset below `end`.
    fn latest_below(&self, end: i64) -> HashMap<&[u8], i64> {
        let mut latest = HashMap::new();
        for (offset, record) in self.records[..end as usize].iter().enumerate() {
            latest.insert(record.key.as_slice(), offset as i64);
        }
        latest
    }

    /// What compaction up to `cleaned_up_to` at `now_ms` must do: drop every
    /// record a later one of its key below `cleaned_up_to` replaces, drop
    /// tombstones whose horizon has come, and stamp the others. Returns how
    /// many records went, and how many of them were expired tombstones.
    fn compact(&mut self, cleaned_up_to: i64, now_ms: i64) -> (u64, u64) {
        let latest: HashMap<Vec<u8>, i64> = self
            .latest_below(cleaned_up_to)
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v))
            .collect();
        let (mut removed, mut expired) = (0, 0);
        let candidates: Vec<i64> = self.kept.range(..cleaned_up_to).copied().collect();
        for offset in candidates {
            let record = &self.records[offset as usize];
            let replaced = latest[&record.key] > offset;
            let remove = if replaced {
                true
            } else if record.value.is_none() {
                match self.horizons.get(&offset) {
                    Some(&horizon) if horizon <= now_ms => {
                        self.expired.insert(offset, horizon);
                        expired += 1;
                        true
                    }
                    Some(_) => false,
                    None => {
                        let horizon = now_ms.saturating_add(self.delete_retention_ms);
                        self.horizons.insert(offset, horizon);
                        let (&base, _) = self
                            .batches
                            .range(..=offset)
                            .next_back()
                            .expect("every offset is in a batch");
                        self.batch_horizons.entry(base).or_insert(horizon);
                        false
                    }
                }
            } else {
                false
            };
            if remove {
                self.kept.remove(&offset);
                self.horizons.remove(&offset);
                removed += 1;
            }
        }
        self.cleaned_up_to = cleaned_up_to;
        self.last_pass_ms = Some(now_ms);
        self.batches_cleaned_at.push((cleaned_up_to, now_ms));
        (removed, expired)
    }

    /// Whether a batch may carry `horizon`: that of its kept tombstones if
    /// it has any; otherwise none, or one a pass stamped on it before (a
    /// batch whose tombstones were all removed keeps its mark, as in Kafka).
    fn batch_horizon_ok(&self, base: i64, last: i64, horizon: Option<i64>) -> Result<(), String> {
        let stamped = self.batch_horizons.get(&base).copied();
        let kept: BTreeSet<i64> = self.horizons.range(base..=last).map(|(_, &h)| h).collect();
        ensure!(
            kept.len() <= 1 && kept.iter().all(|&h| Some(h) == stamped),
            "the model stamped batch {base}..={last} with {kept:?}, recorded {stamped:?}"
        );
        // A pass of a `compact_now` that takes several may keep (and
        // stamp) a tombstone that a later pass of the same call removes.
        let some_pass = |h: i64| {
            self.batches_cleaned_at
                .iter()
                .any(|&(cleaned_up_to, now_ms)| {
                    base < cleaned_up_to && h == now_ms + self.delete_retention_ms
                })
        };
        let fine = if kept.is_empty() {
            horizon.is_none_or(|h| Some(h) == stamped || some_pass(h))
        } else {
            horizon == stamped
        };
        ensure!(
            fine,
            "batch {base}..={last} has delete horizon {horizon:?}; its kept tombstones' is {kept:?}, it was stamped {stamped:?}"
        );
        Ok(())
    }
}

/// Counts of what the cases exercised, checked at the end so a generator
/// that stopped reaching passes, expired tombstones or removed offsets is
/// noticed.
#[derive(Debug, Default)]
struct Stats {
    passes: Cell<usize>,
    multi_pass_compactions: Cell<usize>,
    idle_compactions: Cell<usize>,
    records_removed: Cell<u64>,
    tombstones_kept_before_horizon: Cell<usize>,
    tombstones_expired: Cell<u64>,
    reads_at_removed_offsets: Cell<usize>,
    mid_readers_across_swaps: Cell<usize>,
    appends_after_pass: Cell<usize>,
    reopens: Cell<usize>,
    crashes: Cell<usize>,
    max_segments: Cell<usize>,
}

// ---------------------------------------------------------------------------
// Running a case.

/// Reads `reader` until it is caught up, checking every batch and record
/// against the model, and returns the offsets of the records read.
fn drain(reader: &mut PartitionReader, model: &Model) -> Result<Vec<i64>, String> {
    let mut fetch = Fetch::new();
    let mut offsets = Vec::new();
    let mut fetches = 0;
    while ok(reader.next_into(&mut fetch), "reader.next_into")? {
        fetches += 1;
        ensure!(
            fetches <= model.batches.len() + 1,
            "the reader returned more fetches than there are batches"
        );
        offsets.extend(check_fetch(&fetch, model, false)?);
    }
    Ok(offsets)
}

/// Checks one fetch: every batch is one the model appended (same base and
/// last offset) with the expected delete horizon, unless `loose` (a fetch
/// that may come from segments a pass replaced); every record decodes, is
/// the model's record at its offset, and offsets strictly increase.
/// Returns the offsets of the records.
fn check_fetch(fetch: &Fetch, model: &Model, loose: bool) -> Result<Vec<i64>, String> {
    for batch in fetch.batches() {
        let batch = ok(batch, "parse fetched batch")?;
        let header = batch.header();
        let (base, last) = (header.base_offset, header.last_offset());
        ensure!(
            model.batches.get(&base) == Some(&last),
            "fetched batch {base}..={last} is not one that was appended"
        );
        if !loose {
            model.batch_horizon_ok(base, last, header.delete_horizon_ms())?;
        }
    }
    let mut offsets = Vec::new();
    let mut previous = fetch.requested_offset() - 1;
    for record in fetch.records() {
        let record = ok(record, "decode record")?;
        ensure!(
            record.offset > previous,
            "record offset {} after {previous}",
            record.offset
        );
        previous = record.offset;
        ensure!(
            record.offset < model.log_end(),
            "record offset {} past the log end {}",
            record.offset,
            model.log_end()
        );
        let got = ModelRecord {
            key: record
                .key
                .ok_or_else(|| format!("record {} lost its key", record.offset))?
                .to_vec(),
            value: record.value.map(<[u8]>::to_vec),
            timestamp_ms: record.timestamp_ms,
        };
        let want = &model.records[record.offset as usize];
        ensure!(
            &got == want,
            "record {}: read {got:?}, appended {want:?}",
            record.offset
        );
        offsets.push(record.offset);
    }
    Ok(offsets)
}

struct Harness<'a> {
    dir: &'a Path,
    clock: Arc<ManualClock>,
    setup: &'a Setup,
    model: Model,
    stats: &'a Stats,
}

impl Harness<'_> {
    fn open(&self) -> Result<Log, String> {
        let mut config = LogConfig::default()
            .clock(Arc::clone(&self.clock) as Arc<dyn Clock>)
            .retention_check_interval(NEVER)
            .cleaner_backoff(NEVER);
        if self.setup.small_cleaner_buffer {
            config = config.cleaner_buffer_bytes(1024);
        }
        ok(Log::open(self.dir, config), "open")
    }

    fn to_records(&self, generated: &[GenRecord]) -> (Vec<Record>, Vec<ModelRecord>) {
        let now_ms = self.clock.now_ms();
        generated
            .iter()
            .map(|g| {
                // The usual cases draw from the eight `KEYS`.
                let key_count = if self.setup.small_cleaner_buffer {
                    MANY_KEYS
                } else {
                    KEYS.len()
                };
                let key = key_name(g.key % key_count).into_bytes();
                let record = match &g.value {
                    Some(value) => Record::new(value.clone()).key(key.clone()),
                    None => Record::tombstone(key.clone()),
                };
                let model = ModelRecord {
                    key,
                    value: g.value.clone(),
                    timestamp_ms: now_ms,
                };
                (record, model)
            })
            .unzip()
    }

    fn append(&mut self, log: &Log, generated: &[GenRecord]) -> Result<(i64, i64), String> {
        let (records, expected) = self.to_records(generated);
        let info = ok(log.append(TOPIC, 0, &records), "append")?;
        let (base, last) = self.model.append(&expected);
        ensure!(
            (info.base_offset, info.last_offset) == (base, last),
            "append got offsets {}..={}, expected {base}..={last}",
            info.base_offset,
            info.last_offset
        );
        Ok((base, last))
    }

    /// Runs `compact_now` and applies it to the model. Returns whether a
    /// pass ran.
    fn compact(&mut self, log: &Log) -> Result<bool, String> {
        let now_ms = self.clock.now_ms();
        let before = self.model.cleaned_up_to;
        let description = ok(log.describe_topic(TOPIC), "describe_topic")?;
        let size_before = description.partitions[0].size_bytes;
        let stats = ok(log.compact_now(TOPIC, 0), "compact_now")?;
        // One pass reads each segment at most once.
        if stats.bytes_read > size_before {
            bump(&self.stats.multi_pass_compactions);
        }
        if stats.bytes_read == 0 {
            ensure!(
                stats.records_removed == 0 && stats.bytes_written == 0,
                "an idle compaction reported {stats:?}"
            );
            bump(&self.stats.idle_compactions);
            return Ok(false);
        }
        let cleaned_up_to = stats.cleaned_up_to;
        ensure!(
            before < cleaned_up_to && cleaned_up_to <= self.model.log_end(),
            "a pass cleaned up to {cleaned_up_to}; before it {before}, log end {}",
            self.model.log_end()
        );
        ensure!(
            self.model
                .batches
                .range(..cleaned_up_to)
                .next_back()
                .is_some_and(|(_, &last)| last + 1 == cleaned_up_to),
            "cleaned_up_to {cleaned_up_to} is not a batch boundary"
        );
        ensure!(
            stats.bytes_written <= stats.bytes_read,
            "compaction grew the log: {stats:?}"
        );
        let (removed, expired) = self.model.compact(cleaned_up_to, now_ms);
        ensure!(
            stats.records_removed == removed,
            "compaction removed {} records, the model {removed}: {stats:?}",
            stats.records_removed
        );
        bump(&self.stats.passes);
        let s = &self.stats;
        s.records_removed.set(s.records_removed.get() + removed);
        s.tombstones_expired
            .set(s.tombstones_expired.get() + expired);
        let pending = self
            .model
            .horizons
            .values()
            .filter(|&&horizon| horizon > now_ms)
            .count();
        s.tombstones_kept_before_horizon
            .set(s.tombstones_kept_before_horizon.get() + pending);
        Ok(true)
    }

    fn compact_with_readers(
        &mut self,
        log: &Log,
        reader_at: &Index,
        append_after: &[GenRecord],
    ) -> Check {
        let log_end = self.model.log_end();
        // A reader in the middle of the log that holds a position (and a
        // cursor into a segment) from before the pass.
        let mid = reader_at.index(log_end as usize + 1) as i64;
        let mut mid_reader = ok(log.reader(TOPIC, 0, mid), "reader")?;
        let mut fetch = Fetch::new();
        let mut mid_seen = Vec::new();
        if ok(mid_reader.next_into(&mut fetch), "reader.next_into")? {
            mid_seen = check_fetch(&fetch, &self.model, false)?;
        }
        let kept_before = self.model.kept.clone();
        // A reader caught up to the log end.
        let mut tail_reader = ok(log.reader(TOPIC, 0, 0), "reader")?;
        drain(&mut tail_reader, &self.model)?;
        ensure!(
            tail_reader.position() == log_end,
            "a full read stopped at {}, log end {log_end}",
            tail_reader.position()
        );

        let ran = self.compact(log)?;

        let mut appended = BTreeSet::new();
        if !append_after.is_empty() {
            let (base, last) = self.append(log, append_after)?;
            appended.extend(base..=last);
            bump(&self.stats.appends_after_pass);
        }
        let tail_seen = drain(&mut tail_reader, &self.model)?;
        ensure!(
            tail_seen.iter().copied().eq(appended.iter().copied()),
            "a reader caught up before the pass read {tail_seen:?} of the records appended after it, {appended:?}"
        );

        // The mid reader goes on from where it was. It may still read the
        // replaced segments, so it sees at least what survived and at most
        // what was there before.
        loop {
            let more = ok(mid_reader.next_into(&mut fetch), "reader.next_into")?;
            if !more {
                break;
            }
            let offsets = check_fetch(&fetch, &self.model, true)?;
            ensure!(
                mid_seen
                    .last()
                    .is_none_or(|&last| offsets.first().is_none_or(|&first| first > last)),
                "the mid reader went back from {:?} to {:?}",
                mid_seen.last(),
                offsets.first()
            );
            mid_seen.extend(offsets);
        }
        let seen: BTreeSet<i64> = mid_seen.iter().copied().collect();
        let must: BTreeSet<i64> = self.model.kept.range(mid..).copied().collect();
        let may: BTreeSet<i64> = kept_before.range(mid..).chain(&appended).copied().collect();
        ensure!(
            must.is_subset(&seen),
            "a reader at {mid} across the pass missed {:?}",
            must.difference(&seen).collect::<Vec<_>>()
        );
        ensure!(
            seen.is_subset(&may),
            "a reader at {mid} across the pass read removed records {:?}",
            seen.difference(&may).collect::<Vec<_>>()
        );
        if ran && mid < log_end {
            bump(&self.stats.mid_readers_across_swaps);
        }
        Ok(())
    }

    fn read(&self, log: &Log, at: &Index, max_bytes: usize) -> Check {
        let log_end = self.model.log_end();
        let offset = at.index(log_end as usize + 1) as i64;
        let fetch = ok(log.read(TOPIC, 0, offset, max_bytes), "read")?;
        let offsets = check_fetch(&fetch, &self.model, false)?;
        if offset == log_end {
            ensure!(fetch.is_empty(), "a read at the log end returned data");
            return Ok(());
        }
        let next = fetch.next_offset();
        ensure!(
            !fetch.is_empty() && next > offset,
            "a read at {offset} < {log_end} returned nothing (next offset {next})"
        );
        let expected: Vec<i64> = self.model.kept.range(offset..next).copied().collect();
        ensure!(
            offsets == expected,
            "a read at {offset} returned {offsets:?}, kept in {offset}..{next} are {expected:?}"
        );
        // Reading on from there reaches the next kept record first.
        let mut reader = ok(log.reader(TOPIC, 0, offset), "reader")?;
        let all = drain(&mut reader, &self.model)?;
        let first_kept = self.model.kept.range(offset..).next().copied();
        ensure!(
            all.first().copied() == first_kept,
            "reading from {offset} starts at {:?}, the next kept record is {first_kept:?}",
            all.first()
        );
        if !self.model.kept.contains(&offset) {
            bump(&self.stats.reads_at_removed_offsets);
        }
        Ok(())
    }

    /// Closes (`CleanReopen`) or kills (`Crash`) the log and opens it again.
    fn restart(&mut self, log: Log, op: &Op) -> Result<Log, String> {
        if matches!(op, Op::Crash) {
            ok(log.kill(TailLoss::None), "kill")?;
            bump(&self.stats.crashes);
        } else {
            ok(log.close(), "close")?;
            bump(&self.stats.reopens);
        }
        self.open()
    }

    /// Gives the partition a clean section before the case starts. The
    /// background cleaner compacts a partition whose dirty share reaches
    /// `min_cleanable_dirty_ratio_percent` (100 here, the most allowed), so
    /// one that was never compacted (all dirty) is picked when it looks,
    /// which it does once whenever the log is opened, at a moment this
    /// thread does not control. Once part of the log is clean it never
    /// picks it again, and `compact_now` alone drives the model. The
    /// prelude is written without moving the clock and holds no
    /// tombstones, so a pass the cleaner may still make during it does
    /// exactly what `compact_now` would.
    fn prelude(&mut self, log: &Log) -> Check {
        let mut active_base = None;
        for i in 0..100 {
            let record = GenRecord {
                key: i % 3,
                value: Some(vec![u8::try_from(i).unwrap_or(0); 150]),
            };
            let (base, _) = self.append(log, &[record])?;
            if self.segment_count(log)? > 1 {
                active_base = Some(base);
                break;
            }
        }
        let active_base = active_base.ok_or("no segment roll in the prelude")?;
        let now_ms = self.clock.now_ms();
        let stats = ok(log.compact_now(TOPIC, 0), "compact_now")?;
        ensure!(
            stats.bytes_read == 0 || stats.cleaned_up_to == active_base,
            "the prelude's pass cleaned up to {}, the active segment starts at {active_base}",
            stats.cleaned_up_to
        );
        self.model.compact(active_base, now_ms);
        self.check_scan(log)
    }

    fn segment_count(&self, log: &Log) -> Result<usize, String> {
        let description = ok(log.describe_topic(TOPIC), "describe_topic")?;
        let count = description.partitions[0].segment_count;
        self.stats
            .max_segments
            .set(self.stats.max_segments.get().max(count));
        Ok(count)
    }

    /// The whole partition, read from its start, is exactly the model's
    /// kept records; and the properties the model implies, spelled out.
    fn check_scan(&self, log: &Log) -> Check {
        let offsets = ok(log.offsets(TOPIC, 0), "offsets")?;
        let log_end = self.model.log_end();
        ensure!(
            (
                offsets.log_start_offset,
                offsets.high_watermark,
                offsets.log_end_offset
            ) == (0, log_end, log_end),
            "offsets {offsets:?}, model log end {log_end}"
        );
        let mut reader = ok(log.reader(TOPIC, 0, 0), "reader")?;
        let read = drain(&mut reader, &self.model)?;
        let read_set: BTreeSet<i64> = read.iter().copied().collect();
        // Every key's latest record is there, unless it is a tombstone a
        // pass removed after its horizon.
        for (key, &latest) in &self.model.latest_below(log_end) {
            let expired_tombstone = self.model.records[latest as usize].value.is_none()
                && self
                    .model
                    .expired
                    .get(&latest)
                    .is_some_and(|&horizon| self.model.last_pass_ms >= Some(horizon));
            ensure!(
                read_set.contains(&latest) || expired_tombstone,
                "the latest record of key {key:?}, at {latest}, is gone"
            );
        }
        // Below `cleaned_up_to` nothing a later record of its key replaces.
        let cleaned = self.model.cleaned_up_to;
        let latest_clean = self.model.latest_below(cleaned);
        for &offset in read_set.range(..cleaned) {
            let key = self.model.records[offset as usize].key.as_slice();
            ensure!(
                latest_clean[key] == offset,
                "record {offset} of key {key:?} survived below {cleaned}; the key's latest there is {}",
                latest_clean[key]
            );
        }
        ensure!(
            read_set == self.model.kept,
            "the log holds {:?}, the model {:?}",
            read_set,
            self.model.kept
        );
        Ok(())
    }
}

fn run_case(setup: &Setup, ops: &[Op], stats: &Stats) -> Check {
    let dir = tempfile::tempdir().map_err(|err| format!("tempdir: {err}"))?;
    let mut harness = Harness {
        dir: dir.path(),
        clock: Arc::new(ManualClock::new(CLOCK_START_MS)),
        setup,
        model: Model {
            delete_retention_ms: setup.delete_retention_ms,
            ..Model::default()
        },
        stats,
    };
    let mut log = harness.open()?;
    let topic = TopicConfig::default()
        .cleanup_policy(CleanupPolicy::Compact)
        .segment_bytes(setup.segment_bytes)
        .index_interval_bytes(setup.index_interval_bytes)
        .delete_retention_ms(setup.delete_retention_ms)
        .min_cleanable_dirty_ratio_percent(100);
    ok(log.create_topic(TOPIC, topic), "create_topic")?;
    harness.prelude(&log)?;
    for (step, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Append {
                advance_ms,
                records,
            } => {
                harness.clock.advance_ms(*advance_ms);
                harness.append(&log, records).map(|_| ())
            }
            Op::Compact {
                reader_at,
                append_after,
            } => harness.compact_with_readers(&log, reader_at, append_after),
            Op::Advance { ms } => {
                harness.clock.advance_ms(*ms);
                Ok(())
            }
            Op::Read { at, max_bytes } => harness.read(&log, at, *max_bytes),
            Op::CleanReopen | Op::Crash => match harness.restart(log, op) {
                Ok(reopened) => {
                    log = reopened;
                    Ok(())
                }
                Err(why) => return Err(format!("step {step} ({op:?}): {why}")),
            },
        };
        result
            .and_then(|()| harness.segment_count(&log).map(|_| ()))
            .and_then(|()| match op {
                Op::Compact { .. } | Op::CleanReopen | Op::Crash => harness.check_scan(&log),
                _ => Ok(()),
            })
            .map_err(|why| format!("step {step} ({op:?}): {why}"))?;
    }
    // Two last passes: one stamps every tombstone still unstamped, the
    // next, at its delete horizon, removes every tombstone left. A pass
    // needs a new segment to run.
    for advance_ms in [0, setup.delete_retention_ms] {
        harness.clock.advance_ms(advance_ms);
        let segments = harness.segment_count(&log)?;
        while harness.segment_count(&log)? == segments {
            let filler = GenRecord {
                key: 0,
                value: Some(vec![0x5a; 200]),
            };
            harness.append(&log, &[filler])?;
        }
        ensure!(harness.compact(&log)?, "a last pass did not run");
        harness.check_scan(&log)?;
    }
    ensure!(
        harness.model.horizons.is_empty(),
        "tombstones outlived their horizon: {:?}",
        harness.model.horizons
    );
    ok(log.close(), "close")
}

fn run_model(seed: u64) -> Stats {
    let stats = Stats::default();
    let strategy = (
        setup_strategy(),
        prop::collection::vec(op_strategy(), 1..=MAX_OPS),
    );
    common::check_property(
        common::proptest_config(DEFAULT_CASES, seed),
        &strategy,
        |(setup, ops)| run_case(&setup, &ops, &stats),
    );
    stats
}

#[test]
fn compaction_keeps_exactly_the_latest_record_per_key() {
    let stats = run_model(0x636f_6d70_6163_7421);
    // Shown with `--nocapture`: what the cases reached.
    eprintln!("{stats:?}");
    assert!(stats.passes.get() > 50, "{stats:?}");
    assert!(stats.idle_compactions.get() > 0, "{stats:?}");
    assert!(stats.multi_pass_compactions.get() > 10, "{stats:?}");
    assert!(stats.records_removed.get() > 500, "{stats:?}");
    assert!(stats.tombstones_kept_before_horizon.get() > 20, "{stats:?}");
    assert!(stats.tombstones_expired.get() > 10, "{stats:?}");
    assert!(stats.reads_at_removed_offsets.get() > 10, "{stats:?}");
    assert!(stats.mid_readers_across_swaps.get() > 10, "{stats:?}");
    assert!(stats.appends_after_pass.get() > 10, "{stats:?}");
    assert!(stats.reopens.get() > 5, "{stats:?}");
    assert!(stats.crashes.get() > 5, "{stats:?}");
    assert!(stats.max_segments.get() > 5, "{stats:?}");
}

/// A temporary log on a manual clock (no background retention or
/// cleaning) with the topic compacted in 1 KiB segments, every pass
/// cleaning all it can; `topic` gives any further settings.
fn compacted_log(topic: TopicConfig) -> (Log, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(CLOCK_START_MS));
    let log = Log::temporary(
        LogConfig::default()
            .clock(Arc::clone(&clock) as Arc<dyn Clock>)
            .retention_check_interval(NEVER)
            .cleaner_backoff(NEVER),
    )
    .expect("open a temporary log");
    log.create_topic(
        TOPIC,
        topic
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(1024)
            .min_cleanable_dirty_ratio_percent(100),
    )
    .expect("create the topic");
    (log, clock)
}

/// The exact boundary of the delete horizon: a tombstone first cleaned at
/// `t` survives a pass at `t + D - 1` and goes in a pass at `t + D`.
#[test]
fn tombstone_lives_until_a_pass_at_its_delete_horizon() {
    const D: i64 = 10_000;
    let (log, clock) = compacted_log(TopicConfig::default().delete_retention_ms(D));
    let segments =
        |log: &Log| log.describe_topic(TOPIC).expect("describe").partitions[0].segment_count;
    // Filler on another key until a new segment starts, so what came
    // before can be cleaned.
    let roll = |log: &Log| {
        let before = segments(log);
        for _ in 0..100 {
            log.append(TOPIC, 0, &[Record::new(vec![7u8; 100]).key("filler")])
                .expect("append filler");
            if segments(log) > before {
                return;
            }
        }
        panic!("no segment roll after 100 appends");
    };
    log.append(TOPIC, 0, &[Record::new("v1").key("gone")])
        .expect("append a value");
    let tombstone = log
        .append(TOPIC, 0, &[Record::tombstone("gone")])
        .expect("append a tombstone")
        .base_offset;
    let tombstone_there = |log: &Log| {
        let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
        let mut fetch = Fetch::new();
        let mut found = false;
        while reader.next_into(&mut fetch).expect("read") {
            for record in fetch.records() {
                let record = record.expect("decode");
                assert_ne!(record.offset, 0, "the replaced value survived");
                if record.offset == tombstone {
                    assert_eq!(record.key, Some(&b"gone"[..]));
                    assert_eq!(record.value, None);
                    found = true;
                }
            }
        }
        found
    };
    roll(&log);
    let first_clean_ms = clock.now_ms();
    let stats = log.compact_now(TOPIC, 0).expect("first pass");
    assert!(stats.cleaned_up_to > tombstone, "{stats:?}");
    assert!(
        tombstone_there(&log),
        "the tombstone went in its first pass"
    );

    clock.set_ms(first_clean_ms + D - 1);
    roll(&log);
    let stats = log.compact_now(TOPIC, 0).expect("pass before the horizon");
    assert!(stats.bytes_read > 0, "no pass ran: {stats:?}");
    assert!(
        tombstone_there(&log),
        "the tombstone went before its horizon"
    );

    clock.set_ms(first_clean_ms + D);
    assert!(tombstone_there(&log), "the tombstone went without a pass");
    roll(&log);
    let stats = log.compact_now(TOPIC, 0).expect("pass at the horizon");
    assert!(stats.bytes_read > 0, "no pass ran: {stats:?}");
    assert!(!tombstone_there(&log), "the tombstone outlived its horizon");
    // A read at its offset returns the next record.
    let first = common::first_offset_from(&log, TOPIC, 0, tombstone);
    assert!(first.is_some_and(|offset| offset > tombstone), "{first:?}");
    log.close().expect("close");
}

/// Compaction keeps the last batch of each rewritten group even when all
/// its records went (so the segment keeps its last offset), but an empty
/// batch from an earlier pass is no longer needed once it is not the last
/// of its group. Repeated passes over a log with one live key must not
/// pile them up: the clean part of the log stays a few batches long.
#[test]
fn repeated_passes_do_not_pile_up_empty_batches() {
    let (log, _clock) = compacted_log(TopicConfig::default());
    let segments =
        |log: &Log| log.describe_topic(TOPIC).expect("describe").partitions[0].segment_count;
    let mut history = Vec::new();
    for round in 0..30u8 {
        let before = segments(&log);
        while segments(&log) == before {
            log.append(TOPIC, 0, &[Record::new(vec![round; 100]).key("k")])
                .expect("append");
        }
        log.compact_now(TOPIC, 0).expect("compact");
        let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
        let mut fetch = Fetch::new();
        let (mut batches, mut empty) = (0, 0);
        while reader.next_into(&mut fetch).expect("read") {
            for batch in fetch.batches() {
                let batch = batch.expect("batch");
                batches += 1;
                if batch.header().record_count == 0 {
                    empty += 1;
                }
            }
        }
        history.push((batches, empty));
        // At most the last batch of each segment may be empty.
        assert!(
            empty < segments(&log),
            "after {} passes the log holds {empty} empty batches in {} segments; (batches, empty) per pass: {history:?}",
            round + 1,
            segments(&log)
        );
    }
}

/// Two compactions of one partition at once — `compact_now` from two
/// threads here; `compact_now` while the background cleaner compacts is
/// the same — must leave it intact: both succeed and the log reads back as
/// the latest record of each key, nothing corrupt. The second starts a
/// varying while after the first, once more records (replacing earlier
/// ones) have rolled into a new segment, so it cleans the same segments
/// into a different result while the first is still writing its own.
#[test]
fn concurrent_compactions_of_one_partition_keep_it_intact() {
    let (log, _clock) = compacted_log(TopicConfig::default());
    let appended: std::sync::Mutex<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());
    let append = |round: u32, i: u32| {
        let key = format!("key-{}", (round * 7 + i) % 10).into_bytes();
        let value = format!("{round}/{i}/{}", "v".repeat(60)).into_bytes();
        let mut appended = appended.lock().expect("lock");
        let info = log
            .append(TOPIC, 0, &[Record::new(value.clone()).key(key.clone())])
            .expect("append");
        assert_eq!(info.base_offset, appended.len() as i64);
        appended.push((key, value));
    };
    let segments = || log.describe_topic(TOPIC).expect("describe").partitions[0].segment_count;
    for round in 0..20u32 {
        for i in 0..150 {
            append(round, i);
        }
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let first = s.spawn(|| {
                barrier.wait();
                log.compact_now(TOPIC, 0).map(|stats| stats.records_removed)
            });
            let second = s.spawn(|| {
                barrier.wait();
                for _ in 0..(round % 5) * 20 {
                    std::thread::yield_now();
                }
                let before = segments();
                let mut i = 1000;
                while segments() == before {
                    append(round, i);
                    i += 1;
                }
                log.compact_now(TOPIC, 0).map(|stats| stats.records_removed)
            });
            Vec::from([first, second].map(|h| h.join().expect("a compactor panicked")))
        });
        for result in &results {
            assert!(
                result.is_ok(),
                "round {round}: compact_now failed: {results:?}"
            );
        }
        let appended = appended.lock().expect("lock");
        let mut reader = log.reader(TOPIC, 0, 0).expect("reader");
        let mut fetch = Fetch::new();
        let mut latest_seen: HashMap<Vec<u8>, i64> = HashMap::new();
        loop {
            match reader.next_into(&mut fetch) {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => panic!("round {round}: read failed: {err}"),
            }
            for record in fetch.records() {
                let record = record.unwrap_or_else(|err| panic!("round {round}: {err}"));
                let (key, value) = &appended[record.offset as usize];
                assert_eq!(record.key, Some(key.as_slice()), "round {round}");
                assert_eq!(record.value, Some(value.as_slice()), "round {round}");
                latest_seen.insert(key.clone(), record.offset);
            }
        }
        let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
        for (offset, (key, _)) in appended.iter().enumerate() {
            latest.insert(key.clone(), offset as i64);
        }
        assert_eq!(
            latest_seen, latest,
            "round {round}: the latest record of each key"
        );
    }
    log.close().expect("close");
}
