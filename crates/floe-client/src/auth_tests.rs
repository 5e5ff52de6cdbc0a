//! The bearer token against a stand-in server: which requests carry it, and where it must
//! never show.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use floe_api::binary::{self, BinaryFetch, BinaryRecord};
use floe_api::{AclJson, Encoding, OWNER_HEADER, ProduceRecordJson};

use crate::{FetchOptions, FloeClient};

const TOKEN: &str = "s3cr3t-t0ken";

/// What a stand-in was asked: `METHOD PATH AUTHORIZATION` per request.
#[derive(Debug, Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug, Clone)]
struct StandIn {
    seen: Seen,
    /// The owner every fetch answer names, if any.
    owner: Option<String>,
}

/// Answers each route with an empty but well-formed body, after noting the request.
async fn answer(
    State(stand_in): State<StandIn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    stand_in
        .seen
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{method} {} {authorization}", uri.path()));
    let wants_binary = headers
        .get(header::ACCEPT)
        .is_some_and(|value| value.as_bytes() == binary::CONTENT_TYPE.as_bytes());
    let mut response = Response::builder().header(header::CONTENT_TYPE, "application/json");
    let body = match (method, uri.path()) {
        (Method::POST, path) if path.ends_with("/records") => Body::from(r#"{"offsets":[]}"#),
        (Method::GET, path) if path.ends_with("/records") => {
            if let Some(owner) = &stand_in.owner {
                response = response.header(OWNER_HEADER, owner);
            }
            if wants_binary {
                response = response.header(header::CONTENT_TYPE, binary::CONTENT_TYPE);
                Body::from(binary::encode_fetch(&BinaryFetch::default()))
            } else {
                Body::from(
                    r#"{"records":[],"next_offset":0,"high_watermark":0,"log_start_offset":0}"#,
                )
            }
        }
        (Method::POST, "/v1/producers") => Body::from(r#"{"producer_id":1,"producer_epoch":0}"#),
        (Method::GET, "/v1/acls") => Body::from(r#"{"acls":[]}"#),
        (Method::POST, "/v1/acls") => Body::from(r#"{"created":1}"#),
        (Method::DELETE, "/v1/acls") => Body::from(r#"{"deleted":1}"#),
        _ => Body::from("{}"),
    };
    response.body(body).expect("a valid response")
}

/// Starts a stand-in on a loopback port; answers its URL.
async fn start(stand_in: StandIn) -> String {
    let router = Router::new().fallback(answer).with_state(stand_in);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

fn acl() -> AclJson {
    AclJson {
        principal: "alice".into(),
        resource: "topic:orders".into(),
        operation: "read".into(),
        permission: "allow".into(),
    }
}

#[tokio::test]
async fn every_request_carries_the_token_to_the_server_and_to_owners() {
    let owner_seen = Seen::default();
    let owner = start(StandIn {
        seen: owner_seen.clone(),
        owner: None,
    })
    .await;
    let seen = Seen::default();
    let base = start(StandIn {
        seen: seen.clone(),
        owner: Some(owner),
    })
    .await;
    let client = FloeClient::new(base).with_token(TOKEN);

    let record = ProduceRecordJson {
        value: Some(serde_json::json!("v")),
        ..ProduceRecordJson::default()
    };
    client
        .produce("t", vec![record], Encoding::Json)
        .await
        .expect("json produce");
    let binary_record = BinaryRecord {
        value: Some(bytes::Bytes::from_static(b"v")),
        ..BinaryRecord::default()
    };
    client
        .produce_binary("t", &[binary_record])
        .await
        .expect("binary produce");
    let options = FetchOptions::default();
    // The first fetch learns the owner; the next ones go there.
    client.fetch("t", 0, 0, &options).await.expect("json fetch");
    client
        .fetch_binary("t", 0, 0, &options)
        .await
        .expect("binary fetch from the owner");
    client.fetch("t", 0, 0, &options).await.expect("json fetch");
    client
        .stream("t", 0, 0, &options)
        .await
        .expect("event stream from the owner");
    client.list_acls().await.expect("list acls");
    client.create_acls(vec![acl()]).await.expect("create acls");
    client.delete_acls(vec![acl()]).await.expect("delete acls");

    let bearer = format!("Bearer {TOKEN}");
    let expected_at_server = [
        // Produce is idempotent by default: the client first gets a producer id.
        "POST /v1/producers",
        "POST /v1/topics/t/records",
        "POST /v1/topics/t/records",
        "GET /v1/topics/t/partitions/0/records",
        "GET /v1/acls",
        "POST /v1/acls",
        "DELETE /v1/acls",
    ]
    .map(|request| format!("{request} {bearer}"));
    assert_eq!(seen.lines(), expected_at_server);
    let expected_at_owner =
        ["GET /v1/topics/t/partitions/0/records"; 3].map(|request| format!("{request} {bearer}"));
    assert_eq!(owner_seen.lines(), expected_at_owner);
}

#[tokio::test]
async fn a_client_without_a_token_sends_no_authorization() {
    let seen = Seen::default();
    let base = start(StandIn {
        seen: seen.clone(),
        owner: None,
    })
    .await;
    FloeClient::new(base).list_acls().await.expect("list acls");
    assert_eq!(seen.lines(), ["GET /v1/acls -"]);
}

#[tokio::test]
async fn a_token_no_header_can_carry_fails_the_request_without_sending_it() {
    let seen = Seen::default();
    let base = start(StandIn {
        seen: seen.clone(),
        owner: None,
    })
    .await;
    let client = FloeClient::new(base).with_token("line\nbreak");
    let error = client
        .list_acls()
        .await
        .expect_err("refused before sending");
    assert!(!error.to_string().contains("line"), "{error}");
    assert!(seen.lines().is_empty(), "{:?}", seen.lines());
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let client = FloeClient::new("http://127.0.0.1:9").with_token(TOKEN);
    let debug = format!("{client:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains(r#"token: Some("<redacted>")"#), "{debug}");
    let pretty = format!("{client:#?}");
    assert!(!pretty.contains(TOKEN), "{pretty}");
}
