//! The slice of s2-lite's REST API the benchmark uses, with protobuf bodies (its most
//! compact unary encoding). Messages mirror `s2.v1` field for field; only the fields the
//! benchmark reads or writes are declared, which protobuf decoding allows.

use anyhow::Context;
use bytes::Bytes;
use prost::Message;

pub const BASIN_HEADER: &str = "s2-basin";
pub const PROTOBUF: &str = "application/protobuf";
/// How JSON bodies carry record bytes: `raw` (UTF-8 text as it is) or `base64`.
pub const FORMAT_HEADER: &str = "s2-format";

#[derive(Clone, PartialEq, Message)]
pub struct StreamPosition {
    #[prost(uint64, tag = "1")]
    pub seq_num: u64,
    #[prost(uint64, tag = "2")]
    pub timestamp: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct AppendRecord {
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(bytes = "bytes", tag = "3")]
    pub body: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub struct AppendInput {
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<AppendRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SequencedRecord {
    #[prost(uint64, tag = "1")]
    pub seq_num: u64,
    #[prost(uint64, tag = "2")]
    pub timestamp: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub body: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub struct ReadBatch {
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<SequencedRecord>,
    #[prost(message, optional, tag = "2")]
    pub tail: Option<StreamPosition>,
}

pub fn encode_append(values: &[Bytes]) -> Vec<u8> {
    AppendInput {
        records: values
            .iter()
            .map(|body| AppendRecord {
                timestamp: None,
                body: body.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

pub fn decode_read(body: &[u8]) -> anyhow::Result<ReadBatch> {
    ReadBatch::decode(body).context("decoding an s2-lite read batch")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire bytes match what s2's generated code writes: field 1 (records) as a
    /// length-delimited message holding field 3 (body) as bytes.
    #[test]
    fn append_input_wire_format() {
        let encoded = encode_append(&[Bytes::from_static(b"ab")]);
        assert_eq!(encoded, vec![0x0a, 0x04, 0x1a, 0x02, b'a', b'b']);
    }

    #[test]
    fn read_batch_round_trips() {
        let batch = ReadBatch {
            records: vec![SequencedRecord {
                seq_num: 7,
                timestamp: 9,
                body: Bytes::from_static(b"xyz"),
            }],
            tail: Some(StreamPosition {
                seq_num: 8,
                timestamp: 9,
            }),
        };
        let decoded = decode_read(&batch.encode_to_vec()).expect("valid");
        assert_eq!(decoded, batch);
    }
}
