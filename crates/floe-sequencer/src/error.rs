//! Errors of the state machine, the log backends and the sequencer.

use floe_core::{ErrorKind, TopicId};

/// Why a command was rejected by the state machine. Rejection is deterministic: every
/// replica applying the same log rejects the same commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ApplyError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic id {0} does not exist (deleted while the produce was in flight)")]
    UnknownTopicId(TopicId),
    #[error("partition {partition} does not exist; the topic has {partitions}")]
    UnknownPartition { partition: u32, partitions: u32 },
    #[error("partition count must be between 1 and {max}, got {requested}")]
    BadPartitionCount { requested: u32, max: u32 },
    #[error(
        "topic {name:?} has {current} partitions; partitions can only grow, not to {requested}"
    )]
    PartitionsCannotShrink {
        name: String,
        current: u32,
        requested: u32,
    },
    /// The object is older than the orphan horizon and may already be swept away.
    #[error(
        "object {segment} was created at or before the orphan horizon ({horizon_ms} ms); is this broker's clock behind?"
    )]
    ObjectTooOld { segment: String, horizon_ms: i64 },
    /// A compaction's swap found its run changed (trimmed or swapped meanwhile).
    #[error("compaction swap refused: {0}")]
    StaleReplacement(String),
    /// A compaction's swap was malformed.
    #[error("compaction swap is malformed: {0}")]
    BadReplacement(String),
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("member {member:?} is not in group {group:?} (expired, left or never joined); rejoin")]
    UnknownMember { group: String, member: String },
    #[error(
        "member {member:?} is at epoch {current}, not {epoch}; heartbeat for the current assignment"
    )]
    StaleMemberEpoch {
        member: String,
        epoch: u64,
        current: u64,
    },
    #[error("member {member:?} does not own partition {partition} of topic id {topic_id}")]
    PartitionNotOwned {
        member: String,
        topic_id: TopicId,
        partition: u32,
    },
    #[error("group {group:?} has {members} members; only an empty group allows this")]
    GroupNotEmpty { group: String, members: usize },
    /// A coordinator wrote from a generation another write has replaced.
    #[error("group {group:?} is at generation {actual}, not {expected}")]
    GroupChanged {
        group: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid group write: {0}")]
    BadGroupWrite(String),
    #[error(
        "offset {offset} of partition {partition} is beyond its high watermark {high_watermark}"
    )]
    OffsetBeyondEnd {
        partition: u32,
        offset: u64,
        high_watermark: u64,
    },
    #[error(
        "offset {offset} of partition {partition} is below its log start offset {log_start_offset}"
    )]
    OffsetBeforeStart {
        partition: u32,
        offset: u64,
        log_start_offset: u64,
    },
    #[error("{0}")]
    InvalidConfig(String),
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error("the cluster holds the most ACLs it may ({limit}); remove some first")]
    TooManyAcls { limit: usize },
    /// An export step found the cursor elsewhere (another broker exported meanwhile).
    #[error("export cursor moved: {0}")]
    ExportMoved(String),
    #[error("producer {0} is not known (never initialised, or expired): initialise a new one")]
    UnknownProducer(u64),
    #[error("producer {producer_id} is at epoch {current}; epoch {epoch} is fenced")]
    ProducerFenced {
        producer_id: u64,
        epoch: u16,
        current: u16,
    },
    #[error("producer {0} has used every epoch; initialise a new producer")]
    ProducerEpochExhausted(u64),
    #[error("producer {producer_id} sent sequence {sequence}; the next it may send is {expected}")]
    OutOfOrderSequence {
        producer_id: u64,
        expected: u64,
        sequence: u64,
    },
    #[error(
        "producer {producer_id} already committed sequence {sequence} with other partitions or \
         record counts: a retry must resend the same records"
    )]
    DuplicateMismatch { producer_id: u64, sequence: u64 },
    #[error("partition {partition}'s next offset is {actual}, not the expected {expected}")]
    OffsetMismatch {
        partition: u32,
        expected: u64,
        actual: u64,
    },
    #[error("a conditional append goes to one partition; this one has {0} batches")]
    BadConditionalAppend(usize),
    #[error("the most producers allowed ({limit}) are in use; idle ones expire")]
    TooManyProducers { limit: usize },
    #[error("an idempotent request writes to at most {limit} partitions, not {batches}")]
    TooManyIdempotentBatches { batches: usize, limit: usize },
}

