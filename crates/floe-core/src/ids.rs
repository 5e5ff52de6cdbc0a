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

/// The longest consumer group name accepted, in bytes (Kafka's topic limit; a group name
/// travels in the same places).
pub const MAX_GROUP_NAME_LEN: usize = 249;
/// The longest member id accepted, in bytes.
pub const MAX_MEMBER_ID_LEN: usize = 128;

/// Why a group name or member id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {length} bytes long; the limit is {limit}")]
    TooLong {
        what: &'static str,
        length: usize,
        limit: usize,
    },
    #[error("{what} contains {found:?}; allowed are printable characters other than '/'")]
    BadCharacter { what: &'static str, found: char },
    #[error("{what} may not be '.' or '..' (a URL path cannot name it)")]
    Dots { what: &'static str },
}

/// Checks a consumer group name: 1 to 249 bytes of printable characters, no `/`, not `.`
/// or `..` (it is a path segment of the HTTP API).
pub fn validate_group_name(name: &str) -> Result<(), IdentifierError> {
    validate_identifier("group name", name, MAX_GROUP_NAME_LEN)
}

/// Checks a member id chosen by a client: 1 to 128 bytes of printable characters, no `/`.
pub fn validate_member_id(id: &str) -> Result<(), IdentifierError> {
    validate_identifier("member id", id, MAX_MEMBER_ID_LEN)
}

fn validate_identifier(
    what: &'static str,
    text: &str,
    limit: usize,
) -> Result<(), IdentifierError> {
    if text.is_empty() {
        return Err(IdentifierError::Empty { what });
    }
    if text.len() > limit {
        return Err(IdentifierError::TooLong {
            what,
            length: text.len(),
            limit,
        });
    }
    if let Some(found) = text.chars().find(|c| c.is_control() || *c == '/') {
        return Err(IdentifierError::BadCharacter { what, found });
    }
    if text == "." || text == ".." {
        return Err(IdentifierError::Dots { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_printable_bounded_and_slash_free() {
        for good in [
            "g",
            "orders-readers",
            "with space",
            "ünïcode",
            &"g".repeat(249),
        ] {
            assert_eq!(validate_group_name(good), Ok(()), "{good}");
        }
        assert!(matches!(
            validate_group_name(""),
            Err(IdentifierError::Empty { .. })
        ));
        assert!(matches!(
            validate_group_name(&"g".repeat(250)),
            Err(IdentifierError::TooLong { length: 250, .. })
        ));
        for bad in ["a/b", "tab\there", "nul\0", "del\u{7f}"] {
            assert!(
                matches!(
                    validate_group_name(bad),
                    Err(IdentifierError::BadCharacter { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_group_name(".."),
            Err(IdentifierError::Dots { .. })
        ));
        assert!(validate_member_id(&"m".repeat(129)).is_err());
        assert_eq!(validate_member_id("consumer-1"), Ok(()));
    }

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

    #[test]
    fn ids_print_as_their_number_and_ulid() {
        assert_eq!(TopicId(42).to_string(), "42");
        assert_eq!(TopicId(u64::MAX).to_string(), "18446744073709551615");
        let ulid = Ulid::from_parts(1_700_000_000_000, 7);
        let id = SegmentId(ulid);
        assert_eq!(id.to_string(), ulid.to_string());
        assert_eq!(id.to_string().len(), 26);
        assert_eq!(id.to_string().parse::<Ulid>(), Ok(ulid));
    }

    #[test]
    fn segment_ids_know_when_they_were_made() {
        let id = SegmentId(Ulid::from_parts(1_700_000_000_123, 99));
        assert_eq!(id.created_ms(), 1_700_000_000_123);
        let before = SegmentId(Ulid::from_parts(1_700_000_000_000, u128::MAX));
        assert!(before < id, "sortable by creation time");
    }

    #[test]
    fn generated_segment_ids_are_fresh_and_stamped_with_now() {
        let first = SegmentId::generate();
        let second = SegmentId::generate();
        assert_ne!(first, second);
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        for id in [first, second] {
            assert!(
                (id.created_ms() - now).abs() < 60_000,
                "{id} created at {} not within a minute of {now}",
                id.created_ms()
            );
        }
    }
}
