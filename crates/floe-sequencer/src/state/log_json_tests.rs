//! Commands as the log writes them: every command round-trips through its JSON, keeps
//! the shape older brokers read, and `approximate_size` bounds that JSON closely.

use floe_core::{SegmentId, TopicConfig, TopicId};

use super::tests::{batch, sample_acl};
use super::*;

/// One sample of every command (some twice, with and without their optional parts).
fn sample_commands() -> Vec<Command> {
    use std::collections::BTreeMap;

    use crate::state::{GroupMember, MemberFence, OffsetCommit, OffsetReset};

    let topic = TopicId(7);
    let segment = SegmentId::generate();
    let mut partitions: crate::state::PartitionMap<u64> = BTreeMap::new();
    partitions.entry(topic).or_default().insert(3, 9);
    vec![
        Command::CreateTopic {
            name: "t".into(),
            partitions: 2,
            config: TopicConfig::default(),
            created_ms: 5,
        },
        Command::DeleteTopic {
            name: "t".into(),
            at_ms: 6,
        },
        Command::AddPartitions {
            name: "t".into(),
            count: 4,
        },
        Command::CommitSegment {
            segment,
            batches: vec![batch(topic, 1, 3)],
            guards: Vec::new(),
            at_ms: 0,
        },
        Command::AssignOwners {
            changes: vec![OwnerChange {
                topic_id: topic,
                partition: 1,
                owner: Some("b1".into()),
            }],
        },
        Command::TrimPartitions {
            at_ms: 7,
            trims: vec![Trim {
                topic_id: topic,
                partition: 0,
                log_start_offset: 11,
            }],
        },
        Command::ReplaceBatches {
            at_ms: 8,
            topic_id: topic,
            partition: 0,
            segment,
            level: 2,
            replaced: vec![(0, segment)],
            batches: vec![Replacement {
                base_offset: 0,
                byte_offset: 16,
                length: 40,
                offset_count: 3,
                first_timestamp: 1,
                max_timestamp: 2,
                crc32c: 3,
            }],
        },
        // A merge of many small batches into one: the replaced list dominates.
        Command::ReplaceBatches {
            at_ms: 8,
            topic_id: topic,
            partition: 0,
            segment,
            level: 1,
            replaced: vec![(0, segment); 10],
            batches: vec![Replacement {
                base_offset: 0,
                byte_offset: 16,
                length: 40,
                offset_count: 30,
                first_timestamp: 1,
                max_timestamp: 2,
                crc32c: 3,
            }],
        },
        Command::RaiseOrphanHorizon { horizon_ms: 9 },
        Command::ForgetObjects {
            segments: vec![segment],
        },
        Command::WriteGroup {
            group: "g".into(),
            expected_generation: 4,
            members: [(
                "m".to_owned(),
                GroupMember {
                    epoch: 9,
                    topics: vec!["t".into()],
                    session_timeout_ms: 45_000,
                    rebalance_timeout_ms: 60_000,
                    auto_offset_reset: OffsetReset::Earliest,
                    partitions,
                },
            )]
            .into_iter()
            .collect(),
            at_ms: 10,
        },
        Command::CommitOffsets {
            group: "g".into(),
            member: Some(MemberFence {
                member_id: "m".into(),
                member_epoch: 9,
            }),
            offsets: vec![OffsetCommit {
                topic_id: topic,
                partition: 3,
                offset: 12,
                metadata: "x".into(),
            }],
            at_ms: 11,
        },
        Command::DeleteGroup {
            group: "g".into(),
            idle_before_ms: Some(12),
        },
        Command::AlterTopicConfig {
            name: "t".into(),
            set: [("export.parquet.enabled".to_owned(), "true".to_owned())].into(),
            reset: vec!["retention.ms".into()],
        },
        Command::BeginExport {
            topic_id: topic,
            partition: 1,
            range: ExportRange { from: 3, end: 9 },
            schema: Some(floe_core::JsonSchema::parse(r#"{"total":"double"}"#).expect("schema")),
            at_ms: 13,
        },
        Command::ExportFailed {
            topic_id: topic,
            partition: 1,
            error: "store down".into(),
            at_ms: 14,
        },
        Command::CreateAcls {
            acls: vec![sample_acl("alice")],
        },
        Command::CommitSegment {
            segment,
            batches: vec![batch(topic, 1, 3), batch(topic, 0, 2)],
            guards: vec![crate::state::RequestGuard {
                first: 0,
                count: 2,
                producer: Some(crate::state::ProducerTag {
                    producer_id: 4,
                    epoch: 1,
                    sequence: 17,
                }),
                expected_next_offset: Some(40),
                timestamp_ms: 12,
                principal: Some("alice".into()),
            }],
            at_ms: 15,
        },
        Command::InitProducer {
            existing: Some((4, 1)),
            principal: Some("alice".into()),
            at_ms: 16,
        },
        Command::InitProducer {
            existing: None,
            principal: None,
            at_ms: 16,
        },
        Command::ExpireProducers { idle_before_ms: 17 },
        Command::DeleteAcls {
            acls: vec![sample_acl("*")],
        },
        Command::CommitExport {
            topic_id: topic,
            partition: 1,
            range: ExportRange { from: 3, end: 9 },
            written: ExportWritten {
                files: 1,
                records: 6,
                bytes: 900,
            },
            at_ms: 14,
        },
    ]
}

/// Every command reads back from the log's JSON as it was written: a command that
/// serialises but does not parse would stop recovery for good (integer map keys inside
/// this internally tagged enum once did). The match has no wildcard, so a new command
/// cannot be added without a sample here.
#[test]
fn every_command_round_trips_through_the_log_json() {
    let commands = sample_commands();
    for command in &commands {
        match command {
            Command::CreateTopic { .. }
            | Command::DeleteTopic { .. }
            | Command::AddPartitions { .. }
            | Command::CommitSegment { .. }
            | Command::AssignOwners { .. }
            | Command::TrimPartitions { .. }
            | Command::ReplaceBatches { .. }
            | Command::RaiseOrphanHorizon { .. }
            | Command::ForgetObjects { .. }
            | Command::WriteGroup { .. }
            | Command::CommitOffsets { .. }
            | Command::DeleteGroup { .. }
            | Command::AlterTopicConfig { .. }
            | Command::BeginExport { .. }
            | Command::ExportFailed { .. }
            | Command::CreateAcls { .. }
            | Command::DeleteAcls { .. }
            | Command::CommitExport { .. }
            | Command::InitProducer { .. }
            | Command::ExpireProducers { .. } => {}
        }
        let json = serde_json::to_vec(command).expect("encode");
        let back: Command = serde_json::from_slice(&json)
            .unwrap_or_else(|error| panic!("{command:?} does not read back: {error}"));
        assert_eq!(&back, command);
    }
}

/// `command` with every list in it `n` times as long and its free text long and full of
/// characters JSON escapes (`\u0001` takes 6 bytes): the worst case an estimate must hold.
fn grown(command: Command, n: usize) -> Command {
    fn times<T: Clone>(items: Vec<T>, n: usize) -> Vec<T> {
        items
            .iter()
            .cycle()
            .take(items.len() * n)
            .cloned()
            .collect()
    }
    let text = |n: usize| "\u{1}\"".repeat(n);
    match command {
        Command::CommitSegment {
            segment,
            batches,
            guards,
            at_ms,
        } => Command::CommitSegment {
            segment,
            batches: times(batches, n),
            guards: times(guards, n)
                .into_iter()
                .map(|guard| crate::state::RequestGuard {
                    principal: guard.principal.map(|_| text(127)),
                    ..guard
                })
                .collect(),
            at_ms,
        },
        Command::InitProducer {
            existing,
            principal,
            at_ms,
        } => Command::InitProducer {
            existing,
            principal: principal.map(|_| text(127)),
            at_ms,
        },
        Command::AssignOwners { changes } => Command::AssignOwners {
            changes: times(changes, n),
        },
        Command::TrimPartitions { at_ms, trims } => Command::TrimPartitions {
            at_ms,
            trims: times(trims, n),
        },
        Command::ReplaceBatches {
            at_ms,
            topic_id,
            partition,
            segment,
            level,
            replaced,
            batches,
        } => Command::ReplaceBatches {
            at_ms,
            topic_id,
            partition,
            segment,
            level,
            replaced: times(replaced, n)
                .into_iter()
                .map(|(_, segment)| (u64::MAX, segment))
                .collect(),
            batches: times(batches, n),
        },
        Command::ForgetObjects { segments } => Command::ForgetObjects {
            segments: times(segments, n),
        },
        Command::WriteGroup {
            group,
            expected_generation,
            members,
            at_ms,
        } => {
            let (_, member) = members.into_iter().next().expect("a member");
            let members = (0..n)
                .map(|i| {
                    let mut member = member.clone();
                    member.topics = vec![format!("topic-{i}"); 3];
                    for (&topic, partitions) in member.partitions.iter_mut() {
                        for partition in 0..n as u32 {
                            partitions.insert(partition, topic.0 + 1_000_000);
                        }
                    }
                    (format!("member-{i}-{}", "m".repeat(36)), member)
                })
                .collect();
            Command::WriteGroup {
                group: format!("{group}{}", "g".repeat(200)),
                expected_generation,
                members,
                at_ms,
            }
        }
        Command::CommitOffsets {
            group,
            member,
            offsets,
            at_ms,
        } => Command::CommitOffsets {
            group,
            member,
            offsets: times(offsets, n)
                .into_iter()
                .map(|offset| crate::state::OffsetCommit {
                    metadata: text(100),
                    offset: u64::MAX,
                    ..offset
                })
                .collect(),
            at_ms,
        },
        Command::AlterTopicConfig { name, set, reset } => Command::AlterTopicConfig {
            name,
            set: (0..n)
                .map(|i| (format!("key.{i}"), text(50)))
                .chain(set)
                .collect(),
            reset: times(reset, n),
        },
        Command::BeginExport {
            topic_id,
            partition,
            range,
            schema: Some(_),
            at_ms,
        } => {
            let schema = doubles((0..n).map(|i| format!(r#"field-{i}-\u0001\""#)));
            Command::BeginExport {
                topic_id,
                partition,
                range,
                schema: Some(schema),
                at_ms,
            }
        }
        Command::ExportFailed {
            topic_id,
            partition,
            error: _,
            at_ms,
        } => Command::ExportFailed {
            topic_id,
            partition,
            error: text(n * 10),
            at_ms,
        },
        Command::CreateAcls { acls } => Command::CreateAcls {
            acls: times(acls, n),
        },
        Command::DeleteAcls { acls } => Command::DeleteAcls {
            acls: times(acls, n),
        },
        other => other,
    }
}

/// `approximate_size` decides how many commands one log entry groups and refuses a
/// command over etcd's request limit before the log is touched, so it must never be
/// below the command's log JSON, and must stay close to it (within 8× and 1 KiB) or
/// groups would hold needlessly few commands. Each command's sample, as is and grown.
#[test]
fn approximate_size_bounds_the_log_json_closely() {
    for sample in sample_commands() {
        let variants = [
            (sample.clone(), 8),
            (grown(sample.clone(), 200), 8),
            (long_names(sample), 2),
        ];
        for (command, slack) in variants {
            let json = serde_json::to_vec(&command).expect("encode").len();
            let estimate = command.approximate_size();
            let name = format!("{command:?}").chars().take(60).collect::<String>();
            assert!(
                json <= estimate,
                "{name}…: {json} bytes of JSON, estimated {estimate}"
            );
            assert!(
                estimate <= slack * json + 1024,
                "{name}…: {json} bytes of JSON, estimated {estimate}"
            );
        }
    }
}

/// A schema of `double` columns named by `names` (JSON string contents, escapes allowed).
fn doubles(names: impl Iterator<Item = String>) -> floe_core::JsonSchema {
    let fields: Vec<String> = names.map(|name| format!(r#""{name}":"double""#)).collect();
    floe_core::JsonSchema::parse(&format!("{{{}}}", fields.join(","))).expect("schema")
}

/// ACLs of the longest principals (printable: quotes) and resource names (not checked:
/// control characters).
fn long_acls(acls: Vec<floe_core::Acl>) -> Vec<floe_core::Acl> {
    let name = floe_core::acl::MAX_ACL_NAME;
    acls.into_iter()
        .map(|acl| floe_core::Acl {
            principal: "\"".repeat(name),
            resource: format!("topic:{}", "\u{1}".repeat(name))
                .parse()
                .expect("resource"),
            ..acl
        })
        .collect()
}

/// `command` with its names at their longest: group names and member ids of quotes (the
/// printable character JSON escapes), twenty members of ten of the longest topic names,
/// many config keys.
fn long_names(command: Command) -> Command {
    let group = "\"".repeat(floe_core::ids::MAX_GROUP_NAME_LEN);
    let member_id = "\"".repeat(floe_core::ids::MAX_MEMBER_ID_LEN);
    let topic = "t".repeat(floe_core::ids::MAX_TOPIC_NAME_LEN);
    match command {
        Command::WriteGroup {
            expected_generation,
            members,
            at_ms,
            ..
        } => {
            let (_, mut member) = members.into_iter().next().expect("a member");
            member.topics = vec![topic; 10];
            let members = (0..20)
                .map(|i| {
                    let id = format!("{}{i:02}", &member_id[2..]);
                    (id, member.clone())
                })
                .collect();
            Command::WriteGroup {
                group,
                expected_generation,
                members,
                at_ms,
            }
        }
        Command::CommitOffsets {
            member,
            offsets,
            at_ms,
            ..
        } => Command::CommitOffsets {
            group,
            member: member.map(|fence| crate::state::MemberFence { member_id, ..fence }),
            offsets,
            at_ms,
        },
        Command::DeleteGroup { idle_before_ms, .. } => Command::DeleteGroup {
            group,
            idle_before_ms,
        },
        Command::AlterTopicConfig { .. } => Command::AlterTopicConfig {
            name: topic,
            set: (0..100)
                .map(|i| (format!("message.timestamp.after.max.ms.{i:03}"), "1".into()))
                .collect(),
            reset: vec!["message.timestamp.after.max.ms".into(); 100],
        },
        Command::BeginExport {
            topic_id,
            partition,
            range,
            schema: Some(_),
            at_ms,
        } => {
            // Field names come from the user's schema: control characters escape to six
            // bytes each.
            let schema = doubles((0..20).map(|i| format!("{}{i:02}", "\\u0001".repeat(60))));
            Command::BeginExport {
                topic_id,
                partition,
                range,
                schema: Some(schema),
                at_ms,
            }
        }
        Command::CreateAcls { acls } => Command::CreateAcls {
            acls: long_acls(acls),
        },
        Command::DeleteAcls { acls } => Command::DeleteAcls {
            acls: long_acls(acls),
        },
        other => other,
    }
}

/// A segment commit without producers or a seal time is written as brokers before
/// idempotent producers wrote it (no `guards`, no `at_ms`), so a log shared with them
/// during a rolling upgrade stays readable by both.
#[test]
fn a_plain_segment_commit_keeps_the_old_log_shape() {
    let topic = TopicId(7);
    let command = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: vec![batch(topic, 1, 3)],
        guards: Vec::new(),
        at_ms: 0,
    };
    let json: serde_json::Value = serde_json::to_value(&command).expect("encode");
    let fields = json
        .get("CommitSegment")
        .or(Some(&json))
        .and_then(|value| value.as_object())
        .expect("an object");
    assert!(!fields.contains_key("guards"), "{json}");
    assert!(!fields.contains_key("at_ms"), "{json}");
    let sealed = Command::CommitSegment {
        segment: SegmentId::generate(),
        batches: Vec::new(),
        guards: Vec::new(),
        at_ms: 5,
    };
    let json = serde_json::to_string(&sealed).expect("encode");
    assert!(json.contains("\"at_ms\":5"), "{json}");
}
