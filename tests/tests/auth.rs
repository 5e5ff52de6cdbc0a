//! Authentication and ACLs against a real `floe serve`: every route × {no credential, a
//! wrong token, an expired JWT, a principal without the ACL, a principal with it (by a
//! token from the file and by a JWT)} answers 401 / 401 / 401 / 403 / 2xx, and after every
//! refused request nothing changed (topics, configs, records, groups, ACLs). Tokens are
//! re-read when their file changes; without authentication floe will not listen beyond
//! loopback unless told to; long-polls are limited per principal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use floe_tests::FloeProcess;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn sha256_hex(token: &str) -> String {
    // The tokens file holds SHA-256 digests; `sha256sum` computes them as users would.
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(token.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("sha256sum output");
    String::from_utf8(output.stdout).expect("utf8")[..64].to_owned()
}

fn write_tokens(path: &Path, tokens: &[(&str, &str)]) {
    let text: String = tokens
        .iter()
        .map(|(principal, token)| format!("{principal}:{}\n", sha256_hex(token)))
        .collect();
    std::fs::write(path, text).expect("tokens file");
}

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value, Option<String>) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .timeout(Duration::from_secs(10));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            challenge,
        )
    }

    /// Everything a refused request must leave as it was, read with the admin token.
    async fn state(&self) -> Value {
        let admin = Some("admin-token");
        let mut state = json!({});
        let topics = self.call(admin, Method::GET, "/v1/topics", None).await.1;
        for topic in topics["topics"].as_array().expect("topics") {
            let name = topic["name"].as_str().expect("name");
            let described = self
                .call(admin, Method::GET, &format!("/v1/topics/{name}"), None)
                .await
                .1;
            state[name] = described;
        }
        state["_groups"] = self.call(admin, Method::GET, "/v1/groups", None).await.1;
        state["_acls"] = self.call(admin, Method::GET, "/v1/acls", None).await.1;
        state["_billing_offsets"] = self
            .call(admin, Method::GET, "/v1/groups/billing/offsets", None)
            .await
            .1;
        state
    }
}

/// A server whose tokens file holds `tokens`, with `super_users` (semicolon-separated)
/// and `config` as its `floe.toml`, and a client of it.
fn serve_with(
    dir: &Path,
    tokens: &[(&str, &str)],
    super_users: &str,
    config: &str,
) -> (FloeProcess, Api) {
    let tokens_path = dir.join("tokens");
    write_tokens(&tokens_path, tokens);
    let config_path = dir.join("floe.toml");
    std::fs::write(&config_path, config).expect("config");
    let server = FloeProcess::start(
        dir,
        &[
            "--auth-tokens",
            &tokens_path.display().to_string(),
            "--super-users",
            super_users,
            "--config",
            &config_path.display().to_string(),
        ],
    );
    let api = Api {
        http: reqwest::Client::new(),
        url: server.url.clone(),
    };
    (server, api)
}

