//! The compact binary framing (content type [`CONTENT_TYPE`]) for produce requests and
//! fetch responses. All integers are big-endian; lengths of `-1` mean null.
//!
//! ```text
//! produce request : u32 count · count × { i32 partition (-1 = any) · i64 timestamp (-1 = now)
//!                   · bytes key · bytes value · headers }
//! fetch response  : u64 next_offset · u64 high_watermark · u64 log_start_offset · u32 count
//!                   · count × { u64 offset · i64 timestamp · bytes key · bytes value · headers }
//! bytes           : i32 length (-1 = null) · length bytes
//! headers         : u16 count · count × { u16 name length · UTF-8 name · bytes value }
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const CONTENT_TYPE: &str = "application/vnd.floe.records.v1";

/// The most headers one record may carry (the broker's limit too).
pub const MAX_HEADERS_PER_RECORD: usize = 1024;
/// The longest header name, in bytes (the broker's limit too).
pub const MAX_HEADER_NAME_BYTES: usize = 1024;
/// The most headers one produce request may carry across its records.
pub const MAX_HEADERS_PER_REQUEST: usize = 100_000;

/// A record in the binary framing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryRecord {
    /// For produce: the explicit partition, if any. For fetch: unused.
    pub partition: Option<u32>,
    /// For fetch: the record's offset.
    pub offset: u64,
    pub timestamp: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A fetch response in the binary framing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryFetch {
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub records: Vec<BinaryRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("binary body ends early while reading {0}")]
    Truncated(&'static str),
    #[error("binary body has {0} bytes after the last record")]
    TrailingBytes(usize),
    #[error("header name is not UTF-8")]
    BadHeaderName,
    #[error("invalid {field}: {value}")]
    BadValue { field: &'static str, value: i64 },
    #[error("a produce request carries at most {limit} records, not {count}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("{what} is over its limit of {limit}")]
    TooManyHeaders { what: &'static str, limit: usize },
}

pub fn encode_produce(records: &[BinaryRecord]) -> Bytes {
    // Sized exactly up front: a request of 100 KiB grown by doubling copied itself 7 times.
    let mut out =
        BytesMut::with_capacity(4 + records.iter().map(|r| 12 + body_len(r)).sum::<usize>());
    out.put_u32(records.len() as u32);
    for record in records {
        out.put_i32(record.partition.map_or(-1, |p| p as i32));
        out.put_i64(record.timestamp.unwrap_or(-1));
        put_record_body(&mut out, record);
    }
    out.freeze()
}

/// Decodes a produce request of at most `max_records` records; a larger declared count is
/// refused before any record is decoded.
pub fn decode_produce(
    mut body: Bytes,
    max_records: usize,
) -> Result<Vec<BinaryRecord>, FramingError> {
    let count = take_u32(&mut body, "record count")? as usize;
    if count > max_records {
        return Err(FramingError::TooManyRecords {
            count,
            limit: max_records,
        });
    }
    // Every record takes at least 22 bytes; never trust a count the body cannot hold.
    let mut records = Vec::with_capacity(count.min(body.len() / 22 + 1));
    let mut headers = 0usize;
    for _ in 0..count {
        let partition = take_i32(&mut body, "partition")?;
        let timestamp = take_i64(&mut body, "timestamp")?;
        if partition < -1 {
            return Err(FramingError::BadValue {
                field: "partition",
                value: i64::from(partition),
            });
        }
        if timestamp < -1 {
            return Err(FramingError::BadValue {
                field: "timestamp",
                value: timestamp,
            });
        }
        let mut record = take_record_body(&mut body)?;
        headers += record.headers.len();
        if headers > MAX_HEADERS_PER_REQUEST {
            return Err(FramingError::TooManyHeaders {
                what: "the request's header count",
                limit: MAX_HEADERS_PER_REQUEST,
            });
        }
        record.partition = (partition >= 0).then_some(partition as u32);
        record.timestamp = (timestamp >= 0).then_some(timestamp);
        records.push(record);
    }
    if body.has_remaining() {
        return Err(FramingError::TrailingBytes(body.remaining()));
    }
    Ok(records)
}

pub fn encode_fetch(fetch: &BinaryFetch) -> Bytes {
    let records: usize = fetch.records.iter().map(|r| 16 + body_len(r)).sum();
    let mut out = BytesMut::with_capacity(28 + records);
    out.put_u64(fetch.next_offset);
    out.put_u64(fetch.high_watermark);
    out.put_u64(fetch.log_start_offset);
    out.put_u32(fetch.records.len() as u32);
    for record in &fetch.records {
        out.put_u64(record.offset);
        out.put_i64(record.timestamp.unwrap_or(-1));
        put_record_body(&mut out, record);
    }
    out.freeze()
}

pub fn decode_fetch(mut body: Bytes) -> Result<BinaryFetch, FramingError> {
    let next_offset = take_u64(&mut body, "next offset")?;
    let high_watermark = take_u64(&mut body, "high watermark")?;
    let log_start_offset = take_u64(&mut body, "log start offset")?;
    let count = take_u32(&mut body, "record count")? as usize;
    let mut records = Vec::with_capacity(count.min(body.len() / 26 + 1));
    for _ in 0..count {
        let offset = take_u64(&mut body, "offset")?;
        let timestamp = take_i64(&mut body, "timestamp")?;
        let mut record = take_record_body(&mut body)?;
        record.offset = offset;
        record.timestamp = (timestamp >= 0).then_some(timestamp);
        records.push(record);
    }
    if body.has_remaining() {
        return Err(FramingError::TrailingBytes(body.remaining()));
    }
    Ok(BinaryFetch {
        next_offset,
        high_watermark,
        log_start_offset,
        records,
    })
}

/// The bytes [`put_record_body`] writes for `record`.
fn body_len(record: &BinaryRecord) -> usize {
    let bytes = |value: Option<&[u8]>| 4 + value.map_or(0, <[u8]>::len);
    bytes(record.key.as_deref())
        + bytes(record.value.as_deref())
        + 2
        + record
            .headers
            .iter()
            .map(|(name, value)| 2 + name.len() + bytes(value.as_deref()))
            .sum::<usize>()
}

fn put_record_body(out: &mut BytesMut, record: &BinaryRecord) {
    put_bytes(out, record.key.as_deref());
    put_bytes(out, record.value.as_deref());
    out.put_u16(record.headers.len() as u16);
    for (name, value) in &record.headers {
        out.put_u16(name.len() as u16);
        out.put_slice(name.as_bytes());
        put_bytes(out, value.as_deref());
    }
}

fn take_record_body(body: &mut Bytes) -> Result<BinaryRecord, FramingError> {
    let key = take_bytes(body, "key")?;
    let value = take_bytes(body, "value")?;
    let header_count = take_u16(body, "header count")?;
    if usize::from(header_count) > MAX_HEADERS_PER_RECORD {
        return Err(FramingError::TooManyHeaders {
            what: "a record's header count",
            limit: MAX_HEADERS_PER_RECORD,
        });
    }
    let mut headers = Vec::with_capacity(usize::from(header_count).min(body.len() / 6 + 1));
    for _ in 0..header_count {
        let name_len = usize::from(take_u16(body, "header name length")?);
        if name_len > MAX_HEADER_NAME_BYTES {
            return Err(FramingError::TooManyHeaders {
                what: "a header name's length",
                limit: MAX_HEADER_NAME_BYTES,
            });
        }
        if body.remaining() < name_len {
            return Err(FramingError::Truncated("header name"));
        }
        let name = String::from_utf8(body.split_to(name_len).to_vec())
            .map_err(|_| FramingError::BadHeaderName)?;
        headers.push((name, take_bytes(body, "header value")?));
    }
    Ok(BinaryRecord {
        key,
        value,
        headers,
        ..BinaryRecord::default()
    })
}

fn put_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.put_i32(bytes.len() as i32);
            out.put_slice(bytes);
        }
        None => out.put_i32(-1),
    }
}

