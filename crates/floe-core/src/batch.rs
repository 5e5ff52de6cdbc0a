//! Kafka RecordBatch v2: the encoding of every batch floe stores.
//!
//! Batches are written with base offset 0 and relative offsets `0..n`, because the
//! sequencer assigns the real base offset only when the segment is committed. A reader
//! adds the committed base offset; a Kafka listener can patch the first eight bytes, which
//! Kafka's own CRC does not cover, and hand the batch through unchanged.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KafkaCompression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    NO_SEQUENCE, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KafkaTimestampType,
};
use serde::{Deserialize, Serialize};

use crate::config::TimestampType;
use crate::record::{Header, Record};

/// Per-batch compression codecs floe writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
    Lz4,
}

impl Compression {
    fn to_kafka(self) -> KafkaCompression {
        match self {
            Self::None => KafkaCompression::None,
            Self::Zstd => KafkaCompression::Zstd,
            Self::Lz4 => KafkaCompression::Lz4,
        }
    }
}

/// Size of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_LEN: usize = 61;
const MAGIC_OFFSET: usize = 16;
const RECORD_COUNT_OFFSET: usize = 57;
const BATCH_LENGTH_OFFSET: usize = 8;

/// Why a batch could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("a batch needs at least one record")]
    Empty,
    #[error("header name {0:?} appears twice in one record")]
    DuplicateHeader(String),
    #[error("batch is {0} bytes, shorter than its 61-byte header")]
    Truncated(usize),
    #[error("batch magic is {0}, expected 2")]
    BadMagic(i8),
    #[error("batch length field says {declared} bytes but {actual} are present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("batch declares {0} records, more than its bytes can hold")]
    BadRecordCount(i32),
    #[error("record offsets in batch are not increasing from zero")]
    OffsetsNotIncreasing,
    #[error("kafka codec: {0}")]
    Codec(String),
}

/// Encodes records as one RecordBatch v2 with relative offsets `0..n`.
pub fn encode_batch(
    records: &[Record],
    compression: Compression,
    timestamp_type: TimestampType,
) -> Result<Bytes, BatchError> {
    encode_records(
        records
            .iter()
            .enumerate()
            .map(|(index, record)| (index as u32, record)),
        records.len(),
        compression,
        timestamp_type,
    )
}

/// Encodes records at the given relative offsets (strictly increasing, gaps allowed) as one
/// RecordBatch v2 whose base offset is the first of them. Compaction writes these: a record
/// keeps its offset when records around it are dropped or batches are merged.
pub fn encode_batch_at(
    records: &[(u32, Record)],
    compression: Compression,
    timestamp_type: TimestampType,
) -> Result<Bytes, BatchError> {
    if records.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        return Err(BatchError::OffsetsNotIncreasing);
    }
    encode_records(
        records.iter().map(|(offset, record)| (*offset, record)),
        records.len(),
        compression,
        timestamp_type,
    )
}

fn encode_records<'a>(
    records: impl Iterator<Item = (u32, &'a Record)>,
    count: usize,
    compression: Compression,
    timestamp_type: TimestampType,
) -> Result<Bytes, BatchError> {
    if count == 0 {
        return Err(BatchError::Empty);
    }
    let kafka_timestamp_type = match timestamp_type {
        TimestampType::CreateTime => KafkaTimestampType::Creation,
        TimestampType::LogAppendTime => KafkaTimestampType::LogAppend,
    };
    let mut estimated = BATCH_HEADER_LEN;
    let mut kafka_records = Vec::with_capacity(count);
    let mut first_offset = None;
    for (offset, record) in records {
        estimated += record.payload_size() + 24;
        let first = *first_offset.get_or_insert(offset);
        kafka_records.push(to_kafka_record(
            offset,
            offset - first,
            record,
            kafka_timestamp_type,
        )?);
    }
    let options = RecordEncodeOptions {
        version: 2,
        compression: compression.to_kafka(),
    };
    let mut buffer = BytesMut::with_capacity(estimated);
    RecordBatchEncoder::encode(&mut buffer, &kafka_records, &options)
        .map_err(|error| BatchError::Codec(error.to_string()))?;
    // The buffer was sized for the records uncompressed, and a compressed batch fills a
    // fraction of it. A segment keeps its batches until they commit while the pipeline
    // counts their length, so a batch much smaller than its allocation is copied out and
    // the allocation given back.
    if buffer.capacity() - buffer.len() > buffer.len() / 8 {
        return Ok(Bytes::copy_from_slice(&buffer));
    }
    Ok(buffer.freeze())
}

