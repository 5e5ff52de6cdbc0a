//! The Arrow schema of an exported file and the record batches that fill it.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, OffsetBufferBuilder, StringBuilder,
};
use arrow_array::{
    ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, StructArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use floe_core::Record;
use floe_core::export::{JsonSchema, JsonType, ValueFormat};
use serde_json::Value;

use crate::json::{object_fits, parse_object};
use crate::writer::ExportError;

/// The columns of one file, fixed before the first batch is built.
#[derive(Debug)]
pub(crate) struct FileColumns<'schema> {
    value_format: ValueFormat,
    json_schema: Option<&'schema JsonSchema>,
    header_item: FieldRef,
    header_fields: Fields,
    schema: SchemaRef,
}

/// A batch and how many of its rows put their value in `_raw`.
#[derive(Debug)]
pub(crate) struct BuiltBatch {
    pub(crate) batch: RecordBatch,
    pub(crate) raw_rows: u64,
}

impl<'schema> FileColumns<'schema> {
    /// `json_schema` is the schema of the typed columns; it is used only in JSON format.
    pub(crate) fn new(value_format: ValueFormat, json_schema: Option<&'schema JsonSchema>) -> Self {
        let header_fields = Fields::from(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::Binary, true),
        ]);
        let header_item = Arc::new(Field::new(
            "item",
            DataType::Struct(header_fields.clone()),
            false,
        ));
        let json_schema = json_schema.filter(|_| value_format == ValueFormat::Json);

        let mut fields = vec![
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("key", DataType::Binary, true),
        ];
        match value_format {
            ValueFormat::Binary => fields.push(Field::new("value", DataType::Binary, true)),
            ValueFormat::String => fields.push(Field::new("value", DataType::Utf8, true)),
            ValueFormat::Json => {}
        }
        fields.push(Field::new(
            "headers",
            DataType::List(header_item.clone()),
            false,
        ));
        for (name, &kind) in json_schema.iter().flat_map(|schema| schema.fields.iter()) {
            fields.push(Field::new(name, arrow_type(kind), true));
        }
        if value_format != ValueFormat::Binary {
            fields.push(Field::new("_raw", DataType::Binary, true));
        }

        Self {
            value_format,
            json_schema,
            header_item,
            header_fields,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Builds one record batch from records in offset order.
    pub(crate) fn build_batch(
        &self,
        partition: i32,
        records: &[(u64, Record)],
    ) -> Result<BuiltBatch, ExportError> {
        let rows = records.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        columns.push(Arc::new(Int32Array::from(vec![partition; rows])));
        columns.push(Arc::new(offset_column(records)?));
        columns.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(
                records.iter().map(|(_, record)| record.timestamp_ms),
            )
            .with_timezone("UTC"),
        ));
        columns.push(Arc::new(key_column(records)));

        let raw_rows = match (self.value_format, self.json_schema) {
            (ValueFormat::Binary, _) => {
                columns.push(Arc::new(binary_value_column(records)));
                columns.push(self.headers_column(records)?);
                0
            }
            (ValueFormat::String, _) => {
                let (values, raw) = string_value_columns(records);
                columns.push(values);
                columns.push(self.headers_column(records)?);
                columns.push(raw.array);
                raw.rows
            }
            (ValueFormat::Json, json_schema) => {
                columns.push(self.headers_column(records)?);
                let empty = JsonSchema::default();
                let (typed, raw) = json_columns(json_schema.unwrap_or(&empty), records);
                columns.extend(typed);
                columns.push(raw.array);
                raw.rows
            }
        };

        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|error| ExportError::Arrow(error.to_string()))?;
        Ok(BuiltBatch { batch, raw_rows })
    }

    /// Builds `headers` as a list of `{name, value}` structs, an empty list for a record
    /// without headers.
    fn headers_column(&self, records: &[(u64, Record)]) -> Result<ArrayRef, ExportError> {
        let header_count: usize = records.iter().map(|(_, record)| record.headers.len()).sum();
        let name_bytes: usize = records
            .iter()
            .flat_map(|(_, record)| &record.headers)
            .map(|header| header.name.len())
            .sum();
        let value_bytes: usize = records
            .iter()
            .flat_map(|(_, record)| &record.headers)
            .filter_map(|header| header.value.as_ref().map(|value| value.len()))
            .sum();
        let mut names = StringBuilder::with_capacity(header_count, name_bytes);
        let mut values = BinaryBuilder::with_capacity(header_count, value_bytes);
        let mut offsets = OffsetBufferBuilder::<i32>::new(records.len());
        for (_, record) in records {
            for header in &record.headers {
                names.append_value(&header.name);
                values.append_option(header.value.as_deref());
            }
            offsets.push_length(record.headers.len());
        }
        let entries = StructArray::try_new(
            self.header_fields.clone(),
            vec![Arc::new(names.finish()), Arc::new(values.finish())],
            None,
        )
        .map_err(|error| ExportError::Arrow(error.to_string()))?;
        let list = ListArray::try_new(
            self.header_item.clone(),
            offsets.finish(),
            Arc::new(entries),
            None,
        )
        .map_err(|error| ExportError::Arrow(error.to_string()))?;
        Ok(Arc::new(list))
    }
}

