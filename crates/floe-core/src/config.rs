//! Topic configuration with Kafka's names, defaults and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::batch::Compression;
use crate::export::{JsonSchema, ValueFormat};

/// What happens to old data: delete it by time and size, or keep the newest record per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

/// Which timestamp a record keeps: the producer's, or the broker's at append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A topic's configuration. Field names on the wire are Kafka's dotted keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// How long records are kept, in milliseconds; `-1` keeps them forever.
    #[serde(rename = "retention.ms")]
    pub retention_ms: i64,
    /// How many bytes a partition keeps; `-1` is unlimited.
    #[serde(rename = "retention.bytes")]
    pub retention_bytes: i64,
    #[serde(rename = "cleanup.policy")]
    pub cleanup_policy: CleanupPolicy,
    /// On compacted topics: how long a tombstone (a record with a null value) is kept as the
    /// newest record of its key before compaction drops it, in milliseconds.
    #[serde(
        rename = "delete.retention.ms",
        default = "default_delete_retention_ms"
    )]
    pub delete_retention_ms: i64,
    /// On compacted topics: the share of the log not yet cleaned (written since the last
    /// full clean) at which a full clean of the partition runs.
    #[serde(
        rename = "min.cleanable.dirty.ratio",
        default = "default_min_cleanable_dirty_ratio"
    )]
    pub min_cleanable_dirty_ratio: f64,
    /// The largest record accepted (key, value and headers), in bytes.
    #[serde(rename = "max.message.bytes")]
    pub max_message_bytes: u32,
    #[serde(rename = "message.timestamp.type")]
    pub message_timestamp_type: TimestampType,
    /// How the broker compresses each batch it writes for this topic.
    #[serde(rename = "compression.type")]
    pub compression: Compression,
    /// With `CreateTime`: how far before the broker's clock a record's timestamp may be, in
    /// milliseconds (Kafka's `message.timestamp.before.max.ms`).
    #[serde(
        rename = "message.timestamp.before.max.ms",
        default = "default_timestamp_before_max_ms"
    )]
    pub timestamp_before_max_ms: i64,
    /// With `CreateTime`: how far after the broker's clock a record's timestamp may be, in
    /// milliseconds. A far-future timestamp would keep its batch, and everything behind
    /// it, from ever expiring by `retention.ms`.
    #[serde(
        rename = "message.timestamp.after.max.ms",
        default = "default_timestamp_after_max_ms"
    )]
    pub timestamp_after_max_ms: i64,
    /// Export the topic to Parquet continuously.
    #[serde(rename = "export.parquet.enabled", default)]
    pub export_enabled: bool,
    /// Where the Parquet files go: `file://DIR` or `s3://BUCKET/PREFIX`; the cluster's
    /// store under `export/` when unset.
    #[serde(
        rename = "export.parquet.path",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub export_path: Option<String>,
    /// How values are written: `binary`, `string` or `json`.
    #[serde(rename = "export.parquet.value.format", default)]
    pub export_value_format: ValueFormat,
    /// With `json`: the typed columns; inferred from the data and widened when unset.
    #[serde(
        rename = "export.parquet.value.schema",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub export_value_schema: Option<JsonSchema>,
    /// A Parquet file is closed once the records in it reach this many bytes.
    #[serde(
        rename = "export.parquet.target.file.bytes",
        default = "default_export_target_file_bytes"
    )]
    pub export_target_file_bytes: u64,
    /// The longest a record waits to be exported, in milliseconds: a smaller file is
    /// written rather than wait longer.
    #[serde(
        rename = "export.parquet.max.delay.ms",
        default = "default_export_max_delay_ms"
    )]
    pub export_max_delay_ms: i64,
}

/// The default `export.parquet.target.file.bytes`: 64 MiB of records.
pub const DEFAULT_EXPORT_TARGET_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The largest `export.parquet.target.file.bytes`: an exporter holds one file's records.
pub const MAX_EXPORT_TARGET_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// The default `export.parquet.max.delay.ms`: one minute.
pub const DEFAULT_EXPORT_MAX_DELAY_MS: i64 = 60_000;

