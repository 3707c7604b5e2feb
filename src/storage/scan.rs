//! Reading a segment file batch by batch, checking each: the scan behind
//! recovery, index rebuilds and the search for a clean shutdown's log end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::record::{BATCH_HEADER_LEN, BatchHeader, BatchView};

/// How much of a segment is read per positional read while scanning.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Bytes from the start of the file up to the end of the last valid
    /// batch.
    pub(crate) valid_bytes: u64,
    /// The offset after the last valid batch, if there was one.
    pub(crate) next_offset: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) problem: Option<String>,
}

/// Reads the batches of `file` from `start` to `file_len`, checking each
/// batch's header, size, CRC-32C and that offsets increase (by exactly one
/// batch after another with `contiguous`) and stay within what a segment
/// based at `base_offset` can index. Calls `on_batch` with
/// each valid batch's position and header; stops at the first bad batch.
pub(crate) fn scan_batches(
    file: &File,
    file_len: u64,
    start: u64,
    base_offset: i64,
    mut next_expected: i64,
    contiguous: bool,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> io::Result<ScanOutcome> {
    let mut outcome = ScanOutcome {
        valid_bytes: start,
        ..ScanOutcome::default()
    };
    let mut buf: Vec<u8> = Vec::new();
    // File position of buf[0].
    let mut buf_at = start;
    let mut pos = start;
    while pos < file_len {
        let remaining = file_len - pos;
        if remaining < BATCH_HEADER_LEN as u64 {
            outcome.problem = Some(format!(
                "{remaining} trailing bytes at {pos} are too short for a batch"
            ));
            break;
        }
        if !ensure_buffered(file, &mut buf, &mut buf_at, pos, BATCH_HEADER_LEN, file_len)? {
            outcome.problem = Some(format!("short read at {pos}"));
            break;
        }
        let offset_in_buf = (pos - buf_at) as usize;
        let header = match BatchHeader::parse_raw(&buf[offset_in_buf..]) {
            Ok(header) => header,
            Err(reason) => {
                outcome.problem = Some(format!("{reason} at position {pos}"));
                break;
            }
        };
        let size = header.size_bytes();
        if size as u64 > remaining {
            outcome.problem = Some(format!(
                "batch at {pos} claims {size} bytes; only {remaining} remain"
            ));
            break;
        }
        if !ensure_buffered(file, &mut buf, &mut buf_at, pos, size, file_len)? {
            outcome.problem = Some(format!("short read at {pos}"));
            break;
        }
        let offset_in_buf = (pos - buf_at) as usize;
        let batch = match BatchView::parse(&buf[offset_in_buf..offset_in_buf + size]) {
            Ok(batch) => batch,
            Err(err) => {
                outcome.problem = Some(format!("{err} at position {pos}"));
                break;
            }
        };
        if let Err(err) = batch.verify_crc() {
            outcome.problem = Some(format!("{err} at position {pos}"));
            break;
        }
        // The base offset lies outside the CRC: where offsets must be
        // contiguous (no compaction), a batch that does not start right
        // after the previous one is damaged, not just out of order.
        let gap = contiguous && header.base_offset != next_expected;
        if gap || header.base_offset < next_expected || header.base_offset < base_offset {
            outcome.problem = Some(format!(
                "batch at {pos} starts at offset {} but offsets up to {} were already used",
                header.base_offset,
                next_expected - 1
            ));
            break;
        }
        if header.last_offset() - base_offset > i64::from(i32::MAX) {
            outcome.problem = Some(format!(
                "batch at {pos} is beyond what the segment can index"
            ));
            break;
        }
        on_batch(pos, &header);
        next_expected = header.last_offset() + 1;
        pos += size as u64;
        outcome.valid_bytes = pos;
        outcome.next_offset = Some(next_expected);
    }
    Ok(outcome)
}

/// Makes `buf` hold `len` bytes of the file from `pos`, reading a new chunk
/// if needed. Returns false if the file ended early (it shrank under us).
fn ensure_buffered(
    file: &File,
    buf: &mut Vec<u8>,
    buf_at: &mut u64,
    pos: u64,
    len: usize,
    file_len: u64,
) -> io::Result<bool> {
    let have_from = pos >= *buf_at && pos + len as u64 <= *buf_at + buf.len() as u64;
    if have_from {
        return Ok(true);
    }
    let want = len.max(SCAN_CHUNK_BYTES).min((file_len - pos) as usize);
    buf.resize(want, 0);
    let mut filled = 0;
    while filled < want {
        let n = file.read_at(&mut buf[filled..], pos + filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    *buf_at = pos;
    Ok(filled >= len)
}
