//! The export cursor's commands, the holds it puts on retention and compaction, topic
//! configuration changes and ACLs.

use std::collections::BTreeMap;

use floe_core::{SegmentId, TopicId};

use super::tests::{batch, create, sample_acl};
use super::*;

fn export_topic(state: &mut ClusterState, cleanup: &str) -> TopicId {
    let id = create(state, 1, "t", 1);
    let alter = Command::AlterTopicConfig {
        name: "t".into(),
        set: [
            ("export.parquet.enabled".to_owned(), "true".to_owned()),
            ("cleanup.policy".to_owned(), cleanup.to_owned()),
        ]
        .into(),
        reset: Vec::new(),
    };
    state.apply(2, &alter).expect("alter");
    for (index, count) in [(3, 10), (4, 10), (5, 10)] {
        let command = Command::CommitSegment {
            segment: SegmentId::generate(),
            batches: vec![batch(id, 0, count)],
            guards: Vec::new(),
            at_ms: 0,
        };
        state.apply(index, &command).expect("commit");
    }
    id
}

fn begin_export(id: TopicId, from: u64, end: u64) -> Command {
    Command::BeginExport {
        topic_id: id,
        partition: 0,
        range: ExportRange { from, end },
        schema: None,
        at_ms: 1,
    }
}

fn commit_export(id: TopicId, from: u64, end: u64, files: u32) -> Command {
    Command::CommitExport {
        topic_id: id,
        partition: 0,
        range: ExportRange { from, end },
        written: ExportWritten {
            files,
            records: end - from,
            bytes: 100,
        },
        at_ms: 2,
    }
}

#[test]
fn export_cursor_moves_only_past_the_pending_file() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    let partition = |state: &ClusterState| state.topic("t").expect("topic").partitions[0].clone();
    assert_eq!(partition(&state).export_next(), 0);
    // A commit without a begun file, out of place, beyond the end: refused.
    assert!(state.apply(6, &commit_export(id, 0, 10, 1)).is_err());
    assert!(state.apply(7, &begin_export(id, 5, 10)).is_err());
    assert!(state.apply(8, &begin_export(id, 0, 31)).is_err());
    state.apply(9, &begin_export(id, 0, 12)).expect("begin");
    // A re-run of the same range is accepted; another range is not.
    state
        .apply(10, &begin_export(id, 0, 12))
        .expect("same range again");
    let refused = state
        .apply(11, &begin_export(id, 0, 11))
        .expect_err("other range");
    assert_eq!(refused.code(), "export_cursor_moved");
    assert!(state.apply(12, &commit_export(id, 0, 11, 1)).is_err());
    assert!(
        state.apply(13, &commit_export(id, 0, 12, 0)).is_err(),
        "a skip while a file is pending"
    );
    assert_eq!(
        state
            .apply(14, &commit_export(id, 0, 12, 1))
            .expect("commit"),
        Outcome::ExportCommitted(12)
    );
    let cursor = partition(&state).export.expect("cursor");
    assert_eq!(
        (cursor.next_offset, cursor.files, cursor.records),
        (12, 1, 12)
    );
    assert_eq!(cursor.pending, None);
    // A range without records moves the cursor without a file.
    state
        .apply(15, &commit_export(id, 12, 20, 0))
        .expect("skip");
    assert_eq!(partition(&state).export_next(), 20);
}

