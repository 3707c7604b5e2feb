//! Encoding records into Kafka's record batch v2, byte for byte as Kafka's
//! `DefaultRecordBatch` and `DefaultRecord` lay them out.

use crate::config::TimestampType;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::record::batch::{
    ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT, BATCH_HEADER_LEN,
    BATCH_LENGTH_AT, BatchHeader, CRC_AT, LAST_OFFSET_DELTA_AT, LOG_APPEND_TIME_FLAG, LOG_OVERHEAD,
    MAGIC_AT, MAGIC_V2, MAX_TIMESTAMP_AT, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    PARTITION_LEADER_EPOCH_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORDS_COUNT_AT,
};
use crate::record::varint::{VarintBuf, put_varlong, varlong_len};

/// The header fields of a batch to encode that do not come from its records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchSpec {
    pub(crate) base_offset: i64,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) timestamp_type: TimestampType,
    /// Timestamp for records without one, and for all of them with
    /// `LogAppendTime`.
    pub(crate) now_ms: i64,
}

impl BatchSpec {
    /// A batch from a producer without idempotence.
    pub(crate) fn plain(timestamp_type: TimestampType, now_ms: i64) -> Self {
        BatchSpec {
            base_offset: 0,
            partition_leader_epoch: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            timestamp_type,
            now_ms,
        }
    }
}

pub(crate) fn bytes_field_len(field: Option<&[u8]>) -> usize {
    match field {
        None => 1,
        Some(bytes) => varlong_len(bytes.len() as i64) + bytes.len(),
    }
}

pub(crate) fn put_bytes_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

fn record_timestamp(record: &Record, spec: &BatchSpec) -> i64 {
    match spec.timestamp_type {
        TimestampType::LogAppendTime => spec.now_ms,
        TimestampType::CreateTime => record.timestamp_ms.unwrap_or(spec.now_ms),
    }
}

/// Size of a record's body (everything after its length varint).
fn record_body_len(record: &Record, timestamp_delta: i64, offset_delta: i64) -> usize {
    let mut len = 1
        + varlong_len(timestamp_delta)
        + varlong_len(offset_delta)
        + bytes_field_len(record.key.as_deref())
        + bytes_field_len(record.value.as_deref())
        + varlong_len(record.headers.len() as i64);
    for header in &record.headers {
        len +=
            bytes_field_len(Some(header.key.as_bytes())) + bytes_field_len(header.value.as_deref());
    }
    len
}

/// A lower bound of the size of a batch of `records`, computed without
/// encoding: enough to refuse a batch far over a limit before spending
/// memory on it.
pub(crate) fn size_lower_bound(records: &[Record]) -> usize {
    let payload: usize = records
        .iter()
        .map(|r| {
            let headers: usize = r
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len) + 2)
                .sum();
            7 + r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len) + headers
        })
        .sum();
    BATCH_HEADER_LEN + payload
}

/// The exact encoded size of a batch of `records`, without encoding it
/// (for reporting how far over a limit a refused batch is).
pub(crate) fn encoded_size(records: &[Record], spec: &BatchSpec) -> usize {
    let base_timestamp = records
        .first()
        .map_or(0, |first| record_timestamp(first, spec));
    BATCH_HEADER_LEN
        + records
            .iter()
            .enumerate()
            .map(|(offset_delta, record)| {
                let timestamp_delta = record_timestamp(record, spec).saturating_sub(base_timestamp);
                let body = record_body_len(record, timestamp_delta, offset_delta as i64);
                varlong_len(body as i64) + body
            })
            .sum::<usize>()
}

