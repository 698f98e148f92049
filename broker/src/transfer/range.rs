//! Byte ranges of a chunked file: which chunks cover a range and where to cut them. Pure arithmetic.

use super::StoreError;

/// How many chunks of `chunk_size` bytes hold a file of `total_size` bytes (0 for an empty file).
pub fn chunk_count(total_size: u64, chunk_size: u64) -> u64 {
    if chunk_size == 0 {
        return 0;
    }
    total_size.div_ceil(chunk_size)
}

/// The part of one chunk a range needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub index: u64,
    /// Bytes the stored chunk must have: `chunk_size`, or what is left for the last chunk.
    pub chunk_len: u64,
    /// First byte of the chunk to send.
    pub from: u64,
    /// One past the last byte of the chunk to send.
    pub to: u64,
}

/// The chunks covering `start..=end` of a file, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RangePlan {
    chunk_size: u64,
    total_size: u64,
    start: u64,
    end: u64,
    next: u64,
}

impl RangePlan {
    /// Plans bytes `start..=end_inclusive` of a file of `total_size` bytes stored in chunks of
    /// `chunk_size`. As in HTTP (RFC 9110 §14.1.2), an end past the last byte means the last byte;
    /// a start past it, an empty file or a start after the end cannot be satisfied.
    pub(crate) fn new(
        chunk_size: u64,
        total_size: u64,
        start: u64,
        end_inclusive: u64,
    ) -> Result<Self, StoreError> {
        if chunk_size == 0 {
            return Err(StoreError::InvalidLayout(
                "chunk size is 0; pass the chunk size the transfer was stored with".into(),
            ));
        }
        if total_size == 0 || start >= total_size || start > end_inclusive {
            return Err(StoreError::RangeNotSatisfiable {
                start,
                end: end_inclusive,
                total: total_size,
            });
        }
        let end = end_inclusive.min(total_size - 1);
        Ok(Self {
            chunk_size,
            total_size,
            start,
            end,
            next: start / chunk_size,
        })
    }

    /// The first and last byte the plan covers, after clamping.
    pub(crate) fn bounds(&self) -> (u64, u64) {
        (self.start, self.end)
    }
}

impl Iterator for RangePlan {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        let index = self.next;
        let base = index.checked_mul(self.chunk_size)?;
        if base > self.end {
            return None;
        }
        self.next += 1;
        let chunk_len = self.chunk_size.min(self.total_size - base);
        let from = self.start.saturating_sub(base);
        let to = (self.end - base + 1).min(chunk_len);
        Some(Piece {
            index,
            chunk_len,
            from,
            to,
        })
    }
}