fn default_export_target_file_bytes() -> u64 {
    DEFAULT_EXPORT_TARGET_FILE_BYTES
}

fn default_export_max_delay_ms() -> i64 {
    DEFAULT_EXPORT_MAX_DELAY_MS
}

/// Seven days, Kafka's default retention.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// One day, Kafka's default `delete.retention.ms`.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Kafka's default `min.cleanable.dirty.ratio`.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

/// Kafka's default `message.timestamp.before.max.ms`: no bound into the past (old
/// timestamps only make records expire sooner).
pub const DEFAULT_TIMESTAMP_BEFORE_MAX_MS: i64 = i64::MAX;
/// Kafka 4.0's default `message.timestamp.after.max.ms`: one hour into the future.
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 60 * 60 * 1000;

fn default_timestamp_before_max_ms() -> i64 {
    DEFAULT_TIMESTAMP_BEFORE_MAX_MS
}

fn default_timestamp_after_max_ms() -> i64 {
    DEFAULT_TIMESTAMP_AFTER_MAX_MS
}

fn default_delete_retention_ms() -> i64 {
    DEFAULT_DELETE_RETENTION_MS
}

fn default_min_cleanable_dirty_ratio() -> f64 {
    DEFAULT_MIN_CLEANABLE_DIRTY_RATIO
}

/// Kafka's default `max.message.bytes` (1 MiB plus the batch overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1_048_588;
/// The largest `max.message.bytes` floe accepts: a record must fit in one segment.
pub const MAX_MAX_MESSAGE_BYTES: u32 = 64 * 1024 * 1024;

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timestamp_type: TimestampType::CreateTime,
            compression: Compression::None,
            timestamp_before_max_ms: DEFAULT_TIMESTAMP_BEFORE_MAX_MS,
            timestamp_after_max_ms: DEFAULT_TIMESTAMP_AFTER_MAX_MS,
            export_enabled: false,
            export_path: None,
            export_value_format: ValueFormat::Binary,
            export_value_schema: None,
            export_target_file_bytes: DEFAULT_EXPORT_TARGET_FILE_BYTES,
            export_max_delay_ms: DEFAULT_EXPORT_MAX_DELAY_MS,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config {0:?}")]
    UnknownKey(String),
    #[error("topic config {key:?} has invalid value {value:?}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
}