/// Appends one record batch holding `records` to `out`, exactly as Kafka
/// encodes it, CRC included, and returns its header. On error `out` is
/// left as it was.
pub(crate) fn encode_batch(
    out: &mut Vec<u8>,
    records: &[Record],
    spec: &BatchSpec,
) -> Result<BatchHeader> {
    let first = records
        .first()
        .ok_or_else(|| Error::InvalidRecord("a record batch needs at least one record".into()))?;
    let record_count = i32::try_from(records.len())
        .map_err(|_| Error::InvalidRecord("too many records for one batch".into()))?;
    let start = out.len();
    // No size pass to reserve with: callers on the hot path reuse `out`,
    // which keeps its capacity from one batch to the next.
    out.resize(start + BATCH_HEADER_LEN, 0);
    let base_timestamp = record_timestamp(first, spec);
    let mut max_timestamp = base_timestamp;
    for (offset_delta, record) in records.iter().enumerate() {
        let timestamp = record_timestamp(record, spec);
        if timestamp < 0 {
            out.truncate(start);
            return Err(Error::InvalidRecord(format!(
                "timestamp {timestamp} is negative"
            )));
        }
        max_timestamp = max_timestamp.max(timestamp);
        // Both are non-negative, so the difference can not overflow.
        let timestamp_delta = timestamp - base_timestamp;
        let offset_delta = offset_delta as i64;
        encode_record(out, record, timestamp_delta, offset_delta);
    }
    let Ok(batch_length) = i32::try_from(out.len() - start - LOG_OVERHEAD) else {
        let size_bytes = out.len() - start;
        out.truncate(start);
        return Err(Error::RecordTooLarge {
            size_bytes,
            max_bytes: i32::MAX as usize,
        });
    };
    let header = BatchHeader {
        base_offset: spec.base_offset,
        batch_length,
        partition_leader_epoch: spec.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes: match spec.timestamp_type {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => LOG_APPEND_TIME_FLAG,
        },
        last_offset_delta: record_count - 1,
        base_timestamp,
        max_timestamp,
        producer_id: spec.producer_id,
        producer_epoch: spec.producer_epoch,
        base_sequence: spec.base_sequence,
        record_count,
    };
    let crc = write_header(&mut out[start..], &header);
    Ok(BatchHeader { crc, ..header })
}

/// Appends one record, as it is laid out inside a batch, with the given
/// deltas from the batch's base timestamp and base offset.
#[inline]
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    record: &Record,
    timestamp_delta: i64,
    offset_delta: i64,
) {
    if !record.headers.is_empty() {
        return encode_record_with_headers(out, record, timestamp_delta, offset_delta);
    }
    let key = record.key.as_deref();
    let value = record.value.as_deref();
    let key_field = key.map_or(-1, |k| k.len() as i64);
    let value_field = value.map_or(-1, |v| v.len() as i64);
    // The attributes byte and the header count (0) take one byte each.
    let body = 2
        + varlong_len(timestamp_delta)
        + varlong_len(offset_delta)
        + varlong_len(key_field)
        + key.map_or(0, <[u8]>::len)
        + varlong_len(value_field)
        + value.map_or(0, <[u8]>::len);
    let total = varlong_len(body as i64) + body;
    out.reserve(total);
    let len = out.len();
    // SAFETY: `total` bytes past `len` are reserved, and the writes below
    // fill exactly `total` bytes: each varint takes `varlong_len` of its
    // value bytes (tested against the reference encoder) and each field its
    // length, the same sums that made `total`.
    unsafe {
        let start = out.as_mut_ptr().add(len);
        let mut at = put_varlong_raw(start, body as i64);
        at.write(0); // record attributes: unused
        at = put_varlong_raw(at.add(1), timestamp_delta);
        at = put_varlong_raw(at, offset_delta);
        at = put_varlong_raw(at, key_field);
        if let Some(key) = key {
            at = copy_short_raw(key, at);
        }
        at = put_varlong_raw(at, value_field);
        if let Some(value) = value {
            at = copy_short_raw(value, at);
        }
        at.write(0); // header count
        debug_assert_eq!(at.add(1).offset_from(start) as usize, total);
        out.set_len(len + total);
    }
}

/// The general case of [`encode_record`]: a record with headers.
fn encode_record_with_headers(
    out: &mut Vec<u8>,
    record: &Record,
    timestamp_delta: i64,
    offset_delta: i64,
) {
    let body = record_body_len(record, timestamp_delta, offset_delta);
    let mut head = VarintBuf::new();
    head.put(body as i64);
    head.put_byte(0); // record attributes: unused
    head.put(timestamp_delta);
    head.put(offset_delta);
    out.extend_from_slice(head.as_slice());
    put_bytes_field(out, record.key.as_deref());
    put_bytes_field(out, record.value.as_deref());
    put_varlong(out, record.headers.len() as i64);
    for header in &record.headers {
        put_bytes_field(out, Some(header.key.as_bytes()));
        put_bytes_field(out, header.value.as_deref());
    }
}

/// Writes `value` zig-zag encoded at `at` and returns the pointer past it:
/// [`varlong_len`] of `value` bytes, which the caller must have reserved.
#[inline(always)]
unsafe fn put_varlong_raw(at: *mut u8, value: i64) -> *mut u8 {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    // SAFETY (all writes): the caller reserved `varlong_len(value)` bytes.
    unsafe {
        // One and two bytes cover nearly every length and delta.
        if raw < 0x80 {
            at.write(raw as u8);
            return at.add(1);
        }
        if raw < 0x4000 {
            at.cast::<[u8; 2]>()
                .write_unaligned([(raw as u8) | 0x80, (raw >> 7) as u8]);
            return at.add(2);
        }
        let mut at = at;
        while raw >= 0x80 {
            at.write((raw as u8) | 0x80);
            raw >>= 7;
            at = at.add(1);
        }
        at.write(raw as u8);
        at.add(1)
    }
}

