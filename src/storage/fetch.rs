//! The result of a read: whole record batches as stored, and iterators
//! over their batches and records.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::record::{BatchView, RecordIter, RecordView};
use crate::storage::segment::Segment;

/// Where a reader's next read starts, so it need not search the index.
#[derive(Clone, Debug)]
pub(crate) struct ReadCursor {
    pub(crate) segment: Arc<Segment>,
    pub(crate) position: u64,
    pub(crate) offset: i64,
}

/// Whole record batches read from one partition, exactly as stored (so
/// they could be handed to a Kafka client unchanged), with the partition's
/// offsets at the time of the read.
///
/// [`Fetch::records`] iterates the records at or after the offset asked
/// for, checking each batch's CRC-32C.
#[derive(Debug, Default)]
pub struct Fetch {
    /// Backing store, reused across reads; only `..filled` is data. Kept at
    /// its largest size so a read does not zero it again.
    buffer: Vec<u8>,
    filled: usize,
    /// The offset after the last batch read.
    next_offset: i64,
    requested_offset: i64,
    log_start_offset: i64,
    high_watermark: i64,
    cursor: Option<ReadCursor>,
}

impl Fetch {
    /// An empty fetch, to be filled by
    /// [`PartitionReader::next_into`](crate::PartitionReader::next_into).
    pub fn new() -> Fetch {
        Fetch::default()
    }

    pub(crate) fn reset(
        &mut self,
        requested_offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    ) {
        self.filled = 0;
        self.next_offset = requested_offset;
        self.requested_offset = requested_offset;
        self.log_start_offset = log_start_offset;
        self.high_watermark = high_watermark;
        self.cursor = None;
    }
    /// A buffer of at least `len` bytes to read into (its contents are
    /// whatever an earlier read left).
    pub(crate) fn buffer_for(&mut self, len: usize) -> &mut [u8] {
        if self.buffer.len() < len {
            self.buffer.resize(len, 0);
        }
        &mut self.buffer[..len]
    }

    /// Marks the first `len` bytes of the buffer as the fetched batches,
    /// which end before `next_offset`.
    pub(crate) fn set_filled(&mut self, len: usize, next_offset: i64) {
        self.filled = len;
        self.next_offset = next_offset.max(self.requested_offset);
    }

    pub(crate) fn set_cursor(&mut self, cursor: ReadCursor) {
        self.cursor = Some(cursor);
    }

    pub(crate) fn cursor(&self) -> Option<&ReadCursor> {
        self.cursor.as_ref()
    }

    /// The stored bytes: zero or more whole record batches.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[..self.filled]
    }

    /// Whether no batch was read (the offset asked for was the high
    /// watermark).
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The offset the read asked for; records before it are skipped.
    pub fn requested_offset(&self) -> i64 {
        self.requested_offset
    }

    /// The partition's log start offset when it was read.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The partition's high watermark when it was read.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The offset to read next: after the last batch, or the offset asked
    /// for if nothing was read.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The batches, in order. Their CRCs are not checked here.
    pub fn batches(&self) -> Batches<'_> {
        Batches { rest: self.bytes() }
    }

    /// The records at or after the requested offset, in order. Each batch's
    /// CRC-32C is checked before its records are returned; control batches
    /// (transaction markers) are skipped.
    pub fn records(&self) -> Records<'_> {
        Records {
            batches: self.batches(),
            current: None,
            requested_offset: self.requested_offset,
            failed: false,
            error: None,
            verify_crc: true,
        }
    }

    /// The records at or after `from`, for a caller that has checked every
    /// batch's CRC already.
    pub(crate) fn records_checked_from(&self, from: i64) -> Records<'_> {
        Records {
            batches: self.batches(),
            current: None,
            requested_offset: from,
            failed: false,
            error: None,
            verify_crc: false,
        }
    }

    /// Checks every batch's CRC-32C.
    pub(crate) fn verify(&self) -> Result<()> {
        for batch in self.batches() {
            batch?.verify_crc()?;
        }
        Ok(())
    }
}

/// Iterator over the batches of a [`Fetch`].
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match BatchView::parse(self.rest) {
            Ok(batch) => {
                self.rest = &self.rest[batch.as_bytes().len()..];
                Some(Ok(batch))
            }
            Err(err) => {
                self.rest = &[];
                Some(Err(err))
            }
        }
    }
}

/// Iterator over the records of a [`Fetch`].
#[derive(Debug)]
pub struct Records<'a> {
    batches: Batches<'a>,
    current: Option<RecordIter<'a>>,
    requested_offset: i64,
    /// Set by the first error: the iteration ends after reporting it.
    failed: bool,
    /// That error, until `next` reports it.
    error: Option<Error>,
    verify_crc: bool,
}

impl Clone for Records<'_> {
    fn clone(&self) -> Self {
        Records {
            batches: self.batches.clone(),
            current: self.current.clone(),
            requested_offset: self.requested_offset,
            failed: self.failed,
            error: self.error.as_ref().map(Error::duplicate),
            verify_crc: self.verify_crc,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(err) = self.error.take() {
            return Some(Err(err));
        }
        self.advance(Ok, |_, err| Some(Err(err)))
    }
}

impl<'a> Records<'a> {
    /// The next record; `None` at the end or at the first error, which
    /// `next` then reports. Hot loops use this: a plain `Option` of the
    /// view stays in registers.
    #[inline]
    pub(crate) fn next_view(&mut self) -> Option<RecordView<'a>> {
        self.advance(
            |record| record,
            |records, err| {
                records.error = Some(err);
                None
            },
        )
    }

    /// Finds the next record and hands it to `found`, or an error to
    /// `failed`. Both entry points build their result right here, where
    /// the compiler can keep the view in registers: wrapping a returned
    /// `Option` afterwards costs a copy through memory per record.
    #[inline(always)]
    fn advance<T>(
        &mut self,
        found: impl FnOnce(RecordView<'a>) -> T,
        failed: impl FnOnce(&mut Self, Error) -> Option<T>,
    ) -> Option<T> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(records) = &mut self.current {
                if let Some(record) = records.next_view() {
                    if record.offset >= self.requested_offset {
                        return Some(found(record));
                    }
                    continue;
                }
                if let Some(err) = records.take_error() {
                    self.failed = true;
                    return failed(self, err);
                }
                self.current = None;
            }
            let batch = match self.batches.next()? {
                Ok(batch) => batch,
                Err(err) => {
                    self.failed = true;
                    return failed(self, err);
                }
            };
            if batch.header().last_offset() < self.requested_offset || batch.header().is_control() {
                continue;
            }
            if self.verify_crc
                && let Err(err) = batch.verify_crc()
            {
                self.failed = true;
                return failed(self, err);
            }
            let mut records = batch.records();
            let header = batch.header();
            let gapless = i64::from(header.record_count) == i64::from(header.last_offset_delta) + 1;
            if gapless && header.base_offset < self.requested_offset {
                // Start inside the batch without decoding what comes before.
                records.skip_records(
                    usize::try_from(self.requested_offset - header.base_offset).unwrap_or(0),
                );
            }
            self.current = Some(records);
        }
    }
}
