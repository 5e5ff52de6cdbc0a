//! The segment object: many partitions' batches in one immutable object.
//!
//! ```text
//! header   16 B   magic "FLOESEG\0" · version u16 · flags u16 · header length u32
//! batches         Kafka RecordBatch v2, back to back
//! footer          entry count u32 · entries (48 B each)
//! trailer  16 B   footer length u32 · footer CRC32C u32 · magic "FLOEEND\0"
//! ```
//! All integers are big-endian. `docs/segment-format.md` is the full specification, with a
//! test vector that `tests::matches_documented_test_vector` checks.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::batch::{self, BatchError, DecodedBatch};
use crate::ids::TopicId;

pub const SEGMENT_MAGIC: [u8; 8] = *b"FLOESEG\0";
pub const TRAILER_MAGIC: [u8; 8] = *b"FLOEEND\0";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
pub const TRAILER_LEN: usize = 16;
pub const ENTRY_LEN: usize = 48;

/// One batch's line in the footer index, and what the sequencer records for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEntry {
    pub topic_id: TopicId,
    pub partition: u32,
    /// Byte position of the batch in the segment object.
    pub byte_offset: u64,
    pub length: u32,
    /// The offsets the batch covers. For a producer's batch this is its record count; a
    /// compacted batch may hold fewer records than the offsets it covers.
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    /// CRC32C of the batch bytes.
    pub crc32c: u32,
}

/// Why segment bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment is {0} bytes, too short for header and trailer")]
    TooShort(usize),
    #[error("segment header magic is wrong")]
    BadHeaderMagic,
    #[error("segment trailer magic is wrong")]
    BadTrailerMagic,
    #[error("segment format version {0} is not supported")]
    UnsupportedVersion(u16),
    #[error("segment footer length {0} does not fit the object")]
    BadFooterLength(u64),
    #[error("segment footer crc mismatch")]
    FooterCrcMismatch,
    #[error("segment footer holds {count} entries but {bytes} bytes")]
    BadEntryCount { count: u64, bytes: usize },
    #[error("batch {index} range {offset}+{length} lies outside the batch area")]
    BatchOutOfBounds {
        index: usize,
        offset: u64,
        length: u32,
    },
    #[error("batch crc mismatch: expected {expected:#010x}, found {actual:#010x}")]
    BatchCrcMismatch { expected: u32, actual: u32 },
    #[error("batch {index}: {source}")]
    Batch {
        index: usize,
        #[source]
        source: BatchError,
    },
}

/// Accumulates batches into one segment object. The batches are kept as they were
/// encoded, not copied into one buffer: a finished segment is its parts (header, the
/// batches, footer and trailer; small neighbours joined), which an upload writes in order
/// ([`SegmentBuilder::finish_parts`]).
#[derive(Debug)]
pub struct SegmentBuilder {
    parts: Vec<Bytes>,
    /// Bytes in `parts`: the header and the batches.
    len: usize,
    entries: Vec<BatchEntry>,
}

impl Default for SegmentBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentBuilder {
    pub fn new() -> Self {
        let mut header = BytesMut::with_capacity(HEADER_LEN);
        header.put_slice(&SEGMENT_MAGIC);
        header.put_u16(FORMAT_VERSION);
        header.put_u16(0);
        header.put_u32(HEADER_LEN as u32);
        Self {
            parts: vec![header.freeze()],
            len: HEADER_LEN,
            entries: Vec::new(),
        }
    }

    /// Appends an encoded batch and returns its footer entry. The segment keeps `batch`
    /// itself (a reference count, not a copy).
    pub fn append_batch(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        batch: Bytes,
        record_count: u32,
        first_timestamp: i64,
        max_timestamp: i64,
    ) -> BatchEntry {
        let entry = BatchEntry {
            topic_id,
            partition,
            byte_offset: self.len as u64,
            length: u32::try_from(batch.len()).expect("batches are bounded far below 4 GiB"),
            record_count,
            first_timestamp,
            max_timestamp,
            crc32c: crc32c::crc32c(&batch),
        };
        self.len += batch.len();
        if !batch.is_empty() {
            self.parts.push(batch);
        }
        self.entries.push(entry);
        entry
    }

    /// Bytes written so far, before the footer.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[BatchEntry] {
        &self.entries
    }

    /// Writes footer and trailer and returns the object's bytes, joined into one buffer
    /// (a copy), with the index.
    pub fn finish(self) -> (Bytes, Vec<BatchEntry>) {
        let (parts, entries) = self.finish_parts();
        let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in &parts {
            joined.put_slice(part);
        }
        (joined.freeze(), entries)
    }

    /// Writes footer and trailer and returns the object as its parts, in order, with the
    /// index. Batches of 16 KiB or more are the ones appended, not copies; smaller parts
    /// are joined with their small neighbours.
    pub fn finish_parts(mut self) -> (Vec<Bytes>, Vec<BatchEntry>) {
        let mut footer = BytesMut::with_capacity(4 + ENTRY_LEN * self.entries.len() + TRAILER_LEN);
        footer.put_u32(self.entries.len() as u32);
        for entry in &self.entries {
            footer.put_u64(entry.topic_id.0);
            footer.put_u32(entry.partition);
            footer.put_u64(entry.byte_offset);
            footer.put_u32(entry.length);
            footer.put_u32(entry.record_count);
            footer.put_i64(entry.first_timestamp);
            footer.put_i64(entry.max_timestamp);
            footer.put_u32(entry.crc32c);
        }
        let footer_len = footer.len();
        let footer_crc = crc32c::crc32c(&footer);
        footer.put_u32(footer_len as u32);
        footer.put_u32(footer_crc);
        footer.put_slice(&TRAILER_MAGIC);
        self.parts.push(footer.freeze());
        (coalesce_small_parts(self.parts), self.entries)
    }
}

