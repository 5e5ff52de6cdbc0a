use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::batch::{Compression, encode_batch};
use crate::config::TimestampType;
use crate::record::{Header, Record};

fn record(
    key: Option<&str>,
    value: Option<&str>,
    headers: &[(&str, &str)],
    timestamp_ms: i64,
) -> Record {
    Record {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: headers
            .iter()
            .map(|(name, value)| Header {
                name: (*name).into(),
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
            })
            .collect(),
        timestamp_ms,
    }
}

/// The segment of `docs/segment-format.md`'s test vector: topic 7 partition 0 with two
/// records, then topic 7 partition 2 with a tombstone, uncompressed.
fn test_vector_segment() -> (Bytes, Vec<BatchEntry>) {
    let first = [
        record(Some("k1"), Some("hello"), &[("h", "v")], 1_700_000_000_000),
        record(None, Some("world"), &[], 1_700_000_000_005),
    ];
    let second = [record(Some("k2"), None, &[], 1_700_000_000_010)];
    let mut builder = SegmentBuilder::new();
    for (partition, records) in [(0u32, &first[..]), (2, &second[..])] {
        let bytes =
            encode_batch(records, Compression::None, TimestampType::CreateTime).expect("encode");
        let first_ts = records[0].timestamp_ms;
        let max_ts = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .expect("non-empty");
        builder.append_batch(
            TopicId(7),
            partition,
            bytes,
            records.len() as u32,
            first_ts,
            max_ts,
        );
    }
    builder.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn matches_documented_test_vector() {
    let (bytes, _) = test_vector_segment();
    let document = include_str!("../../../../docs/segment-format.md");
    let documented: String = document
        .split("<!-- test-vector -->")
        .nth(1)
        .expect("docs/segment-format.md has a test-vector block")
        .lines()
        .filter(|line| !line.starts_with("```"))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert_eq!(
        hex(&bytes),
        documented,
        "segment bytes differ from the documented test vector"
    );
}

#[test]
fn round_trips_batches_and_index() {
    let (bytes, entries) = test_vector_segment();
    assert_eq!(decode_footer(&bytes).expect("footer"), entries);
    let decoded = decode_segment(&bytes).expect("segment");
    assert_eq!(decoded.len(), 2);
    assert_eq!(
        decoded[0].1.records[1].value.as_deref(),
        Some(&b"world"[..])
    );
    assert_eq!(decoded[1].0.partition, 2);
    assert_eq!(decoded[1].1.records[0].value, None);
}

#[test]
fn every_truncation_is_an_error() {
    let (bytes, _) = test_vector_segment();
    for length in 0..bytes.len() {
        assert!(
            decode_segment(&bytes.slice(..length)).is_err(),
            "prefix of {length} bytes"
        );
        assert!(
            decode_segment(&bytes.slice(length + 1..)).is_err(),
            "suffix from {}",
            length + 1
        );
    }
}

#[test]
fn a_flipped_batch_bit_is_a_crc_mismatch() {
    let (bytes, entries) = test_vector_segment();
    let mut corrupted = bytes.to_vec();
    corrupted[entries[0].byte_offset as usize + 40] ^= 1;
    assert!(matches!(
        decode_segment(&Bytes::from(corrupted)),
        Err(SegmentError::BatchCrcMismatch { .. })
    ));
}

/// Rewrites entry `index`'s byte offset or record count in a finished segment, with the
/// footer's CRC made right again, so only the checks on the entry itself can refuse it.
fn with_entry(
    segment: &Bytes,
    index: usize,
    byte_offset: Option<u64>,
    record_count: Option<u32>,
) -> Bytes {
    let mut bytes = segment.to_vec();
    let trailer = bytes.len() - TRAILER_LEN;
    let footer_len = read_u32(&bytes, trailer) as usize;
    let footer_start = trailer - footer_len;
    let entry = footer_start + 4 + index * ENTRY_LEN;
    if let Some(offset) = byte_offset {
        bytes[entry + 12..entry + 20].copy_from_slice(&offset.to_be_bytes());
    }
    if let Some(count) = record_count {
        bytes[entry + 24..entry + 28].copy_from_slice(&count.to_be_bytes());
    }
    let crc = crc32c::crc32c(&bytes[footer_start..trailer]);
    bytes[trailer + 4..trailer + 8].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

#[test]
fn the_smallest_segment_holds_no_batches_and_anything_shorter_is_refused() {
    let builder = SegmentBuilder::new();
    assert!(builder.is_empty());
    assert_eq!(builder.len(), HEADER_LEN);
    let (empty, entries) = builder.finish();
    assert!(entries.is_empty());
    assert_eq!(empty.len(), HEADER_LEN + 4 + TRAILER_LEN);
    assert_eq!(decode_footer(&empty).expect("an empty segment"), Vec::new());
    assert!(matches!(
        decode_footer(&empty[1..]),
        Err(SegmentError::TooShort(35))
    ));
}

#[test]
fn the_builder_reports_what_it_holds() {
    let (segment, entries) = test_vector_segment();
    let mut builder = SegmentBuilder::new();
    let start = entries[0].byte_offset as usize;
    let first = segment.slice(start..start + entries[0].length as usize);
    let entry = builder.append_batch(TopicId(7), 0, first.clone(), 2, 1, 2);
    assert!(!builder.is_empty());
    assert_eq!(builder.len(), HEADER_LEN + first.len());
    assert_eq!(builder.entries(), &[entry]);
}

/// The parts, in order, are the joined object byte for byte. A large batch is its own
/// part, the appended memory itself; small neighbours (the header, small batches, the
/// footer) are joined into one part.
#[test]
fn a_segment_is_its_parts_in_order_and_keeps_large_batches_uncopied() {
    let small = || Bytes::from(vec![7u8; 100]);
    let large = Bytes::from((0..20 * 1024).map(|i| i as u8).collect::<Vec<_>>());
    let mut builder = SegmentBuilder::new();
    for (partition, batch) in [small(), large.clone(), small(), small()]
        .into_iter()
        .enumerate()
    {
        builder.append_batch(TopicId(3), partition as u32, batch, 1, 1, 1);
    }
    let entries = builder.entries().to_vec();
    let joined = {
        let mut again = SegmentBuilder::new();
        for (entry, batch) in entries
            .iter()
            .zip([small(), large.clone(), small(), small()])
        {
            again.append_batch(entry.topic_id, entry.partition, batch, 1, 1, 1);
        }
        again.finish().0
    };
    let (parts, finished) = builder.finish_parts();
    assert_eq!(finished, entries);
    // header + small · large · small + small + footer
    let lengths: Vec<usize> = parts.iter().map(Bytes::len).collect();
    assert_eq!(
        lengths,
        [
            HEADER_LEN + 100,
            large.len(),
            200 + 4 + 4 * ENTRY_LEN + TRAILER_LEN
        ]
    );
    assert_eq!(
        parts[1].as_ptr(),
        large.as_ptr(),
        "the large batch was copied"
    );
    assert_eq!(parts.concat(), joined.to_vec());
    assert_eq!(decode_footer(&joined).expect("footer"), entries);
}

#[test]
fn a_footer_length_reaching_into_the_header_is_refused() {
    let (segment, _) = test_vector_segment();
    let trailer = segment.len() - TRAILER_LEN;
    let most = (trailer - HEADER_LEN) as u32;
    for footer_len in [most + 1, most + 16, 3] {
        let mut bytes = segment.to_vec();
        bytes[trailer..trailer + 4].copy_from_slice(&footer_len.to_be_bytes());
        assert!(
            matches!(
                decode_footer(&bytes),
                Err(SegmentError::BadFooterLength(length)) if length == u64::from(footer_len)
            ),
            "footer length {footer_len}"
        );
    }
}

#[test]
fn a_batch_starting_inside_the_header_is_out_of_bounds() {
    let (segment, _) = test_vector_segment();
    let moved = with_entry(&segment, 0, Some(HEADER_LEN as u64 - 1), None);
    assert!(matches!(
        decode_footer(&moved),
        Err(SegmentError::BatchOutOfBounds { index: 0, .. })
    ));
}

/// An entry may cover more offsets than its batch holds records (a compacted batch), but
/// never fewer: neither fewer than the batch's offset span nor than its records.
#[test]
fn an_entry_covers_at_least_its_batch() {
    let (segment, entries) = test_vector_segment();
    let wider = with_entry(&segment, 0, None, Some(entries[0].record_count + 5));
    let decoded = decode_segment(&wider).expect("an entry wider than its batch");
    assert_eq!(decoded[0].0.record_count, 7);
    let narrower = with_entry(&segment, 0, None, Some(1));
    assert!(matches!(
        decode_segment(&narrower),
        Err(SegmentError::Batch { index: 0, .. })
    ));
    // A sparse batch: two records spanning offsets 0..10. An entry of 5 covers its
    // records but not its span.
    let records = [
        (0, record(None, Some("first"), &[], 1)),
        (9, record(None, Some("last"), &[], 2)),
    ];
    let sparse =
        crate::batch::encode_batch_at(&records, Compression::None, TimestampType::CreateTime)
            .expect("encode");
    let mut builder = SegmentBuilder::new();
    builder.append_batch(TopicId(1), 0, sparse, 10, 1, 2);
    let (segment, _) = builder.finish();
    assert!(decode_segment(&segment).is_ok());
    assert!(matches!(
        decode_segment(&with_entry(&segment, 0, None, Some(5))),
        Err(SegmentError::Batch { index: 0, .. })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let bytes = Bytes::from(data);
        let _ = decode_segment(&bytes);
        let _ = crate::batch::decode_batch(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_and_trailer_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        footer_len in any::<u32>(),
    ) {
        let mut data = SEGMENT_MAGIC.to_vec();
        data.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 16]);
        data.extend_from_slice(&body);
        data.extend_from_slice(&footer_len.to_be_bytes());
        let crc_position = data.len();
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&TRAILER_MAGIC);
        // Give the footer a valid CRC when its length fits, to reach the entry checks.
        if let Some(start) = crc_position.checked_sub(4 + footer_len as usize)
            && start >= HEADER_LEN
        {
            let crc = crc32c::crc32c(&data[start..crc_position - 4]);
            data[crc_position..crc_position + 4].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = decode_segment(&Bytes::from(data));
    }

    #[test]
    fn mutated_segments_never_panic(position in any::<usize>(), value in any::<u8>(), cut in any::<usize>()) {
        let (bytes, _) = test_vector_segment();
        let mut data = bytes.to_vec();
        let position = position % data.len();
        data[position] = value;
        data.truncate(data.len() - cut % 8);
        let _ = decode_segment(&Bytes::from(data));
    }
}
