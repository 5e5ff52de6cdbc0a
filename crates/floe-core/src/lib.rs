//! The vocabulary every other floe crate speaks: identifiers, the record model, topic
//! configuration, Kafka's key partitioner, the batch codec (Kafka RecordBatch v2) and the
//! segment codec, plus the small error-kind enum callers act on.
//!
//! This crate does no I/O and owns no threads: it turns values into bytes and back, and
//! every decoder here returns an error on malformed input instead of panicking.

pub mod acl;
pub mod batch;
pub mod budget;
pub mod clock;
pub mod config;
pub mod error;
pub mod export;
pub mod ids;
pub mod metrics;
pub mod partitioner;
pub mod record;
pub mod segment;
pub mod settings;

pub use acl::{Acl, Operation, Permission, ResourceKind, ResourcePattern};
pub use batch::{Compression, DecodedBatch, decode_batch, encode_batch, encode_batch_at};
pub use budget::{BudgetSpent, MemoryBudget, Reservation};
pub use clock::{Clock, SystemClock};
pub use config::{CleanupPolicy, ConfigError, TimestampType, TopicConfig};
pub use error::ErrorKind;
pub use export::{JsonSchema, JsonType, ValueFormat};
pub use ids::{
    IdentifierError, NameError, SegmentId, TopicId, validate_group_name, validate_member_id,
    validate_topic_name,
};
pub use record::{Header, Record};
pub use settings::InvalidSetting;
