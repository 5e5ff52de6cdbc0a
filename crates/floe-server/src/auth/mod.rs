//! Who is calling, and may they: bearer-token authentication, Kafka-style ACLs, and the
//! audit log (ADR 0009).
//!
//! Every request passes [`authenticate`] (a principal, or `401`) and [`authorize`] (the
//! operation its route performs on the resource its path names, or `403`). Routes whose
//! resource is in the body (creating a topic, joining a group) and the listings check in
//! their handlers through [`Auth::check`] and [`Auth::may`].

mod jwt;
mod tokens;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use floe_core::{InvalidSetting, Operation, ResourceKind};
use floe_sequencer::Sequencer;
use serde::{Deserialize, Serialize};

pub use jwt::{JwksSource, JwtError, JwtOptions, JwtVerifier};
pub use tokens::{TokenTable, TokensFile, token_digest};

use crate::error::ApiError;
use crate::routes::AppState;

/// The principal of requests when authentication is off (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";
/// How often the tokens file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Authentication and authorisation: the `[auth]` section of `floe.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthOptions {
    /// Bearer tokens, one `principal:HASH` a line (HASH: lowercase hex SHA-256 of the
    /// token, or an argon2 PHC string); re-read when it changes. Set, every request needs
    /// a token and ACLs decide what its principal may do.
    pub tokens_file: Option<PathBuf>,
    /// Principals allowed everything, whatever the ACLs say.
    pub super_users: Vec<String>,
    /// Serve without authentication on a non-loopback address.
    pub allow_anonymous: bool,
    /// The credential brokers present on each other's internal routes, from a file; unset:
    /// a random one kept in etcd, created by the cluster's first broker.
    pub internal_secret_file: Option<PathBuf>,
    /// JWTs (OIDC): the issuer's signing keys as a JWKS file, re-read when it changes.
    pub jwks_file: Option<PathBuf>,
    /// JWTs (OIDC): the issuer's JWKS URL (its `jwks_uri`), fetched at start, every
    /// `jwks_refresh` and when a token names an unknown key.
    pub jwks_url: Option<String>,
    /// PEM CA certificates trusted when fetching `jwks_url` (besides the system's).
    pub jwks_ca_file: Option<PathBuf>,
    /// How often `jwks_url` is fetched again.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// The `iss` a JWT must carry.
    pub jwt_issuer: Option<String>,
    /// The `aud` a JWT must include.
    pub jwt_audience: Option<String>,
    /// The claim that names a JWT's principal.
    pub jwt_principal_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub jwt_clock_skew: Duration,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            tokens_file: None,
            super_users: Vec::new(),
            allow_anonymous: false,
            internal_secret_file: None,
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            jwks_refresh: Duration::from_secs(300),
            jwt_issuer: None,
            jwt_audience: None,
            jwt_principal_claim: "sub".to_owned(),
            jwt_clock_skew: Duration::from_secs(60),
        }
    }
}

