//! Round trips: files written here, read back with the Parquet reader.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use floe_core::export::{JsonSchema, JsonType, ValueFormat};
use floe_core::{Header, Record};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use crate::{ExportError, FileSpec, JsonColumns, WrittenFile, write_file};

fn spec(value_format: ValueFormat, json: JsonColumns) -> FileSpec {
    FileSpec {
        topic: "orders".to_owned(),
        partition: 7,
        value_format,
        json,
    }
}

fn value_record(value: &[u8], timestamp_ms: i64) -> Record {
    Record {
        key: None,
        value: Some(Bytes::copy_from_slice(value)),
        headers: Vec::new(),
        timestamp_ms,
    }
}

fn numbered(values: &[&[u8]]) -> Vec<(u64, Record)> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| (100 + index as u64, value_record(value, 1_000)))
        .collect()
}

/// Reads a file back as one record batch, with its footer and page index.
fn read_back(file: &WrittenFile) -> (RecordBatch, Arc<ParquetMetaData>) {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(file.bytes.clone(), options)
            .expect("a readable parquet file");
    let metadata = builder.metadata().clone();
    let batches = builder
        .with_batch_size(usize::try_from(file.rows).expect("rows fit usize"))
        .build()
        .expect("a reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("readable batches");
    assert_eq!(batches.len(), 1, "one batch of {} rows", file.rows);
    let batch = batches.into_iter().next().expect("one batch");
    (batch, metadata)
}

fn column_names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect()
}

fn optional_strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(name).expect("column present");
    column
        .as_string::<i32>()
        .iter()
        .map(|text| text.map(str::to_owned))
        .collect()
}

fn optional_binaries(batch: &RecordBatch, name: &str) -> Vec<Option<Vec<u8>>> {
    let column = batch.column_by_name(name).expect("column present");
    column
        .as_binary::<i32>()
        .iter()
        .map(|bytes| bytes.map(<[u8]>::to_vec))
        .collect()
}

/// Decodes a binary-format batch back into the records it was written from.
fn decode_binary_rows(batch: &RecordBatch) -> Vec<(u64, Record)> {
    let offsets = batch
        .column_by_name("offset")
        .expect("offset")
        .as_primitive::<Int64Type>();
    let timestamps = batch
        .column_by_name("timestamp")
        .expect("timestamp")
        .as_primitive::<TimestampMillisecondType>();
    let keys = optional_binaries(batch, "key");
    let values = optional_binaries(batch, "value");
    let headers = batch
        .column_by_name("headers")
        .expect("headers")
        .as_list::<i32>();
    (0..batch.num_rows())
        .map(|row| {
            let entries = headers.value(row);
            let entries = entries.as_struct();
            let names = entries.column(0).as_string::<i32>();
            let header_values = entries.column(1).as_binary::<i32>();
            let record = Record {
                key: keys[row].clone().map(Bytes::from),
                value: values[row].clone().map(Bytes::from),
                headers: (0..entries.len())
                    .map(|index| Header {
                        name: names.value(index).to_owned(),
                        value: (!header_values.is_null(index))
                            .then(|| Bytes::copy_from_slice(header_values.value(index))),
                    })
                    .collect(),
                timestamp_ms: timestamps.value(row),
            };
            let offset = u64::try_from(offsets.value(row)).expect("offsets are not negative");
            (offset, record)
        })
        .collect()
}

