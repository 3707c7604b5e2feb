//! brooklet's record batches are Kafka's, byte for byte: batches written by
//! an independent Kafka implementation (kafka-python's
//! `DefaultRecordBatchBuilder`, see `tests/fixtures/make_golden_batches.py`)
//! decode with brooklet to exactly the records they were built from, and
//! appending those same records to a fresh partition stores exactly the
//! fixture's bytes — header, CRC-32C, varints, null keys, values and header
//! values, empty values, non-monotonic timestamps, multi-byte lengths and
//! offset deltas. Both sides write partitionLeaderEpoch 0 (kafka-python
//! leaves it to the broker as 0; brooklet's fresh partitions are at epoch
//! 0), so no field is excluded from the comparison.

use brooklet::{BatchView, Header, Log, LogConfig, Record, TopicConfig};

const THREE_RECORDS: &[u8] = include_bytes!("fixtures/three_records.bin");
const LARGE_VALUE: &[u8] = include_bytes!("fixtures/large_value.bin");
const TOMBSTONE: &[u8] = include_bytes!("fixtures/tombstone.bin");
const MANY_RECORDS: &[u8] = include_bytes!("fixtures/many_records.bin");
const DESCRIPTION_JSON: &str = include_str!("fixtures/golden_batches.json");

const BASE_TS: i64 = 1_700_000_000_000;

/// What a fixture's header holds, copied from `golden_batches.json`.
struct ExpectedHeader {
    size_bytes: usize,
    crc: u32,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

/// One record of a fixture, copied from `golden_batches.json`; its offset
/// is its index (the fixtures' base offset is 0).
struct Expected {
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Option<Vec<u8>>)>,
}

impl Expected {
    fn to_record(&self) -> Record {
        Record {
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: (*key).to_owned(),
                    value: value.clone(),
                })
                .collect(),
            timestamp_ms: Some(self.timestamp_ms),
        }
    }
}

fn bytes(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

fn three_records() -> Vec<Expected> {
    vec![
        Expected {
            timestamp_ms: BASE_TS,
            key: bytes("key-0"),
            value: bytes("value-0"),
            headers: vec![("trace-id", bytes("abc123")), ("null-header", None)],
        },
        Expected {
            timestamp_ms: BASE_TS + 5,
            key: None,
            value: bytes("value-1"),
            headers: vec![],
        },
        Expected {
            timestamp_ms: BASE_TS + 3,
            key: bytes("key-2"),
            value: Some(Vec::new()),
            headers: vec![],
        },
    ]
}

fn large_value() -> Vec<Expected> {
    vec![Expected {
        timestamp_ms: BASE_TS + 100,
        key: bytes("big"),
        value: Some((0..300u32).map(|i| (i % 251) as u8).collect()),
        headers: vec![],
    }]
}

fn tombstone() -> Vec<Expected> {
    vec![Expected {
        timestamp_ms: BASE_TS + 200,
        key: bytes("deleted-key"),
        value: None,
        headers: vec![],
    }]
}

/// The generator's formula: record `i` has key `k<i>`, a value of `i` bytes
/// equal to `i`, and a timestamp within a second either side of the first.
fn many_records() -> Vec<Expected> {
    (0..70u8)
        .map(|i| Expected {
            timestamp_ms: BASE_TS + (i64::from(i) * 7919 + 1000) % 2000 - 1000,
            key: bytes(&format!("k{i}")),
            value: Some(vec![i; usize::from(i)]),
            headers: vec![],
        })
        .collect()
}

/// Names the batch header field holding byte `position`, for failure
/// messages.
fn field_at(position: usize) -> &'static str {
    match position {
        0..8 => "baseOffset",
        8..12 => "batchLength",
        12..16 => "partitionLeaderEpoch",
        16 => "magic",
        17..21 => "crc",
        21..23 => "attributes",
        23..27 => "lastOffsetDelta",
        27..35 => "baseTimestamp",
        35..43 => "maxTimestamp",
        43..51 => "producerId",
        51..53 => "producerEpoch",
        53..57 => "baseSequence",
        57..61 => "recordsCount",
        _ => "records",
    }
}

/// Asserts two batches are identical from byte `from` on, naming the
/// first differing field.
fn assert_same_bytes(name: &str, actual: &[u8], golden: &[u8], from: usize) {
    let differs = (from..actual.len().min(golden.len())).find(|&i| actual[i] != golden[i]);
    if let Some(position) = differs {
        panic!(
            "{name}: brooklet's batch differs from the golden one first at byte {position} \
             ({}): brooklet {:#04x}, golden {:#04x}",
            field_at(position),
            actual[position],
            golden[position],
        );
    }
    assert_eq!(
        actual.len(),
        golden.len(),
        "{name}: brooklet's batch has a different length (one is a prefix of the other)"
    );
}

