//! The vocabulary of Parquet export that topic configuration speaks: how values are
//! written (`export.parquet.value.format`) and the typed columns of JSON values
//! (`export.parquet.value.schema`). The writer itself is in `floe-export`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How a record's value is written to Parquet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// The value's bytes in a `value BINARY` column.
    #[default]
    Binary,
    /// The value as UTF-8 text in a `value STRING` column (values that are not UTF-8 go to
    /// `_raw`).
    String,
    /// The value's top-level JSON fields as typed columns (values that do not fit go to
    /// `_raw`).
    Json,
}

impl ValueFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "binary" => Some(Self::Binary),
            "string" => Some(Self::String),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::String => "string",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for ValueFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of one column made from a top-level JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    /// `BOOLEAN`.
    Boolean,
    /// `INT64`: JSON integers that fit in 64 bits.
    Long,
    /// `DOUBLE`: any JSON number.
    Double,
    /// `STRING`.
    String,
    /// `STRING` holding the JSON text of an object or an array.
    Json,
}

impl JsonType {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "boolean" | "bool" => Some(Self::Boolean),
            "long" | "int64" | "bigint" => Some(Self::Long),
            "double" | "float64" => Some(Self::Double),
            "string" => Some(Self::String),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The narrowest type that holds both, when one exists: a long column widens to a
    /// double; any other pair of different types does not widen.
    pub fn widen(self, other: Self) -> Option<Self> {
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Self::Long, Self::Double) | (Self::Double, Self::Long) => Some(Self::Double),
            _ => None,
        }
    }
}

/// The most typed columns a JSON export makes; fields beyond send their records to `_raw`.
pub const MAX_JSON_COLUMNS: usize = 1000;
/// The longest field name that becomes a column (bytes): the schema travels in sequencer
/// commands, which stay far below the log's entry limit with 1000 such names.
pub const MAX_JSON_FIELD_NAME: usize = 128;

/// Top-level JSON fields and their column types, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonSchema {
    pub fields: BTreeMap<String, JsonType>,
}

