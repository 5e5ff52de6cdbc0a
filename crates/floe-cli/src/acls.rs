//! `floe acls`: list, add and remove access control lists, in the spirit of
//! `kafka-acls.sh`. One ACL allows or denies one principal one operation on one resource
//! pattern; the server checks them when its authorisation is on.

use std::collections::BTreeSet;

use clap::{Args, Subcommand};
use floe_api::{AclJson, AclList};
use floe_client::FloeClient;
use floe_core::{Operation, ResourcePattern};

#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// List ACLs: principal, permission, operation and resource.
    List {
        /// Only the ACLs of this principal (`*`: the ones that apply to every principal).
        #[arg(long)]
        principal: Option<String>,
        /// Only the ACLs on this resource pattern, as written: topic:NAME, topic:PREFIX*,
        /// group:NAME, group:PREFIX* or cluster.
        #[arg(long, value_parser = parse_resource)]
        resource: Option<String>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow a principal operations on a resource (deny them with --deny).
    Add(AclArgs),
    /// Remove the ACLs that the same options would add.
    Remove(AclArgs),
}

/// The ACLs an add or a remove names: one per operation.
#[derive(Debug, Args)]
pub struct AclArgs {
    /// The principal (a name in the server's tokens file), or `*` for every principal.
    #[arg(long)]
    principal: String,
    /// read, write, create, delete, alter or describe; several separated by commas.
    #[arg(
        long,
        required = true,
        value_delimiter = ',',
        value_name = "OP[,OP...]"
    )]
    operation: Vec<Operation>,
    /// topic:NAME, topic:PREFIX*, group:NAME, group:PREFIX* or cluster.
    #[arg(long, value_parser = parse_resource)]
    resource: String,
    /// Deny rather than allow; a deny wins over any allow.
    #[arg(long)]
    deny: bool,
}

impl AclArgs {
    /// One ACL per distinct operation, in the order of [`Operation`].
    fn acls(&self) -> Vec<AclJson> {
        let permission = if self.deny { "deny" } else { "allow" };
        let operations: BTreeSet<Operation> = self.operation.iter().copied().collect();
        operations
            .into_iter()
            .map(|operation| AclJson {
                principal: self.principal.clone(),
                resource: self.resource.clone(),
                operation: operation.as_str().to_owned(),
                permission: permission.to_owned(),
            })
            .collect()
    }
}

pub async fn run(client: &FloeClient, command: AclsCommand) -> anyhow::Result<()> {
    match command {
        AclsCommand::List {
            principal,
            resource,
            json,
        } => {
            let mut acls: Vec<AclJson> = client
                .list_acls()
                .await?
                .acls
                .into_iter()
                .filter(|acl| principal.as_ref().is_none_or(|p| acl.principal == *p))
                .filter(|acl| resource.as_ref().is_none_or(|r| acl.resource == *r))
                .collect();
            acls.sort();
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&AclList { acls })?)
            } else {
                acls_table(&acls)
            };
            crate::write_stdout(&text)?;
        }
        AclsCommand::Add(args) => {
            let asked = args.acls();
            let count = asked.len();
            let created = client.create_acls(asked).await?.created.unwrap_or(0);
            println!(
                "{}",
                changed(
                    "added",
                    created,
                    count.saturating_sub(created),
                    "already there"
                )
            );
        }
        AclsCommand::Remove(args) => {
            let asked = args.acls();
            let count = asked.len();
            let deleted = client.delete_acls(asked).await?.deleted.unwrap_or(0);
            println!(
                "{}",
                changed(
                    "removed",
                    deleted,
                    count.saturating_sub(deleted),
                    "not found"
                )
            );
        }
    }
    Ok(())
}

/// The table of `floe acls list`: PRINCIPAL PERMISSION OPERATION RESOURCE.
fn acls_table(acls: &[AclJson]) -> String {
    if acls.is_empty() {
        return "no ACLs\n".into();
    }
    let rows: Vec<Vec<String>> = acls
        .iter()
        .map(|acl| {
            vec![
                acl.principal.clone(),
                acl.permission.clone(),
                acl.operation.clone(),
                acl.resource.clone(),
            ]
        })
        .collect();
    crate::groups::table(&["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE"], &rows)
}

/// "added 2 ACLs", or "added 1 ACL (1 already there)" when some were not changed.
fn changed(verb: &str, count: usize, unchanged: usize, why: &str) -> String {
    let mut line = format!("{verb} {count} {}", plural_acls(count));
    if unchanged > 0 {
        line.push_str(&format!(" ({unchanged} {why})"));
    }
    line
}

fn plural_acls(count: usize) -> &'static str {
    if count == 1 { "ACL" } else { "ACLs" }
}

/// A resource pattern in the server's spelling; refused here with the server's reason.
fn parse_resource(text: &str) -> Result<String, String> {
    text.parse::<ResourcePattern>()
        .map(|pattern| pattern.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(principal: &str, permission: &str, operation: &str, resource: &str) -> AclJson {
        AclJson {
            principal: principal.into(),
            resource: resource.into(),
            operation: operation.into(),
            permission: permission.into(),
        }
    }

    #[test]
    fn each_distinct_operation_makes_one_acl() {
        let args = AclArgs {
            principal: "alice".into(),
            operation: vec![Operation::Write, Operation::Read, Operation::Write],
            resource: "topic:orders".into(),
            deny: false,
        };
        assert_eq!(
            args.acls(),
            [
                acl("alice", "allow", "read", "topic:orders"),
                acl("alice", "allow", "write", "topic:orders"),
            ]
        );
        let denied = AclArgs { deny: true, ..args };
        assert!(denied.acls().iter().all(|acl| acl.permission == "deny"));
    }

    #[test]
    fn the_acls_table_lines_up() {
        let table = acls_table(&[
            acl("alice", "allow", "read", "topic:orders"),
            acl("*", "deny", "describe", "cluster"),
        ]);
        assert_eq!(
            table,
            "  PRINCIPAL  PERMISSION  OPERATION  RESOURCE\n  \
             alice      allow       read       topic:orders\n  \
             *          deny        describe   cluster\n"
        );
        assert_eq!(acls_table(&[]), "no ACLs\n");
    }

    #[test]
    fn changes_are_counted_in_words() {
        assert_eq!(changed("added", 2, 0, "already there"), "added 2 ACLs");
        assert_eq!(changed("removed", 1, 0, "not found"), "removed 1 ACL");
        assert_eq!(
            changed("added", 1, 1, "already there"),
            "added 1 ACL (1 already there)"
        );
        assert_eq!(
            changed("removed", 0, 1, "not found"),
            "removed 0 ACLs (1 not found)"
        );
    }
}
