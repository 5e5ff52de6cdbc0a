//! Broker errors and the kind each maps to.

use std::time::Duration;

use floe_core::{ConfigError, ErrorKind, NameError};
use floe_sequencer::{ApplyError, SequencerError};
use floe_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic name: {0}")]
    InvalidTopicName(#[from] NameError),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic {topic:?} does not exist; it has {partitions}")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("group {group:?} has no member {member:?}")]
    UnknownMember { group: String, member: String },
    #[error("invalid topic config: {0}")]
    InvalidConfig(#[from] ConfigError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("record {index}: {reason}")]
    InvalidTimestamp { index: usize, reason: String },
    #[error("record {index} {reason}")]
    InvalidRecord { index: usize, reason: String },
    #[error("a produce request writes to at most {limit} partitions, not {partitions}")]
    TooManyPartitions { partitions: usize, limit: usize },
    #[error("record {index} is {size} bytes; the topic's max.message.bytes is {limit}")]
    RecordTooLarge {
        index: usize,
        size: usize,
        limit: u32,
    },
    #[error(
        "offset {offset} is outside the partition's range [{log_start_offset}, {high_watermark}]"
    )]
    OffsetOutOfRange {
        offset: u64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    #[error("broker buffers are full ({buffered} bytes waiting to commit); retry shortly")]
    Busy {
        buffered: usize,
        retry_after: Duration,
    },
    #[error("{0}")]
    LimitReached(String),
    /// The memory budget for requests in flight is spent; retry shortly.
    #[error("{0}; retry shortly")]
    MemorySpent(#[source] floe_core::BudgetSpent),
    #[error("{0}")]
    Unavailable(String),
    #[error("broker is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A background job's run that cannot fit its memory limit (never a request's answer).
    #[error("{0}")]
    RunTooLarge(String),
}

impl From<ApplyError> for BrokerError {
    fn from(error: ApplyError) -> Self {
        Self::Sequencer(SequencerError::Rejected(error))
    }
}

impl BrokerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidTopicName(_) | Self::InvalidConfig(_) | Self::InvalidRequest(_) => {
                ErrorKind::Invalid
            }
            Self::InvalidTimestamp { .. }
            | Self::InvalidRecord { .. }
            | Self::TooManyPartitions { .. } => ErrorKind::Unprocessable,
            Self::UnknownTopic(_)
            | Self::UnknownPartition { .. }
            | Self::UnknownGroup(_)
            | Self::UnknownMember { .. } => ErrorKind::NotFound,
            Self::LimitReached(_) => ErrorKind::Conflict,
            Self::RecordTooLarge { .. } => ErrorKind::TooLarge,
            Self::OffsetOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::Busy { .. } | Self::MemorySpent(_) => ErrorKind::Busy,
            Self::ShuttingDown | Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Sequencer(error) => error.kind(),
            Self::Storage(error) => error.kind(),
            Self::Corrupt(_) | Self::RunTooLarge(_) => ErrorKind::Internal,
        }
    }

    /// The stable `error_code` clients see for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTopicName(_) => "invalid_topic_name",
            Self::UnknownTopic(_) => "unknown_topic",
            Self::UnknownPartition { .. } => "unknown_partition",
            Self::UnknownGroup(_) => "unknown_group",
            Self::UnknownMember { .. } => "unknown_member",
            Self::InvalidConfig(_) => "invalid_config",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidTimestamp { .. } => "invalid_timestamp",
            Self::InvalidRecord { .. } => "invalid_record",
            Self::TooManyPartitions { .. } => "too_many_partitions",
            Self::RecordTooLarge { .. } => "record_too_large",
            Self::OffsetOutOfRange { .. } => "offset_out_of_range",
            Self::Busy { .. } | Self::MemorySpent(_) => "busy",
            Self::LimitReached(_) => "limit_reached",
            Self::ShuttingDown | Self::Unavailable(_) => "unavailable",
            Self::Sequencer(error) => error.code(),
            Self::Storage(error) => error.code(),
            Self::Corrupt(_) | Self::RunTooLarge(_) => "internal",
        }
    }

    /// How long a client should wait before retrying, for retryable errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after, .. } => Some(*retry_after),
            Self::MemorySpent(_) => Some(Duration::from_secs(1)),
            _ if matches!(self.kind(), ErrorKind::Unavailable) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}