#[tokio::test]
async fn every_route_refuses_the_unauthenticated_and_the_unauthorised_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    write_tokens(
        &tokens,
        &[
            ("admin", "admin-token"),
            ("alice", "alice-token"),
            ("bob", "bob-token"),
        ],
    );
    let tokens_arg = tokens.display().to_string();
    // Principals also come from JWTs of an OIDC issuer whose keys are in a JWKS file.
    let issuer = floe_tests::jwt::Issuer::new("key-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks()).expect("jwks");
    let config = dir.path().join("floe.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\njwks_file = {:?}\njwt_issuer = {:?}\njwt_audience = {:?}\n",
            jwks.display().to_string(),
            floe_tests::jwt::ISSUER,
            floe_tests::jwt::AUDIENCE
        ),
    )
    .expect("config");
    let server = FloeProcess::start(
        dir.path(),
        &[
            "--auth-tokens",
            &tokens_arg,
            "--super-users",
            "admin",
            "--config",
            &config.display().to_string(),
        ],
    );
    let expired_jwt = issuer.token("alice", -600);
    let alice_jwt = issuer.token("alice", 3600);
    let bob_jwt = issuer.token("bob", 3600);
    let api = Api {
        http: reqwest::Client::new(),
        url: server.url.clone(),
    };
    let admin = Some("admin-token");
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/topics",
            json!({"name": "orders", "partitions": 2}),
        ),
        (
            Method::POST,
            "/v1/topics",
            json!({"name": "secret", "partitions": 1}),
        ),
        (
            Method::POST,
            "/v1/topics/orders/records",
            json!({"records": [{"value": "first"}]}),
        ),
        (
            Method::POST,
            "/v1/acls",
            json!({"acls": [
                {"principal": "alice", "resource": "topic:orders", "operation": "read", "permission": "allow"},
                {"principal": "alice", "resource": "topic:orders", "operation": "write", "permission": "allow"},
                {"principal": "alice", "resource": "group:billing", "operation": "read", "permission": "allow"},
            ]}),
        ),
    ] {
        let (status, body, _) = api.call(admin, method, path, Some(&body)).await;
        assert!(status.is_success(), "admin set-up {path}: {status} {body}");
    }
    // Every route: method, path, body, and alice's expected status (she holds read and
    // write on topic:orders and read on group:billing; bob holds nothing).
    let join = json!({"topics": ["orders"]});
    let acl = json!({"acls": [{"principal": "bob", "resource": "cluster", "operation": "alter", "permission": "allow"}]});
    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (Method::GET, "/v1/topics/orders", None, 200),
        (Method::DELETE, "/v1/topics/secret", None, 403),
        (
            Method::POST,
            "/v1/topics",
            Some(json!({"name": "orders2"})),
            403,
        ),
        (
            Method::POST,
            "/v1/topics/orders/partitions",
            Some(json!({"count": 4})),
            403,
        ),
        (
            Method::PATCH,
            "/v1/topics/orders/config",
            Some(json!({"set": {"retention.ms": 1000}})),
            403,
        ),
        (Method::GET, "/v1/topics/orders/export", None, 200),
        (Method::GET, "/v1/topics/secret/export", None, 403),
        (
            Method::GET,
            "/v1/topics/orders/partitions/0/records?offset=0",
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/topics/secret/partitions/0/records?offset=0",
            None,
            403,
        ),
        (
            Method::GET,
            "/v1/topics/orders/partitions/0/offsets?at=latest",
            None,
            200,
        ),
        (Method::GET, "/v1/groups/billing", None, 404),
        (Method::GET, "/v1/groups/other", None, 403),
        (Method::DELETE, "/v1/groups/billing", None, 403),
        (
            Method::POST,
            "/v1/groups/other/members",
            Some(join.clone()),
            403,
        ),
        (Method::GET, "/v1/cluster", None, 403),
        (Method::GET, "/v1/acls", None, 403),
        (Method::POST, "/v1/acls", Some(acl.clone()), 403),
        (Method::DELETE, "/v1/acls", Some(acl.clone()), 403),
        (Method::GET, "/metrics", None, 403),
    ];
    for (method, path, body, alice) in &cases {
        for (who, token, expected) in [
            ("no credential", None, 401),
            ("a wrong token", Some("not-a-token"), 401),
            ("alice's expired JWT", Some(expired_jwt.as_str()), 401),
            ("bob, without ACLs", Some("bob-token"), 403),
            ("bob's JWT, without ACLs", Some(bob_jwt.as_str()), 403),
            ("alice", Some("alice-token"), *alice),
            ("alice's JWT", Some(alice_jwt.as_str()), *alice),
        ] {
            let before = api.state().await;
            let (status, answer, challenge) =
                api.call(token, method.clone(), path, body.as_ref()).await;
            assert_eq!(
                status.as_u16(),
                expected,
                "{method} {path} as {who}: {answer}"
            );
            if expected == 401 {
                assert!(
                    challenge.is_some_and(|c| c.starts_with("Bearer")),
                    "{method} {path}: WWW-Authenticate"
                );
                assert_eq!(answer["error_code"], "unauthorized");
                if token == Some(expired_jwt.as_str()) {
                    assert!(
                        answer["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("expired")),
                        "{answer}"
                    );
                }
            }
            if expected == 403 {
                assert_eq!(answer["error_code"], "forbidden", "{answer}");
                let message = answer["message"].as_str().unwrap_or_default();
                assert!(!message.contains("first"), "a 403 names no data: {message}");
            }
            if !status.is_success() {
                assert_eq!(
                    api.state().await,
                    before,
                    "{method} {path} as {who} changed something"
                );
            }
        }
    }
    // Writes and group membership alice is allowed, and what she may list.
    let (status, _, _) = api
        .call(
            Some("alice-token"),
            Method::POST,
            "/v1/topics/orders/records",
            Some(&json!({"records": [{"value": "x"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, joined, _) = api
        .call(
            Some("alice-token"),
            Method::POST,
            "/v1/groups/billing/members",
            Some(&join),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    let (status, _, _) = api
        .call(
            Some("bob-token"),
            Method::POST,
            "/v1/groups/billing/members",
            Some(&join),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let listed = api
        .call(Some("alice-token"), Method::GET, "/v1/topics", None)
        .await
        .1;
    assert_eq!(
        listed["topics"].as_array().map(Vec::len),
        Some(1),
        "alice sees orders only: {listed}"
    );
    let listed = api
        .call(Some("bob-token"), Method::GET, "/v1/topics", None)
        .await
        .1;
    assert_eq!(
        listed["topics"].as_array().map(Vec::len),
        Some(0),
        "bob sees nothing: {listed}"
    );
    // Open routes stay open.
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert!(
            api.call(None, Method::GET, path, None).await.0.is_success(),
            "{path}"
        );
    }

    // A token added to the file works within a few seconds, without a restart.
    write_tokens(
        &tokens,
        &[
            ("admin", "admin-token"),
            ("alice", "alice-token"),
            ("bob", "bob-token"),
            ("carol", "carol-token"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = api
            .call(Some("carol-token"), Method::GET, "/v1/topics", None)
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            Instant::now() < deadline,
            "carol's token was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn without_authentication_floe_stays_on_loopback_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(floe_tests::floe_binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("FLOE_CONFIG")
        .output()
        .expect("floe serve");
    assert!(
        !output.status.success(),
        "served 0.0.0.0 without authentication"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-anonymous"), "{stderr}");
    let mut child = Command::new(floe_tests::floe_binary())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--allow-anonymous",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("FLOE_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("floe serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut warned = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line.expect("line");
        warned |= line.contains("without authentication");
        if line.contains("floe is serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "--allow-anonymous on 0.0.0.0 logs a warning");
}

/// The internal route (followers forwarding commands to the sequencer leader) needs the
/// cluster's credential even with client authentication off, and the brokers have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_route_needs_the_cluster_credential() {
    let cluster = floe_tests::cluster::FloeCluster::start(2, 1, &["--lease-ttl", "3s"]);
    let leader = cluster.wait_settled(2, Duration::from_secs(60)).await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/internal/v1/sequencer/commands",
        cluster.broker(leader).url
    );
    let create = json!([{ "command": {"type": "create_topic", "name": "smuggled", "partitions": 1,
        "config": {}, "created_ms": 0}, "fence": null }]);
    for secret in [None, Some("wrong-secret-wrong-secret")] {
        let mut request = http.post(&url).json(&create);
        if let Some(secret) = secret {
            request = request.header("x-floe-cluster-secret", secret);
        }
        let response = request.send().await.expect("request");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "secret {secret:?}"
        );
    }
    // Nothing was created, and the brokers forward with the credential: a topic created
    // and produced to through the follower works.
    let follower = 1 - leader;
    let client = cluster.client(follower);
    let listed = client.list_topics().await.expect("list");
    assert!(listed.topics.is_empty(), "{listed:?}");
    floe_tests::create_topic(&client, "orders", 2).await;
    let acks = client
        .produce(
            "orders",
            vec![floe_client::api::ProduceRecordJson {
                value: Some(json!("through the follower")),
                ..Default::default()
            }],
            floe_client::Encoding::Text,
        )
        .await
        .expect("produce through the follower");
    assert_eq!(acks.offsets.len(), 1);
}

/// JWTs whose keys come from the issuer's JWKS URL: a token of a known key is accepted,
/// and after the issuer rotates to a new key, tokens of the new key are accepted within
/// `jwks_refresh`, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_checked_against_the_issuers_jwks_url_and_its_rotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("idp");
    std::fs::create_dir_all(&site).expect("site dir");
    let first = floe_tests::jwt::Issuer::new("key-1");
    std::fs::write(site.join("jwks.json"), first.jwks()).expect("jwks");
    // The issuer's JWKS endpoint: a real HTTP server (Python's).
    let port = floe_tests::free_port();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _idp = Killed(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(&site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    let jwks_url = format!("http://127.0.0.1:{port}/jwks.json");
    let deadline = Instant::now() + Duration::from_secs(15);
    while reqwest::get(&jwks_url).await.is_err() {
        assert!(Instant::now() < deadline, "the JWKS server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = dir.path().join("floe.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\njwks_url = {jwks_url:?}\njwks_refresh = \"10s\"\njwt_issuer = {:?}\n\
             jwt_audience = {:?}\nsuper_users = [\"alice\"]\n",
            floe_tests::jwt::ISSUER,
            floe_tests::jwt::AUDIENCE
        ),
    )
    .expect("config");
    let server = FloeProcess::start(dir.path(), &["--config", &config.display().to_string()]);
    let api = Api {
        http: reqwest::Client::new(),
        url: server.url.clone(),
    };
    let token = first.token("alice", 600);
    let (status, answer, _) = api
        .call(Some(&token), Method::GET, "/v1/topics", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _, _) = api
        .call(
            Some(&first.token("alice", -600)),
            Method::GET,
            "/v1/topics",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");

    // The issuer rotates: its JWKS now holds key-2 only.
    let second = floe_tests::jwt::Issuer::new("key-2");
    std::fs::write(site.join("jwks.json"), second.jwks()).expect("rotate");
    let rotated = second.token("alice", 600);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer, _) = api
            .call(Some(&rotated), Method::GET, "/v1/topics", None)
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the rotated key was never fetched: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // key-1 left the JWKS: its tokens no longer pass.
    let (status, answer, _) = api
        .call(Some(&token), Method::GET, "/v1/topics", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
}

/// An event stream is authorised again before every event: once alice's read ACL is
/// removed, the record produced next is not handed to her open stream, which ends with
/// `event: error` naming the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_ends_when_its_reader_loses_the_acl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, api) = serve_with(
        dir.path(),
        &[("admin", "admin-token"), ("alice", "alice-token")],
        "admin",
        "",
    );
    let admin = Some("admin-token");
    let acl = json!({"acls": [{"principal": "alice", "resource": "topic:t",
        "operation": "read", "permission": "allow"}]});
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/topics",
            json!({"name": "t", "partitions": 1}),
        ),
        (
            Method::POST,
            "/v1/topics/t/records",
            json!({"records": [{"value": "before"}]}),
        ),
        (Method::POST, "/v1/acls", acl.clone()),
    ] {
        let (status, answer, _) = api.call(admin, method, path, Some(&body)).await;
        assert!(status.is_success(), "{path}: {answer}");
    }
    let mut stream = api
        .http
        .get(format!(
            "{}/v1/topics/t/partitions/0/records?offset=0",
            api.url
        ))
        .bearer_auth("alice-token")
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let mut seen = String::new();
    while !seen.contains("before") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the first event in time")
            .expect("chunk")
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (status, answer, _) = api
        .call(admin, Method::DELETE, "/v1/acls", Some(&acl))
        .await;
    assert!(status.is_success(), "{answer}");
    let (status, answer, _) = api
        .call(
            admin,
            Method::POST,
            "/v1/topics/t/records",
            Some(&json!({"records": [{"value": "after"}]})),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    let mut rest = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk())
            .await
            .expect("the stream ends in time")
            .expect("chunk");
        match chunk {
            Some(chunk) => rest.push_str(&String::from_utf8_lossy(&chunk)),
            None => break,
        }
    }
    assert!(
        !rest.contains("after"),
        "a revoked reader got a record: {rest}"
    );
    assert!(
        rest.contains("event: error") && rest.contains("forbidden"),
        "{rest}"
    );
}

#[path = "auth/quotas.rs"]
mod quotas;
