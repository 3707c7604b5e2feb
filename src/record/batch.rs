//! Kafka's record batch v2 (magic 2): header parsing, CRC-32C checks and
//! record decoding (the encoder is in `encode.rs`). The byte layout is drawn in `docs/format.md`.

use std::path::PathBuf;

use crate::config::TimestampType;
use crate::error::{Error, Result};
use crate::record::varint::{read_varint, read_varlong};
use crate::record::{HeadersView, RecordView};

/// Length of the fixed record batch header, up to and including the record
/// count.
pub const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` and `batchLength`: the bytes of a batch not counted in its
/// `batchLength`.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// The only magic value brooklet reads and writes.
pub(crate) const MAGIC_V2: i8 = 2;
/// Producer id of a batch written without idempotence.
pub(crate) const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a batch written without idempotence.
pub(crate) const NO_PRODUCER_EPOCH: i16 = -1;
/// Base sequence of a batch written without idempotence.
pub(crate) const NO_SEQUENCE: i32 = -1;

// Byte positions of the header fields.
pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;
const _: () = assert!(RECORDS_COUNT_AT + 4 == BATCH_HEADER_LEN);
const _: () = assert!(BATCH_HEADER_LEN == 61);

const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const LOG_APPEND_TIME_FLAG: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

/// The fixed header of a record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after this field to the end of the batch.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Format version; always 2.
    pub magic: i8,
    /// CRC-32C of everything from `attributes` to the end.
    pub crc: u32,
    /// Compression (bits 0–2), timestamp type (bit 3), transactional
    /// (bit 4), control (bit 5).
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time with
    /// `LogAppendTime`).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(raw)
}

fn be_i32(bytes: &[u8], at: usize) -> i32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(raw)
}

fn be_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` and checks what can be
    /// checked without the rest of the batch: the magic, a plausible length
    /// and a plausible record count.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader> {
        Self::parse_raw(bytes).map_err(malformed)
    }

    pub(crate) fn parse_raw(bytes: &[u8]) -> std::result::Result<BatchHeader, &'static str> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err("truncated record batch header");
        }
        let header = BatchHeader {
            base_offset: be_i64(bytes, BASE_OFFSET_AT),
            batch_length: be_i32(bytes, BATCH_LENGTH_AT),
            partition_leader_epoch: be_i32(bytes, PARTITION_LEADER_EPOCH_AT),
            magic: bytes[MAGIC_AT] as i8,
            crc: be_i32(bytes, CRC_AT) as u32,
            attributes: be_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: be_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: be_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(bytes, BASE_SEQUENCE_AT),
            record_count: be_i32(bytes, RECORDS_COUNT_AT),
        };
        if header.magic != MAGIC_V2 {
            return Err("record batch magic is not 2");
        }
        if header.batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err("record batch length is shorter than its header");
        }
        if header.base_offset < 0 || header.last_offset_delta < 0 || header.record_count < 0 {
            return Err("negative offset or record count in record batch header");
        }
        if header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .is_none()
        {
            return Err("record batch last offset overflows");
        }
        Ok(header)
    }

    /// The whole batch's size in bytes, header included.
    pub fn size_bytes(&self) -> usize {
        // batch_length is checked non-negative by `parse`.
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the last record (kept by compaction even if that record
    /// was removed).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Where the timestamps come from.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & LOG_APPEND_TIME_FLAG != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// When tombstones in this batch may be removed by compaction: set by
    /// the first compaction pass that kept them (Kafka's KIP-534 delete
    /// horizon, stored in the base timestamp).
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & crate::record::rewrite::DELETE_HORIZON_FLAG != 0)
            .then_some(self.base_timestamp)
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }
}

pub(crate) fn malformed(reason: &str) -> Error {
    Error::Corrupt {
        path: PathBuf::from("<record batch>"),
        reason: reason.to_owned(),
    }
}