impl TopicConfig {
    /// Builds a configuration from Kafka-style `key = value` strings over the defaults.
    pub fn from_pairs(pairs: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for (key, value) in pairs {
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// Sets one Kafka-style key from its string value.
    /// Checks a producer's timestamp against the broker's clock `now_ms`: `Err` says how
    /// far outside the window it is.
    pub fn check_create_time(&self, timestamp_ms: i64, now_ms: i64) -> Result<(), String> {
        let earliest = now_ms.saturating_sub(self.timestamp_before_max_ms);
        let latest = now_ms.saturating_add(self.timestamp_after_max_ms);
        if timestamp_ms < earliest {
            return Err(format!(
                "timestamp {timestamp_ms} is more than message.timestamp.before.max.ms = {} \
                 before the broker's clock ({now_ms})",
                self.timestamp_before_max_ms
            ));
        }
        if timestamp_ms > latest {
            return Err(format!(
                "timestamp {timestamp_ms} is more than message.timestamp.after.max.ms = {} \
                 after the broker's clock ({now_ms})",
                self.timestamp_after_max_ms
            ));
        }
        Ok(())
    }

    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        match key {
            "retention.ms" => {
                self.retention_ms =
                    parse_limit(value).ok_or_else(|| bad("expected -1 or a positive integer"))?;
            }
            "retention.bytes" => {
                self.retention_bytes =
                    parse_limit(value).ok_or_else(|| bad("expected -1 or a positive integer"))?;
            }
            "cleanup.policy" => {
                self.cleanup_policy = match value {
                    "delete" => CleanupPolicy::Delete,
                    "compact" => CleanupPolicy::Compact,
                    _ => return Err(bad("expected delete or compact")),
                };
            }
            "delete.retention.ms" => {
                let parsed: i64 = value
                    .parse()
                    .map_err(|_| bad("expected a non-negative integer"))?;
                if parsed < 0 {
                    return Err(bad("expected a non-negative integer"));
                }
                self.delete_retention_ms = parsed;
            }
            "min.cleanable.dirty.ratio" => {
                let parsed: f64 = value
                    .parse()
                    .map_err(|_| bad("expected a number from 0 to 1"))?;
                if !(0.0..=1.0).contains(&parsed) {
                    return Err(bad("expected a number from 0 to 1"));
                }
                self.min_cleanable_dirty_ratio = parsed;
            }
            "max.message.bytes" => {
                let parsed: u32 = value
                    .parse()
                    .map_err(|_| bad("expected a positive integer"))?;
                if parsed == 0 || parsed > MAX_MAX_MESSAGE_BYTES {
                    return Err(bad("expected 1 to 67108864"));
                }
                self.max_message_bytes = parsed;
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(bad("expected CreateTime or LogAppendTime")),
                };
            }
            "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
                let parsed: i64 = value
                    .parse()
                    .map_err(|_| bad("expected a non-negative integer"))?;
                if parsed < 0 {
                    return Err(bad("expected a non-negative integer"));
                }
                if key.ends_with("before.max.ms") {
                    self.timestamp_before_max_ms = parsed;
                } else {
                    self.timestamp_after_max_ms = parsed;
                }
            }
            "compression.type" => {
                self.compression = match value {
                    "none" | "uncompressed" => Compression::None,
                    "zstd" => Compression::Zstd,
                    "lz4" => Compression::Lz4,
                    _ => return Err(bad("expected none, zstd or lz4")),
                };
            }
            "export.parquet.enabled" => {
                self.export_enabled = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("expected true or false")),
                };
            }
            "export.parquet.path" => {
                check_export_url(value).map_err(|reason| bad(&reason))?;
                self.export_path = Some(value.to_owned());
            }
            "export.parquet.value.format" => {
                self.export_value_format = ValueFormat::parse(value)
                    .ok_or_else(|| bad("expected binary, string or json"))?;
            }
            "export.parquet.value.schema" => {
                self.export_value_schema =
                    Some(JsonSchema::parse(value).map_err(|reason| bad(&reason))?);
            }
            "export.parquet.target.file.bytes" => {
                let parsed: u64 = value
                    .parse()
                    .map_err(|_| bad("expected a positive integer"))?;
                if !(1024..=MAX_EXPORT_TARGET_FILE_BYTES).contains(&parsed) {
                    return Err(bad("expected 1024 to 536870912"));
                }
                self.export_target_file_bytes = parsed;
            }
            "export.parquet.max.delay.ms" => {
                let parsed: i64 = value
                    .parse()
                    .map_err(|_| bad("expected a positive integer"))?;
                if parsed < 100 {
                    return Err(bad("expected at least 100"));
                }
                self.export_max_delay_ms = parsed;
            }
            _ => return Err(ConfigError::UnknownKey(key.to_owned())),
        }
        Ok(())
    }

    /// Sets one key back to its default (Kafka's `DELETE` of an incremental alter).
    pub fn reset(&mut self, key: &str) -> Result<(), ConfigError> {
        let defaults = Self::default();
        match key {
            "retention.ms" => self.retention_ms = defaults.retention_ms,
            "retention.bytes" => self.retention_bytes = defaults.retention_bytes,
            "cleanup.policy" => self.cleanup_policy = defaults.cleanup_policy,
            "delete.retention.ms" => self.delete_retention_ms = defaults.delete_retention_ms,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = defaults.min_cleanable_dirty_ratio;
            }
            "max.message.bytes" => self.max_message_bytes = defaults.max_message_bytes,
            "message.timestamp.type" => {
                self.message_timestamp_type = defaults.message_timestamp_type;
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms = defaults.timestamp_before_max_ms;
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms = defaults.timestamp_after_max_ms;
            }
            "compression.type" => self.compression = defaults.compression,
            "export.parquet.enabled" => self.export_enabled = defaults.export_enabled,
            "export.parquet.path" => self.export_path = None,
            "export.parquet.value.format" => {
                self.export_value_format = defaults.export_value_format;
            }
            "export.parquet.value.schema" => self.export_value_schema = None,
            "export.parquet.target.file.bytes" => {
                self.export_target_file_bytes = defaults.export_target_file_bytes;
            }
            "export.parquet.max.delay.ms" => {
                self.export_max_delay_ms = defaults.export_max_delay_ms;
            }
            _ => return Err(ConfigError::UnknownKey(key.to_owned())),
        }
        Ok(())
    }

    /// Applies an incremental change: each key of `set` to its value, then each key of
    /// `reset` back to its default. All or nothing.
    pub fn altered(
        &self,
        set: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<Self, ConfigError> {
        let mut altered = self.clone();
        for (key, value) in set {
            altered.set(key, value)?;
        }
        for key in reset {
            altered.reset(key)?;
        }
        Ok(altered)
    }
}