impl AuthOptions {
    /// Whether requests must authenticate (and ACLs apply).
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.jwt_enabled()
    }

    /// Whether bearer JWTs are accepted.
    pub fn jwt_enabled(&self) -> bool {
        self.jwks_file.is_some() || self.jwks_url.is_some()
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            return Err(InvalidSetting::new(
                "jwks_file",
                "jwks_file and jwks_url are alternatives: set one".to_owned(),
            ));
        }
        if self.jwt_enabled() {
            for (key, value) in [
                ("jwt_issuer", &self.jwt_issuer),
                ("jwt_audience", &self.jwt_audience),
            ] {
                if value.as_deref().is_none_or(str::is_empty) {
                    return Err(InvalidSetting::new(
                        key,
                        "JWTs are accepted only from a named issuer for a named audience: \
                         set jwt_issuer and jwt_audience"
                            .to_owned(),
                    ));
                }
            }
            if self.jwt_principal_claim.is_empty() {
                return Err(InvalidSetting::new(
                    "jwt_principal_claim",
                    "must name a claim".to_owned(),
                ));
            }
        }
        if let Some(url) = &self.jwks_url {
            // Whoever can change the keys can sign any principal's tokens: plain HTTP only
            // to this machine.
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|prefix| {
                    url.strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
                });
            if !url.starts_with("https://") && !loopback {
                return Err(InvalidSetting::new(
                    "jwks_url",
                    "must be an https:// URL (http:// only to a loopback address)".to_owned(),
                ));
            }
        }
        if self.jwks_refresh < Duration::from_secs(10) {
            return Err(InvalidSetting::new(
                "jwks_refresh",
                "at least 10s".to_owned(),
            ));
        }
        Ok(())
    }

    /// The JWT settings, with the CA file read; `None` without JWTs.
    fn jwt(&self) -> anyhow::Result<Option<JwtOptions>> {
        let source = match (&self.jwks_file, &self.jwks_url) {
            (Some(path), _) => JwksSource::File(path.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            (None, None) => return Ok(None),
        };
        let ca_pem = match &self.jwks_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(JwtOptions {
            issuer: self.jwt_issuer.clone().unwrap_or_default(),
            audience: self.jwt_audience.clone().unwrap_or_default(),
            principal_claim: self.jwt_principal_claim.clone(),
            clock_skew: self.jwt_clock_skew,
            source,
            refresh: self.jwks_refresh,
            ca_pem,
        }))
    }
}

/// A credential that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(pub Arc<str>);

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub Arc<str>);

/// The bearer token a request authenticated with, kept so a long-lived answer (an event
/// stream) can check it again: a token removed from the file or a JWT that expired ends
/// the stream.
#[derive(Debug, Clone)]
pub struct Credential(pub Secret);