#[test]
fn retention_and_keyed_compaction_wait_for_the_export() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    let trim = |offset| Command::TrimPartitions {
        at_ms: 0,
        trims: vec![Trim {
            topic_id: id,
            partition: 0,
            log_start_offset: offset,
        }],
    };
    state.apply(6, &trim(20)).expect("trim");
    let partition = |state: &ClusterState| state.topic("t").expect("topic").partitions[0].clone();
    assert_eq!(
        partition(&state).log_start_offset,
        0,
        "nothing exported yet"
    );
    state.apply(7, &begin_export(id, 0, 10)).expect("begin");
    state
        .apply(8, &commit_export(id, 0, 10, 1))
        .expect("commit");
    state.apply(9, &trim(20)).expect("trim");
    assert_eq!(partition(&state).log_start_offset, 10);
    assert_eq!(partition(&state).batches.len(), 2);
    // With export off, retention runs free again.
    let off = Command::AlterTopicConfig {
        name: "t".into(),
        set: BTreeMap::new(),
        reset: vec!["export.parquet.enabled".into()],
    };
    state.apply(10, &off).expect("alter");
    state.apply(11, &trim(20)).expect("trim");
    assert_eq!(partition(&state).log_start_offset, 20);

    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "compact");
    let batches: Vec<(u64, BatchLocation)> = partition(&state)
        .batches
        .iter()
        .map(|(base, location)| (*base, *location))
        .collect();
    let swap = |index: u64, state: &mut ClusterState| {
        state.apply(
            index,
            &Command::ReplaceBatches {
                at_ms: 0,
                topic_id: id,
                partition: 0,
                segment: SegmentId::generate(),
                level: CLEANED_LEVEL,
                replaced: batches[..2]
                    .iter()
                    .map(|(base, location)| (*base, location.segment))
                    .collect(),
                batches: vec![Replacement {
                    base_offset: 0,
                    byte_offset: 0,
                    length: 50,
                    offset_count: 20,
                    first_timestamp: 1,
                    max_timestamp: 2,
                    crc32c: 0,
                }],
            },
        )
    };
    assert!(swap(6, &mut state).is_err(), "offsets 0..20 not exported");
    state.apply(7, &begin_export(id, 0, 20)).expect("begin");
    state
        .apply(8, &commit_export(id, 0, 20, 1))
        .expect("commit");
    swap(9, &mut state).expect("exported offsets compact");
}

#[test]
fn bad_config_changes_are_refused_whole() {
    let mut state = ClusterState::default();
    create(&mut state, 1, "t", 1);
    let before = state.topic("t").expect("topic").config.clone();
    let alter = Command::AlterTopicConfig {
        name: "t".into(),
        set: [
            ("export.parquet.enabled".to_owned(), "true".to_owned()),
            ("export.parquet.value.format".to_owned(), "avro".to_owned()),
        ]
        .into(),
        reset: Vec::new(),
    };
    let refused = state.apply(2, &alter).expect_err("bad value");
    assert_eq!(refused.code(), "invalid_config");
    assert_eq!(state.topic("t").expect("topic").config, before);
    let unknown = Command::AlterTopicConfig {
        name: "nope".into(),
        set: BTreeMap::new(),
        reset: Vec::new(),
    };
    assert_eq!(
        state.apply(3, &unknown).expect_err("unknown").code(),
        "unknown_topic"
    );
}

#[test]
fn a_begun_file_holds_retention_after_export_is_disabled() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    state.apply(6, &begin_export(id, 0, 10)).expect("begin");
    let off = Command::AlterTopicConfig {
        name: "t".into(),
        set: BTreeMap::new(),
        reset: vec!["export.parquet.enabled".into()],
    };
    state.apply(7, &off).expect("disable");
    // A zombie's late begin is refused while export is off.
    assert!(state.apply(8, &begin_export(id, 0, 10)).is_err());
    let trim = Command::TrimPartitions {
        at_ms: 0,
        trims: vec![Trim {
            topic_id: id,
            partition: 0,
            log_start_offset: 30,
        }],
    };
    state.apply(9, &trim).expect("trim");
    let partition = |state: &ClusterState| state.topic("t").expect("topic").partitions[0].clone();
    assert_eq!(
        partition(&state).log_start_offset,
        0,
        "the begun file holds it"
    );
    assert!(
        state
            .topic("t")
            .expect("topic")
            .export_due(&partition(&state))
    );
    state
        .apply(10, &commit_export(id, 0, 10, 1))
        .expect("finish the file");
    state.apply(11, &trim).expect("trim");
    assert_eq!(partition(&state).log_start_offset, 30);
    assert!(
        !state
            .topic("t")
            .expect("topic")
            .export_due(&partition(&state))
    );
}