fn to_kafka_record(
    offset: u32,
    from_first: u32,
    record: &Record,
    timestamp_type: KafkaTimestampType,
) -> Result<KafkaRecord, BatchError> {
    let mut headers = IndexMap::with_capacity(record.headers.len());
    for header in &record.headers {
        let name = StrBytes::from_string(header.name.clone());
        if headers.insert(name, header.value.clone()).is_some() {
            return Err(BatchError::DuplicateHeader(header.name.clone()));
        }
    }
    Ok(KafkaRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type,
        offset: i64::from(offset),
        // The encoder starts a new batch whenever `offset - sequence` changes; keeping it
        // constant yields one batch whose base sequence is NO_SEQUENCE (-1), as Kafka
        // expects from a producer without idempotence.
        sequence: NO_SEQUENCE.wrapping_add(from_first as i32),
        timestamp: record.timestamp_ms,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    })
}

/// A decoded batch: its records in offset order, and each record's offset relative to the
/// batch's index entry. A producer's batch is dense (`offsets[i] == i`); a compacted one may
/// start later and have gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub records: Vec<Record>,
    pub offsets: Vec<u32>,
}

impl DecodedBatch {
    /// The number of offsets the batch's records reach: one past the last one.
    pub fn offset_span(&self) -> u64 {
        self.offsets.last().map_or(0, |last| u64::from(*last) + 1)
    }
}

/// Decodes one RecordBatch v2 written by [`encode_batch`] or [`encode_batch_at`], checking
/// its framing and Kafka's CRC before trusting any length inside it.
pub fn decode_batch(bytes: &Bytes) -> Result<DecodedBatch, BatchError> {
    check_framing(bytes)?;
    let mut buffer = bytes.clone();
    let record_set = RecordBatchDecoder::decode(&mut buffer)
        .map_err(|error| BatchError::Codec(error.to_string()))?;
    let mut records = Vec::with_capacity(record_set.records.len());
    let mut offsets = Vec::with_capacity(record_set.records.len());
    for kafka_record in record_set.records {
        let offset =
            u32::try_from(kafka_record.offset).map_err(|_| BatchError::OffsetsNotIncreasing)?;
        if offsets.last().is_some_and(|last| *last >= offset) {
            return Err(BatchError::OffsetsNotIncreasing);
        }
        offsets.push(offset);
        records.push(from_kafka_record(kafka_record));
    }
    Ok(DecodedBatch { records, offsets })
}

/// Returns the record count a batch header declares, after checking the framing.
pub fn batch_record_count(bytes: &[u8]) -> Result<u32, BatchError> {
    check_framing(bytes)
}

fn check_framing(bytes: &[u8]) -> Result<u32, BatchError> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated(bytes.len()));
    }
    let magic = bytes[MAGIC_OFFSET] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    let declared = i32::from_be_bytes(read4(bytes, BATCH_LENGTH_OFFSET));
    // batchLength counts the bytes after the length field itself.
    let expected_total = i64::from(declared) + (BATCH_LENGTH_OFFSET as i64 + 4);
    if expected_total != bytes.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared: expected_total,
            actual: bytes.len(),
        });
    }
    let record_count = i32::from_be_bytes(read4(bytes, RECORD_COUNT_OFFSET));
    // Each record takes at least a handful of bytes, even compressed records cannot take
    // fewer than zero; a count beyond the byte length is corrupt or hostile.
    let max_plausible = (bytes.len() - BATCH_HEADER_LEN).saturating_mul(64);
    if record_count < 1 || record_count as usize > max_plausible.max(1) {
        return Err(BatchError::BadRecordCount(record_count));
    }
    Ok(record_count as u32)
}