impl ApplyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TopicExists(_) => ErrorKind::Conflict,
            Self::UnknownTopic(_) | Self::UnknownTopicId(_) | Self::UnknownPartition { .. } => {
                ErrorKind::NotFound
            }
            Self::BadPartitionCount { .. }
            | Self::PartitionsCannotShrink { .. }
            | Self::BadReplacement(_) => ErrorKind::Invalid,
            Self::StaleReplacement(_) => ErrorKind::Conflict,
            Self::ObjectTooOld { .. } => ErrorKind::Unavailable,
            Self::UnknownGroup(_) => ErrorKind::NotFound,
            Self::UnknownMember { .. }
            | Self::StaleMemberEpoch { .. }
            | Self::PartitionNotOwned { .. }
            | Self::GroupNotEmpty { .. }
            | Self::GroupChanged { .. } => ErrorKind::Conflict,
            Self::BadGroupWrite(_) => ErrorKind::Invalid,
            Self::OffsetBeyondEnd { .. } => ErrorKind::Unprocessable,
            Self::OffsetBeforeStart { .. } => ErrorKind::OutOfRange,
            Self::InvalidConfig(_) => ErrorKind::Invalid,
            Self::ExportMoved(_) => ErrorKind::Conflict,
            Self::InvalidAcl(_) => ErrorKind::Invalid,
            Self::TooManyAcls { .. } => ErrorKind::Conflict,
            Self::UnknownProducer(_) => ErrorKind::NotFound,
            Self::ProducerFenced { .. }
            | Self::ProducerEpochExhausted(_)
            | Self::OutOfOrderSequence { .. }
            | Self::DuplicateMismatch { .. }
            | Self::TooManyProducers { .. } => ErrorKind::Conflict,
            Self::OffsetMismatch { .. } => ErrorKind::PreconditionFailed,
            Self::BadConditionalAppend(_) => ErrorKind::Invalid,
            Self::TooManyIdempotentBatches { .. } => ErrorKind::Unprocessable,
        }
    }

    /// The stable `error_code` clients see for this rejection.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TopicExists(_) => "topic_exists",
            Self::UnknownTopic(_) | Self::UnknownTopicId(_) => "unknown_topic",
            Self::UnknownPartition { .. } => "unknown_partition",
            Self::BadPartitionCount { .. } | Self::PartitionsCannotShrink { .. } => {
                "invalid_partition_count"
            }
            // Background commands; a produce only meets the horizon (a broker clock far
            // behind), which is retryable.
            Self::ObjectTooOld { .. } => "unavailable",
            Self::StaleReplacement(_) => "conflict",
            Self::BadReplacement(_) | Self::BadGroupWrite(_) => "invalid_request",
            Self::UnknownGroup(_) => "unknown_group",
            Self::UnknownMember { .. } => "unknown_member",
            Self::StaleMemberEpoch { .. } => "stale_member_epoch",
            Self::PartitionNotOwned { .. } => "partition_not_owned",
            Self::GroupNotEmpty { .. } => "group_not_empty",
            Self::GroupChanged { .. } => "group_changed",
            Self::OffsetBeyondEnd { .. } => "offset_beyond_end",
            Self::OffsetBeforeStart { .. } => "offset_out_of_range",
            Self::InvalidConfig(_) => "invalid_config",
            Self::ExportMoved(_) => "export_cursor_moved",
            Self::InvalidAcl(_) => "invalid_acl",
            Self::TooManyAcls { .. } | Self::TooManyProducers { .. } => "limit_reached",
            Self::UnknownProducer(_) => "unknown_producer_id",
            Self::ProducerFenced { .. } | Self::ProducerEpochExhausted(_) => "producer_fenced",
            Self::OutOfOrderSequence { .. } => "out_of_order_sequence",
            Self::DuplicateMismatch { .. } => "duplicate_sequence_mismatch",
            Self::OffsetMismatch { .. } => "offset_mismatch",
            Self::BadConditionalAppend(_) => "invalid_request",
            Self::TooManyIdempotentBatches { .. } => "too_many_partitions",
        }
    }
}

/// A log backend failure.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log i/o at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log data directory {0} is in use by another process")]
    Locked(String),
    #[error("log is corrupt: {0}")]
    Corrupt(String),
    #[error("log backend failed and cannot continue: {0}")]
    Poisoned(String),
    /// Nothing was written: these sessions are no longer their brokers' registrations.
    #[error("stale broker sessions: {0:?}")]
    Fenced(Vec<crate::log::Fence>),
    /// An etcd request failed or timed out.
    #[error("etcd: {0}")]
    Etcd(String),
    /// Where a cluster keeps its state snapshots failed to store, find or delete one.
    #[error("snapshot store: {0}")]
    SnapshotStore(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This process is no longer the sequencer leader; nothing was written.
    #[error("no longer the sequencer leader: {0}")]
    Deposed(String),
    /// Another snapshot was installed before this one (at least as new, or while this
    /// one was written); this one was not.
    #[error("snapshot at index {offered} not installed: the pointer is at index {installed}")]
    SnapshotSuperseded { installed: u64, offered: u64 },
}

impl LogError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// Why a submission to the sequencer failed.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    #[error("sequencer log unavailable: {0}")]
    Log(#[from] LogError),
    #[error("sequencer log append failed: {0}")]
    Unavailable(String),
    #[error("sequencer stopped")]
    Stopped,
    /// The submitting broker's session ended (paused or cut off past its lease).
    #[error("broker session is no longer live; the commit was refused: {0}")]
    Fenced(String),
    /// Sent to a broker that is not the sequencer leader; nothing was committed.
    #[error("not the sequencer leader")]
    NotLeader,
    /// A cluster broker does not know who leads yet, so it cannot commit.
    #[error("no sequencer leader is known yet")]
    NoLeader,
    /// Meant for a cluster (a forwarded command), sent to an embedded sequencer.
    #[error("this broker runs the embedded sequencer")]
    NotClustered,
    /// A command too large for one log entry (etcd refuses requests over 1.5 MiB, and a
    /// refused append would end the leader's term); nothing was written.
    #[error("a {size}-byte command is over the log's {limit}-byte limit for one entry")]
    CommandTooLarge { size: usize, limit: usize },
}

impl SequencerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Rejected(error) => error.kind(),
            Self::Log(_)
            | Self::Unavailable(_)
            | Self::Stopped
            | Self::Fenced(_)
            | Self::NotLeader
            | Self::NoLeader => ErrorKind::Unavailable,
            Self::NotClustered => ErrorKind::NotFound,
            Self::CommandTooLarge { .. } => ErrorKind::Unprocessable,
        }
    }

    /// The stable `error_code` clients see for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(error) => error.code(),
            Self::NotClustered => "not_clustered",
            Self::CommandTooLarge { .. } => "command_too_large",
            Self::Log(_)
            | Self::Unavailable(_)
            | Self::Stopped
            | Self::Fenced(_)
            | Self::NotLeader
            | Self::NoLeader => "unavailable",
        }
    }
}
