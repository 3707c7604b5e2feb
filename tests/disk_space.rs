//! Space reserved ahead of the active segment's data (so appends skip the
//! filesystem's block allocation) is given back: a sealed segment, and
//! after close every segment, occupies no more blocks than its data.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use brooklet::{Log, LogConfig, Record, TopicConfig};

/// Less than the smallest reservation, more than a filesystem's own
/// rounding and extent blocks.
const SLACK_BYTES: u64 = 32 * 1024;

fn segment_files(partition_dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(partition_dir)
        .expect("list the partition")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs
}

/// Bytes allocated to `path` past the blocks its data needs.
fn allocated_past_data(path: &Path) -> u64 {
    let meta = fs::metadata(path).expect("stat a segment");
    let data_blocks = meta.len().div_ceil(4096) * 4096;
    (meta.blocks() * 512).saturating_sub(data_blocks)
}

#[test]
fn sealed_and_closed_segments_hold_no_reserved_space() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let path = dir.path().join("log");
    let log = Log::open(&path, LogConfig::default()).expect("open");
    log.create_topic("t", TopicConfig::default().segment_bytes(256 * 1024))
        .expect("create topic");
    let records: Vec<Record> = (0..100u8).map(|i| Record::new(vec![i; 600])).collect();
    // Batches of about 61 KB into 256 KiB segments: each segment's last
    // reservation reaches well past its last batch.
    for _ in 0..20 {
        log.append("t", 0, &records).expect("append");
    }
    let logs = segment_files(&path.join("t-0"));
    assert!(logs.len() >= 4, "the appends rolled segments: {logs:?}");
    for sealed in &logs[..logs.len() - 1] {
        assert!(
            allocated_past_data(sealed) < SLACK_BYTES,
            "{} keeps {} bytes past its data",
            sealed.display(),
            allocated_past_data(sealed)
        );
    }
    log.close().expect("close");
    for segment in &logs {
        assert!(
            allocated_past_data(segment) < SLACK_BYTES,
            "{} keeps {} bytes past its data after close",
            segment.display(),
            allocated_past_data(segment)
        );
    }

    let log = Log::open(&path, LogConfig::default()).expect("reopen");
    let offsets = log.offsets("t", 0).expect("offsets");
    assert_eq!(offsets.log_end_offset, 2000, "every record is still there");
    log.append("t", 0, &records).expect("append after reopen");
    assert_eq!(log.offsets("t", 0).expect("offsets").log_end_offset, 2100);
}
