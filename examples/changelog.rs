//! A compacted topic as the changelog of a key-value table, the way Kafka
//! Streams backs its state stores: every change to the table is appended
//! as a record keyed by the row's key (a delete is a tombstone, a record
//! with no value), and compaction keeps only the latest record per key, so
//! the topic stays about as large as the table while still rebuilding it
//! exactly.
//!
//! The example replays the topic into a `HashMap` (empty on the first
//! run), applies thousands of updates and some deletes to that live map
//! and to the topic, compacts the topic, rebuilds the table from it, and
//! checks the rebuilt table equals the live one. It prints the topic's
//! size before and after compaction and exits non-zero on a mismatch.
//!
//! Usage: `cargo run --release --example changelog [DATA_DIR]` (default
//! `./changelog-data`). The directory is left in place; every run
//! continues the same table.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use brooklet::{CleanupPolicy, Fetch, Log, LogConfig, Record, TopicConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
type Table = HashMap<Vec<u8>, Vec<u8>>;

const TOPIC: &str = "inventory-changelog";
const ROWS: u64 = 500;
const UPDATES: u64 = 20_000;
/// One change in this many is a delete.
const DELETE_ONE_IN: u64 = 10;

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./changelog-data".to_owned());
    match run(&dir) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("changelog failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Replays the changelog from its first record into a table.
fn rebuild(log: &Log) -> Result<(Table, u64)> {
    let start = log.offsets(TOPIC, 0)?.log_start_offset;
    let mut reader = log.reader(TOPIC, 0, start)?;
    let mut fetch = Fetch::new();
    let mut table = Table::new();
    let mut records = 0;
    while reader.next_into(&mut fetch)? {
        for record in fetch.records() {
            let record = record?;
            records += 1;
            let key = record.key.ok_or("a changelog record without a key")?;
            match record.value {
                Some(value) => table.insert(key.to_vec(), value.to_vec()),
                None => table.remove(key),
            };
        }
    }
    Ok((table, records))
}

/// Size of the topic's one partition: (bytes, segments).
fn size(log: &Log) -> Result<(u64, usize)> {
    let description = log.describe_topic(TOPIC)?;
    let partition = &description.partitions[0];
    Ok((partition.size_bytes, partition.segment_count))
}

fn run(dir: &str) -> Result<bool> {
    // This example compacts on demand; the background cleaner is told to
    // wait longer than a run takes.
    let config = LogConfig::default()
        .cleaner_backoff(Duration::from_secs(3600))
        .retention_check_interval(Duration::from_secs(3600));
    let log = Log::open(dir, config)?;
    if !log.topics().iter().any(|t| t == TOPIC) {
        log.create_topic(
            TOPIC,
            TopicConfig::default()
                .cleanup_policy(CleanupPolicy::Compact)
                .segment_bytes(64 * 1024),
        )?;
        println!("created the compacted topic {TOPIC:?} in {dir}");
    }

    // The table as earlier runs left it.
    let (mut live, replayed) = rebuild(&log)?;
    let first_offset = log.offsets(TOPIC, 0)?.log_end_offset;
    println!(
        "replayed {replayed} records into a table of {} rows",
        live.len()
    );

    // Changes: a fixed pseudo-random sequence, different each run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ first_offset.unsigned_abs();
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let (mut updates, mut deletes) = (0, 0);
    for change in 0..UPDATES {
        // A few batches of several changes, mostly one change a batch.
        let count = if next(20) == 0 { 1 + next(8) } else { 1 };
        let mut batch = Vec::new();
        for _ in 0..count {
            let key = format!("sku-{:04}", next(ROWS)).into_bytes();
            if next(DELETE_ONE_IN) == 0 {
                live.remove(&key);
                batch.push(Record::tombstone(key));
                deletes += 1;
            } else {
                let value = format!(
                    "{{\"qty\":{},\"change\":{},\"from\":{first_offset}}}",
                    next(1000),
                    change
                )
                .into_bytes();
                live.insert(key.clone(), value.clone());
                batch.push(Record::new(value).key(key));
                updates += 1;
            }
        }
        log.append(TOPIC, 0, &batch)?;
    }
    println!("applied {updates} updates and {deletes} deletes");

    let (bytes_before, segments_before) = size(&log)?;
    let records_before = log.offsets(TOPIC, 0)?.log_end_offset;
    let stats = log.compact_now(TOPIC, 0)?;
    let (bytes_after, segments_after) = size(&log)?;
    println!(
        "before compaction: {bytes_before} bytes in {segments_before} segments ({records_before} offsets)"
    );
    println!(
        "after compaction:  {bytes_after} bytes in {segments_after} segments ({} records removed, clean below offset {})",
        stats.records_removed, stats.cleaned_up_to
    );

    let (rebuilt, records) = rebuild(&log)?;
    println!(
        "rebuilt a table of {} rows from {records} records",
        rebuilt.len()
    );
    log.close()?;

    if rebuilt == live {
        println!("the rebuilt table equals the live one");
        return Ok(true);
    }
    let mut differences: Vec<String> = live
        .iter()
        .filter(|(key, value)| rebuilt.get(*key) != Some(*value))
        .map(|(key, value)| {
            format!(
                "{}: live {:?}, rebuilt {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value),
                rebuilt.get(key).map(|v| String::from_utf8_lossy(v))
            )
        })
        .chain(
            rebuilt
                .keys()
                .filter(|key| !live.contains_key(*key))
                .map(|key| format!("{}: deleted but rebuilt", String::from_utf8_lossy(key))),
        )
        .collect();
    differences.sort();
    eprintln!("MISMATCH: {} rows differ", differences.len());
    for difference in differences.iter().take(20) {
        eprintln!("  {difference}");
    }
    Ok(false)
}