/// Checks an export destination: `file://DIR` or `s3://BUCKET[/PREFIX]`.
fn check_export_url(url: &str) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err("a file:// destination needs a directory".to_owned());
        }
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.len() < 3 {
            return Err("bucket names have at least 3 characters".to_owned());
        }
        return Ok(());
    }
    Err("expected file://DIR or s3://BUCKET/PREFIX".to_owned())
}

fn parse_limit(value: &str) -> Option<i64> {
    let parsed: i64 = value.parse().ok()?;
    (parsed == -1 || parsed > 0).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_known_keys_over_defaults() {
        let pairs = BTreeMap::from([
            ("retention.ms".to_owned(), "2000".to_owned()),
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("compression.type".to_owned(), "zstd".to_owned()),
        ]);
        let config = TopicConfig::from_pairs(&pairs).expect("valid config");
        assert_eq!(config.retention_ms, 2000);
        assert_eq!(config.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let mut config = TopicConfig::default();
        assert!(matches!(
            config.set("retention.minutes", "1"),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            config.set("retention.ms", "0"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            config.set("retention.ms", "soon"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            config.set("min.cleanable.dirty.ratio", "1.5"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            config.set("delete.retention.ms", "-1"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            config.set("max.message.bytes", "0"),
            Err(ConfigError::BadValue { .. })
        ));
        for (key, value) in [
            ("export.parquet.value.format", "avro"),
            ("export.parquet.path", "ftp://x"),
            ("export.parquet.path", "s3://ab"),
            ("export.parquet.value.schema", "{not json"),
            ("export.parquet.target.file.bytes", "10"),
            ("export.parquet.max.delay.ms", "0"),
            ("export.parquet.enabled", "yes"),
        ] {
            assert!(
                matches!(config.set(key, value), Err(ConfigError::BadValue { .. })),
                "{key} = {value}"
            );
        }
        assert_eq!(config, TopicConfig::default());
    }

    #[test]
    fn alters_and_resets_keys_all_or_nothing() {
        let config = TopicConfig::default();
        let set = BTreeMap::from([
            ("export.parquet.enabled".to_owned(), "true".to_owned()),
            ("export.parquet.value.format".to_owned(), "json".to_owned()),
        ]);
        let altered = config.altered(&set, &[]).expect("valid change");
        assert!(altered.export_enabled);
        assert_eq!(altered.export_value_format, ValueFormat::Json);
        let back = altered
            .altered(&BTreeMap::new(), &["export.parquet.enabled".to_owned()])
            .expect("reset");
        assert!(!back.export_enabled);
        assert_eq!(back.export_value_format, ValueFormat::Json);
        let bad = BTreeMap::from([
            ("export.parquet.enabled".to_owned(), "true".to_owned()),
            ("retention.ms".to_owned(), "never".to_owned()),
        ]);
        assert!(config.altered(&bad, &[]).is_err());
        assert!(
            config
                .altered(&BTreeMap::new(), &["nope".to_owned()])
                .is_err()
        );
        let json = serde_json::to_value(&altered).expect("serializes");
        let again: TopicConfig = serde_json::from_value(json).expect("reads back");
        assert_eq!(again, altered);
    }

    #[test]
    fn create_time_is_bounded_by_the_window() {
        let config = TopicConfig::default();
        let now = 1_700_000_000_000;
        assert!(config.check_create_time(now, now).is_ok());
        assert!(
            config.check_create_time(0, now).is_ok(),
            "no bound into the past"
        );
        assert!(config.check_create_time(now + 3_600_000, now).is_ok());
        assert!(config.check_create_time(now + 3_600_001, now).is_err());
        assert!(config.check_create_time(i64::MAX, now).is_err());
        let mut strict = TopicConfig::default();
        strict
            .set("message.timestamp.before.max.ms", "1000")
            .expect("valid");
        assert!(strict.check_create_time(now - 1001, now).is_err());
        assert!(strict.check_create_time(now - 1000, now).is_ok());
        // A config stored before these keys existed reads with Kafka's defaults.
        let old: TopicConfig = serde_json::from_str(
            r#"{"retention.ms":1,"retention.bytes":-1,"cleanup.policy":"delete",
               "max.message.bytes":10,"message.timestamp.type":"CreateTime",
               "compression.type":"none"}"#,
        )
        .expect("old config");
        assert_eq!(old.timestamp_after_max_ms, DEFAULT_TIMESTAMP_AFTER_MAX_MS);
    }

    /// The value `key` has in `config`, read through its wire name.
    fn wire_value(config: &TopicConfig, key: &str) -> serde_json::Value {
        serde_json::to_value(config).expect("serializes")[key].clone()
    }

    #[test]
    fn defaults_are_kafkas_documented_numbers() {
        let defaults = TopicConfig::default();
        assert_eq!(defaults.retention_ms, 604_800_000, "seven days");
        assert_eq!(defaults.retention_bytes, -1, "unlimited");
        assert_eq!(defaults.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(defaults.delete_retention_ms, 86_400_000, "one day");
        assert_eq!(defaults.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(defaults.max_message_bytes, 1_048_588);
        assert_eq!(defaults.message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(defaults.compression, Compression::None);
        assert_eq!(defaults.timestamp_before_max_ms, i64::MAX);
        assert_eq!(defaults.timestamp_after_max_ms, 3_600_000, "one hour");
        assert!(!defaults.export_enabled);
        assert_eq!(defaults.export_path, None);
        assert_eq!(defaults.export_value_format, ValueFormat::Binary);
        assert_eq!(defaults.export_value_schema, None);
        assert_eq!(defaults.export_target_file_bytes, 67_108_864, "64 MiB");
        assert_eq!(defaults.export_max_delay_ms, 60_000, "one minute");
        assert_eq!(MAX_MAX_MESSAGE_BYTES, 67_108_864, "64 MiB");
        assert_eq!(MAX_EXPORT_TARGET_FILE_BYTES, 536_870_912, "512 MiB");
    }

    #[test]
    fn a_config_stored_before_newer_keys_reads_with_their_defaults() {
        let old: TopicConfig = serde_json::from_str(
            r#"{"retention.ms":604800000,"retention.bytes":-1,"cleanup.policy":"delete",
               "max.message.bytes":1048588,"message.timestamp.type":"CreateTime",
               "compression.type":"none"}"#,
        )
        .expect("old config");
        assert_eq!(old, TopicConfig::default());
    }

    #[test]
    fn set_accepts_the_documented_values_and_refuses_the_rest() {
        use serde_json::json;
        // Applied in order to one config, so each accepted value changes the key.
        let accepted: &[(&str, &str, serde_json::Value)] = &[
            ("retention.ms", "-1", json!(-1)),
            ("retention.ms", "1", json!(1)),
            ("retention.ms", "2000", json!(2000)),
            ("retention.bytes", "1", json!(1)),
            ("retention.bytes", "1073741824", json!(1_073_741_824)),
            ("retention.bytes", "-1", json!(-1)),
            ("cleanup.policy", "compact", json!("compact")),
            ("cleanup.policy", "delete", json!("delete")),
            ("delete.retention.ms", "0", json!(0)),
            ("delete.retention.ms", "1", json!(1)),
            ("delete.retention.ms", "86400001", json!(86_400_001)),
            ("min.cleanable.dirty.ratio", "0", json!(0.0)),
            ("min.cleanable.dirty.ratio", "1", json!(1.0)),
            ("min.cleanable.dirty.ratio", "0.25", json!(0.25)),
            ("max.message.bytes", "1", json!(1)),
            ("max.message.bytes", "67108864", json!(67_108_864)),
            ("max.message.bytes", "1000", json!(1000)),
            (
                "message.timestamp.type",
                "LogAppendTime",
                json!("LogAppendTime"),
            ),
            ("message.timestamp.type", "CreateTime", json!("CreateTime")),
            ("message.timestamp.before.max.ms", "0", json!(0)),
            ("message.timestamp.before.max.ms", "1", json!(1)),
            ("message.timestamp.before.max.ms", "1000", json!(1000)),
            ("message.timestamp.after.max.ms", "0", json!(0)),
            ("message.timestamp.after.max.ms", "2000", json!(2000)),
            (
                "message.timestamp.after.max.ms",
                "9223372036854775807",
                json!(i64::MAX),
            ),
            ("compression.type", "zstd", json!("zstd")),
            ("compression.type", "uncompressed", json!("none")),
            ("compression.type", "lz4", json!("lz4")),
            ("compression.type", "none", json!("none")),
            ("export.parquet.enabled", "true", json!(true)),
            ("export.parquet.enabled", "false", json!(false)),
            (
                "export.parquet.path",
                "file:///var/export",
                json!("file:///var/export"),
            ),
            ("export.parquet.path", "s3://abc", json!("s3://abc")),
            (
                "export.parquet.path",
                "s3://my-bucket/exports",
                json!("s3://my-bucket/exports"),
            ),
            ("export.parquet.value.format", "json", json!("json")),
            ("export.parquet.value.format", "string", json!("string")),
            ("export.parquet.value.format", "binary", json!("binary")),
            (
                "export.parquet.value.schema",
                r#"{"id":"long","name":"string"}"#,
                json!({"id": "long", "name": "string"}),
            ),
            ("export.parquet.target.file.bytes", "1024", json!(1024)),
            (
                "export.parquet.target.file.bytes",
                "536870912",
                json!(536_870_912),
            ),
            ("export.parquet.max.delay.ms", "100", json!(100)),
            ("export.parquet.max.delay.ms", "60001", json!(60_001)),
        ];
        let refused: &[(&str, &[&str])] = &[
            ("retention.ms", &["0", "-2", "soon", "", "1.5"]),
            ("retention.bytes", &["0", "-2", "lots"]),
            ("cleanup.policy", &["Delete", "compact,delete", ""]),
            ("delete.retention.ms", &["-1", "day"]),
            ("min.cleanable.dirty.ratio", &["-0.1", "1.5", "NaN", "half"]),
            ("max.message.bytes", &["0", "67108865", "-1", "big"]),
            ("message.timestamp.type", &["createtime", "NoTimestampType"]),
            ("message.timestamp.before.max.ms", &["-1", "x"]),
            ("message.timestamp.after.max.ms", &["-1", "x"]),
            ("compression.type", &["gzip", "snappy", "ZSTD", "producer"]),
            ("export.parquet.enabled", &["yes", "TRUE", "1"]),
            (
                "export.parquet.path",
                &[
                    "file://",
                    "s3://ab",
                    "s3://ab/prefix",
                    "ftp://host/x",
                    "/var/x",
                ],
            ),
            ("export.parquet.value.format", &["avro", "JSON"]),
            (
                "export.parquet.value.schema",
                &["{", "{}", r#"{"a":"decimal"}"#],
            ),
            (
                "export.parquet.target.file.bytes",
                &["1023", "536870913", "0", "-1", "x"],
            ),
            ("export.parquet.max.delay.ms", &["99", "0", "-1", "x"]),
        ];

        let mut config = TopicConfig::default();
        for (key, value, expected) in accepted {
            config
                .set(key, value)
                .unwrap_or_else(|error| panic!("{key} = {value:?} refused: {error}"));
            assert_eq!(&wire_value(&config, key), expected, "{key} = {value:?}");
        }
        for (key, values) in refused {
            for value in *values {
                let before = config.clone();
                let error = config.set(key, value).expect_err("refused");
                assert!(
                    matches!(&error, ConfigError::BadValue { key: k, value: v, .. }
                        if k == key && v == value),
                    "{key} = {value:?}: {error:?}"
                );
                assert_eq!(config, before, "{key} = {value:?} changed the config");
            }
        }
        for key in ["retention.minutes", "", "RETENTION.MS", "export.parquet"] {
            assert_eq!(
                config.set(key, "1"),
                Err(ConfigError::UnknownKey(key.to_owned()))
            );
        }
    }

    #[test]
    fn each_timestamp_bound_sets_only_its_own_field() {
        let mut config = TopicConfig::default();
        config
            .set("message.timestamp.after.max.ms", "5")
            .expect("valid");
        assert_eq!(config.timestamp_after_max_ms, 5);
        assert_eq!(config.timestamp_before_max_ms, i64::MAX);
        config
            .set("message.timestamp.before.max.ms", "7")
            .expect("valid");
        assert_eq!(config.timestamp_before_max_ms, 7);
        assert_eq!(config.timestamp_after_max_ms, 5);
    }

    #[test]
    fn reset_returns_every_key_to_its_default() {
        let changes = [
            ("retention.ms", "1"),
            ("retention.bytes", "1"),
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", "1"),
            ("min.cleanable.dirty.ratio", "0.9"),
            ("max.message.bytes", "1"),
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "1"),
            ("message.timestamp.after.max.ms", "1"),
            ("compression.type", "zstd"),
            ("export.parquet.enabled", "true"),
            ("export.parquet.path", "file:///var/export"),
            ("export.parquet.value.format", "json"),
            ("export.parquet.value.schema", r#"{"a":"long"}"#),
            ("export.parquet.target.file.bytes", "2048"),
            ("export.parquet.max.delay.ms", "1000"),
        ];
        let defaults = TopicConfig::default();
        let mut config = TopicConfig::default();
        for (key, value) in changes {
            config.set(key, value).expect("valid change");
            assert_ne!(
                wire_value(&config, key),
                wire_value(&defaults, key),
                "{key} = {value:?} is not a change"
            );
        }
        for (key, _) in changes {
            config
                .reset(key)
                .unwrap_or_else(|error| panic!("reset {key}: {error}"));
            assert_eq!(
                wire_value(&config, key),
                wire_value(&defaults, key),
                "{key}"
            );
        }
        assert_eq!(config, defaults);
        assert_eq!(
            config.reset("retention.minutes"),
            Err(ConfigError::UnknownKey("retention.minutes".to_owned()))
        );
    }
}