/// Parts under this size are joined with their small neighbours, so that a segment of many
/// tiny batches is not written as thousands of tiny writes.
const SMALL_PART: usize = 16 * 1024;

/// Joins runs of parts under [`SMALL_PART`] (copying only those); larger parts stay as
/// they are.
fn coalesce_small_parts(parts: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(parts.len());
    let mut run = BytesMut::new();
    for part in parts {
        if part.len() < SMALL_PART {
            run.extend_from_slice(&part);
            if run.len() >= SMALL_PART {
                out.push(std::mem::take(&mut run).freeze());
            }
        } else {
            if !run.is_empty() {
                out.push(std::mem::take(&mut run).freeze());
            }
            out.push(part);
        }
    }
    if !run.is_empty() {
        out.push(run.freeze());
    }
    out
}

/// Reads and checks a whole segment's header, footer and trailer, and returns its index.
/// Every batch range is checked to lie between header and footer.
pub fn decode_footer(segment: &[u8]) -> Result<Vec<BatchEntry>, SegmentError> {
    if segment.len() < HEADER_LEN + TRAILER_LEN + 4 {
        return Err(SegmentError::TooShort(segment.len()));
    }
    if segment[..8] != SEGMENT_MAGIC {
        return Err(SegmentError::BadHeaderMagic);
    }
    let version = u16::from_be_bytes([segment[8], segment[9]]);
    if version != FORMAT_VERSION {
        return Err(SegmentError::UnsupportedVersion(version));
    }
    let trailer = &segment[segment.len() - TRAILER_LEN..];
    if trailer[8..] != TRAILER_MAGIC {
        return Err(SegmentError::BadTrailerMagic);
    }
    let footer_len = u64::from(read_u32(trailer, 0));
    let footer_crc = read_u32(trailer, 4);
    let batch_area_end = (segment.len() - TRAILER_LEN) as u64;
    if footer_len < 4 || footer_len > batch_area_end - HEADER_LEN as u64 {
        return Err(SegmentError::BadFooterLength(footer_len));
    }
    let footer_start = (batch_area_end - footer_len) as usize;
    let footer = &segment[footer_start..batch_area_end as usize];
    if crc32c::crc32c(footer) != footer_crc {
        return Err(SegmentError::FooterCrcMismatch);
    }
    let count = u64::from(read_u32(footer, 0));
    let entry_bytes = &footer[4..];
    if count.checked_mul(ENTRY_LEN as u64) != Some(entry_bytes.len() as u64) {
        return Err(SegmentError::BadEntryCount {
            count,
            bytes: entry_bytes.len(),
        });
    }
    let entries: Vec<BatchEntry> = entry_bytes
        .chunks_exact(ENTRY_LEN)
        .map(parse_entry)
        .collect();
    for (index, entry) in entries.iter().enumerate() {
        let end = entry.byte_offset.checked_add(u64::from(entry.length));
        let inside = entry.byte_offset >= HEADER_LEN as u64
            && end.is_some_and(|end| end <= footer_start as u64);
        if !inside {
            return Err(SegmentError::BatchOutOfBounds {
                index,
                offset: entry.byte_offset,
                length: entry.length,
            });
        }
    }
    Ok(entries)
}

fn parse_entry(bytes: &[u8]) -> BatchEntry {
    BatchEntry {
        topic_id: TopicId(read_u64(bytes, 0)),
        partition: read_u32(bytes, 8),
        byte_offset: read_u64(bytes, 12),
        length: read_u32(bytes, 20),
        record_count: read_u32(bytes, 24),
        first_timestamp: read_u64(bytes, 28) as i64,
        max_timestamp: read_u64(bytes, 36) as i64,
        crc32c: read_u32(bytes, 44),
    }
}

/// Checks a batch's bytes against the CRC32C its index entry recorded.
pub fn verify_batch(bytes: &[u8], expected_crc: u32) -> Result<(), SegmentError> {
    let actual = crc32c::crc32c(bytes);
    if actual != expected_crc {
        return Err(SegmentError::BatchCrcMismatch {
            expected: expected_crc,
            actual,
        });
    }
    Ok(())
}

/// Decodes every batch of a segment, verifying each CRC.
pub fn decode_segment(segment: &Bytes) -> Result<Vec<(BatchEntry, DecodedBatch)>, SegmentError> {
    let entries = decode_footer(segment)?;
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let start = entry.byte_offset as usize;
            let bytes = segment.slice(start..start + entry.length as usize);
            verify_batch(&bytes, entry.crc32c)?;
            let decoded = batch::decode_batch(&bytes)
                .map_err(|source| SegmentError::Batch { index, source })?;
            if decoded.offset_span() > u64::from(entry.record_count)
                || decoded.records.len() > entry.record_count as usize
            {
                return Err(SegmentError::Batch {
                    index,
                    source: BatchError::BadRecordCount(entry.record_count as i32),
                });
            }
            Ok((entry, decoded))
        })
        .collect()
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(array)
}

#[cfg(test)]
mod tests;
