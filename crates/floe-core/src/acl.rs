//! Access control lists with Kafka's rules: a principal (or `*`) is allowed or denied an
//! operation on a resource (a topic or group by name or prefix, or the cluster); deny wins,
//! and with authorisation on, no matching ACL means no access.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
}

impl Operation {
    pub const ALL: [Self; 6] = [
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Alter,
        Self::Describe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Alter => "alter",
            Self::Describe => "describe",
        }
    }

    /// Kafka's implication: being allowed to read, write, delete or alter a resource
    /// allows describing it.
    fn implies(self, wanted: Self) -> bool {
        self == wanted
            || (wanted == Self::Describe
                && matches!(self, Self::Read | Self::Write | Self::Delete | Self::Alter))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown operation {text:?}; expected read, write, create, delete, alter \
                     or describe"
                )
            })
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Allow,
    Deny,
}

/// The kinds of resource ACLs name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Topic,
    Group,
    Cluster,
}

/// A resource or a set of them: `topic:orders`, `topic:orders.*` (every topic whose name
/// starts with `orders.`), `topic:*` (every topic), the same for `group:`, and `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePattern {
    pub kind: ResourceKind,
    /// The name, or the prefix when `prefixed`; empty for the cluster.
    pub name: String,
    pub prefixed: bool,
}

/// The longest resource name or prefix and principal an ACL may hold.
pub const MAX_ACL_NAME: usize = 255;

impl ResourcePattern {
    pub fn cluster() -> Self {
        Self {
            kind: ResourceKind::Cluster,
            name: String::new(),
            prefixed: false,
        }
    }

    /// A topic the pattern covers (for a prefix, the topic named the prefix itself), to
    /// ask "may the principal write to some topic this pattern allows"; `None` for other
    /// kinds.
    pub fn sample_topic(&self) -> Option<&str> {
        (self.kind == ResourceKind::Topic).then_some(self.name.as_str())
    }

    /// Whether the pattern covers the resource `kind`/`name`.
    pub fn matches(&self, kind: ResourceKind, name: &str) -> bool {
        self.kind == kind
            && (kind == ResourceKind::Cluster
                || if self.prefixed {
                    name.starts_with(&self.name)
                } else {
                    name == self.name
                })
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ResourceKind::Topic => "topic",
            ResourceKind::Group => "group",
            ResourceKind::Cluster => return f.write_str("cluster"),
        };
        let star = if self.prefixed { "*" } else { "" };
        write!(f, "{kind}:{}{star}", self.name)
    }
}

impl FromStr for ResourcePattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "cluster" {
            return Ok(Self::cluster());
        }
        let (kind, name) = match text.split_once(':') {
            Some(("topic", name)) => (ResourceKind::Topic, name),
            Some(("group", name)) => (ResourceKind::Group, name),
            _ => {
                return Err(format!(
                    "resource {text:?}: expected topic:NAME, topic:PREFIX*, group:NAME, \
                     group:PREFIX* or cluster"
                ));
            }
        };
        let (name, prefixed) = match name.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (name, false),
        };
        if name.contains('*') {
            return Err(format!(
                "resource {text:?}: '*' may only end a name (a prefix)"
            ));
        }
        if (name.is_empty() && !prefixed) || name.len() > MAX_ACL_NAME {
            return Err(format!(
                "resource {text:?}: the name has 1 to {MAX_ACL_NAME} bytes (or use a prefix)"
            ));
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
            prefixed,
        })
    }
}

impl Serialize for ResourcePattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourcePattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One rule: `principal` (or `*`, everyone) is allowed or denied `operation` on the
/// resources `resource` covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub principal: String,
    pub resource: ResourcePattern,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    /// Refuses principals that are empty, too long or hold control characters.
    pub fn validate(&self) -> Result<(), String> {
        if self.principal.is_empty()
            || self.principal.len() > MAX_ACL_NAME
            || self.principal.chars().any(char::is_control)
        {
            return Err(format!(
                "principal {:?}: 1 to {MAX_ACL_NAME} bytes, no control characters",
                self.principal
            ));
        }
        Ok(())
    }

    fn covers(
        &self,
        principal: &str,
        operation: Operation,
        kind: ResourceKind,
        name: &str,
    ) -> bool {
        (self.principal == "*" || self.principal == principal)
            && self.resource.matches(kind, name)
            && self.operation.implies(operation)
    }
}

