//! Consumer groups in one thread: members share partitions, a new member
//! triggers a rebalance, a killed member's partitions move after the
//! session time-out, and its late commit is refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use brooklet::{ConsumerConfig, Error, Log, LogConfig, ManualClock, OffsetReset, TopicConfig};

fn config() -> ConsumerConfig {
    ConsumerConfig::group("g")
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .session_timeout(Duration::from_secs(45))
}

/// A temporary log on a manual clock, with two offsets-topic partitions.
fn manual_log() -> (Log, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Log::temporary(
        LogConfig::default()
            .clock(clock.clone())
            .offsets_topic_partitions(2),
    )
    .expect("open");
    (log, clock)
}

#[test]
fn members_share_partitions_and_take_over_after_a_kill() {
    let (log, clock) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(6))
        .expect("create");
    let mut a = log.consumer(config());
    a.subscribe(&["t"]).expect("subscribe");
    assert_eq!(a.assignment().len(), 6);
    let mut b = log.consumer(config());
    b.subscribe(&["t"]).expect("subscribe");
    // a must re-join before b gets anything.
    assert!(b.assignment().is_empty());
    a.poll(Duration::ZERO).expect("poll a");
    b.poll(Duration::ZERO).expect("poll b");
    a.poll(Duration::ZERO).expect("poll a");
    let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (
        a.assignment().into_iter().collect(),
        b.assignment().into_iter().collect(),
    );
    assert_eq!(sa.len(), 3, "{sa:?}");
    assert_eq!(sb.len(), 3, "{sb:?}");
    assert!(sa.is_disjoint(&sb));

    let (_, generation) = b.group_membership().expect("member");
    b.kill();
    clock.advance_ms(44_000);
    a.poll(Duration::ZERO).expect("poll a");
    assert_eq!(a.assignment().len(), 3, "session time-out not reached yet");
    clock.advance_ms(2_000);
    a.poll(Duration::ZERO).expect("poll a");
    assert_eq!(a.assignment().len(), 6);
    let description = log.describe_group("g").expect("describe");
    assert_eq!(description.members.len(), 1);
    assert!(description.generation > generation);
}

#[test]
fn a_member_that_stops_polling_is_removed_and_its_commit_refused() {
    let (log, clock) = manual_log();
    log.create_topic("t", TopicConfig::default().partitions(4))
        .expect("create");
    let slow_config = config().max_poll_interval(Duration::from_secs(60));
    let mut a = log.consumer(slow_config.clone());
    a.subscribe(&["t"]).expect("subscribe");
    let mut b = log.consumer(slow_config);
    b.subscribe(&["t"]).expect("subscribe");
    a.poll(Duration::ZERO).expect("poll a");
    b.poll(Duration::ZERO).expect("poll b");
    a.poll(Duration::ZERO).expect("poll a");
    assert_eq!(b.assignment().len(), 2);
    b.commit().expect("commit while a member");
    // b stops polling; a keeps polling every 30 s.
    for _ in 0..3 {
        clock.advance_ms(30_000);
        a.poll(Duration::ZERO).expect("poll a");
    }
    assert_eq!(a.assignment().len(), 4);
    let err = b.commit().expect_err("removed member");
    assert!(matches!(err, Error::UnknownMember { .. }), "{err}");
    // Polling again makes b re-join as a new member.
    b.poll(Duration::ZERO).expect("poll b");
    a.poll(Duration::ZERO).expect("poll a");
    b.poll(Duration::ZERO).expect("poll b");
    assert_eq!(a.assignment().len() + b.assignment().len(), 4);
}