fn read4(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

fn from_kafka_record(record: KafkaRecord) -> Record {
    let headers = record
        .headers
        .into_iter()
        .map(|(name, value)| Header {
            name: name.to_string(),
            value,
        })
        .collect();
    Record {
        key: record.key,
        value: record.value,
        headers,
        timestamp_ms: record.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(count: usize) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (i % 5 != 4).then(|| Bytes::from(format!("value-{i}-").repeat(i % 7 + 1))),
                headers: vec![
                    Header {
                        name: "trace".into(),
                        value: Some(Bytes::from(format!("t{i}"))),
                    },
                    Header {
                        name: "empty".into(),
                        value: None,
                    },
                ],
                timestamp_ms: 1_700_000_000_000 + i as i64,
            })
            .collect()
    }

    #[test]
    fn round_trips_every_codec() {
        let records = sample(50);
        for compression in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let bytes =
                encode_batch(&records, compression, TimestampType::CreateTime).expect("encode");
            assert_eq!(batch_record_count(&bytes).expect("framing"), 50);
            let decoded = decode_batch(&bytes).expect("decode");
            assert_eq!(decoded.records, records, "{compression:?}");
            assert_eq!(decoded.offsets, (0..50).collect::<Vec<u32>>());
        }
    }

    #[test]
    fn keeps_sparse_offsets() {
        let records: Vec<(u32, Record)> = sample(6)
            .into_iter()
            .zip([3u32, 4, 9, 10, 40, 41])
            .map(|(record, offset)| (offset, record))
            .collect();
        for compression in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let bytes =
                encode_batch_at(&records, compression, TimestampType::CreateTime).expect("encode");
            let decoded = decode_batch(&bytes).expect("decode");
            assert_eq!(decoded.offsets, vec![3, 4, 9, 10, 40, 41]);
            assert_eq!(decoded.offset_span(), 42);
            let expected: Vec<Record> = records.iter().map(|(_, r)| r.clone()).collect();
            assert_eq!(decoded.records, expected);
            // A batch from no idempotent producer, as Kafka's header has it: producer id,
            // epoch and base sequence all -1 (bytes 43..57), however far its records start.
            assert_eq!(&bytes[43..51], &(-1i64).to_be_bytes(), "producer id");
            assert_eq!(&bytes[51..53], &(-1i16).to_be_bytes(), "producer epoch");
            assert_eq!(&bytes[53..57], &(-1i32).to_be_bytes(), "base sequence");
        }
        let unordered = vec![(5, records[0].1.clone()), (5, records[1].1.clone())];
        assert!(matches!(
            encode_batch_at(&unordered, Compression::None, TimestampType::CreateTime),
            Err(BatchError::OffsetsNotIncreasing)
        ));
    }

    /// The framing checks, at their edges: a batch of exactly a header, the most records
    /// its bytes could hold, no records, and lengths and counts past 16 bits.
    #[test]
    fn framing_is_checked_at_its_edges() {
        let bytes =
            encode_batch(&sample(3), Compression::None, TimestampType::CreateTime).expect("encode");
        let with_count = |count: i32| {
            let mut framed = bytes.to_vec();
            framed[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
                .copy_from_slice(&count.to_be_bytes());
            framed
        };
        let most = ((bytes.len() - BATCH_HEADER_LEN) * 64) as i32;
        assert_eq!(
            batch_record_count(&with_count(most)).expect("the most"),
            most as u32
        );
        for count in [most + 1, 0, -1] {
            assert!(
                matches!(
                    batch_record_count(&with_count(count)),
                    Err(BatchError::BadRecordCount(c)) if c == count
                ),
                "{count} records"
            );
        }
        // Only a header (length 49 after the length field), declaring one record.
        let mut header = bytes[..BATCH_HEADER_LEN].to_vec();
        header[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .copy_from_slice(&((BATCH_HEADER_LEN - 12) as i32).to_be_bytes());
        header[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&1i32.to_be_bytes());
        assert_eq!(batch_record_count(&header).expect("a bare header"), 1);
        // A batch over 64 KiB: every byte of its length field counts.
        let large = Record {
            value: Some(Bytes::from(vec![7u8; 70_000])),
            ..sample(1).remove(0)
        };
        let bytes =
            encode_batch(&[large], Compression::None, TimestampType::CreateTime).expect("encode");
        assert!(bytes.len() > 65_536);
        assert_eq!(batch_record_count(&bytes).expect("a large batch"), 1);
    }

    #[test]
    fn refuses_duplicate_header_names() {
        let mut records = sample(1);
        records[0].headers.push(Header {
            name: "trace".into(),
            value: None,
        });
        assert!(matches!(
            encode_batch(&records, Compression::None, TimestampType::CreateTime),
            Err(BatchError::DuplicateHeader(name)) if name == "trace"
        ));
    }

    #[test]
    fn detects_flipped_bits() {
        let bytes =
            encode_batch(&sample(5), Compression::None, TimestampType::CreateTime).expect("encode");
        for position in [20, 30, 61, bytes.len() - 1] {
            let mut corrupted = bytes.to_vec();
            corrupted[position] ^= 0x40;
            assert!(
                decode_batch(&Bytes::from(corrupted)).is_err(),
                "flip at {position}"
            );
        }
    }
}