impl Principal {
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// The server's authentication state.
#[derive(Debug)]
pub struct Auth {
    tokens: Option<parking_lot::RwLock<TokenTable>>,
    jwt: Option<Arc<JwtVerifier>>,
    /// Client certificates are verified (mutual TLS): their subjects are principals.
    mutual_tls: bool,
    super_users: Vec<String>,
    sequencer: Sequencer,
}

impl Auth {
    /// Loads the tokens file and the JWT signing keys (an error at start if a file is
    /// missing or malformed) and starts watching them for changes.
    pub async fn start(
        options: &AuthOptions,
        mutual_tls: bool,
        sequencer: Sequencer,
    ) -> anyhow::Result<Arc<Self>> {
        let (file, table) = match &options.tokens_file {
            Some(path) => {
                let (file, table) = TokensFile::load(path).map_err(anyhow::Error::msg)?;
                tracing::info!(tokens = table.len(), file = %path.display(), "bearer tokens loaded");
                (Some(file), Some(table))
            }
            None => (None, None),
        };
        let jwt = match options.jwt()? {
            Some(jwt) => Some(JwtVerifier::start(jwt).await?),
            None => None,
        };
        let auth = Arc::new(Self {
            tokens: table.map(parking_lot::RwLock::new),
            jwt,
            mutual_tls,
            super_users: options.super_users.clone(),
            sequencer,
        });
        if let Some(mut file) = file {
            let weak = Arc::downgrade(&auth);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RELOAD_EVERY).await;
                    let Some(auth) = weak.upgrade() else { return };
                    match file.reload() {
                        Ok(Some(table)) => {
                            tracing::info!(tokens = table.len(), file = %file.path().display(), "bearer tokens reloaded");
                            if let Some(tokens) = &auth.tokens {
                                *tokens.write() = table;
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(%error, "tokens file changed but does not parse; the previous tokens stay in force");
                        }
                    }
                }
            });
        }
        Ok(auth)
    }

    /// The principal a bearer token names: a JWT's claim, or the tokens file's entry;
    /// otherwise why not (said in the `401`, never with the token).
    async fn bearer(&self, token: &str) -> Result<String, String> {
        if let Some(jwt) = &self.jwt
            && JwtVerifier::looks_like_jwt(token)
        {
            return jwt.verify(token).await.map_err(|error| error.to_string());
        }
        let Some(tokens) = &self.tokens else {
            return Err("the bearer token is not a JWT".to_owned());
        };
        let lookup = tokens.read().lookup(token);
        let found = match lookup {
            tokens::Lookup::Found(principal) => Some(principal),
            tokens::Lookup::Unknown => None,
            // Argon2 is slow on purpose: it runs on the blocking pool, a few at a time.
            tokens::Lookup::Verify(verifier) => {
                let token = token.to_owned();
                tokio::task::spawn_blocking(move || verifier.verify(&token))
                    .await
                    .ok()
                    .flatten()
            }
        };
        found.ok_or_else(|| "the bearer token is not valid".to_owned())
    }

    /// Whether `principal`, which authenticated with `credential` (if a bearer token),
    /// still may read `topic`: the token still names it and its ACLs still allow it.
    /// Event streams ask before each read.
    pub async fn may_still_read(
        &self,
        principal: &Principal,
        credential: Option<&Credential>,
        topic: &str,
    ) -> Result<(), ApiError> {
        if let Some(Credential(token)) = credential {
            match self.bearer(token).await {
                Ok(name) if name == principal.name() => {}
                Ok(_) | Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "the bearer token this stream was opened with is no longer valid",
                    ));
                }
            }
        }
        self.check(principal, Operation::Read, ResourceKind::Topic, topic)
    }

    /// Whether requests must authenticate and pass ACLs.
    pub fn enabled(&self) -> bool {
        self.tokens.is_some() || self.jwt.is_some() || self.mutual_tls
    }

    /// Whether `principal` may do `operation` on `kind`/`name`.
    pub fn may(
        &self,
        principal: &Principal,
        operation: Operation,
        kind: ResourceKind,
        name: &str,
    ) -> bool {
        !self.enabled()
            || self.super_users.iter().any(|user| user == principal.name())
            || self.sequencer.read(|state| {
                floe_core::acl::authorize(state.acls(), principal.name(), operation, kind, name)
            })
    }

    /// Whether `principal` may write to some topic or to the cluster: what initialising an
    /// idempotent producer needs (Kafka's rule since 3.0).
    /// An allow ACL counts only if the topic it names (for a prefix, a topic named the
    /// prefix) is not denied to the principal: Kafka's check honours denies too.
    pub fn may_write_somewhere(&self, principal: &Principal) -> bool {
        if !self.enabled() || self.super_users.iter().any(|user| user == principal.name()) {
            return true;
        }
        self.sequencer.read(|state| {
            state.acls().any(|acl| {
                acl.permission == floe_core::Permission::Allow
                    && acl.operation == Operation::Write
                    && (acl.principal == "*" || acl.principal == principal.name())
                    && acl.resource.sample_topic().is_some_and(|topic| {
                        floe_core::acl::authorize(
                            state.acls(),
                            principal.name(),
                            Operation::Write,
                            ResourceKind::Topic,
                            topic,
                        )
                    })
            })
        })
    }

    /// [`Auth::may`], as a `403` naming the operation and the resource, audited.
    pub fn check(
        &self,
        principal: &Principal,
        operation: Operation,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), ApiError> {
        if self.may(principal, operation, kind, name) {
            return Ok(());
        }
        let resource = resource_label(kind, name);
        audit(principal.name(), operation.as_str(), &resource, "denied");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "principal {:?} may not {operation} {resource}",
                principal.name()
            ),
        ))
    }
}

fn resource_label(kind: ResourceKind, name: &str) -> String {
    match kind {
        ResourceKind::Topic => format!("topic:{name}"),
        ResourceKind::Group => format!("group:{name}"),
        ResourceKind::Cluster => "cluster".to_owned(),
    }
}

/// One audit line: who did what to which resource, and how it ended. Written for every
/// administrative action and every refusal, on the `floe::audit` target.
pub fn audit(principal: &str, operation: &str, resource: &str, outcome: &str) {
    tracing::info!(target: "floe::audit", principal, operation, resource, outcome, "audit");
}

