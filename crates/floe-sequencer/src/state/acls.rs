//! Access control lists: cluster-wide, in the log and in snapshots.

use floe_core::Acl;

use super::ClusterState;
use crate::error::ApplyError;

/// The most ACLs a cluster holds: every request is checked against them.
pub const MAX_ACLS: usize = 10_000;

impl ClusterState {
    /// Every ACL, in order.
    pub fn acls(&self) -> impl Iterator<Item = &Acl> {
        self.acls.iter()
    }

    /// Adds ACLs, all or none; ones already present count as added.
    pub(super) fn create_acls(&mut self, acls: &[Acl]) -> Result<usize, ApplyError> {
        for acl in acls {
            acl.validate().map_err(ApplyError::InvalidAcl)?;
        }
        let distinct: std::collections::BTreeSet<&Acl> = acls.iter().collect();
        let new = distinct
            .iter()
            .filter(|acl| !self.acls.contains(**acl))
            .count();
        if self.acls.len() + new > MAX_ACLS {
            return Err(ApplyError::TooManyAcls { limit: MAX_ACLS });
        }
        self.acls.extend(acls.iter().cloned());
        Ok(new)
    }

    /// Removes the ACLs named (exact matches); returns how many were there.
    pub(super) fn delete_acls(&mut self, acls: &[Acl]) -> usize {
        acls.iter().filter(|acl| self.acls.remove(*acl)).count()
    }
}