#[test]
fn binary_files_round_trip_with_metadata_statistics_and_page_index() {
    let records = vec![
        (
            5,
            Record {
                key: Some(Bytes::from_static(b"k1")),
                value: Some(Bytes::from_static(b"\x00\xffbinary")),
                headers: vec![
                    Header {
                        name: "trace".to_owned(),
                        value: Some(Bytes::from_static(b"abc")),
                    },
                    Header {
                        name: "empty".to_owned(),
                        value: None,
                    },
                ],
                timestamp_ms: 1_700_000_000_000,
            },
        ),
        (
            6,
            Record {
                key: None,
                value: Some(Bytes::from_static(b"no key")),
                headers: Vec::new(),
                timestamp_ms: 1_700_000_000_001,
            },
        ),
        (
            9,
            Record {
                key: Some(Bytes::from_static(b"k1")),
                value: None,
                headers: vec![Header {
                    name: "why".to_owned(),
                    value: Some(Bytes::from_static(b"tombstone")),
                }],
                timestamp_ms: -5,
            },
        ),
    ];
    let file = write_file(
        &spec(ValueFormat::Binary, JsonColumns::Inferred(None)),
        &records,
    )
    .expect("written");
    assert_eq!((file.rows, file.raw_rows), (3, 0));
    assert_eq!((file.first_offset, file.last_offset), (5, 9));
    assert_eq!(file.schema, None);

    let (batch, metadata) = read_back(&file);
    assert_eq!(
        column_names(&batch),
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers"
        ]
    );
    let schema = batch.schema();
    let nullability: Vec<bool> = schema
        .fields()
        .iter()
        .map(|field| field.is_nullable())
        .collect();
    assert_eq!(nullability, [false, false, false, true, true, false]);
    assert_eq!(
        schema.field(2).data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    let partitions = batch.column(0).as_primitive::<Int32Type>();
    assert!(partitions.iter().all(|partition| partition == Some(7)));
    assert_eq!(decode_binary_rows(&batch), records);

    let key_values: BTreeMap<&str, Option<&str>> = metadata
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .map(|entry| (entry.key.as_str(), entry.value.as_deref()))
        .collect();
    assert_eq!(key_values["floe.version"], Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(key_values["floe.topic"], Some("orders"));
    assert_eq!(key_values["floe.partition"], Some("7"));
    assert_eq!(key_values["floe.first_offset"], Some("5"));
    assert_eq!(key_values["floe.last_offset"], Some("9"));
    assert_eq!(key_values["floe.value_format"], Some("binary"));
    assert!(key_values.contains_key("ARROW:schema"));

    assert_eq!(metadata.num_row_groups(), 1);
    let offset_chunk = metadata.row_group(0).column(1);
    assert!(matches!(offset_chunk.compression(), Compression::ZSTD(_)));
    let Some(Statistics::Int64(statistics)) = offset_chunk.statistics() else {
        panic!(
            "int64 statistics for offset, got {:?}",
            offset_chunk.statistics()
        );
    };
    assert_eq!(statistics.min_opt(), Some(&5));
    assert_eq!(statistics.max_opt(), Some(&9));

    let page_index = metadata.page_index_for_row_group(0);
    let Some(ColumnIndexMetaData::INT64(offset_index)) = page_index.column_index(1) else {
        panic!("an int64 column index for offset");
    };
    assert_eq!(offset_index.min_value(0), Some(&5));
    assert_eq!(offset_index.max_value(0), Some(&9));
    let page_locations = page_index
        .offset_index(1)
        .expect("offset index")
        .page_locations();
    assert!(!page_locations.is_empty());
}

#[test]
fn string_values_that_are_not_utf8_go_to_raw() {
    let mut records = numbered(&[b"caf\xc3\xa9", b"\xff\xfe", b""]);
    records.push((
        200,
        Record {
            value: None,
            ..value_record(b"", 0)
        },
    ));
    let file = write_file(
        &spec(ValueFormat::String, JsonColumns::Inferred(None)),
        &records,
    )
    .expect("written");
    assert_eq!((file.rows, file.raw_rows), (4, 1));

    let (batch, metadata) = read_back(&file);
    assert_eq!(
        column_names(&batch),
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers",
            "_raw"
        ]
    );
    assert_eq!(batch.schema().field(4).data_type(), &DataType::Utf8);
    assert_eq!(
        optional_strings(&batch, "value"),
        [Some("café".to_owned()), None, Some(String::new()), None]
    );
    assert_eq!(
        optional_binaries(&batch, "_raw"),
        [None, Some(b"\xff\xfe".to_vec()), None, None]
    );
    let value_format = metadata
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .find(|entry| entry.key == "floe.value_format")
        .and_then(|entry| entry.value.clone());
    assert_eq!(value_format.as_deref(), Some("string"));
}