/// One whole record batch, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Takes the batch at the start of `bytes` (which may continue with
    /// more batches). Checks the header; the CRC is checked by
    /// [`BatchView::verify_crc`].
    pub fn parse(bytes: &'a [u8]) -> Result<BatchView<'a>> {
        let header = BatchHeader::parse(bytes)?;
        let size = header.size_bytes();
        if bytes.len() < size {
            return Err(malformed("truncated record batch"));
        }
        Ok(BatchView {
            header,
            bytes: &bytes[..size],
        })
    }

    /// The batch's header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, exactly as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Checks the stored CRC-32C against the batch's contents.
    pub fn verify_crc(&self) -> Result<()> {
        let actual = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        if actual == self.header.crc {
            Ok(())
        } else {
            Err(Error::ChecksumMismatch {
                expected: self.header.crc,
                actual,
            })
        }
    }

    /// The batch's records, decoded as they are iterated.
    pub fn records(&self) -> RecordIter<'a> {
        let header = &self.header;
        RecordIter {
            bytes: &self.bytes[BATCH_HEADER_LEN..],
            pos: 0,
            remaining: usize::try_from(header.record_count).unwrap_or(0),
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            log_append_time: (header.timestamp_type() == TimestampType::LogAppendTime)
                .then_some(header.max_timestamp),
            unsupported_compression: (header.compression() != 0).then_some(header.compression()),
            malformed: false,
        }
    }
}

/// Iterator over the records of one batch.
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    remaining: usize,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    unsupported_compression: Option<u8>,
    malformed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_view() {
            Some(record) => Some(Ok(record)),
            None => self.take_error().map(Err),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<'a> RecordIter<'a> {
    /// The next record; `None` at the end of the batch or at a record that
    /// can not be decoded, which [`RecordIter::take_error`] then reports.
    /// Hot loops use this rather than `next`: a plain `Option` of the view
    /// stays in registers where the nested `Option<Result<..>>` is copied
    /// through memory.
    #[inline(always)]
    pub(crate) fn next_view(&mut self) -> Option<RecordView<'a>> {
        if self.remaining == 0 || self.unsupported_compression.is_some() {
            return None;
        }
        let record = self.decode_next();
        self.remaining = if record.is_some() {
            self.remaining - 1
        } else {
            0
        };
        if record.is_none() {
            self.malformed = true;
        }
        record
    }

    /// The error that ended the iteration early, once.
    #[cold]
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        if let Some(codec) = self.unsupported_compression.take() {
            self.remaining = 0;
            return Some(Error::UnsupportedCompression(codec));
        }
        std::mem::take(&mut self.malformed).then(|| malformed("malformed record in batch"))
    }

    /// Steps over the next `count` records reading only their lengths: for
    /// a read that starts inside a batch whose offsets have no gaps.
    pub(crate) fn skip_records(&mut self, count: usize) {
        if self.unsupported_compression.is_some() {
            return;
        }
        for _ in 0..count.min(self.remaining) {
            let mut pos = self.pos;
            let length = read_varint(self.bytes, &mut pos).and_then(|l| usize::try_from(l).ok());
            match length
                .and_then(|l| pos.checked_add(l))
                .filter(|&end| end <= self.bytes.len())
            {
                Some(end) => {
                    self.pos = end;
                    self.remaining -= 1;
                }
                // Leave the malformed record for `next` to report.
                None => return,
            }
        }
    }

    #[inline(always)]
    fn decode_next(&mut self) -> Option<RecordView<'a>> {
        let length = usize::try_from(read_varint(self.bytes, &mut self.pos)?).ok()?;
        let end = self.pos.checked_add(length)?;
        let body = self.bytes.get(..end)?;
        let mut pos = self.pos + 1; // The record attributes byte is unused.
        let timestamp_delta = read_varlong(body, &mut pos)?;
        let offset_delta = read_varint(body, &mut pos)?;
        let key = read_bytes_field(body, &mut pos)?;
        let value = read_bytes_field(body, &mut pos)?;
        let header_count = usize::try_from(read_varint(body, &mut pos)?).ok()?;
        if pos > end {
            return None;
        }
        let headers = HeadersView::new(&body[pos..end], header_count);
        self.pos = end;
        let timestamp_ms = match self.log_append_time {
            Some(append_time) => append_time,
            None => self.base_timestamp.checked_add(timestamp_delta)?,
        };
        let offset = self.base_offset.checked_add(i64::from(offset_delta))?;
        Some(RecordView::new(offset, timestamp_ms, key, value, headers))
    }
}

