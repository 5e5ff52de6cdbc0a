//! A cluster with TLS on every hop, against real processes: etcd serving clients over TLS
//! and requiring client certificates, moto (S3) over TLS with a private CA, brokers serving
//! HTTPS, and brokers calling each other over HTTPS on internal listeners of their own.
//! Topics created and records produced through the follower reach the leader that way;
//! the public listener does not serve the internal routes, and the internal listener still
//! wants the cluster's credential.

use std::time::{Duration, Instant};

use floe_tests::certs::Ca;
use floe_tests::cluster::{BUCKET, FloeCluster};
use floe_tests::etcd::{EtcdCluster, EtcdTlsFiles};
use floe_tests::free_port;
use floe_tests::s3::S3Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn https_client(ca_pem: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The broker's public URL over HTTPS.
fn https(url: &str) -> String {
    url.replace("http://", "https://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_speaks_tls_to_etcd_to_s3_and_between_its_brokers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("floe test CA");
    let ca_path = ca.write(&dir.path().join("ca.pem"));
    let (server_cert, server_key) = ca.leaf_files(dir.path(), "server", &["127.0.0.1"]);
    let (client_cert, client_key) = ca.leaf_files(dir.path(), "broker", &[]);
    let etcd = EtcdCluster::start_with_tls(
        1,
        Some(EtcdTlsFiles {
            cert: server_cert.clone(),
            key: server_key.clone(),
            ca: ca_path.clone(),
            client_cert: client_cert.clone(),
            client_key: client_key.clone(),
        }),
    );
    assert!(etcd.endpoints_flag().starts_with("https://"));
    let s3 = S3Server::start_with_tls(BUCKET, Some((&server_cert, &server_key, &ca_path)));
    assert!(s3.endpoint.starts_with("https://"));
    let config = dir.path().join("floe.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\netcd_ca_file = {ca:?}\netcd_cert_file = {cert:?}\netcd_key_file = {key:?}\n\
             [store]\ns3_ca_file = {ca:?}\n",
            ca = ca_path.display().to_string(),
            cert = client_cert.display().to_string(),
            key = client_key.display().to_string(),
        ),
    )
    .expect("config");
    let (cert, key, ca_arg) = (
        server_cert.display().to_string(),
        server_key.display().to_string(),
        ca_path.display().to_string(),
    );
    let config_arg = config.display().to_string();
    let mut cluster = FloeCluster::on(
        etcd,
        s3,
        &[
            "--config",
            &config_arg,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--peer-ca",
            &ca_arg,
            "--lease-ttl",
            "3s",
        ],
    );
    let internal: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    for (index, address) in internal.iter().enumerate() {
        let broker = cluster.spawn(index, &["--internal-listen", address]);
        cluster.brokers.push(Some(broker));
    }
    let http = https_client(&ca.cert.pem());
    let urls: Vec<String> = (0..2).map(|i| https(&cluster.broker(i).url)).collect();

    // Both brokers registered through etcd over TLS, and agree on a leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        let mut leaders = Vec::new();
        for url in &urls {
            let info: Option<Value> = match http.get(format!("{url}/v1/cluster")).send().await {
                Ok(response) => response.json().await.ok(),
                Err(_) => None,
            };
            leaders.push(info.and_then(|info| {
                (info["brokers"].as_array().map(Vec::len) == Some(2))
                    .then(|| info["leader"].as_str().map(str::to_owned))
                    .flatten()
            }));
        }
        if let Some(Some(leader)) = leaders.first()
            && leaders
                .iter()
                .all(|l| l.as_deref() == Some(leader.as_str()))
        {
            break leader
                .trim_start_matches('b')
                .parse::<usize>()
                .expect("b<index>");
        }
        assert!(Instant::now() < deadline, "no settled cluster: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let follower = 1 - leader;

    // The public listener does not serve the internal routes; the internal listener
    // does, behind the cluster credential.
    let forward = "/internal/v1/sequencer/commands";
    let smuggled = json!([{ "command": {"type": "create_topic", "name": "smuggled",
        "partitions": 1, "config": {}, "created_ms": 0}, "fence": null }]);
    let response = http
        .post(format!("{}{forward}", urls[leader]))
        .json(&smuggled)
        .send()
        .await
        .expect("public");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http
        .post(format!("https://{}{forward}", internal[leader]))
        .json(&smuggled)
        .send()
        .await
        .expect("internal");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Through the follower: its commands go to the leader's internal listener over
    // HTTPS (trusting --peer-ca), and its segments to S3 over TLS.
    let response = http
        .post(format!("{}/v1/topics", urls[follower]))
        .json(&json!({"name": "orders", "partitions": 2}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    let values: Vec<String> = (0..50).map(|i| format!("record {i}")).collect();
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"key": "k", "value": v}))
        .collect();
    let response = http
        .post(format!("{}/v1/topics/orders/records", urls[follower]))
        .json(&json!({ "records": records }))
        .send()
        .await
        .expect("produce");
    assert_eq!(response.status(), StatusCode::OK);
    let acks: Value = response.json().await.expect("acks");
    let partition = acks["offsets"][0]["partition"].as_u64().expect("partition");
    let fetched: Value = http
        .get(format!(
            "{}/v1/topics/orders/partitions/{partition}/records?offset=0&max_records=100",
            urls[leader]
        ))
        .send()
        .await
        .expect("fetch")
        .json()
        .await
        .expect("records");
    let got: Vec<&str> = fetched["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(got, values, "{fetched}");
    let listed: Value = http
        .get(format!("{}/v1/topics", urls[leader]))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("topics");
    let names: Vec<&str> = listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["orders"], "nothing smuggled in");
    for index in 0..2 {
        cluster.kill(index);
    }
}