/// Kafka's decision for `principal` doing `operation` on `kind`/`name`: a matching deny
/// refuses (a deny of describe does not refuse the operations that imply it); else a
/// matching allow permits; else no access.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a Acl>,
    principal: &str,
    operation: Operation,
    kind: ResourceKind,
    name: &str,
) -> bool {
    let mut allowed = false;
    for acl in acls {
        let denies = acl.permission == Permission::Deny
            && (acl.principal == "*" || acl.principal == principal)
            && acl.resource.matches(kind, name)
            && acl.operation == operation;
        if denies {
            return false;
        }
        if acl.permission == Permission::Allow && acl.covers(principal, operation, kind, name) {
            allowed = true;
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(principal: &str, resource: &str, operation: Operation, permission: Permission) -> Acl {
        Acl {
            principal: principal.into(),
            resource: resource.parse().expect("resource"),
            operation,
            permission,
        }
    }

    #[test]
    fn patterns_parse_and_print_back() {
        for text in [
            "topic:orders",
            "topic:orders.*",
            "topic:*",
            "group:billing",
            "cluster",
        ] {
            let pattern: ResourcePattern = text.parse().expect("pattern");
            assert_eq!(pattern.to_string(), text);
        }
        for bad in ["orders", "topic:", "topic:a*b", "queue:x", "group:**"] {
            assert!(bad.parse::<ResourcePattern>().is_err(), "{bad}");
        }
        let prefix: ResourcePattern = "topic:orders.*".parse().expect("prefix");
        assert!(prefix.matches(ResourceKind::Topic, "orders.eu"));
        assert!(!prefix.matches(ResourceKind::Topic, "orders"));
        assert!(!prefix.matches(ResourceKind::Group, "orders.eu"));
    }

    #[test]
    fn deny_wins_no_acl_means_no_access_and_describe_is_implied() {
        use Operation::*;
        use Permission::*;
        let acls = vec![
            acl("alice", "topic:orders*", Write, Allow),
            acl("*", "topic:public", Read, Allow),
            acl("bob", "topic:public", Read, Deny),
            acl("carol", "topic:secret", Describe, Deny),
            acl("carol", "topic:secret", Read, Allow),
        ];
        let can = |who, op, name| authorize(&acls, who, op, ResourceKind::Topic, name);
        assert!(can("alice", Write, "orders.eu"));
        assert!(
            can("alice", Describe, "orders.eu"),
            "write implies describe"
        );
        assert!(!can("alice", Read, "orders.eu"));
        assert!(!can("alice", Delete, "orders"));
        assert!(can("dave", Read, "public"), "* allows everyone");
        assert!(!can("bob", Read, "public"), "deny wins");
        assert!(
            can("bob", Describe, "public"),
            "a read deny leaves the describe everyone's read implies (Kafka's rule)"
        );
        assert!(!can("erin", Write, "other"), "no ACL, no access");
        assert!(
            !can("carol", Describe, "secret"),
            "an explicit describe deny"
        );
        assert!(can("carol", Read, "secret"), "a describe deny leaves read");
        assert!(!authorize(
            &acls,
            "alice",
            Write,
            ResourceKind::Group,
            "orders"
        ));
    }

    #[test]
    fn operations_have_kafkas_names_both_ways() {
        let names: Vec<String> = Operation::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["read", "write", "create", "delete", "alter", "describe"]
        );
        for operation in Operation::ALL {
            assert_eq!(operation.as_str().parse::<Operation>(), Ok(operation));
        }
        let refused = "produce"
            .parse::<Operation>()
            .expect_err("unknown operation");
        assert!(refused.contains("\"produce\""), "{refused}");
    }

    #[test]
    fn only_topic_patterns_offer_a_sample_topic() {
        let sample = |text: &str| {
            let pattern: ResourcePattern = text.parse().expect("pattern");
            pattern.sample_topic().map(str::to_owned)
        };
        assert_eq!(sample("topic:orders").as_deref(), Some("orders"));
        assert_eq!(sample("topic:orders.*").as_deref(), Some("orders."));
        assert_eq!(sample("topic:*").as_deref(), Some(""));
        assert_eq!(sample("group:orders"), None);
        assert_eq!(sample("cluster"), None);
    }

    #[test]
    fn names_and_principals_are_bounded() {
        let longest = "n".repeat(MAX_ACL_NAME);
        let too_long = "n".repeat(MAX_ACL_NAME + 1);
        assert!(
            format!("topic:{longest}")
                .parse::<ResourcePattern>()
                .is_ok()
        );
        assert!(
            format!("topic:{longest}*")
                .parse::<ResourcePattern>()
                .is_ok()
        );
        assert!(
            format!("topic:{too_long}")
                .parse::<ResourcePattern>()
                .is_err()
        );
        assert!(
            format!("group:{too_long}*")
                .parse::<ResourcePattern>()
                .is_err()
        );

        let with = |principal: &str| Acl {
            principal: principal.to_owned(),
            ..acl("x", "cluster", Operation::Alter, Permission::Allow)
        };
        assert!(with("alice").validate().is_ok());
        assert!(with(&longest).validate().is_ok());
        assert!(with("*").validate().is_ok());
        for bad in [
            String::new(),
            too_long,
            "ali\nce".to_owned(),
            "\u{7f}".to_owned(),
        ] {
            assert!(with(&bad).validate().is_err(), "{bad:?}");
        }
    }
}
