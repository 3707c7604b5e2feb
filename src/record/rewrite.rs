//! Re-encoding a batch with a subset of its records, for compaction. The
//! batch keeps its base offset, last offset delta, leader epoch and producer
//! fields, so offsets never change and an idempotent producer's sequence
//! numbers still add up after records are removed.

use crate::record::batch::{BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::record::encode::{bytes_field_len, put_bytes_field, write_header};
use crate::record::varint::{put_varlong, varlong_len};
use crate::record::{BatchHeader, RecordView};

/// Batch attribute bit 6: the base timestamp holds the delete horizon.
pub(crate) const DELETE_HORIZON_FLAG: i16 = 0x40;

/// Appends to `out` a copy of the batch `header` describes holding only
/// `kept` (in offset order, maybe none). With `delete_horizon_ms` the batch
/// is marked with it and record timestamps are re-based on it.
pub(crate) fn write_filtered_batch(
    out: &mut Vec<u8>,
    header: &BatchHeader,
    kept: &[RecordView<'_>],
    delete_horizon_ms: Option<i64>,
) -> BatchHeader {
    let start = out.len();
    out.resize(start + BATCH_HEADER_LEN, 0);
    let base_timestamp = delete_horizon_ms.unwrap_or(header.base_timestamp);
    let log_append_time = header.timestamp_type() == crate::config::TimestampType::LogAppendTime;
    let mut max_timestamp = if kept.is_empty() || log_append_time {
        header.max_timestamp
    } else {
        i64::MIN
    };
    for record in kept {
        if !log_append_time {
            max_timestamp = max_timestamp.max(record.timestamp_ms);
        }
        let timestamp_delta = record.timestamp_ms.wrapping_sub(base_timestamp);
        let offset_delta = record.offset - header.base_offset;
        let (headers, header_count) = record.headers().raw();
        let body = 1
            + varlong_len(timestamp_delta)
            + varlong_len(offset_delta)
            + bytes_field_len(record.key)
            + bytes_field_len(record.value)
            + varlong_len(header_count as i64)
            + headers.len();
        put_varlong(out, body as i64);
        out.push(0);
        put_varlong(out, timestamp_delta);
        put_varlong(out, offset_delta);
        put_bytes_field(out, record.key);
        put_bytes_field(out, record.value);
        put_varlong(out, header_count as i64);
        out.extend_from_slice(headers);
    }
    let mut attributes = header.attributes;
    if delete_horizon_ms.is_some() {
        attributes |= DELETE_HORIZON_FLAG;
    }
    let mut written = BatchHeader {
        base_offset: header.base_offset,
        batch_length: i32::try_from(out.len() - start - LOG_OVERHEAD).unwrap_or(i32::MAX),
        partition_leader_epoch: header.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta: header.last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        record_count: i32::try_from(kept.len()).unwrap_or(i32::MAX),
    };
    written.crc = write_header(&mut out[start..], &written);
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimestampType;
    use crate::record::Record;
    use crate::record::batch::BatchView;
    use crate::record::encode::{BatchSpec, encode_batch};

    #[test]
    fn filtered_batch_keeps_offsets_sequence_and_timestamps() {
        let records: Vec<_> = (0..5)
            .map(|i| {
                Record::new(format!("v{i}"))
                    .key(format!("k{i}"))
                    .header("h", "x")
                    .timestamp_ms(1000 + i)
            })
            .collect();
        let spec = BatchSpec {
            base_offset: 100,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 40,
            ..BatchSpec::plain(TimestampType::CreateTime, 0)
        };
        let mut original = Vec::new();
        encode_batch(&mut original, &records, &spec).expect("encode");
        let batch = BatchView::parse(&original).expect("parse");
        let all: Vec<_> = batch.records().map(|r| r.expect("record")).collect();
        let kept = [all[1], all[3]];
        let mut out = Vec::new();
        let header = write_filtered_batch(&mut out, batch.header(), &kept, Some(5000));
        let rewritten = BatchView::parse(&out).expect("parse");
        rewritten.verify_crc().expect("crc");
        assert_eq!(*rewritten.header(), header);
        assert_eq!(header.last_offset(), 104);
        assert_eq!(header.base_sequence, 40);
        assert_eq!(header.delete_horizon_ms(), Some(5000));
        let back: Vec<_> = rewritten.records().map(|r| r.expect("record")).collect();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].offset, back[0].timestamp_ms), (101, 1001));
        assert_eq!((back[1].offset, back[1].timestamp_ms), (103, 1003));
        assert_eq!(back[1].to_record().expect("owned"), records[3]);
        let mut empty = Vec::new();
        let header = write_filtered_batch(&mut empty, batch.header(), &[], None);
        assert_eq!(header.record_count, 0);
        assert_eq!(header.last_offset(), 104);
        BatchView::parse(&empty)
            .expect("parse")
            .verify_crc()
            .expect("crc");
    }
}