/// Reads a length-prefixed byte field: `Some(None)` for length -1 (null),
/// `None` if malformed.
#[inline]
pub(crate) fn read_bytes_field<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<Option<&'a [u8]>> {
    let length = read_varint(bytes, pos)?;
    if length == -1 {
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    let field = bytes.get(*pos..pos.checked_add(length)?)?;
    *pos += length;
    Some(Some(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::record::encode::{BatchSpec, encode_batch, encoded_size, size_lower_bound};

    fn encode(records: &[Record], spec: &BatchSpec) -> Vec<u8> {
        let mut out = Vec::new();
        let header = encode_batch(&mut out, records, spec).expect("valid records");
        assert_eq!(header.size_bytes(), out.len());
        assert_eq!(encoded_size(records, spec), out.len());
        assert!(size_lower_bound(records) <= out.len());
        assert_eq!(BatchHeader::parse(&out).expect("parses"), header);
        out
    }

    #[test]
    fn round_trips_records() {
        let records = vec![
            Record::new("v1").key("k1").timestamp_ms(1000),
            Record::default().timestamp_ms(999),
            Record::new(vec![0u8; 300])
                .header("h", "x")
                .timestamp_ms(2000),
        ];
        let spec = BatchSpec {
            base_offset: 42,
            ..BatchSpec::plain(TimestampType::CreateTime, 5)
        };
        let bytes = encode(&records, &spec);
        let batch = BatchView::parse(&bytes).expect("parses");
        batch.verify_crc().expect("crc");
        assert_eq!(batch.header().base_offset, 42);
        assert_eq!(batch.header().last_offset(), 44);
        assert_eq!(batch.header().max_timestamp, 2000);
        let decoded: Vec<_> = batch.records().map(|r| r.expect("record")).collect();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0].key, Some(&b"k1"[..]));
        assert_eq!(decoded[1].offset, 43);
        assert_eq!(decoded[1].timestamp_ms, 999);
        assert_eq!(decoded[1].value, None);
        assert_eq!(decoded[2].to_record().expect("owned"), records[2]);
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() {
        let records = vec![
            Record::new("a").timestamp_ms(1),
            Record::new("b").timestamp_ms(2),
        ];
        let bytes = encode(
            &records,
            &BatchSpec::plain(TimestampType::LogAppendTime, 777),
        );
        let batch = BatchView::parse(&bytes).expect("parses");
        assert_eq!(
            batch.header().timestamp_type(),
            TimestampType::LogAppendTime
        );
        assert!(
            batch
                .records()
                .all(|r| r.expect("record").timestamp_ms == 777)
        );
    }

    #[test]
    fn detects_flipped_bits_and_truncation() {
        let bytes = encode(
            &[Record::new("value").key("key")],
            &BatchSpec::plain(TimestampType::CreateTime, 1),
        );
        for i in ATTRIBUTES_AT..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let rejected = match BatchView::parse(&bad) {
                Err(_) => true,
                Ok(batch) => batch.verify_crc().is_err(),
            };
            assert!(rejected, "flip at byte {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(
                BatchView::parse(&bytes[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn garbage_records_are_errors_not_panics() {
        let mut bytes = encode(
            &[Record::new("value").key("key")],
            &BatchSpec::plain(TimestampType::CreateTime, 1),
        );
        for i in BATCH_HEADER_LEN..bytes.len() {
            bytes[i] = 0xff;
            let batch = BatchView::parse(&bytes).expect("header intact");
            let _ = batch.records().collect::<Vec<_>>();
        }
    }

    #[test]
    fn rejects_empty_batches_and_negative_timestamps() {
        let spec = BatchSpec::plain(TimestampType::CreateTime, 1);
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            encode_batch(&mut out, &[], &spec),
            Err(Error::InvalidRecord(_))
        ));
        let bad = [Record::new("ok"), Record::new("x").timestamp_ms(-5)];
        assert!(matches!(
            encode_batch(&mut out, &bad, &spec),
            Err(Error::InvalidRecord(_))
        ));
        assert_eq!(
            out,
            [1, 2, 3],
            "a failed encode leaves the buffer as it was"
        );
    }
}
