//! What [`Consumer::poll`](crate::Consumer::poll) returns: records that
//! borrow their bytes from the fetched batches, decoded once.

use std::ops::Range;
use std::sync::Arc;

use crate::error::Result;
use crate::record::HeadersView;
use crate::storage::Fetch;

/// Where one record's parts lie in its fetch buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers: (usize, usize, usize),
}

/// A fetch and the records decoded from it.
#[derive(Debug)]
pub(crate) struct FetchedRecords {
    pub(crate) fetch: Fetch,
    pub(crate) spans: Vec<Span>,
}

fn range_in(base: &[u8], part: &[u8]) -> (usize, usize) {
    // Both point into the same buffer: the difference of the addresses is
    // the part's position in it.
    (part.as_ptr() as usize - base.as_ptr() as usize, part.len())
}

impl FetchedRecords {
    /// Checks every batch's CRC and decodes the records at or after the
    /// fetch's requested offset.
    pub(crate) fn decode(fetch: Fetch, mut spans: Vec<Span>) -> Result<FetchedRecords> {
        spans.clear();
        let expected: usize = fetch
            .batches()
            .flatten()
            .map(|b| usize::try_from(b.header().record_count).unwrap_or(0))
            .sum();
        spans.reserve(expected);
        let base = fetch.bytes();
        for record in fetch.records() {
            let record = record?;
            let (headers, count) = record.headers().raw();
            let (start, len) = range_in(base, headers);
            spans.push(Span {
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key.map(|k| range_in(base, k)),
                value: record.value.map(|v| range_in(base, v)),
                headers: (start, len, count),
            });
        }
        Ok(FetchedRecords { fetch, spans })
    }

    fn view<'a>(&'a self, topic: &'a str, partition: u32, span: &Span) -> ConsumerRecord<'a> {
        let bytes = self.fetch.bytes();
        let slice = |(start, len): (usize, usize)| &bytes[start..start + len];
        ConsumerRecord {
            topic,
            partition,
            offset: span.offset,
            timestamp_ms: span.timestamp_ms,
            key: span.key.map(slice),
            value: span.value.map(slice),
            headers: HeadersView::new(slice((span.headers.0, span.headers.1)), span.headers.2),
        }
    }
}

/// One record returned by a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerRecord<'a> {
    /// The record's topic.
    pub topic: &'a str,
    /// The record's partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub value: Option<&'a [u8]>,
    headers: HeadersView<'a>,
}

impl<'a> ConsumerRecord<'a> {
    /// The record's headers.
    pub fn headers(&self) -> HeadersView<'a> {
        self.headers
    }
}

/// The records of one partition in a poll.
#[derive(Debug)]
pub(crate) struct PartitionRecords {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) fetched: Arc<FetchedRecords>,
    pub(crate) range: Range<usize>,
}

/// The records returned by one poll: in offset order within each
/// partition, partitions one after another.
#[derive(Debug, Default)]
pub struct ConsumerRecords {
    pub(crate) parts: Vec<PartitionRecords>,
}

impl ConsumerRecords {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.range.len()).sum()
    }

    /// Whether the poll returned nothing.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.range.is_empty())
    }

    /// Every record, partition by partition.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            parts: &self.parts,
            part: 0,
            next: self.parts.first().map_or(0, |p| p.range.start),
        }
    }

    /// The records of one partition.
    pub fn records(&self, topic: &str, partition: u32) -> impl Iterator<Item = ConsumerRecord<'_>> {
        self.iter()
            .filter(move |r| r.topic == topic && r.partition == partition)
    }
}

impl<'a> IntoIterator for &'a ConsumerRecords {
    type Item = ConsumerRecord<'a>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the records of a [`ConsumerRecords`].
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    parts: &'a [PartitionRecords],
    part: usize,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ConsumerRecord<'a>;

    fn next(&mut self) -> Option<ConsumerRecord<'a>> {
        loop {
            let part = self.parts.get(self.part)?;
            if self.next < part.range.end {
                let span = &part.fetched.spans[self.next];
                self.next += 1;
                return Some(part.fetched.view(&part.topic, part.partition, span));
            }
            self.part += 1;
            self.next = self.parts.get(self.part).map_or(0, |p| p.range.start);
        }
    }
}
