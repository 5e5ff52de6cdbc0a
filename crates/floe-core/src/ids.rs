//! Identifiers: topics, segments, and the rules for topic names.

use std::fmt;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// A topic's numeric identity, assigned by the sequencer and never reused, so a topic
/// deleted and created again under the same name is a different topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub u64);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A segment object's identity: a ULID, unique across brokers and sortable by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentId(pub Ulid);

impl SegmentId {
    /// Returns a fresh identifier.
    pub fn generate() -> Self {
        Self(Ulid::new())
    }

    /// When the identifier was generated (ms since the Unix epoch, by the generating
    /// broker's clock). The orphan sweep and the commit horizon compare against it.
    pub fn created_ms(&self) -> i64 {
        i64::try_from(self.0.timestamp_ms()).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The longest topic name accepted, as in Kafka.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name is {0} characters long; the limit is {MAX_TOPIC_NAME_LEN}")]
    TooLong(usize),
    #[error("topic name may not be '.' or '..'")]
    Dots,
    #[error("topic name contains {0:?}; allowed are ASCII letters, digits, '.', '_' and '-'")]
    BadCharacter(char),
}

/// Checks a topic name against Kafka's rules: 1 to 249 characters from `[a-zA-Z0-9._-]`,
/// and not `.` or `..`. Names are used in object keys and URLs, so nothing else passes.
pub fn validate_topic_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let length = name.chars().count();
    if length > MAX_TOPIC_NAME_LEN {
        return Err(NameError::TooLong(length));
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadCharacter(bad));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for name in ["orders", "orders.v2", "a_b-c", "x", &"n".repeat(249)] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_names_that_escape_paths_or_urls() {
        assert_eq!(validate_topic_name(""), Err(NameError::Empty));
        assert_eq!(validate_topic_name(".."), Err(NameError::Dots));
        assert_eq!(validate_topic_name("."), Err(NameError::Dots));
        assert_eq!(
            validate_topic_name("a/b"),
            Err(NameError::BadCharacter('/'))
        );
        assert_eq!(
            validate_topic_name("a\u{7}"),
            Err(NameError::BadCharacter('\u{7}'))
        );
        assert_eq!(
            validate_topic_name("a b"),
            Err(NameError::BadCharacter(' '))
        );
        assert_eq!(
            validate_topic_name(&"n".repeat(300)),
            Err(NameError::TooLong(300))
        );
    }
}
