//! Topic configuration changes and Parquet export status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `PATCH /v1/topics/{topic}/config`: Kafka's incremental alter. Keys in `set` take their
/// values, keys in `reset` go back to their defaults; all or nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterConfigRequest {
    /// Kafka-style keys; values may be strings, numbers or booleans.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    #[serde(default)]
    pub reset: Vec<String>,
}

/// `GET /v1/topics/{topic}/export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportStatus {
    pub topic: String,
    /// `export.parquet.enabled`.
    pub enabled: bool,
    /// Where files go: the configured URL, or the cluster store's `export/`.
    pub path: String,
    /// `binary`, `string` or `json`.
    pub value_format: String,
    /// With `json`: the typed columns (field → type), configured or inferred so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<BTreeMap<String, String>>,
    pub partitions: Vec<PartitionExport>,
}

/// One partition's export progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionExport {
    pub partition: u32,
    /// Every offset below this is exported.
    pub cursor: u64,
    pub high_watermark: u64,
    /// Records not yet exported.
    pub lag_records: u64,
    /// How long the oldest record not yet exported has been in the log, in seconds.
    pub lag_seconds: f64,
    /// A file begun and not yet committed: `[from, end)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<[u64; 2]>,
    /// Files, Parquet bytes and records written since export began.
    pub files: u64,
    pub bytes: u64,
    pub records: u64,
    /// The broker exporting the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Why the last attempt failed; cleared when the cursor next moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ExportError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportError {
    pub at_ms: i64,
    pub message: String,
}
