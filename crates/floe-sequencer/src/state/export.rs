//! Parquet export cursors and topic configuration changes.
//!
//! Each partition's cursor says which offsets are in the export. A file is written in two
//! steps around its PUT: `BeginExport` records the offset range it covers, `CommitExport`
//! moves the cursor past it. A broker that dies between the two leaves the range recorded,
//! and whoever exports the partition next writes exactly that range again, to the same
//! object, so no offset ever lands in two files.

use std::collections::BTreeMap;

use floe_core::{JsonSchema, TopicId};
use serde::{Deserialize, Serialize};

use super::{ClusterState, PartitionState, TopicState};
use crate::error::ApplyError;

/// Where a partition's export stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCursor {
    /// Every offset below this is exported (or was gone before it could be).
    pub next_offset: u64,
    /// The range of the file being written, recorded before its PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<ExportRange>,
    /// Files written since export began.
    pub files: u64,
    /// Parquet bytes written.
    pub bytes: u64,
    /// Records written.
    pub records: u64,
    /// When the cursor last moved (ms, the proposer's clock).
    pub updated_ms: i64,
    /// Why the last attempt failed, and when (ms); cleared when the cursor moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<(i64, String)>,
}

/// The longest export error kept in the state.
pub const MAX_EXPORT_ERROR: usize = 512;

/// Offsets `from..end` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRange {
    pub from: u64,
    pub end: u64,
}

impl PartitionState {
    /// The first offset not yet exported: the cursor, or the log start when the cursor is
    /// behind it or export never ran.
    pub fn export_next(&self) -> u64 {
        self.export
            .as_ref()
            .map_or(self.log_start_offset, |cursor| cursor.next_offset)
            .max(self.log_start_offset)
    }

    /// The range a re-run must write again, if a file was begun and not committed.
    pub fn export_pending(&self) -> Option<ExportRange> {
        self.export.as_ref().and_then(|cursor| cursor.pending)
    }

    /// The lowest offset retention and keyed compaction may not pass: the cursor while
    /// export is enabled, and a begun file's start even when it is not (the file is
    /// finished before anything under it goes).
    pub fn export_hold(&self, export_enabled: bool) -> Option<u64> {
        if export_enabled {
            Some(self.export_next())
        } else {
            self.export_pending().map(|range| range.from)
        }
    }
}

impl TopicState {
    /// The lowest offset of a partition that retention and keyed compaction may not pass
    /// (see [`PartitionState::export_hold`]).
    pub fn export_floor(&self, partition: &PartitionState) -> Option<u64> {
        partition.export_hold(self.config.export_enabled)
    }

    /// Whether the partition has export work: enabled with records past the cursor, or a
    /// begun file to finish (even with export since disabled).
    pub fn export_due(&self, partition: &PartitionState) -> bool {
        partition.export_pending().is_some()
            || (self.config.export_enabled && partition.export_next() < partition.high_watermark)
    }
}

impl ClusterState {
    fn export_partition(
        &mut self,
        topic_id: TopicId,
        partition: u32,
    ) -> Result<(bool, &mut Option<JsonSchema>, &mut PartitionState), ApplyError> {
        let topic = self.topic_mut_by_id(topic_id)?;
        let enabled = topic.config.export_enabled;
        let partition_count = topic.partition_count();
        let TopicState {
            partitions,
            export_schema,
            ..
        } = topic;
        let state = partitions
            .get_mut(partition as usize)
            .ok_or(ApplyError::UnknownPartition {
                partition,
                partitions: partition_count,
            })?;
        Ok((enabled, export_schema, state))
    }

