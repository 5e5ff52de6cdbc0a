//! Access control lists: list, add, remove (`cluster` describe and alter).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use floe_api::{AclJson, AclList, AclsChanged, AclsRequest};
use floe_broker::BrokerError;
use floe_core::{Acl, Operation, Permission, ResourcePattern};
use floe_sequencer::{Command, MAX_ACLS, Outcome};

use super::extract::RawBody;
use super::{AppState, json_body};
use crate::auth::{Principal, audit};
use crate::error::{ApiError, ApiResult};

/// The most ACLs one request adds or removes.
const MAX_ACLS_PER_REQUEST: usize = 1000;

pub async fn list(State(state): State<AppState>) -> Json<AclList> {
    let acls = state
        .broker
        .sequencer()
        .read(|cluster| cluster.acls().map(to_json).collect());
    Json(AclList { acls })
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<(StatusCode, Json<AclsChanged>)> {
    let acls = parse(&body)?;
    let outcome = submit(
        &state,
        &principal,
        "create_acls",
        Command::CreateAcls { acls },
    )
    .await?;
    let created = match outcome {
        Outcome::AclsCreated(count) => count,
        _ => 0,
    };
    Ok((
        StatusCode::CREATED,
        Json(AclsChanged {
            created: Some(created),
            deleted: None,
        }),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawBody { bytes: body, .. }: RawBody,
) -> ApiResult<Json<AclsChanged>> {
    let acls = parse(&body)?;
    let outcome = submit(
        &state,
        &principal,
        "delete_acls",
        Command::DeleteAcls { acls },
    )
    .await?;
    let deleted = match outcome {
        Outcome::AclsDeleted(count) => count,
        _ => 0,
    };
    Ok(Json(AclsChanged {
        created: None,
        deleted: Some(deleted),
    }))
}

async fn submit(
    state: &AppState,
    principal: &Principal,
    operation: &str,
    command: Command,
) -> ApiResult<Outcome> {
    let described = match &command {
        Command::CreateAcls { acls } | Command::DeleteAcls { acls } => acls
            .iter()
            .map(|acl| {
                format!(
                    "{} {:?} {} {}",
                    acl.principal, acl.permission, acl.operation, acl.resource
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    };
    let result = state.broker.sequencer().submit(command).await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    audit(
        principal.name(),
        operation,
        &format!("acls [{described}]"),
        outcome,
    );
    result.map_err(|error| ApiError::from(BrokerError::from(error)))
}

fn parse(body: &[u8]) -> ApiResult<Vec<Acl>> {
    let request: AclsRequest = json_body(body)?;
    // One request stays far below the sequencer's entry limit.
    let most = MAX_ACLS_PER_REQUEST.min(MAX_ACLS);
    if request.acls.is_empty() || request.acls.len() > most {
        return Err(ApiError::bad_request(
            "invalid_acl",
            format!("give 1 to {most} ACLs per request"),
        ));
    }
    request
        .acls
        .iter()
        .map(|json| {
            let acl = from_json(json)?;
            acl.validate()?;
            Ok(acl)
        })
        .collect::<Result<_, String>>()
        .map_err(|error| ApiError::bad_request("invalid_acl", error))
}

fn from_json(json: &AclJson) -> Result<Acl, String> {
    let permission = match json.permission.as_str() {
        "allow" => Permission::Allow,
        "deny" => Permission::Deny,
        other => return Err(format!("permission {other:?}: expected allow or deny")),
    };
    Ok(Acl {
        principal: json.principal.clone(),
        resource: json.resource.parse::<ResourcePattern>()?,
        operation: json.operation.parse::<Operation>()?,
        permission,
    })
}

fn to_json(acl: &Acl) -> AclJson {
    AclJson {
        principal: acl.principal.clone(),
        resource: acl.resource.to_string(),
        operation: acl.operation.to_string(),
        permission: match acl.permission {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        }
        .to_owned(),
    }
}