/// Decodes the golden batch with brooklet and checks every header field
/// and every record against what the generator put in.
fn check_decode(name: &str, golden: &[u8], header: &ExpectedHeader, records: &[Expected]) {
    assert!(
        DESCRIPTION_JSON.contains(&format!("\"file\": \"{name}.bin\"")),
        "{name}: golden_batches.json does not describe this fixture"
    );
    assert!(
        DESCRIPTION_JSON.contains(&format!("\"crc\": {},", header.crc))
            && DESCRIPTION_JSON.contains(&format!("\"size_bytes\": {},", header.size_bytes)),
        "{name}: the crc or size hard-coded here is not the one in golden_batches.json"
    );
    assert_eq!(golden.len(), header.size_bytes, "{name}: fixture size");

    let batch = BatchView::parse(golden).expect("brooklet parses kafka-python's batch");
    batch
        .verify_crc()
        .expect("kafka-python's CRC-32C matches brooklet's");
    assert_eq!(
        batch.as_bytes().len(),
        golden.len(),
        "{name}: whole fixture"
    );
    let h = batch.header();
    assert_eq!(h.base_offset, 0, "{name}: base offset");
    assert_eq!(h.size_bytes(), header.size_bytes, "{name}: batch length");
    assert_eq!(
        h.partition_leader_epoch, 0,
        "{name}: partition leader epoch"
    );
    assert_eq!(h.magic, 2, "{name}: magic");
    assert_eq!(h.crc, header.crc, "{name}: crc");
    assert_eq!(h.attributes, 0, "{name}: attributes");
    assert_eq!(h.compression(), 0, "{name}: compression");
    assert!(!h.is_transactional() && !h.is_control(), "{name}: flags");
    assert_eq!(
        h.last_offset_delta, header.last_offset_delta,
        "{name}: last offset delta"
    );
    assert_eq!(
        h.base_timestamp, header.base_timestamp,
        "{name}: base timestamp"
    );
    assert_eq!(
        h.max_timestamp, header.max_timestamp,
        "{name}: max timestamp"
    );
    assert_eq!(
        h.max_timestamp,
        records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .expect("records"),
        "{name}: max timestamp is the records' largest"
    );
    assert_eq!(h.producer_id, -1, "{name}: producer id");
    assert_eq!(h.producer_epoch, -1, "{name}: producer epoch");
    assert_eq!(h.base_sequence, -1, "{name}: base sequence");
    assert_eq!(
        h.record_count,
        i32::try_from(records.len()).expect("few records"),
        "{name}: record count"
    );

    let decoded: Vec<_> = batch
        .records()
        .map(|r| r.expect("kafka-python's record decodes"))
        .collect();
    assert_eq!(decoded.len(), records.len(), "{name}: records decoded");
    for (index, (got, want)) in decoded.iter().zip(records).enumerate() {
        let offset = i64::try_from(index).expect("small index");
        assert_eq!(got.offset, offset, "{name}[{index}]: offset");
        assert_eq!(
            got.timestamp_ms, want.timestamp_ms,
            "{name}[{index}]: timestamp"
        );
        assert_eq!(got.key, want.key.as_deref(), "{name}[{index}]: key");
        assert_eq!(got.value, want.value.as_deref(), "{name}[{index}]: value");
        let headers: Vec<(&[u8], Option<&[u8]>)> = got
            .headers()
            .into_iter()
            .map(|h| {
                let h = h.expect("kafka-python's header decodes");
                (h.key, h.value)
            })
            .collect();
        let want_headers: Vec<(&[u8], Option<&[u8]>)> = want
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_deref()))
            .collect();
        assert_eq!(headers, want_headers, "{name}[{index}]: headers");
        assert_eq!(
            got.to_record().expect("owned copy"),
            want.to_record(),
            "{name}[{index}]: to_record"
        );
    }
}

