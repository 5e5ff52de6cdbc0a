//! How JSON values map onto typed columns: which type a field asks for, whether a record
//! fits a schema, and how a schema widens with a file's records.

use floe_core::Record;
use floe_core::export::{JsonSchema, JsonType, MAX_JSON_COLUMNS, MAX_JSON_FIELD_NAME};
use serde_json::{Map, Value};

use crate::writer::JsonColumns;

/// Names of the columns every file has (or `_raw`) and of the Hive path columns readers
/// add (`topic`, `date`, `hour`); a JSON field so named, in any case, never becomes a
/// column, and a record carrying one does not fit.
const FIXED_COLUMNS: [&str; 9] = [
    "partition",
    "offset",
    "timestamp",
    "key",
    "headers",
    "_raw",
    "topic",
    "date",
    "hour",
];

/// Whether a field may not be a column: it is named like a fixed column (readers match
/// names without case), or its name is longer than [`MAX_JSON_FIELD_NAME`].
pub(crate) fn is_fixed_column(name: &str) -> bool {
    name.len() > MAX_JSON_FIELD_NAME
        || FIXED_COLUMNS
            .iter()
            .any(|fixed| fixed.eq_ignore_ascii_case(name))
}

/// Returns the column type a JSON value asks for, or `None` for JSON null (which fits any
/// column).
pub(crate) fn observed_type(value: &Value) -> Option<JsonType> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(JsonType::Boolean),
        Value::Number(number) if number.as_i64().is_some() => Some(JsonType::Long),
        Value::Number(_) => Some(JsonType::Double),
        Value::String(_) => Some(JsonType::String),
        Value::Array(_) | Value::Object(_) => Some(JsonType::Json),
    }
}

/// Returns whether a field's value can be written to a column of the given type: null fits
/// anything, an integer also fits a double column.
pub(crate) fn value_fits(value: &Value, column: JsonType) -> bool {
    if is_unrepresentable(value) {
        return false;
    }
    match observed_type(value) {
        None => true,
        Some(observed) => {
            observed == column || (observed == JsonType::Long && column == JsonType::Double)
        }
    }
}

/// An integer beyond `i64` would lose digits in a double column: its record keeps its
/// value in `_raw` instead.
fn is_unrepresentable(value: &Value) -> bool {
    matches!(value, Value::Number(number) if !number.is_i64() && !number.is_f64())
}

/// Parses a value as a JSON object; anything else (not JSON, a scalar, an array) is `None`.
pub(crate) fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// Returns whether every field of the object fits its column. A null field without a
/// column fits (it reads back as absent); any other field without one does not.
pub(crate) fn object_fits(object: &Map<String, Value>, schema: &JsonSchema) -> bool {
    object.iter().all(|(name, value)| {
        !is_fixed_column(name)
            && match schema.fields.get(name) {
                Some(&column) => value_fits(value, column),
                None => value.is_null(),
            }
    })
}

/// Returns the schema a file's typed columns follow: the given one as it is, or the schema
/// so far widened with this file's records. Fields named like a fixed column are dropped.
pub(crate) fn file_schema(json: &JsonColumns, records: &[(u64, Record)]) -> JsonSchema {
    match json {
        JsonColumns::Given(given) => without_fixed_columns(given.clone()),
        JsonColumns::Inferred(so_far) => {
            let mut schema = so_far
                .clone()
                .map(without_fixed_columns)
                .unwrap_or_default();
            for (_, record) in records {
                if let Some(object) = record.value.as_deref().and_then(parse_object) {
                    widen_with_object(&mut schema, &object);
                }
            }
            schema
        }
    }
}

fn without_fixed_columns(mut schema: JsonSchema) -> JsonSchema {
    schema.fields.retain(|name, _| !is_fixed_column(name));
    schema
}

