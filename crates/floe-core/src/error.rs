//! The one classification of failures that callers act on.

use serde::{Deserialize, Serialize};

/// What a caller can do about a failure; every crate's error maps onto one of these, and the
/// HTTP layer maps each to exactly one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule; retrying it unchanged cannot succeed.
    Invalid,
    /// Well-formed, but a record breaks a rule of its topic (a timestamp too far from
    /// now, a keyless record on a compacted topic); retrying it unchanged cannot succeed.
    Unprocessable,
    /// A named thing (topic, partition) does not exist.
    NotFound,
    /// The request conflicts with current state (for example the topic already exists).
    Conflict,
    /// An offset outside the partition's retained range.
    OutOfRange,
    /// A condition the request set does not hold (a conditional append's expected offset).
    PreconditionFailed,
    /// A record or request over a configured size limit.
    TooLarge,
    /// The server is shedding load; retry after a pause.
    Busy,
    /// A dependency (store, sequencer) is unavailable; retry after a pause.
    Unavailable,
    /// The caller lost the right to act (a deposed sequencer leader, a stale owner).
    Fenced,
    /// A bug or corrupted data: not the caller's fault, not retryable as is.
    Internal,
}