#[test]
fn a_file_typed_against_the_topic_schema_is_refused() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    let schema = |text: &str| Some(floe_core::JsonSchema::parse(text).expect("schema"));
    let begin = |from, end, file: Option<floe_core::JsonSchema>| Command::BeginExport {
        topic_id: id,
        partition: 0,
        range: ExportRange { from, end },
        schema: file,
        at_ms: 1,
    };
    state
        .apply(6, &begin(0, 10, schema(r#"{"x":"long","y":"string"}"#)))
        .expect("first file types the columns");
    state
        .apply(7, &commit_export(id, 0, 10, 1))
        .expect("commit");
    // Another partition inferred x as a string meanwhile: refused, the file is rebuilt.
    assert!(
        state
            .apply(8, &begin(10, 20, schema(r#"{"x":"string"}"#)))
            .is_err()
    );
    // Widening long to double is what files do.
    state
        .apply(9, &begin(10, 20, schema(r#"{"x":"double","z":"boolean"}"#)))
        .expect("widened");
    let topic_schema = state
        .topic("t")
        .expect("topic")
        .export_schema
        .clone()
        .expect("schema");
    assert_eq!(
        topic_schema,
        schema(r#"{"x":"double","y":"string","z":"boolean"}"#).expect("s")
    );
}

#[test]
fn acls_are_added_all_or_none_and_survive_a_snapshot() {
    let mut state = ClusterState::default();
    let outcome = state
        .apply(
            1,
            &Command::CreateAcls {
                acls: vec![sample_acl("alice"), sample_acl("bob")],
            },
        )
        .expect("create");
    assert_eq!(outcome, Outcome::AclsCreated(2));
    let again = state
        .apply(
            2,
            &Command::CreateAcls {
                acls: vec![sample_acl("alice")],
            },
        )
        .expect("again");
    assert_eq!(again, Outcome::AclsCreated(0));
    let bad = state.apply(
        3,
        &Command::CreateAcls {
            acls: vec![sample_acl("carol"), sample_acl("")],
        },
    );
    assert_eq!(bad.expect_err("empty principal").code(), "invalid_acl");
    assert_eq!(
        state.acls().count(),
        2,
        "nothing of a refused command applies"
    );
    let json = serde_json::to_string(&state).expect("snapshot");
    let mut back: ClusterState = serde_json::from_str(&json).expect("restore");
    back.rebuild_derived();
    assert_eq!(
        back.acls().collect::<Vec<_>>(),
        state.acls().collect::<Vec<_>>()
    );
    let removed = state
        .apply(
            4,
            &Command::DeleteAcls {
                acls: vec![sample_acl("alice"), sample_acl("zed")],
            },
        )
        .expect("delete");
    assert_eq!(removed, Outcome::AclsDeleted(1));
    assert_eq!(state.acls().count(), 1);
}

/// The floor retention and keyed compaction keep above (the broker's jobs ask for it):
/// the cursor while export is on, a begun file's start once it is off, none after.
#[test]
fn the_export_floor_follows_the_cursor_then_the_begun_file() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    let floor = |state: &ClusterState| {
        let topic = state.topic("t").expect("topic");
        topic.export_floor(&topic.partitions[0])
    };
    let due = |state: &ClusterState| {
        let topic = state.topic("t").expect("topic");
        topic.export_due(&topic.partitions[0])
    };
    assert_eq!(floor(&state), Some(0));
    assert!(due(&state), "30 records past the cursor");
    state.apply(6, &begin_export(id, 0, 10)).expect("begin");
    state
        .apply(7, &commit_export(id, 0, 10, 1))
        .expect("commit");
    assert_eq!(floor(&state), Some(10));
    state.apply(8, &begin_export(id, 10, 25)).expect("begin");
    let off = Command::AlterTopicConfig {
        name: "t".into(),
        set: BTreeMap::new(),
        reset: vec!["export.parquet.enabled".into()],
    };
    state.apply(9, &off).expect("disable");
    assert_eq!(floor(&state), Some(10), "the begun file holds its start");
    state
        .apply(10, &commit_export(id, 10, 25, 1))
        .expect("finish");
    assert_eq!(floor(&state), None);
}

/// The cursor counts every file, byte and record committed; a failure is recorded with
/// its time, cut to `MAX_EXPORT_ERROR` bytes on a character boundary, and cleared when
/// the cursor next moves.
#[test]
fn the_cursor_counts_what_was_written_and_keeps_the_last_error_bounded() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    let cursor = |state: &ClusterState| {
        state.topic("t").expect("topic").partitions[0]
            .export
            .clone()
            .expect("a cursor")
    };
    let failed = |error: &str| Command::ExportFailed {
        topic_id: id,
        partition: 0,
        error: error.into(),
        at_ms: 40,
    };
    state.apply(6, &failed("store down")).expect("failed");
    assert_eq!(
        cursor(&state).last_error,
        Some((40, "store down".to_owned()))
    );
    // 200 three-byte characters: 600 bytes, cut to the last boundary at or below 512.
    let long = "€".repeat(200);
    state.apply(7, &failed(&long)).expect("failed");
    let (_, kept) = cursor(&state).last_error.expect("an error");
    assert_eq!(kept.len(), 510);
    assert!(long.starts_with(&kept));
    let exactly = "x".repeat(super::export::MAX_EXPORT_ERROR);
    state.apply(8, &failed(&exactly)).expect("failed");
    assert_eq!(cursor(&state).last_error, Some((40, exactly)));
    assert_eq!(cursor(&state).next_offset, 0, "a failure does not move it");

    state.apply(9, &begin_export(id, 0, 10)).expect("begin");
    state
        .apply(10, &commit_export(id, 0, 10, 1))
        .expect("commit");
    state.apply(11, &begin_export(id, 10, 30)).expect("begin");
    state
        .apply(12, &commit_export(id, 10, 30, 3))
        .expect("commit");
    let cursor = cursor(&state);
    assert_eq!(cursor.last_error, None);
    assert_eq!(
        (
            cursor.next_offset,
            cursor.files,
            cursor.records,
            cursor.bytes
        ),
        (30, 4, 30, 200)
    );
}

/// A partition has export work while records lie past the cursor and export is on, or a
/// begun file is open: not once the cursor reaches the high watermark, and not for
/// records past the cursor once export is off.
#[test]
fn export_is_due_only_for_records_past_the_cursor_while_enabled() {
    let mut state = ClusterState::default();
    let id = export_topic(&mut state, "delete");
    let due = |state: &ClusterState| {
        let topic = state.topic("t").expect("topic");
        topic.export_due(&topic.partitions[0])
    };
    assert!(due(&state), "30 records past the cursor");
    state.apply(6, &begin_export(id, 0, 30)).expect("begin");
    assert!(due(&state), "a begun file");
    state
        .apply(7, &commit_export(id, 0, 30, 1))
        .expect("commit");
    assert!(!due(&state), "the cursor is at the high watermark");
    let more = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(id, 0, 5)],
        guards: Vec::new(),
        at_ms: 0,
    };
    state.apply(8, &more).expect("commit");
    assert!(due(&state), "5 new records");
    let off = Command::AlterTopicConfig {
        name: "t".into(),
        set: BTreeMap::new(),
        reset: vec!["export.parquet.enabled".into()],
    };
    state.apply(9, &off).expect("disable");
    assert!(!due(&state), "records past the cursor, but export is off");
}
