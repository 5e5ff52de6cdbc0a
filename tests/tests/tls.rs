//! TLS on the listener against a real `floe serve`: a client without the CA is refused;
//! with it, produce and fetch work; a client certificate's subject is the principal
//! (ACLs apply); a rotated certificate is served without a restart. The `floe` CLI does the
//! same with `--ca`, `--cert` and `--key`. Certificates are made in the test with rcgen.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_tests::certs::Ca;
use floe_tests::{FloeProcess, succeeded};
use reqwest::StatusCode;
use serde_json::json;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write pem");
}

/// The server's `https://` URL, by the name its certificate carries.
fn https_url(server: &FloeProcess) -> String {
    let port = server.url.rsplit_once(':').expect("port").1;
    format!("https://localhost:{port}")
}

fn client(ca: Option<&str>, identity: Option<(&str, &str)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"));
    }
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

/// The certificate the server presents to a new connection (DER).
async fn presented(addr: &str, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificates")[0]
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn tls_refuses_unknown_servers_names_principals_by_subject_and_rotates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = Ca::new("floe test server CA");
    let client_ca = Ca::new("floe test client CA");
    let (cert, key) = server_ca.leaf("floe", &["localhost", "127.0.0.1"]);
    let (cert_path, key_path, client_ca_path) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("clients.pem"),
    );
    write(&cert_path, &cert);
    write(&key_path, &key);
    write(&client_ca_path, &client_ca.cert.pem());
    let server = FloeProcess::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &cert_path.display().to_string(),
            "--tls-key",
            &key_path.display().to_string(),
            "--tls-client-ca",
            &client_ca_path.display().to_string(),
            "--super-users",
            "CN=alice,O=acme",
        ],
    );
    let addr = server.url.trim_start_matches("http://").to_owned();
    let url = https_url(&server);
    let server_ca_pem = server_ca.cert.pem();
    let (alice_cert, alice_key) = client_ca.leaf("alice", &[]);
    let (bob_cert, bob_key) = client_ca.leaf("bob", &[]);
    let rogue = Ca::new("not the client CA");
    let (mallory_cert, mallory_key) = rogue.leaf("alice", &[]);

    // Without the server's CA the client refuses the server; plain HTTP gets nothing.
    assert!(
        client(None, None)
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_err()
    );
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(
        !plain.is_ok_and(|response| response.status().is_success()),
        "plain HTTP on a TLS listener"
    );
    // With it: open routes answer; others need a certificate (or a token).
    let anonymous = client(Some(&server_ca_pem), None);
    assert_eq!(
        anonymous
            .get(format!("{url}/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        anonymous
            .get(format!("{url}/v1/topics"))
            .send()
            .await
            .expect("topics")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // A certificate from another CA does not make its subject a principal.
    let mallory = client(Some(&server_ca_pem), Some((&mallory_cert, &mallory_key)));
    let refused = mallory.get(format!("{url}/v1/topics")).send().await;
    assert!(
        refused.is_err() || refused.is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED),
        "a rogue client certificate"
    );

    // Alice (a super user by subject) creates, produces and fetches over TLS.
    let alice = client(Some(&server_ca_pem), Some((&alice_cert, &alice_key)));
    let created = alice
        .post(format!("{url}/v1/topics"))
        .json(&json!({"name": "secure", "partitions": 1}))
        .send()
        .await
        .expect("create");
    let status = created.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let produced = alice
        .post(format!("{url}/v1/topics/secure/records"))
        .json(&json!({"records": [{"value": "over tls"}]}))
        .send()
        .await
        .expect("produce");
    assert_eq!(produced.status(), StatusCode::OK);
    let fetched: serde_json::Value = alice
        .get(format!(
            "{url}/v1/topics/secure/partitions/0/records?offset=0"
        ))
        .send()
        .await
        .expect("fetch")
        .json()
        .await
        .expect("fetch body");
    assert_eq!(fetched["records"][0]["value"], "over tls", "{fetched}");
    // Bob's certificate is valid but his subject has no ACL.
    let bob = client(Some(&server_ca_pem), Some((&bob_cert, &bob_key)));
    let denied = bob
        .get(format!("{url}/v1/topics/secure"))
        .send()
        .await
        .expect("bob");
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let message: serde_json::Value = denied.json().await.expect("403 body");
    assert!(
        message["message"]
            .as_str()
            .unwrap_or_default()
            .contains("CN=bob,O=acme"),
        "{message}"
    );

    // A rotated certificate is served to new connections without a restart.
    let before = presented(&addr, &server_ca_pem).await;
    let (rotated_cert, rotated_key) = server_ca.leaf("floe rotated", &["localhost", "127.0.0.1"]);
    write(&key_path, &rotated_key);
    write(&cert_path, &rotated_cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = presented(&addr, &server_ca_pem).await;
        if now != before {
            let expected =
                rustls::pki_types::pem::PemObject::pem_slice_iter(rotated_cert.as_bytes())
                    .next()
                    .map(|c: Result<rustls::pki_types::CertificateDer<'static>, _>| {
                        c.expect("pem").as_ref().to_vec()
                    });
            assert_eq!(Some(now), expected);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let again = alice
        .get(format!("{url}/v1/topics/secure"))
        .send()
        .await
        .expect("after rotation");
    assert_eq!(again.status(), StatusCode::OK);
}

/// A certificate and its key written to `{name}.pem` and `{name}.key` in `dir`.
fn write_leaf(dir: &Path, name: &str, (cert, key): (String, String)) -> (String, String) {
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    write(&cert_path, &cert);
    write(&key_path, &key);
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// Runs the `floe` CLI with `args`, `stdin` and only the given `FLOE_*` variables.
fn floe(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    floe_tests::run_floe(args, env, stdin)
}

/// The stderr of a run that failed as a command fails (exit status 1), not as a panic.
fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_trusts_a_ca_and_presents_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path();
    let server_ca = Ca::new("floe test server CA");
    let client_ca = Ca::new("floe test client CA");
    let (server_cert, server_key) = write_leaf(
        files,
        "server",
        server_ca.leaf("floe", &["localhost", "127.0.0.1"]),
    );
    let client_ca_path = files.join("clients.pem");
    write(&client_ca_path, &client_ca.cert.pem());
    let client_ca_path = client_ca_path.display().to_string();
    // A bundle: the server's CA after another, as a system's CA file holds several.
    let ca_path = files.join("ca.pem");
    let bundle = format!(
        "{}{}",
        Ca::new("another CA").cert.pem(),
        server_ca.cert.pem()
    );
    write(&ca_path, &bundle);
    let ca_path = ca_path.display().to_string();
    let tls_flags = ["--tls-cert", &server_cert, "--tls-key", &server_key];

    // A TLS server without client certificates (anonymous on loopback).
    let server = FloeProcess::start(&files.join("data"), &tls_flags);
    let url = https_url(&server);
    // Without --ca the server's certificate is not trusted: a clear error, not a panic.
    let stderr = failed(&floe(&["--server", &url, "topics", "list"], &[], ""));
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    // With it, the whole round: create, produce, consume; flags or FLOE_CA alike.
    succeeded(&floe(
        &[
            "-s", &url, "--ca", &ca_path, "topics", "create", "plain", "-p", "1",
        ],
        &[],
        "",
    ));
    succeeded(&floe(
        &["produce", "plain", "-s", &url],
        &[("FLOE_CA", &ca_path)],
        "one\ntwo\n",
    ));
    let consumed = succeeded(&floe(
        &[
            "consume", "plain", "-p", "0", "-F", "%o %v", "--ca", &ca_path, "-s", &url,
        ],
        &[],
        "",
    ));
    assert_eq!(consumed, "0 one\n1 two\n");
    drop(server);

    // Mutual TLS: a client certificate's subject is the principal.
    let mut mtls_flags = tls_flags.to_vec();
    mtls_flags.extend(["--tls-client-ca", &client_ca_path]);
    mtls_flags.extend(["--super-users", "CN=alice,O=acme"]);
    let server = FloeProcess::start(&files.join("mtls-data"), &mtls_flags);
    let url = https_url(&server);
    let (alice_cert, alice_key) = write_leaf(files, "alice", client_ca.leaf("alice", &[]));
    let (bob_cert, bob_key) = write_leaf(files, "bob", client_ca.leaf("bob", &[]));
    let alice = |args: &[&str], stdin: &str| {
        let mut all = vec!["-s", &url, "--ca", &ca_path, "--cert", &alice_cert];
        all.extend(args);
        all.extend(["--key", alice_key.as_str()]);
        floe(&all, &[], stdin)
    };
    let bob_env = [
        ("FLOE_SERVER", url.as_str()),
        ("FLOE_CA", ca_path.as_str()),
        ("FLOE_CERT", bob_cert.as_str()),
        ("FLOE_KEY", bob_key.as_str()),
    ];

    // Without a certificate the server does not know who asks.
    let stderr = failed(&floe(
        &["-s", &url, "--ca", &ca_path, "topics", "list"],
        &[],
        "",
    ));
    assert!(stderr.contains("401"), "{stderr}");
    succeeded(&alice(&["topics", "create", "secure", "-p", "1"], ""));
    succeeded(&alice(&["produce", "secure"], "over tls\n"));
    let consumed = succeeded(&alice(&["consume", "secure", "-p", "0", "-F", "%o %v"], ""));
    assert_eq!(consumed, "0 over tls\n");
    // Bob's certificate is good, but his subject has no ACL: the 403 names it.
    let stderr = failed(&floe(&["consume", "secure", "-p", "0"], &bob_env, ""));
    assert!(
        stderr.contains("403") && stderr.contains("CN=bob,O=acme"),
        "{stderr}"
    );
    // An ACL for that subject, added by alice, lets him read.
    succeeded(&alice(
        &[
            "acls",
            "add",
            "--principal",
            "CN=bob,O=acme",
            "--operation",
            "read",
            "--resource",
            "topic:secure",
        ],
        "",
    ));
    let consumed = succeeded(&floe(&["consume", "secure", "-p", "0"], &bob_env, ""));
    assert_eq!(consumed, "over tls\n");
    // A certificate without its key is refused before anything is sent.
    let output = floe(
        &[
            "-s", &url, "--ca", &ca_path, "--cert", &bob_cert, "topics", "list",
        ],
        &[],
        "",
    );
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--key"));
}
