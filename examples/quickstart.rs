//! A tour of brooklet's storage engine: create a topic, append records with
//! keys and headers, read them back by offset and by timestamp, close,
//! reopen, and see the data is still there.
//!
//! Usage: `cargo run --release --example quickstart [DATA_DIR]`
//! (default `./quickstart-data`). The directory is left in place so the
//! files can be inspected; running again appends to the existing data.

use std::process::ExitCode;

use brooklet::{Log, LogConfig, Record, TopicConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TOPIC: &str = "orders";

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./quickstart-data".to_owned());
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickstart failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str) -> Result<()> {
    println!("opening log in {dir}");
    let log = Log::open(dir, LogConfig::default())?;
    if log.topics().iter().any(|t| t == TOPIC) {
        println!("topic {TOPIC:?} exists from an earlier run");
    } else {
        log.create_topic(TOPIC, TopicConfig::default().partitions(3))?;
        println!("created topic {TOPIC:?} with 3 partitions");
    }

    // One batch per partition, each record with a key and a header.
    let now_ms = log.clock().now_ms();
    let mut first_offsets = Vec::new();
    for partition in 0..3u32 {
        let records: Vec<Record> = (0..5)
            .map(|i| {
                Record::new(format!("order {i} for partition {partition}"))
                    .key(format!("customer-{}", i % 2))
                    .header("source", "quickstart")
                    .timestamp_ms(now_ms + i64::from(i) * 1_000)
            })
            .collect();
        let info = log.append(TOPIC, partition, &records)?;
        println!(
            "appended {} records to {TOPIC}-{partition} at offsets {}..={}",
            records.len(),
            info.base_offset,
            info.last_offset
        );
        first_offsets.push(info.base_offset);
    }

    // Read partition 0 back from the batch just written.
    let fetch = log.read(TOPIC, 0, first_offsets[0], 1 << 20)?;
    println!("reading {TOPIC}-0 from offset {}:", first_offsets[0]);
    for record in fetch.records() {
        let record = record?;
        let headers: Vec<String> = record
            .headers()
            .into_iter()
            .map(|h| {
                h.map(|h| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(h.key),
                        String::from_utf8_lossy(h.value.unwrap_or_default())
                    )
                })
            })
            .collect::<brooklet::Result<_>>()?;
        println!(
            "  offset {:>4}  ts {}  key {:<11}  value {:?}  headers [{}]",
            record.offset,
            record.timestamp_ms,
            String::from_utf8_lossy(record.key.unwrap_or_default()),
            String::from_utf8_lossy(record.value.unwrap_or_default()),
            headers.join(", ")
        );
    }

    // Find the first record at or after a timestamp, via the time index.
    let target = now_ms + 2_500;
    match log.offset_for_timestamp(TOPIC, 1, target)? {
        Some(found) => println!(
            "first record in {TOPIC}-1 at or after ts {target}: offset {} (ts {})",
            found.offset, found.timestamp_ms
        ),
        None => return Err("timestamp lookup found nothing".into()),
    }

    let before: Vec<_> = (0..3)
        .map(|p| log.offsets(TOPIC, p))
        .collect::<brooklet::Result<_>>()?;
    println!("closing the log");
    log.close()?;

    println!("reopening {dir}");
    let log = Log::open(dir, LogConfig::default())?;
    for (partition, offsets) in (0..3u32).zip(&before) {
        let after = log.offsets(TOPIC, partition)?;
        if after != *offsets {
            return Err(format!(
                "partition {partition} changed across reopen: {offsets:?} -> {after:?}"
            )
            .into());
        }
        let mut reader = log.reader(TOPIC, partition, after.log_start_offset)?;
        let mut count = 0;
        while let Some(fetch) = reader.next_fetch()? {
            for record in fetch.records() {
                record?;
                count += 1;
            }
        }
        println!(
            "{TOPIC}-{partition}: {count} records, offsets {}..{}",
            after.log_start_offset, after.log_end_offset
        );
    }
    log.close()?;
    println!("done; the files are in {dir}");
    Ok(())
}
