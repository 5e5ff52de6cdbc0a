//! `write_file`: one Parquet file from records of one partition, in offset order.

use bytes::Bytes;
use floe_core::Record;
use floe_core::export::{JsonSchema, ValueFormat};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::columns::FileColumns;
use crate::json::file_schema;

/// The most rows in one Arrow record batch handed to the Parquet writer.
const MAX_BATCH_ROWS: usize = 65_536;
/// The most rows in one Parquet row group.
const MAX_ROW_GROUP_ROWS: usize = 1_000_000;
const ZSTD_LEVEL: i32 = 3;

/// How JSON values become typed columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonColumns {
    /// Columns from a configured schema, which files never change.
    Given(JsonSchema),
    /// Columns inferred from the values: the schema so far (from earlier files), which each
    /// file widens with its own records.
    Inferred(Option<JsonSchema>),
}

/// What one file holds: whose records, and how their values are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub topic: String,
    pub partition: u32,
    pub value_format: ValueFormat,
    /// Used in `ValueFormat::Json` only.
    pub json: JsonColumns,
}

/// A finished Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    pub bytes: Bytes,
    pub rows: u64,
    /// Rows whose value went to `_raw` (not UTF-8, or JSON that did not fit).
    pub raw_rows: u64,
    pub first_offset: u64,
    pub last_offset: u64,
    /// The JSON schema the file's typed columns follow (JSON format only); in inferred
    /// mode, the widened schema to pass to the next file.
    pub schema: Option<JsonSchema>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("a parquet file needs at least one record")]
    Empty,
    #[error("records are not in offset order: offset {offset} follows offset {previous}")]
    OutOfOrder { previous: u64, offset: u64 },
    #[error("partition {0} does not fit the int32 partition column")]
    PartitionOutOfRange(u32),
    #[error("offset {0} does not fit the int64 offset column")]
    OffsetOutOfRange(u64),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("arrow: {0}")]
    Arrow(String),
}

impl From<ParquetError> for ExportError {
    fn from(error: ParquetError) -> Self {
        Self::Parquet(error.to_string())
    }
}

/// Writes records of one partition, in strictly increasing offset order, to one Parquet
/// file. The caller picks the records (one UTC hour, see [`crate::hour_of`]) and stores the
/// bytes under [`crate::file_key`].
pub fn write_file(spec: &FileSpec, records: &[(u64, Record)]) -> Result<WrittenFile, ExportError> {
    let (Some(&(first_offset, _)), Some(&(last_offset, _))) = (records.first(), records.last())
    else {
        return Err(ExportError::Empty);
    };
    check_offset_order(records)?;
    let partition = i32::try_from(spec.partition)
        .map_err(|_| ExportError::PartitionOutOfRange(spec.partition))?;

    let json_schema = match spec.value_format {
        ValueFormat::Json => Some(file_schema(&spec.json, records)),
        ValueFormat::Binary | ValueFormat::String => None,
    };
    let columns = FileColumns::new(spec.value_format, json_schema.as_ref());
    let properties = writer_properties(spec, first_offset, last_offset)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), columns.schema(), Some(properties))?;
    let mut raw_rows = 0;
    for chunk in records.chunks(MAX_BATCH_ROWS) {
        let built = columns.build_batch(partition, chunk)?;
        raw_rows += built.raw_rows;
        writer.write(&built.batch)?;
    }
    let bytes = writer.into_inner()?;

    Ok(WrittenFile {
        bytes: Bytes::from(bytes),
        rows: records.len() as u64,
        raw_rows,
        first_offset,
        last_offset,
        schema: json_schema,
    })
}

fn check_offset_order(records: &[(u64, Record)]) -> Result<(), ExportError> {
    for pair in records.windows(2) {
        let (previous, offset) = (pair[0].0, pair[1].0);
        if offset <= previous {
            return Err(ExportError::OutOfOrder { previous, offset });
        }
    }
    Ok(())
}

fn writer_properties(
    spec: &FileSpec,
    first_offset: u64,
    last_offset: u64,
) -> Result<WriterProperties, ExportError> {
    let metadata = [
        ("floe.version", env!("CARGO_PKG_VERSION").to_owned()),
        ("floe.topic", spec.topic.clone()),
        ("floe.partition", spec.partition.to_string()),
        ("floe.first_offset", first_offset.to_string()),
        ("floe.last_offset", last_offset.to_string()),
        ("floe.value_format", spec.value_format.as_str().to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| KeyValue::new(key.to_owned(), value))
    .collect();
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata))
        .build())
}