fn arrow_type(kind: JsonType) -> DataType {
    match kind {
        JsonType::Boolean => DataType::Boolean,
        JsonType::Long => DataType::Int64,
        JsonType::Double => DataType::Float64,
        JsonType::String | JsonType::Json => DataType::Utf8,
    }
}

fn offset_column(records: &[(u64, Record)]) -> Result<Int64Array, ExportError> {
    let offsets = records
        .iter()
        .map(|&(offset, _)| {
            i64::try_from(offset).map_err(|_| ExportError::OffsetOutOfRange(offset))
        })
        .collect::<Result<Vec<i64>, ExportError>>()?;
    Ok(Int64Array::from(offsets))
}

fn key_column(records: &[(u64, Record)]) -> ArrayRef {
    let key_bytes = records
        .iter()
        .filter_map(|(_, record)| record.key.as_ref().map(|key| key.len()))
        .sum();
    let mut keys = BinaryBuilder::with_capacity(records.len(), key_bytes);
    for (_, record) in records {
        keys.append_option(record.key.as_deref());
    }
    Arc::new(keys.finish())
}

fn value_bytes(records: &[(u64, Record)]) -> usize {
    records
        .iter()
        .filter_map(|(_, record)| record.value.as_ref().map(|value| value.len()))
        .sum()
}

fn binary_value_column(records: &[(u64, Record)]) -> ArrayRef {
    let mut values = BinaryBuilder::with_capacity(records.len(), value_bytes(records));
    for (_, record) in records {
        values.append_option(record.value.as_deref());
    }
    Arc::new(values.finish())
}

/// The `_raw` column and how many of its rows are not null.
struct RawColumn {
    array: ArrayRef,
    rows: u64,
}

/// Collects the values that do not fit their format's columns.
struct RawBuilder {
    builder: BinaryBuilder,
    rows: u64,
}

impl RawBuilder {
    fn new(capacity: usize) -> Self {
        // Most values fit, so the byte buffer starts empty and grows for the few that do not.
        Self {
            builder: BinaryBuilder::with_capacity(capacity, 0),
            rows: 0,
        }
    }

    fn append_null(&mut self) {
        self.builder.append_null();
    }

    fn append(&mut self, bytes: &[u8]) {
        self.builder.append_value(bytes);
        self.rows += 1;
    }

    fn finish(mut self) -> RawColumn {
        RawColumn {
            array: Arc::new(self.builder.finish()),
            rows: self.rows,
        }
    }
}