#[test]
fn inferred_json_widens_longs_and_sends_misfits_to_raw() {
    let records = numbered(&[
        br#"{"customer":"a","total":3}"#,
        br#"{"customer":"b","total":2.5,"items":[1,2],"rush":true}"#,
        br#"{"customer":7}"#,
        b"hello",
        br#"[1,2]"#,
        br#"{"customer":"c","offset":1}"#,
    ]);
    let file = write_file(
        &spec(ValueFormat::Json, JsonColumns::Inferred(None)),
        &records,
    )
    .expect("written");
    let expected_schema = JsonSchema::parse(
        r#"{"customer":"string","items":"json","rush":"boolean","total":"double"}"#,
    )
    .expect("schema");
    assert_eq!(file.schema.as_ref(), Some(&expected_schema));
    assert_eq!((file.rows, file.raw_rows), (6, 4));

    let (batch, _) = read_back(&file);
    assert_eq!(
        column_names(&batch),
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "headers",
            "customer",
            "items",
            "rush",
            "total",
            "_raw"
        ]
    );
    assert_eq!(
        optional_strings(&batch, "customer"),
        [
            Some("a".to_owned()),
            Some("b".to_owned()),
            None,
            None,
            None,
            None
        ]
    );
    assert_eq!(
        optional_strings(&batch, "items"),
        [None, Some("[1,2]".to_owned()), None, None, None, None]
    );
    let totals: Vec<Option<f64>> = batch
        .column_by_name("total")
        .expect("total")
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(totals, [Some(3.0), Some(2.5), None, None, None, None]);
    let rush = batch.column_by_name("rush").expect("rush").as_boolean();
    assert_eq!(
        rush.iter().collect::<Vec<_>>(),
        [None, Some(true), None, None, None, None]
    );
    assert_eq!(
        optional_binaries(&batch, "_raw"),
        [
            None,
            None,
            Some(br#"{"customer":7}"#.to_vec()),
            Some(b"hello".to_vec()),
            Some(b"[1,2]".to_vec()),
            Some(br#"{"customer":"c","offset":1}"#.to_vec()),
        ]
    );

    // A later file keeps the earlier columns, widens nothing it does not see, and adds new
    // fields; a tombstone has every typed column and `_raw` null.
    let mut later = numbered(&[br#"{"total":4,"note":"x"}"#]);
    later.push((
        500,
        Record {
            value: None,
            ..value_record(b"", 0)
        },
    ));
    let next = write_file(
        &spec(
            ValueFormat::Json,
            JsonColumns::Inferred(file.schema.clone()),
        ),
        &later,
    )
    .expect("written");
    let mut widened = expected_schema.clone();
    widened.fields.insert("note".to_owned(), JsonType::String);
    assert_eq!(next.schema.as_ref(), Some(&widened));
    assert_eq!(next.raw_rows, 0);
    let (batch, _) = read_back(&next);
    assert_eq!(
        column_names(&batch),
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "headers",
            "customer",
            "items",
            "note",
            "rush",
            "total",
            "_raw"
        ]
    );
    assert_eq!(optional_strings(&batch, "customer"), [None, None]);
    assert_eq!(
        optional_strings(&batch, "note"),
        [Some("x".to_owned()), None]
    );
    assert_eq!(optional_binaries(&batch, "_raw"), [None, None]);
}

#[test]
fn given_json_schema_never_changes_and_unknown_fields_go_to_raw() {
    let given =
        JsonSchema::parse(r#"{"id":"long","score":"double","key":"string"}"#).expect("schema");
    let records = numbered(&[
        br#"{"id":1,"score":2}"#,
        br#"{"id":2,"extra":"x"}"#,
        br#"{"id":2.5}"#,
        br#"{"id":null,"unknown":null}"#,
    ]);
    let file = write_file(
        &spec(ValueFormat::Json, JsonColumns::Given(given)),
        &records,
    )
    .expect("written");
    let without_key = JsonSchema::parse(r#"{"id":"long","score":"double"}"#).expect("schema");
    assert_eq!(file.schema.as_ref(), Some(&without_key));
    assert_eq!(file.raw_rows, 2);

    let (batch, _) = read_back(&file);
    assert_eq!(
        column_names(&batch),
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "headers",
            "id",
            "score",
            "_raw"
        ]
    );
    assert_eq!(batch.schema().field(3).data_type(), &DataType::Binary);
    let ids: Vec<Option<i64>> = batch
        .column_by_name("id")
        .expect("id")
        .as_primitive::<Int64Type>()
        .iter()
        .collect();
    assert_eq!(ids, [Some(1), None, None, None]);
    let scores: Vec<Option<f64>> = batch
        .column_by_name("score")
        .expect("score")
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(scores, [Some(2.0), None, None, None]);
    assert_eq!(
        optional_binaries(&batch, "_raw"),
        [
            None,
            Some(br#"{"id":2,"extra":"x"}"#.to_vec()),
            Some(br#"{"id":2.5}"#.to_vec()),
            None,
        ]
    );
}

#[test]
fn many_records_span_several_batches_in_one_file() {
    let count: u64 = 65_536 * 2 + 17;
    let records: Vec<(u64, Record)> = (0..count)
        .map(|offset| {
            let value = offset.to_string();
            let timestamp_ms = i64::try_from(offset).expect("small offsets");
            (offset * 2, value_record(value.as_bytes(), timestamp_ms))
        })
        .collect();
    let file = write_file(
        &spec(ValueFormat::String, JsonColumns::Inferred(None)),
        &records,
    )
    .expect("written");
    assert_eq!((file.rows, file.raw_rows), (count, 0));
    assert_eq!((file.first_offset, file.last_offset), (0, (count - 1) * 2));

    let (batch, metadata) = read_back(&file);
    assert_eq!(metadata.num_row_groups(), 1);
    assert_eq!(batch.num_rows() as u64, count);
    let offsets = batch
        .column_by_name("offset")
        .expect("offset")
        .as_primitive::<Int64Type>();
    let values = batch
        .column_by_name("value")
        .expect("value")
        .as_string::<i32>();
    for (row, (offset, record)) in records.iter().enumerate() {
        assert_eq!(
            offsets.value(row),
            i64::try_from(*offset).expect("small offsets")
        );
        assert_eq!(Some(values.value(row).as_bytes()), record.value.as_deref());
    }
}

#[test]
fn refuses_empty_and_unordered_input() {
    let binary = spec(ValueFormat::Binary, JsonColumns::Inferred(None));
    assert!(matches!(write_file(&binary, &[]), Err(ExportError::Empty)));
    let mut records = numbered(&[b"a", b"b"]);
    records[1].0 = records[0].0;
    assert!(matches!(
        write_file(&binary, &records),
        Err(ExportError::OutOfOrder {
            previous: 100,
            offset: 100
        })
    ));
    let high = vec![(u64::MAX, value_record(b"a", 0))];
    assert!(matches!(
        write_file(&binary, &high),
        Err(ExportError::OffsetOutOfRange(u64::MAX))
    ));
}