fn take_bytes(body: &mut Bytes, what: &'static str) -> Result<Option<Bytes>, FramingError> {
    let length = take_i32(body, what)?;
    if length == -1 {
        return Ok(None);
    }
    if length < -1 {
        return Err(FramingError::BadValue {
            field: what,
            value: i64::from(length),
        });
    }
    let length = length as usize;
    if body.remaining() < length {
        return Err(FramingError::Truncated(what));
    }
    Ok(Some(body.split_to(length)))
}

macro_rules! take_int {
    ($name:ident, $ty:ty, $get:ident) => {
        fn $name(body: &mut Bytes, what: &'static str) -> Result<$ty, FramingError> {
            if body.remaining() < std::mem::size_of::<$ty>() {
                return Err(FramingError::Truncated(what));
            }
            Ok(body.$get())
        }
    };
}

take_int!(take_u16, u16, get_u16);
take_int!(take_u32, u32, get_u32);
take_int!(take_i32, i32, get_i32);
take_int!(take_u64, u64, get_u64);
take_int!(take_i64, i64, get_i64);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<BinaryRecord> {
        vec![
            BinaryRecord {
                partition: Some(2),
                timestamp: Some(5),
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"\x00\xffbinary")),
                headers: vec![
                    ("h".into(), Some(Bytes::from_static(b"v"))),
                    ("n".into(), None),
                ],
                ..BinaryRecord::default()
            },
            BinaryRecord::default(),
        ]
    }

    #[test]
    fn produce_round_trip_and_truncations_fail() {
        let encoded = encode_produce(&sample());
        assert_eq!(
            decode_produce(encoded.clone(), usize::MAX).expect("decode"),
            sample()
        );
        assert_eq!(
            decode_produce(encoded.clone(), 1),
            Err(FramingError::TooManyRecords { count: 2, limit: 1 })
        );
        for cut in 0..encoded.len() {
            assert!(
                decode_produce(encoded.slice(..cut), usize::MAX).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = encoded.to_vec();
        longer.push(0);
        assert_eq!(
            decode_produce(Bytes::from(longer), usize::MAX),
            Err(FramingError::TrailingBytes(1))
        );
    }

    /// The encoders size their buffer from `body_len`: it must be what is written.
    #[test]
    fn body_len_is_what_a_record_body_takes() {
        for record in sample() {
            let mut out = BytesMut::new();
            put_record_body(&mut out, &record);
            assert_eq!(body_len(&record), out.len(), "{record:?}");
        }
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        assert!(decode_produce(body, usize::MAX).is_err());
    }

    #[test]
    fn fetch_round_trip() {
        let fetch = BinaryFetch {
            next_offset: 9,
            high_watermark: 10,
            log_start_offset: 1,
            records: sample(),
        };
        let mut expected = fetch.clone();
        for record in &mut expected.records {
            record.partition = None;
        }
        assert_eq!(
            decode_fetch(encode_fetch(&fetch)).expect("decode"),
            expected
        );
    }
}