/// Routes anyone may call: health, readiness and the API description.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/v1/openapi.json")
}

/// Finds the caller: with authentication off, [`ANONYMOUS`]; with it on, the principal of
/// the bearer token, or `401` with `WWW-Authenticate`.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_open(path) || path.starts_with("/internal/") {
        // The internal route checks the cluster credential itself.
        return next.run(request).await;
    }
    let auth = &state.auth;
    let has_token = request.headers().contains_key(header::AUTHORIZATION);
    let certificate = request
        .extensions()
        .get::<crate::tls::ClientCert>()
        .cloned();
    let bearer = auth.tokens.is_some() || auth.jwt.is_some();
    let principal = match certificate {
        // A verified client certificate names the principal unless a token is presented.
        Some(certificate) if !has_token || !bearer => Principal(certificate.0.into()),
        _ if !bearer && auth.mutual_tls => {
            return unauthorized(
                "a client certificate signed by the server's client CA is required",
                false,
            );
        }
        _ if !bearer => Principal(ANONYMOUS.into()),
        _ => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| {
                    value
                        .strip_prefix("Bearer ")
                        .or_else(|| value.strip_prefix("bearer "))
                })
                .map(str::trim);
            let Some(token) = presented else {
                return unauthorized(
                    "a bearer token is required (Authorization: Bearer …)",
                    false,
                );
            };
            match auth.bearer(token).await {
                Ok(principal) => {
                    let credential = Credential(Secret(token.into()));
                    request.extensions_mut().insert(credential);
                    Principal(principal.into())
                }
                Err(reason) => {
                    audit(
                        "-",
                        "authenticate",
                        request.uri().path(),
                        &format!("denied: {reason}"),
                    );
                    return unauthorized(&reason, true);
                }
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn unauthorized(message: &str, invalid: bool) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    let challenge = if invalid {
        "Bearer realm=\"floe\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"floe\""
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// What a route does, from its method and path: the operation and the resource the path
/// names, or `None` when the handler checks (the resource is in the body, or the route
/// lists what the caller may describe) or the route is open.
pub fn route_operation(method: &Method, path: &str) -> Option<(Operation, ResourceKind, String)> {
    // Names are checked as the handlers see them: percent-decoded (`%6Frders` is
    // `orders`, `with%20space` is `with space`).
    let decoded: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    // Axum answers HEAD with the GET handler.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let topic = |operation| Some((operation, ResourceKind::Topic, segments[2].to_owned()));
    let group = |operation| Some((operation, ResourceKind::Group, segments[2].to_owned()));
    let cluster = |operation| Some((operation, ResourceKind::Cluster, String::new()));
    match (method, segments.as_slice()) {
        (_, ["metrics"]) => cluster(Operation::Describe),
        (_, ["v1", "cluster"]) => cluster(Operation::Describe),
        (&Method::GET, ["v1", "acls"]) => cluster(Operation::Describe),
        (_, ["v1", "acls"]) => cluster(Operation::Alter),
        (&Method::GET, ["v1", "topics", _]) => topic(Operation::Describe),
        (&Method::DELETE, ["v1", "topics", _]) => topic(Operation::Delete),
        (_, ["v1", "topics", _, "partitions"]) => topic(Operation::Alter),
        (_, ["v1", "topics", _, "config"]) => topic(Operation::Alter),
        (_, ["v1", "topics", _, "export"]) => topic(Operation::Describe),
        (_, ["v1", "topics", _, "records"]) => topic(Operation::Write),
        (&Method::GET, ["v1", "topics", _, "partitions", _, "records"]) => topic(Operation::Read),
        (_, ["v1", "topics", _, "partitions", _, "records"]) => topic(Operation::Write),
        (_, ["v1", "topics", _, "partitions", _, "offsets"]) => topic(Operation::Describe),
        (&Method::GET, ["v1", "groups", _]) => group(Operation::Describe),
        (&Method::DELETE, ["v1", "groups", _]) => group(Operation::Delete),
        (&Method::GET, ["v1", "groups", _, "offsets"]) => group(Operation::Describe),
        (_, ["v1", "groups", _, ..]) => group(Operation::Read),
        _ => None,
    }
}

/// Routes whose handler does the check: creating and listing topics, listing groups,
/// initialising a producer.
fn checked_in_handler(method: &Method, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(
        (method, path),
        (&Method::GET | &Method::HEAD | &Method::POST, "/v1/topics")
            | (&Method::GET | &Method::HEAD, "/v1/groups")
            | (&Method::POST, "/v1/producers")
    )
}

/// Refuses a request whose principal may not do what its route does to the resource its
/// path names (`403`, audited).
/// Administrative actions (creating, deleting and altering topics and groups, resetting
/// offsets; ACL changes are audited by their routes) get an audit line with their outcome.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let operation = route_operation(&method, &path);
    if state.auth.enabled() {
        match &operation {
            Some((operation, kind, name)) => {
                if let Err(error) = state.auth.check(&principal, *operation, *kind, name) {
                    return error.into_response();
                }
            }
            // Fail closed: a route not in the table is refused unless its handler checks.
            None if !checked_in_handler(&method, &path) => {
                audit(
                    principal.name(),
                    method.as_str(),
                    &path,
                    "denied: unknown route",
                );
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this route is not open to authenticated principals",
                )
                .into_response();
            }
            None => {}
        }
    }
    let admin = match &operation {
        _ if method == Method::POST && path == "/v1/topics" => Some("create".to_owned()),
        _ if path.ends_with("/offsets/reset") => Some("reset_offsets".to_owned()),
        Some((op @ (Operation::Create | Operation::Delete | Operation::Alter), kind, _))
            if *kind != ResourceKind::Cluster =>
        {
            Some(op.to_string())
        }
        _ => None,
    };
    let response = next.run(request).await;
    if let Some(action) = admin {
        let outcome = if response.status().is_success() {
            "ok".to_owned()
        } else {
            format!("failed: {}", response.status().as_u16())
        };
        audit(principal.name(), &action, &path, &outcome);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_operation_and_resource() {
        let op = |method: Method, path: &str| route_operation(&method, path);
        assert_eq!(
            op(Method::POST, "/v1/topics/orders/records"),
            Some((Operation::Write, ResourceKind::Topic, "orders".into()))
        );
        assert_eq!(
            op(Method::GET, "/v1/topics/orders/partitions/3/records"),
            Some((Operation::Read, ResourceKind::Topic, "orders".into()))
        );
        assert_eq!(
            op(Method::POST, "/v1/groups/billing/members/m1/heartbeat"),
            Some((Operation::Read, ResourceKind::Group, "billing".into()))
        );
        assert_eq!(
            op(Method::DELETE, "/v1/acls"),
            Some((Operation::Alter, ResourceKind::Cluster, String::new()))
        );
        assert_eq!(
            op(Method::GET, "/v1/topics"),
            None,
            "filtered in the handler"
        );
        assert_eq!(
            op(Method::POST, "/v1/topics"),
            None,
            "checked in the handler"
        );
    }

    #[test]
    fn names_are_decoded_head_is_get_and_unknown_routes_fail_closed() {
        assert_eq!(
            route_operation(&Method::GET, "/v1/topics/%6Frders/partitions/0/records"),
            Some((Operation::Read, ResourceKind::Topic, "orders".into())),
            "names are decoded as handlers decode them"
        );
        assert_eq!(
            route_operation(&Method::HEAD, "/v1/topics/orders"),
            Some((Operation::Describe, ResourceKind::Topic, "orders".into()))
        );
        assert_eq!(
            route_operation(&Method::HEAD, "/v1/topics/orders/partitions/0/records"),
            Some((Operation::Read, ResourceKind::Topic, "orders".into()))
        );
        assert!(checked_in_handler(&Method::GET, "/v1/topics"));
        assert!(!checked_in_handler(&Method::GET, "/v1/unknown"));
    }
}
