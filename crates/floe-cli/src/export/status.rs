//! `floe export status`: the continuous export's settings and each partition's progress.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use floe_api::{ExportStatus, PartitionExport};
use indicatif::HumanBytes;

const COLUMNS: [&str; 9] = [
    "partition",
    "cursor",
    "high_watermark",
    "lag_records",
    "lag_seconds",
    "files",
    "bytes",
    "owner",
    "last_error",
];

/// The status as text: a header line, the JSON columns if any, then one row per partition.
pub fn render(status: &ExportStatus) -> String {
    let mut out = String::new();
    let enabled = if status.enabled {
        "enabled"
    } else {
        "disabled"
    };
    let _ = writeln!(
        out,
        "topic {}: export {enabled}, path {}, value format {}",
        status.topic, status.path, status.value_format
    );
    if let Some(schema) = &status.schema {
        let schema = serde_json::to_string(schema).unwrap_or_default();
        let _ = writeln!(out, "schema {schema}");
    }
    let rows: Vec<[String; 9]> = status.partitions.iter().map(row).collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = COLUMNS.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            match index {
                // Names and messages read best left-aligned; the last is not padded.
                8 => line.push_str(cell),
                7 => {
                    let _ = write!(line, "{cell:<width$}  ");
                }
                _ => {
                    let _ = write!(line, "{cell:>width$}  ");
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn row(partition: &PartitionExport) -> [String; 9] {
    let last_error = partition.last_error.as_ref().map_or_else(
        || "-".to_owned(),
        |error| {
            let at = u64::try_from(error.at_ms)
                .ok()
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
            match at {
                Some(at) => format!(
                    "{} ({})",
                    error.message,
                    humantime::format_rfc3339_seconds(at)
                ),
                None => error.message.clone(),
            }
        },
    );
    [
        partition.partition.to_string(),
        partition.cursor.to_string(),
        partition.high_watermark.to_string(),
        partition.lag_records.to_string(),
        format!("{:.1}", partition.lag_seconds),
        partition.files.to_string(),
        HumanBytes(partition.bytes).to_string(),
        partition.owner.clone().unwrap_or_else(|| "-".to_owned()),
        last_error,
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use floe_api::ExportError;

    use super::*;

    fn partition(number: u32) -> PartitionExport {
        PartitionExport {
            partition: number,
            cursor: 100,
            high_watermark: 150,
            lag_records: 50,
            lag_seconds: 12.34,
            pending: None,
            files: 3,
            bytes: 3 * 1024 * 1024,
            records: 100,
            owner: Some("http://10.0.0.1:8080".into()),
            last_error: None,
        }
    }

    #[test]
    fn renders_a_header_and_a_row_per_partition() {
        let mut failing = partition(1);
        failing.owner = None;
        failing.last_error = Some(ExportError {
            at_ms: 1_796_205_600_000,
            message: "writing to s3://b/p: access denied".into(),
        });
        let status = ExportStatus {
            topic: "orders".into(),
            enabled: true,
            path: "s3://b/p".into(),
            value_format: "json".into(),
            schema: Some(BTreeMap::from([("total".into(), "double".into())])),
            partitions: vec![partition(0), failing],
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "topic orders: export enabled, path s3://b/p, value format json"
        );
        assert_eq!(lines[1], r#"schema {"total":"double"}"#);
        assert!(lines[2].starts_with("partition  cursor  high_watermark"));
        assert!(lines[3].contains("3.00 MiB"), "{}", lines[3]);
        assert!(lines[3].contains("12.3"), "{}", lines[3]);
        assert!(
            lines[3].ends_with("http://10.0.0.1:8080  -"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].ends_with("access denied (2026-12-02T10:00:00Z)"),
            "{}",
            lines[4]
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn a_disabled_export_without_partitions_is_a_header_only() {
        let status = ExportStatus {
            topic: "t".into(),
            enabled: false,
            path: "file:///x".into(),
            value_format: "binary".into(),
            schema: None,
            partitions: Vec::new(),
        };
        let text = render(&status);
        assert!(text.starts_with("topic t: export disabled"));
        assert_eq!(text.lines().count(), 2);
    }
}
