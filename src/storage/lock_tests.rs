//! The lock per partition really is per partition: while one partition's
//! flush is held between its snapshot and its `fsync`, appends to another
//! partition (and to the same one) complete.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::{Durability, LogConfig, TopicConfig};
use crate::log::Log;
use crate::record::Record;

/// A flush of this partition stops at its pause point: it reports there,
/// then waits to be released.
struct Pause {
    topic: String,
    partition: u32,
    reached: Sender<()>,
    release: Receiver<()>,
}

static PAUSE: Mutex<Option<Pause>> = Mutex::new(None);

/// Called by `flush_now` after its snapshot, before any `fsync`.
pub(crate) fn pause_point(topic: &str, partition: u32) {
    let pause = {
        let mut slot = PAUSE.lock();
        match &*slot {
            Some(p) if p.topic == topic && p.partition == partition => slot.take(),
            _ => None,
        }
    };
    if let Some(pause) = pause {
        let _ = pause.reached.send(());
        let _ = pause.release.recv();
    }
}

#[test]
fn appends_complete_while_another_partition_is_held_mid_flush() {
    let log = Log::temporary(LogConfig::default()).expect("open");
    log.create_topic("held", TopicConfig::default().partitions(2))
        .expect("create");
    log.create_topic(
        "other",
        TopicConfig::default().durability(Durability::EveryAppend),
    )
    .expect("create");
    log.append("held", 0, &[Record::new("before")])
        .expect("append");
    let (reached_tx, reached_rx) = channel();
    let (release_tx, release_rx) = channel();
    *PAUSE.lock() = Some(Pause {
        topic: "held".into(),
        partition: 0,
        reached: reached_tx,
        release: release_rx,
    });
    let held = log.partition("held", 0).expect("partition");
    let flusher = std::thread::spawn(move || held.flush_to(1));
    reached_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the flush reaches its pause point");
    // Partition 0 of "held" is now mid-flush. Appends elsewhere, including
    // ones that flush themselves, and to "held" itself, go through.
    let other = log
        .append("other", 0, &[Record::new("x")])
        .expect("append elsewhere");
    assert_eq!(other.base_offset, 0);
    let sibling = log
        .append("held", 1, &[Record::new("y")])
        .expect("append to the sibling");
    assert_eq!(sibling.base_offset, 0);
    let same = log
        .append("held", 0, &[Record::new("z")])
        .expect("append to the flushing one");
    assert_eq!(same.base_offset, 1);
    assert!(!flusher.is_finished(), "the flush is still held");
    release_tx.send(()).expect("release");
    flusher
        .join()
        .expect("the flusher thread")
        .expect("the held flush completes once released");
}
