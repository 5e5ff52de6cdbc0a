//! Access control lists: `GET`, `POST` and `DELETE /v1/acls`.

use serde::{Deserialize, Serialize};

/// One ACL: `principal` (or `*`) is allowed or denied `operation` (read, write, create,
/// delete, alter, describe) on `resource` (`topic:NAME`, `topic:PREFIX*`, `group:NAME`,
/// `group:PREFIX*` or `cluster`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclJson {
    pub principal: String,
    pub resource: String,
    pub operation: String,
    /// `allow` or `deny`.
    pub permission: String,
}

/// The body of `POST` and `DELETE /v1/acls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclsRequest {
    pub acls: Vec<AclJson>,
}

/// `GET /v1/acls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclList {
    pub acls: Vec<AclJson>,
}

/// The answer of `POST /v1/acls` (`created`: how many were new) and `DELETE /v1/acls`
/// (`deleted`: how many were there).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AclsChanged {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<usize>,
}
