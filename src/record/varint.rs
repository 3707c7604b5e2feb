//! Zig-zag variable-length integers, as Kafka's record format uses them
//! (the same encoding as Protocol Buffers' `sint32`/`sint64`).

/// Longest encoding of a 64-bit varint.
pub(crate) const MAX_VARLONG_LEN: usize = 10;
/// Longest encoding of a 32-bit varint.
pub(crate) const MAX_VARINT_LEN: usize = 5;

fn zigzag(value: i64) -> u64 {
    // Bit reinterpretation, not arithmetic: the sign moves to bit 0.
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Appends `value` zig-zag encoded. For values in `i32` range this is
/// byte-for-byte Kafka's 32-bit varint too.
#[inline(always)]
pub(crate) fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag(value);
    if raw < 0x80 {
        // Most lengths and deltas fit one byte.
        buf.push(raw as u8);
        return;
    }
    let mut bytes = [0u8; MAX_VARLONG_LEN];
    let mut len = 0;
    while raw >= 0x80 {
        bytes[len] = (raw as u8) | 0x80;
        raw >>= 7;
        len += 1;
    }
    bytes[len] = raw as u8;
    buf.extend_from_slice(&bytes[..=len]);
}

/// A few varints assembled on the stack, to be copied out at once.
pub(crate) struct VarintBuf {
    bytes: [u8; 5 * MAX_VARLONG_LEN + 1],
    len: usize,
}

impl VarintBuf {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        VarintBuf {
            bytes: [0; 5 * MAX_VARLONG_LEN + 1],
            len: 0,
        }
    }

    /// Appends `value` zig-zag encoded. Holds up to five varlongs and a byte.
    #[inline(always)]
    pub(crate) fn put(&mut self, value: i64) {
        let mut raw = zigzag(value);
        while raw >= 0x80 {
            self.bytes[self.len] = (raw as u8) | 0x80;
            raw >>= 7;
            self.len += 1;
        }
        self.bytes[self.len] = raw as u8;
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn put_byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The encoded length of `value`.
#[inline(always)]
pub(crate) fn varlong_len(value: i64) -> usize {
    let raw = zigzag(value);
    // One byte per started group of 7 bits, zero taking one byte:
    // `(floor(log2) * 9 + 73) / 64` is that count (as in Protocol Buffers)
    // without a division.
    let log2 = 63 - (raw | 1).leading_zeros() as usize;
    (log2 * 9 + 73) / 64
}

/// Decodes a varlong at `*pos`, advancing it. `None` if the bytes run out
/// or the encoding is longer than 10 bytes.
#[inline(always)]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    // One- and two-byte encodings cover lengths and deltas below 8 KiB:
    // nearly every field of a record.
    let first = *buf.get(*pos)?;
    if first & 0x80 == 0 {
        *pos += 1;
        return Some(unzigzag(u64::from(first)));
    }
    if let Some(&second) = buf.get(*pos + 1)
        && second & 0x80 == 0
    {
        *pos += 2;
        return Some(unzigzag(u64::from(first & 0x7f) | (u64::from(second) << 7)));
    }
    read_varlong_slow(buf, pos)
}

#[inline(never)]
fn read_varlong_slow(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..MAX_VARLONG_LEN {
        let byte = *buf.get(*pos + i)?;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Some(unzigzag(raw));
        }
    }
    None
}

/// Decodes a 32-bit varint at `*pos`, advancing it. `None` if the bytes run
/// out, the encoding is longer than 5 bytes, or the value overflows `i32`.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let first = *buf.get(*pos)?;
    if first & 0x80 == 0 {
        *pos += 1;
        return Some(unzigzag(u64::from(first)) as i32);
    }
    if let Some(&second) = buf.get(*pos + 1)
        && second & 0x80 == 0
    {
        *pos += 2;
        // At most 14 bits: always within `i32`.
        return Some(unzigzag(u64::from(first & 0x7f) | (u64::from(second) << 7)) as i32);
    }
    let mut probe = *pos;
    let value = read_varlong(buf, &mut probe)?;
    if probe - *pos > MAX_VARINT_LEN {
        return None;
    }
    let value = i32::try_from(value).ok()?;
    *pos = probe;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings_match_kafka() {
        // From Kafka's ByteUtilsTest: zig-zag varints.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
            (8191, &[0xfe, 0x7f]),
            (-8192, &[0xff, 0x7f]),
            (8192, &[0x80, 0x80, 0x01]),
            (i32::MAX as i64, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN as i64, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf, bytes, "encoding {value}");
            assert_eq!(varlong_len(value), bytes.len());
            let mut pos = 0;
            assert_eq!(read_varlong(&buf, &mut pos), Some(value));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn length_matches_the_encoding_at_every_width() {
        for shift in 0..64 {
            for value in [
                1i64 << shift,
                (1i64 << shift).wrapping_sub(1),
                (1i64 << shift).wrapping_neg(),
            ] {
                let mut buf = Vec::new();
                put_varlong(&mut buf, value);
                assert_eq!(varlong_len(value), buf.len(), "length of {value}");
            }
        }
    }

    #[test]
    fn round_trips_extremes() {
        for value in [i64::MIN, i64::MAX, -1, 0, 1, 1 << 40, -(1 << 40)] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf.len(), varlong_len(value));
            let mut pos = 0;
            assert_eq!(read_varlong(&buf, &mut pos), Some(value));
        }
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        let mut pos = 0;
        assert_eq!(read_varlong(&[0x80, 0x80], &mut pos), None);
        assert_eq!(pos, 0);
        assert_eq!(read_varlong(&[0x80; 11], &mut pos), None);
        let mut buf = Vec::new();
        put_varlong(&mut buf, i64::from(i32::MAX) + 1);
        assert_eq!(read_varint(&buf, &mut pos), None);
    }
}