/// Appends the fixture's records to a fresh partition as one batch and
/// compares the stored batch with the fixture, byte for byte.
fn check_encode(name: &str, golden: &[u8], records: &[Expected]) {
    let log = Log::temporary(LogConfig::default()).expect("temporary log");
    log.create_topic("golden", TopicConfig::default())
        .expect("create topic");
    let to_append: Vec<Record> = records.iter().map(Expected::to_record).collect();
    let info = log.append("golden", 0, &to_append).expect("append");
    assert_eq!(
        info.base_offset, 0,
        "{name}: first offset of a fresh partition"
    );
    assert_eq!(
        info.last_offset,
        i64::try_from(records.len()).expect("few records") - 1,
        "{name}: last offset"
    );
    let fetch = log.read("golden", 0, 0, 1 << 20).expect("read back");
    assert_eq!(fetch.batches().count(), 1, "{name}: one append, one batch");
    assert_eq!(
        fetch.next_offset(),
        info.last_offset + 1,
        "{name}: next offset"
    );
    assert_same_bytes(name, fetch.bytes(), golden, 0);
}

fn check(name: &str, golden: &[u8], header: &ExpectedHeader, records: &[Expected]) {
    check_decode(name, golden, header, records);
    check_encode(name, golden, records);
}

#[test]
fn three_records_with_headers_null_key_empty_value_and_unordered_timestamps() {
    check(
        "three_records",
        THREE_RECORDS,
        &ExpectedHeader {
            size_bytes: 135,
            crc: 1_153_199_775,
            last_offset_delta: 2,
            base_timestamp: BASE_TS,
            max_timestamp: BASE_TS + 5,
        },
        &three_records(),
    );
}

#[test]
fn a_300_byte_value_with_multi_byte_varints() {
    check(
        "large_value",
        LARGE_VALUE,
        &ExpectedHeader {
            size_bytes: 373,
            crc: 235_945_336,
            last_offset_delta: 0,
            base_timestamp: BASE_TS + 100,
            max_timestamp: BASE_TS + 100,
        },
        &large_value(),
    );
}

#[test]
fn a_tombstone_with_a_key_and_a_null_value() {
    check(
        "tombstone",
        TOMBSTONE,
        &ExpectedHeader {
            size_bytes: 79,
            crc: 2_908_942_287,
            last_offset_delta: 0,
            base_timestamp: BASE_TS + 200,
            max_timestamp: BASE_TS + 200,
        },
        &tombstone(),
    );
}

#[test]
fn seventy_records_with_negative_timestamp_deltas_and_two_byte_offset_deltas() {
    check(
        "many_records",
        MANY_RECORDS,
        &ExpectedHeader {
            size_bytes: 3259,
            crc: 3_072_915_827,
            last_offset_delta: 69,
            base_timestamp: BASE_TS,
            max_timestamp: BASE_TS + 978,
        },
        &many_records(),
    );
}

/// Later batches in a partition differ from the fixtures only in their base
/// offset, which lies outside the CRC: the rest, CRC included, is the same.
#[test]
fn later_batches_differ_only_in_base_offset() {
    let fixtures: [(&[u8], Vec<Expected>); 4] = [
        (THREE_RECORDS, three_records()),
        (LARGE_VALUE, large_value()),
        (TOMBSTONE, tombstone()),
        (MANY_RECORDS, many_records()),
    ];
    let log = Log::temporary(LogConfig::default()).expect("temporary log");
    log.create_topic("golden", TopicConfig::default())
        .expect("create topic");
    let mut base_offsets = Vec::new();
    for (_, records) in &fixtures {
        let to_append: Vec<Record> = records.iter().map(Expected::to_record).collect();
        let info = log.append("golden", 0, &to_append).expect("append");
        base_offsets.push(info.base_offset);
    }
    assert_eq!(base_offsets, [0, 3, 4, 5], "consecutive offsets");

    let fetch = log.read("golden", 0, 0, 1 << 20).expect("read back");
    let stored: Vec<&[u8]> = fetch
        .batches()
        .map(|b| b.expect("stored batch parses").as_bytes())
        .collect();
    assert_eq!(stored.len(), fixtures.len(), "four appends, four batches");
    for ((stored, (golden, _)), base_offset) in stored.iter().zip(&fixtures).zip(&base_offsets) {
        let name = format!("batch at offset {base_offset}");
        assert_eq!(
            stored[..8],
            base_offset.to_be_bytes(),
            "{name}: base offset"
        );
        // Bytes 0..8 are the base offset, checked above.
        assert_same_bytes(&name, stored, golden, 8);
        BatchView::parse(stored)
            .expect("stored batch parses")
            .verify_crc()
            .expect("the CRC still holds with the new base offset");
    }
    assert_eq!(
        fetch.bytes().len(),
        fixtures
            .iter()
            .map(|(golden, _)| golden.len())
            .sum::<usize>(),
        "the fetch holds the four batches and nothing else"
    );
}