fn string_value_columns(records: &[(u64, Record)]) -> (ArrayRef, RawColumn) {
    let mut values = StringBuilder::with_capacity(records.len(), value_bytes(records));
    let mut raw = RawBuilder::new(records.len());
    for (_, record) in records {
        let Some(bytes) = &record.value else {
            values.append_null();
            raw.append_null();
            continue;
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                values.append_value(text);
                raw.append_null();
            }
            Err(_) => {
                values.append_null();
                raw.append(bytes);
            }
        }
    }
    (Arc::new(values.finish()), raw.finish())
}

/// Builds the typed columns (in schema order) and `_raw` of a JSON-format batch.
fn json_columns(schema: &JsonSchema, records: &[(u64, Record)]) -> (Vec<ArrayRef>, RawColumn) {
    // Builders are sized up front only for narrow schemas: a thousand mostly-null columns
    // must not cost a thousand full-length buffers before any value arrives.
    let capacity = if schema.fields.len() <= 64 {
        records.len()
    } else {
        0
    };
    let mut typed: Vec<TypedBuilder> = schema
        .fields
        .values()
        .map(|&kind| TypedBuilder::new(kind, capacity))
        .collect();
    let mut raw = RawBuilder::new(records.len());
    for (_, record) in records {
        let Some(bytes) = &record.value else {
            typed.iter_mut().for_each(TypedBuilder::append_null);
            raw.append_null();
            continue;
        };
        match parse_object(bytes).filter(|object| object_fits(object, schema)) {
            Some(object) => {
                for (builder, name) in typed.iter_mut().zip(schema.fields.keys()) {
                    let appended = builder.append(object.get(name));
                    debug_assert!(appended, "field {name:?} was checked to fit its column");
                }
                raw.append_null();
            }
            None => {
                typed.iter_mut().for_each(TypedBuilder::append_null);
                raw.append(bytes);
            }
        }
    }
    let arrays = typed.into_iter().map(TypedBuilder::finish).collect();
    (arrays, raw.finish())
}

/// One typed column of a JSON-format file.
enum TypedBuilder {
    Boolean(BooleanBuilder),
    Long(Int64Builder),
    Double(Float64Builder),
    String(StringBuilder),
    Json(StringBuilder),
}

impl TypedBuilder {
    fn new(kind: JsonType, capacity: usize) -> Self {
        match kind {
            JsonType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            JsonType::Long => Self::Long(Int64Builder::with_capacity(capacity)),
            JsonType::Double => Self::Double(Float64Builder::with_capacity(capacity)),
            JsonType::String => Self::String(StringBuilder::with_capacity(capacity, 0)),
            JsonType::Json => Self::Json(StringBuilder::with_capacity(capacity, 0)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Boolean(builder) => builder.append_null(),
            Self::Long(builder) => builder.append_null(),
            Self::Double(builder) => builder.append_null(),
            Self::String(builder) | Self::Json(builder) => builder.append_null(),
        }
    }

    /// Appends a field's value (absent and JSON null append null). Returns false, having
    /// appended null, when the value does not fit the column.
    fn append(&mut self, value: Option<&Value>) -> bool {
        let Some(value) = value.filter(|value| !value.is_null()) else {
            self.append_null();
            return true;
        };
        match (&mut *self, value) {
            (Self::Boolean(builder), Value::Bool(flag)) => builder.append_value(*flag),
            (Self::Long(builder), Value::Number(number)) if number.as_i64().is_some() => {
                builder.append_option(number.as_i64());
            }
            (Self::Double(builder), Value::Number(number)) => {
                builder.append_option(number.as_f64());
            }
            (Self::String(builder), Value::String(text)) => builder.append_value(text),
            (Self::Json(builder), Value::Array(_) | Value::Object(_)) => {
                builder.append_value(value.to_string());
            }
            _ => {
                self.append_null();
                return false;
            }
        }
        true
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Boolean(mut builder) => Arc::new(builder.finish()),
            Self::Long(mut builder) => Arc::new(builder.finish()),
            Self::Double(mut builder) => Arc::new(builder.finish()),
            Self::String(mut builder) | Self::Json(mut builder) => Arc::new(builder.finish()),
        }
    }
}