impl JsonSchema {
    /// Parses `{"field": "type", …}` with types `boolean`, `long`, `double`, `string` and
    /// `json`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let object: BTreeMap<String, String> = serde_json::from_str(text)
            .map_err(|error| format!("expected a JSON object of field name to type: {error}"))?;
        if object.is_empty() {
            return Err("the schema names no field".to_owned());
        }
        if object.len() > MAX_JSON_COLUMNS {
            return Err(format!(
                "the schema names {} fields; the limit is {MAX_JSON_COLUMNS}",
                object.len()
            ));
        }
        let mut fields = BTreeMap::new();
        for (name, kind) in object {
            if name.is_empty() || name.len() > MAX_JSON_FIELD_NAME {
                return Err(format!(
                    "field names have 1 to {MAX_JSON_FIELD_NAME} bytes; {name:?} does not"
                ));
            }
            let kind = JsonType::parse(&kind).ok_or_else(|| {
                format!(
                    "field {name:?} has type {kind:?}; expected boolean, long, double, \
                     string or json"
                )
            })?;
            fields.insert(name, kind);
        }
        Ok(Self { fields })
    }

    /// Both schemas' fields, each with the type that holds both sides where they differ
    /// (`self`'s type where no type does), up to [`MAX_JSON_COLUMNS`] fields.
    pub fn merged(&self, other: &Self) -> Self {
        let mut fields = self.fields.clone();
        for (name, kind) in &other.fields {
            let room = fields.len() < MAX_JSON_COLUMNS;
            match fields.get_mut(name) {
                Some(current) => *current = current.widen(*kind).unwrap_or(*current),
                None if room => {
                    fields.insert(name.clone(), *kind);
                }
                None => {}
            }
        }
        Self { fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemas_and_refuses_bad_ones() {
        let schema =
            JsonSchema::parse(r#"{"customer":"string","total":"double"}"#).expect("valid schema");
        assert_eq!(schema.fields["total"], JsonType::Double);
        assert!(JsonSchema::parse("{").is_err());
        assert!(JsonSchema::parse("{}").is_err());
        assert!(JsonSchema::parse(r#"{"a":"decimal"}"#).is_err());
        assert!(JsonSchema::parse(r#"{"a":1}"#).is_err());
        assert!(JsonSchema::parse(r#"{"":"long"}"#).is_err());
    }

    #[test]
    fn only_numbers_widen() {
        assert_eq!(
            JsonType::Long.widen(JsonType::Double),
            Some(JsonType::Double)
        );
        assert_eq!(JsonType::Long.widen(JsonType::String), None);
        assert_eq!(JsonType::Json.widen(JsonType::Json), Some(JsonType::Json));
    }

    #[test]
    fn value_formats_have_one_name_each_way() {
        for (format, name) in [
            (ValueFormat::Binary, "binary"),
            (ValueFormat::String, "string"),
            (ValueFormat::Json, "json"),
        ] {
            assert_eq!(format.as_str(), name);
            assert_eq!(format.to_string(), name);
            assert_eq!(ValueFormat::parse(name), Some(format), "{name}");
            assert_eq!(
                serde_json::to_value(format).expect("serializes"),
                serde_json::json!(name)
            );
        }
        for unknown in ["avro", "Binary", "JSON", ""] {
            assert_eq!(ValueFormat::parse(unknown), None, "{unknown:?}");
        }
        assert_eq!(ValueFormat::default(), ValueFormat::Binary);
    }

    #[test]
    fn json_types_parse_with_their_aliases() {
        for (text, kind) in [
            ("boolean", JsonType::Boolean),
            ("bool", JsonType::Boolean),
            ("long", JsonType::Long),
            ("int64", JsonType::Long),
            ("bigint", JsonType::Long),
            ("double", JsonType::Double),
            ("float64", JsonType::Double),
            ("string", JsonType::String),
            ("json", JsonType::Json),
        ] {
            assert_eq!(JsonType::parse(text), Some(kind), "{text}");
        }
        for unknown in ["decimal", "int", "Long", "object", ""] {
            assert_eq!(JsonType::parse(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn every_pair_of_types_widens_by_the_rule() {
        use JsonType::*;
        let all = [Boolean, Long, Double, String, Json];
        for a in all {
            for b in all {
                let expected = match (a, b) {
                    _ if a == b => Some(a),
                    (Long, Double) | (Double, Long) => Some(Double),
                    _ => None,
                };
                assert_eq!(a.widen(b), expected, "{a:?} with {b:?}");
            }
        }
    }

    /// A schema text naming `count` long fields `f0000`, `f0001`, ….
    fn schema_with_fields(count: usize) -> String {
        let fields: BTreeMap<String, &str> = (0..count)
            .map(|index| (format!("f{index:04}"), "long"))
            .collect();
        serde_json::to_string(&fields).expect("serializes")
    }

    #[test]
    fn schemas_are_bounded_in_columns_and_name_length() {
        let one = JsonSchema::parse(&schema_with_fields(1)).expect("one field");
        assert_eq!(one.fields.len(), 1);
        let most = JsonSchema::parse(&schema_with_fields(MAX_JSON_COLUMNS)).expect("the most");
        assert_eq!(most.fields.len(), 1000);
        assert!(JsonSchema::parse(&schema_with_fields(MAX_JSON_COLUMNS + 1)).is_err());

        let longest = "n".repeat(128);
        let parsed = JsonSchema::parse(&format!(r#"{{"{longest}":"bool"}}"#)).expect("longest");
        assert_eq!(parsed.fields[&longest], JsonType::Boolean);
        let too_long = "n".repeat(129);
        assert!(JsonSchema::parse(&format!(r#"{{"{too_long}":"bool"}}"#)).is_err());
    }

    #[test]
    fn merging_widens_shared_fields_and_adds_new_ones_up_to_the_limit() {
        let ours = JsonSchema::parse(r#"{"n":"long","s":"string","x":"double"}"#).expect("ours");
        let theirs =
            JsonSchema::parse(r#"{"n":"double","s":"long","new":"json"}"#).expect("theirs");
        let merged = ours.merged(&theirs);
        let expected =
            JsonSchema::parse(r#"{"n":"double","s":"string","x":"double","new":"json"}"#)
                .expect("expected");
        assert_eq!(merged, expected);

        let almost_full =
            JsonSchema::parse(&schema_with_fields(MAX_JSON_COLUMNS - 1)).expect("almost full");
        let two_new = JsonSchema::parse(r#"{"a":"string","b":"string"}"#).expect("two new");
        let filled = almost_full.merged(&two_new);
        assert_eq!(filled.fields.len(), MAX_JSON_COLUMNS);
        assert_eq!(filled.fields.get("a"), Some(&JsonType::String));
        assert_eq!(filled.fields.get("b"), None, "no room left");
        let widened = filled.merged(&JsonSchema::parse(r#"{"f0000":"double"}"#).expect("one"));
        assert_eq!(
            widened.fields["f0000"],
            JsonType::Double,
            "full still widens"
        );
    }
}