/// Copies `src` to `dst` and returns the pointer past the copy. Short
/// fields move in fixed-size chunks the compiler inlines, the last chunk
/// overlapping the one before: keys and values are mostly short, and a call
/// into `memcpy` per field costs more than the copy itself.
#[inline(always)]
unsafe fn copy_short_raw(src: &[u8], dst: *mut u8) -> *mut u8 {
    let n = src.len();
    let from = src.as_ptr();
    // SAFETY (all copies): `src` is `n` bytes long and the caller reserved
    // `n` bytes at `dst`; each chunk lies within both.
    unsafe {
        if n < 8 {
            if n >= 4 {
                dst.cast::<u32>()
                    .write_unaligned(from.cast::<u32>().read_unaligned());
                dst.add(n - 4)
                    .cast::<u32>()
                    .write_unaligned(from.add(n - 4).cast::<u32>().read_unaligned());
            } else {
                for i in 0..n {
                    dst.add(i).write(*from.add(i));
                }
            }
        } else if n < 16 {
            dst.cast::<u64>()
                .write_unaligned(from.cast::<u64>().read_unaligned());
            dst.add(n - 8)
                .cast::<u64>()
                .write_unaligned(from.add(n - 8).cast::<u64>().read_unaligned());
        } else if n <= 256 {
            let mut i = 0;
            while i + 16 < n {
                dst.add(i)
                    .cast::<u128>()
                    .write_unaligned(from.add(i).cast::<u128>().read_unaligned());
                i += 16;
            }
            dst.add(n - 16)
                .cast::<u128>()
                .write_unaligned(from.add(n - 16).cast::<u128>().read_unaligned());
        } else {
            std::ptr::copy_nonoverlapping(from, dst, n);
        }
        dst.add(n)
    }
}

/// Writes `header` into the first bytes of `batch` (whose records follow)
/// and computes the CRC; returns it.
pub(crate) fn write_header(batch: &mut [u8], header: &BatchHeader) -> u32 {
    let h = &mut batch[..BATCH_HEADER_LEN];
    h[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&header.base_offset.to_be_bytes());
    h[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&header.batch_length.to_be_bytes());
    h[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
    h[MAGIC_AT] = header.magic as u8;
    h[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&header.attributes.to_be_bytes());
    h[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
        .copy_from_slice(&header.last_offset_delta.to_be_bytes());
    h[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
        .copy_from_slice(&header.base_timestamp.to_be_bytes());
    h[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&header.max_timestamp.to_be_bytes());
    h[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&header.producer_id.to_be_bytes());
    h[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
        .copy_from_slice(&header.producer_epoch.to_be_bytes());
    h[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&header.base_sequence.to_be_bytes());
    h[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&header.record_count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    crc
}

/// Rewrites the base offset of an encoded batch. The base offset lies
/// outside the CRC, so the batch stays valid.
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch of an encoded batch (outside the CRC).
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct writer for records without headers lays out exactly the
    /// bytes the general, push-by-push path does, across every field
    /// length class (the copy's chunk sizes, one- to three-byte varints)
    /// and negative deltas.
    #[test]
    fn direct_writer_matches_the_general_path() {
        let lengths = [
            0usize, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 63, 64, 100, 255, 256, 257, 8191, 8192,
            70_000,
        ];
        let deltas = [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            8191,
            -8192,
            8192,
            1 << 40,
            i64::MIN,
            i64::MAX,
        ];
        let mut fast = Vec::new();
        let mut general = Vec::new();
        for &key_len in &lengths {
            for &value_len in &lengths {
                for (key, value) in [
                    (Some(vec![1u8; key_len]), Some(vec![2u8; value_len])),
                    (None, Some(vec![3u8; value_len])),
                    (Some(vec![4u8; key_len]), None),
                ] {
                    let record = Record {
                        key,
                        value,
                        ..Record::default()
                    };
                    for &delta in &deltas {
                        fast.clear();
                        general.clear();
                        fast.push(0xAA); // an unaligned start
                        general.push(0xAA);
                        encode_record(&mut fast, &record, delta, delta.wrapping_neg());
                        encode_record_with_headers(
                            &mut general,
                            &record,
                            delta,
                            delta.wrapping_neg(),
                        );
                        assert_eq!(
                            fast, general,
                            "key {key_len}, value {value_len}, delta {delta}"
                        );
                    }
                }
            }
        }
    }
}
