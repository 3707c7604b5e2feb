//! Records and Kafka's record batch v2 format.
//!
//! A [`Record`] is what a caller appends: optional key and value bytes,
//! headers and an optional timestamp. Appends encode records into one record
//! batch (magic 2) exactly as Kafka lays it out; reads hand back
//! [`RecordView`]s that borrow from the fetched bytes.

pub(crate) mod batch;
pub(crate) mod encode;
pub(crate) mod rewrite;
pub(crate) mod varint;

pub use batch::{BATCH_HEADER_LEN, BatchHeader, BatchView, RecordIter};

/// One record to append: key and value bytes (each optional), headers and
/// a timestamp.
///
/// ```
/// use brooklet::Record;
///
/// let record = Record::new("order placed")
///     .key("user-7")
///     .header("trace-id", "abc123")
///     .timestamp_ms(1_700_000_000_000);
/// assert_eq!(record.key.as_deref(), Some(&b"user-7"[..]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The key, used for partitioning and compaction.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a tombstone on compacted topics.
    pub value: Option<Vec<u8>>,
    /// Headers, in order; keys may repeat.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` takes the append time.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A record with this value and nothing else.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Record {
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// A record with a key and no value: a tombstone on compacted topics.
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        Record {
            key: Some(key.into()),
            ..Record::default()
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    #[must_use]
    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// A record header: a string key and optional bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value, which Kafka allows to be null.
    pub value: Option<Vec<u8>>,
}

/// A record read back from the log, borrowing its bytes from the fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub value: Option<&'a [u8]>,
    headers: HeadersView<'a>,
}

impl<'a> RecordView<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> HeadersView<'a> {
        self.headers
    }

    /// Copies the record out of the fetch.
    pub fn to_record(&self) -> crate::Result<Record> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for header in self.headers {
            let header = header?;
            let key = std::str::from_utf8(header.key)
                .map_err(|_| crate::Error::InvalidRecord("header key is not UTF-8".into()))?;
            headers.push(Header {
                key: key.to_owned(),
                value: header.value.map(<[u8]>::to_vec),
            });
        }
        Ok(Record {
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers,
            timestamp_ms: Some(self.timestamp_ms),
        })
    }
}

/// The headers of a [`RecordView`], decoded as they are iterated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadersView<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl HeadersView<'_> {
    /// How many headers the record has.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the record has no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One header of a [`RecordView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// The header's name, as bytes (Kafka writes UTF-8).
    pub key: &'a [u8],
    /// The header's value.
    pub value: Option<&'a [u8]>,
}

/// Iterator over [`HeadersView`].
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    remaining: usize,
}

impl<'a> IntoIterator for HeadersView<'a> {
    type Item = crate::Result<HeaderView<'a>>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        HeaderIter {
            bytes: self.bytes,
            pos: 0,
            remaining: self.count,
        }
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = crate::Result<HeaderView<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let key = batch::read_bytes_field(self.bytes, &mut self.pos);
        let value = batch::read_bytes_field(self.bytes, &mut self.pos);
        match (key, value) {
            (Some(Some(key)), Some(value)) => Some(Ok(HeaderView { key, value })),
            _ => {
                self.remaining = 0;
                Some(Err(batch::malformed("bad record header")))
            }
        }
    }
}

impl<'a> HeadersView<'a> {
    pub(crate) fn new(bytes: &'a [u8], count: usize) -> Self {
        HeadersView { bytes, count }
    }

    /// The encoded headers and their count.
    pub(crate) fn raw(&self) -> (&'a [u8], usize) {
        (self.bytes, self.count)
    }
}

impl<'a> RecordView<'a> {
    pub(crate) fn new(
        offset: i64,
        timestamp_ms: i64,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        headers: HeadersView<'a>,
    ) -> Self {
        RecordView {
            offset,
            timestamp_ms,
            key,
            value,
            headers,
        }
    }
}