/// Adds the object's new fields (while there is room) and widens long columns that meet a
/// float. Other conflicts leave the column as it is; the record then goes to `_raw`.
fn widen_with_object(schema: &mut JsonSchema, object: &Map<String, Value>) {
    for (name, value) in object {
        if is_fixed_column(name) {
            continue;
        }
        let Some(observed) = observed_type(value).filter(|_| !is_unrepresentable(value)) else {
            continue;
        };
        let column_count = schema.fields.len();
        // Readers match column names without case: `Total` next to `total` would be a
        // duplicate column to them, so it stays out (and its records go to `_raw`).
        if let Some(column) = schema.fields.get_mut(name) {
            if let Some(widened) = column.widen(observed) {
                *column = widened;
            }
            continue;
        }
        let clashes = schema
            .fields
            .keys()
            .any(|known| known.eq_ignore_ascii_case(name));
        if column_count < MAX_JSON_COLUMNS && !clashes {
            schema.fields.insert(name.clone(), observed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Map<String, Value> {
        parse_object(text.as_bytes()).expect("a JSON object")
    }

    #[test]
    fn types_follow_json_values() {
        assert_eq!(observed_type(&Value::Null), None);
        assert_eq!(observed_type(&Value::from(1)), Some(JsonType::Long));
        assert_eq!(observed_type(&Value::from(-1)), Some(JsonType::Long));
        assert_eq!(
            observed_type(&Value::from(u64::MAX)),
            Some(JsonType::Double)
        );
        assert_eq!(observed_type(&Value::from(1.5)), Some(JsonType::Double));
        assert_eq!(observed_type(&Value::from("a")), Some(JsonType::String));
        assert_eq!(observed_type(&serde_json::json!([1])), Some(JsonType::Json));
        assert!(value_fits(&Value::from(1), JsonType::Double));
        assert!(!value_fits(&Value::from(1.5), JsonType::Long));
        assert!(!value_fits(&serde_json::json!({}), JsonType::String));
        assert!(value_fits(&Value::Null, JsonType::Boolean));
    }

    #[test]
    fn fit_refuses_fixed_names_and_unknown_fields() {
        let mut schema = JsonSchema::default();
        schema.fields.insert("a".to_owned(), JsonType::Long);
        assert!(object_fits(&object(r#"{"a":1,"b":null}"#), &schema));
        assert!(!object_fits(&object(r#"{"a":1,"b":2}"#), &schema));
        assert!(!object_fits(&object(r#"{"a":1,"offset":2}"#), &schema));
        assert!(!object_fits(&object(r#"{"a":"1"}"#), &schema));
        assert!(parse_object(b"[1]").is_none());
        assert!(parse_object(b"hello").is_none());
    }

    #[test]
    fn widening_stops_at_the_column_limit_and_skips_fixed_names() {
        let mut schema = JsonSchema::default();
        for index in 0..MAX_JSON_COLUMNS {
            schema.fields.insert(format!("f{index:04}"), JsonType::Long);
        }
        widen_with_object(&mut schema, &object(r#"{"extra":1,"f0000":2.5,"key":"k"}"#));
        assert_eq!(schema.fields.len(), MAX_JSON_COLUMNS);
        assert_eq!(schema.fields["f0000"], JsonType::Double);
        assert!(!schema.fields.contains_key("extra"));

        let mut small = JsonSchema::default();
        widen_with_object(&mut small, &object(r#"{"key":"k","_raw":1,"n":null}"#));
        assert!(small.fields.is_empty());
    }

    #[test]
    fn names_readers_would_confuse_and_lossy_numbers_stay_out() {
        let mut schema = JsonSchema::default();
        let long_name = "n".repeat(MAX_JSON_FIELD_NAME + 1);
        let text = format!(
            r#"{{"total":1,"Total":2,"Date":"d","HOUR":1,"topic":"t","{long_name}":1,"big":18446744073709551615}}"#
        );
        widen_with_object(&mut schema, &object(&text));
        // Fields come in name order: `Total` is first, and `total` would clash with it.
        assert_eq!(
            schema.fields.keys().collect::<Vec<_>>(),
            ["Total"],
            "one of Total and total becomes a column, nothing else"
        );
        assert!(!object_fits(&object(r#"{"Total":1,"total":2}"#), &schema));
        assert!(!object_fits(&object(r#"{"Total":1,"date":"x"}"#), &schema));
        assert!(!object_fits(
            &object(r#"{"Total":18446744073709551615}"#),
            &schema
        ));
        assert!(!value_fits(&Value::from(u64::MAX), JsonType::Double));
        assert!(object_fits(&object(r#"{"Total":12}"#), &schema));
    }
}
