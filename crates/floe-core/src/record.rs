//! The record as users see it.

use bytes::Bytes;

/// One header of a record: a UTF-8 name and an optional byte value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Bytes>,
}

/// A record: optional key, optional value (none is a tombstone), ordered headers and a
/// timestamp in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp_ms: i64,
}

impl Record {
    /// Returns the bytes the record carries (key, value, header names and values), which is
    /// what `max.message.bytes` limits.
    pub fn payload_size(&self) -> usize {
        let header_bytes: usize = self
            .headers
            .iter()
            .map(|header| header.name.len() + header.value.as_ref().map_or(0, Bytes::len))
            .sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + header_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: Option<&'static [u8]>) -> Header {
        Header {
            name: name.to_owned(),
            value: value.map(Bytes::from_static),
        }
    }

    #[test]
    fn payload_size_counts_key_value_and_headers() {
        let record = Record {
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![header("h1", Some(b"four")), header("name", None)],
            timestamp_ms: 1,
        };
        assert_eq!(record.payload_size(), 3 + 5 + (2 + 4) + 4);
        let bare = Record {
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp_ms: 1,
        };
        assert_eq!(bare.payload_size(), 0);
        let tombstone = Record {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![header("trace", Some(b"ab"))],
            timestamp_ms: 1,
        };
        assert_eq!(tombstone.payload_size(), 1 + 5 + 2);
    }
}