    /// Records the range of a file about to be written. Applies only at the cursor, and
    /// only while no other file is pending (the same range again is accepted: a re-run).
    pub(super) fn begin_export(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        range: ExportRange,
        schema: Option<&JsonSchema>,
        at_ms: i64,
    ) -> Result<(), ApplyError> {
        let (enabled, topic_schema, state) = self.export_partition(topic_id, partition)?;
        if !enabled {
            return Err(ApplyError::ExportMoved(format!(
                "export of partition {partition} is disabled"
            )));
        }
        check_range(partition, state, range)?;
        if let (Some(file), Some(topic)) = (schema, topic_schema.as_ref())
            && let Some((name, kind)) = file.fields.iter().find(|(name, kind)| {
                topic.fields.get(*name).is_some_and(|current| {
                    current != *kind && current.widen(**kind) != Some(**kind)
                })
            })
        {
            // Another partition's file typed the column first: this file is rebuilt from
            // the topic's schema.
            return Err(ApplyError::ExportMoved(format!(
                "column {name:?} is {:?} in the topic's export schema, not {kind:?}",
                topic.fields[name]
            )));
        }
        if let Some(pending) = state.export_pending()
            && pending != range
        {
            return Err(ApplyError::ExportMoved(format!(
                "partition {partition} has offsets {}..{} pending, not {}..{}",
                pending.from, pending.end, range.from, range.end
            )));
        }
        let next = state.export_next();
        let cursor = state.export.get_or_insert_with(ExportCursor::default);
        cursor.next_offset = next;
        cursor.pending = Some(range);
        cursor.updated_ms = at_ms;
        if let Some(schema) = schema {
            *topic_schema = Some(match topic_schema.as_ref() {
                Some(current) => current.merged(schema),
                None => schema.clone(),
            });
        }
        Ok(())
    }

    /// Moves the cursor past a written range: the pending one, or (with no file) a range
    /// that held no records.
    pub(super) fn commit_export(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        range: ExportRange,
        written: ExportWritten,
        at_ms: i64,
    ) -> Result<u64, ApplyError> {
        let (_, _, state) = self.export_partition(topic_id, partition)?;
        check_range(partition, state, range)?;
        let pending = state.export_pending();
        if pending != (written.files > 0).then_some(range) {
            return Err(ApplyError::ExportMoved(format!(
                "partition {partition}: offsets {}..{} are not the pending export ({pending:?})",
                range.from, range.end
            )));
        }
        let cursor = state.export.get_or_insert_with(ExportCursor::default);
        cursor.next_offset = range.end;
        cursor.pending = None;
        cursor.files += u64::from(written.files);
        cursor.bytes += written.bytes;
        cursor.records += written.records;
        cursor.updated_ms = at_ms;
        cursor.last_error = None;
        Ok(range.end)
    }

    pub(super) fn export_failed(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        error: &str,
        at_ms: i64,
    ) -> Result<(), ApplyError> {
        let (_, _, state) = self.export_partition(topic_id, partition)?;
        let next = state.export_next();
        let cursor = state.export.get_or_insert_with(ExportCursor::default);
        cursor.next_offset = next;
        let mut error = error.to_owned();
        if error.len() > MAX_EXPORT_ERROR {
            let mut cut = MAX_EXPORT_ERROR;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        cursor.last_error = Some((at_ms, error));
        Ok(())
    }

    pub(super) fn alter_topic_config(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<(), ApplyError> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.to_owned()))?;
        topic.config = topic
            .config
            .altered(set, reset)
            .map_err(|error| ApplyError::InvalidConfig(error.to_string()))?;
        Ok(())
    }
}

/// What a committed export step wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportWritten {
    pub files: u32,
    pub records: u64,
    pub bytes: u64,
}

/// A range must start at the cursor, be non-empty and end at or below the high watermark.
fn check_range(
    partition: u32,
    state: &PartitionState,
    range: ExportRange,
) -> Result<(), ApplyError> {
    let next = state.export_next();
    if range.from != next {
        return Err(ApplyError::ExportMoved(format!(
            "partition {partition} exports from offset {next}, not {}",
            range.from
        )));
    }
    if range.end <= range.from || range.end > state.high_watermark {
        return Err(ApplyError::ExportMoved(format!(
            "offsets {}..{} of partition {partition} are not a range below its high watermark \
             {}",
            range.from, range.end, state.high_watermark
        )));
    }
    Ok(())
}
