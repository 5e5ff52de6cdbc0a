//! The Helm chart configures the binary correctly. No Kubernetes API server runs here, so
//! the test does what the kubelet would: it takes the broker container's command, args,
//! environment and `floe.toml` from the chart as Helm renders it
//! (`scripts/chart_check.py --deployment-env`), fills in the downward-API values (pod
//! name, pod IP) and the Secret, maps the volumes to folders, and starts three `floe`
//! processes with exactly that on a real etcd and S3 server. Then it runs the chart's
//! `helm test` steps against them, and rolls the brokers one at a time (SIGTERM, wait for
//! the exit, start a replacement pod) under produce load: every acknowledged record must
//! be readable afterwards.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_client::FloeClient;
use floe_tests::etcd::EtcdCluster;
use floe_tests::s3::S3Server;
use floe_tests::{floe_binary, free_port};
use serde_json::{Value, json};

const BUCKET: &str = "floe-chart";
const TOPIC: &str = "rolling";
const PARTITIONS: u32 = 6;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// The broker pod as the chart renders it with `values`.
fn render(values: &str, dir: &Path) -> Value {
    let file = dir.join("values.yaml");
    std::fs::write(&file, values).expect("write values");
    let python = std::env::var("FLOE_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(repo_root().join("scripts/chart_check.py"))
        .arg("--deployment-env")
        .arg(&file)
        .output()
        .unwrap_or_else(|error| panic!("running {python}: {error}"));
    assert!(
        output.status.success(),
        "rendering the chart failed (scripts/test.sh installs helm-python-sdk; FLOE_PYTHON \
         names its python): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from chart_check.py")
}

/// One broker "pod": a `floe` process started as the kubelet would start the container.
struct Pod {
    name: String,
    url: String,
    child: Option<Child>,
}

impl Pod {
    /// Starts the container of `pod` named `name` on its own port, its volumes under `dir`.
    fn start(pod: &Value, name: &str, dir: &Path, secret: &BTreeMap<&str, String>) -> Self {
        let port = free_port();
        // Volumes: each mount path becomes a folder of this pod.
        let mounts: Vec<(String, PathBuf)> = pod["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .map(|mount| {
                let path = mount["mountPath"].as_str().expect("mountPath").to_owned();
                let local = dir.join(mount["name"].as_str().expect("volume name"));
                std::fs::create_dir_all(&local).expect("volume folder");
                (path, local)
            })
            .collect();
        // One pass, longest mount path first, through placeholders: a folder of this pod
        // (itself under /tmp) must not be mapped again by the `/tmp` mount.
        let local = |text: &str| {
            let mut order: Vec<usize> = (0..mounts.len()).collect();
            order.sort_by_key(|index| std::cmp::Reverse(mounts[*index].0.len()));
            let marked = order.iter().fold(text.to_owned(), |text, index| {
                text.replace(mounts[*index].0.as_str(), &format!("\u{0}{index}\u{0}"))
            });
            order.iter().fold(marked, |text, index| {
                text.replace(
                    &format!("\u{0}{index}\u{0}"),
                    &mounts[*index].1.display().to_string(),
                )
            })
        };
        // The ConfigMap, mounted where the chart mounts it (paths inside it mapped too).
        let config_mount = mounts
            .iter()
            .find(|(path, _)| path == "/etc/floe")
            .map(|(_, folder)| folder.clone())
            .expect("the chart mounts its ConfigMap at /etc/floe");
        std::fs::write(
            config_mount.join("floe.toml"),
            local(pod["floe_toml"].as_str().expect("floe.toml")),
        )
        .expect("write floe.toml");
        // The environment, with the downward API and the Secret filled in, as the kubelet
        // does. The pods share this host, so each listens on its own port.
        let pod_ip = "127.0.0.1";
        let mut env: Vec<(String, String)> = Vec::new();
        for entry in pod["env"].as_array().expect("env") {
            let key = entry["name"].as_str().expect("env name").to_owned();
            let value = if let Some(value) = entry["value"].as_str() {
                value.replace("$(POD_IP)", pod_ip)
            } else if let Some(field) = entry.pointer("/valueFrom/fieldRef/fieldPath") {
                match field.as_str() {
                    Some("metadata.name") => name.to_owned(),
                    Some("status.podIP") => pod_ip.to_owned(),
                    other => panic!("the test cannot fill in fieldRef {other:?}"),
                }
            } else if let Some(key_ref) = entry.pointer("/valueFrom/secretKeyRef/key") {
                let wanted = key_ref.as_str().expect("secret key");
                secret
                    .get(wanted)
                    .cloned()
                    .unwrap_or_else(|| panic!("the test's Secret has no {wanted}"))
            } else {
                panic!("the test cannot fill in env entry {entry}");
            };
            env.push((key, value));
        }
        for (key, value) in &mut env {
            match key.as_str() {
                "FLOE_SERVER__LISTEN" => *value = format!("{pod_ip}:{port}"),
                "FLOE_SERVER__ADVERTISE" => {
                    assert_eq!(value, &format!("http://{pod_ip}:8080"), "advertise");
                    *value = format!("http://{pod_ip}:{port}");
                }
                _ => {}
            }
        }
        let command: Vec<String> = pod["command"]
            .as_array()
            .expect("command")
            .iter()
            .chain(pod["args"].as_array().expect("args"))
            .map(|arg| local(arg.as_str().expect("an argument")))
            .collect();
        assert_eq!(command[0], "floe", "the image's entrypoint");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
        let child = Command::new(floe_binary())
            .args(&command[1..])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn floe");
        Self {
            name: name.to_owned(),
            url: format!("http://{pod_ip}:{port}"),
            child: Some(child),
        }
    }

    /// Waits until `/readyz` answers 200, as the readiness probe does.
    async fn ready(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.url)).await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready: {}",
                self.name,
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM and wait for the exit; returns how long it took and whether it was clean.
    fn terminate(&mut self, grace: Duration) -> (Duration, bool) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (started.elapsed(), status.success());
            }
            if started.elapsed() > grace {
                // What the kubelet does when the grace period runs out.
                let _ = child.kill();
                let _ = child.wait();
                return (started.elapsed(), false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs one `helm test` step (a container of the floe image) with the client Service
/// pointed at `service` and the record file at `record`.
fn helm_test_step(step: &Value, service: &str, record: &Path) -> String {
    let command: Vec<String> = step["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|arg| arg.as_str().expect("argument").to_owned())
        .collect();
    assert_eq!(command[0], "floe");
    let mut args: Vec<String> = Vec::new();
    let mut next_is_server = false;
    for arg in &command[1..] {
        if next_is_server {
            args.push(service.to_owned());
            next_is_server = false;
            continue;
        }
        next_is_server = arg == "-s";
        args.push(arg.replace("/etc/floe-test/record", &record.display().to_string()));
    }
    let output = Command::new(floe_binary())
        .args(&args)
        .env_remove("FLOE_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("run a helm test step");
    assert!(
        output.status.success(),
        "helm test step {} failed: {}",
        step["name"],
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Acknowledged records: (partition, offset) → value.
type Acked = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_runs_the_binary_and_a_rolling_restart_loses_nothing() {
    let etcd = EtcdCluster::start(1);
    let s3 = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("tempdir");
    let s3_env: BTreeMap<&str, String> = s3.env().into_iter().collect();
    let endpoint = s3_env["AWS_ENDPOINT_URL"].clone();
    let values = format!(
        "replicaCount: 3\n\
         store:\n  url: s3://{BUCKET}/cluster\n  s3Endpoint: {endpoint}\n  s3Region: us-east-1\n  \
         s3PathStyle: true\n  credentials:\n    existingSecret: floe-s3\n\
         etcd:\n  endpoints: [{}]\n  dev:\n    enabled: false\n\
         minio:\n  dev:\n    enabled: false\n",
        etcd.endpoints().join(", ")
    );
    let pod = render(&values, dir.path());
    let grace = Duration::from_secs(
        pod["termination_grace_period_seconds"]
            .as_u64()
            .expect("grace period"),
    );
    // The Secret the values name, as `kubectl create secret generic floe-s3` would hold.
    let secret: BTreeMap<&str, String> = [
        ("AWS_ACCESS_KEY_ID", s3_env["AWS_ACCESS_KEY_ID"].clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            s3_env["AWS_SECRET_ACCESS_KEY"].clone(),
        ),
    ]
    .into_iter()
    .collect();

    let pod_dir = |name: &str| dir.path().join(name);
    let mut pods: Vec<Pod> = (0..3)
        .map(|index| {
            let name = format!("floe-5d8c7b9f4-{index}");
            Pod::start(&pod, &name, &pod_dir(&name), &secret)
        })
        .collect();
    for pod in &pods {
        pod.ready(&pod_dir(&pod.name)).await;
    }
    // One cluster of three, each broker named after its pod and advertising its address.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = FloeClient::new(&pods[0].url)
            .cluster()
            .await
            .expect("cluster");
        let mut names: Vec<&str> = info.brokers.iter().map(|b| b.id.as_str()).collect();
        names.sort();
        if names == ["floe-5d8c7b9f4-0", "floe-5d8c7b9f4-1", "floe-5d8c7b9f4-2"] {
            assert!(
                info.brokers
                    .iter()
                    .all(|b| b.address.starts_with("http://127.0.0.1:"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "no cluster of three: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The chart's `helm test`, each step as its container runs it, through "the Service"
    // (a different broker per step, as a Service would spread them).
    let record = dir.path().join("record");
    let text = pod["test_annotations"]["floe-streaming.io/test-record"]
        .as_str()
        .expect("the test record annotation");
    std::fs::File::create(&record)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .expect("record file");
    let steps = pod["test_steps"].as_array().expect("test steps");
    assert_eq!(steps.len(), 4, "create, produce, consume, delete");
    for (index, step) in steps.iter().enumerate() {
        let out = helm_test_step(step, &pods[index % pods.len()].url, &record);
        if step["name"] == "consume" {
            assert!(out.contains(text), "the consume step printed {out:?}");
        }
    }

    // A rolling restart under produce load, one broker at a time.
    let client = FloeClient::new(&pods[0].url).without_owner_routing();
    floe_tests::create_topic(&client, TOPIC, PARTITIONS).await;
    let live: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(pods.iter().map(|p| p.url.clone()).collect()));
    let acked: Acked = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (live, acked, refused, stop) = (
            Arc::clone(&live),
            Arc::clone(&acked),
            Arc::clone(&refused),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                round += 1;
                let target = {
                    let live = live.lock().expect("live");
                    live[round % live.len()].clone()
                };
                let records: Vec<Value> = (0..20)
                    .map(|i| json!({"value": format!("r{round}-{i}")}))
                    .collect();
                let answer = http
                    .post(format!("{target}/v1/topics/{TOPIC}/records"))
                    .json(&json!({ "records": records }))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let body: Value = response.json().await.expect("acks");
                        let mut acked = acked.lock().expect("acked");
                        for (i, ack) in body["offsets"]
                            .as_array()
                            .expect("offsets")
                            .iter()
                            .enumerate()
                        {
                            let key = (
                                ack["partition"].as_u64().expect("partition") as u32,
                                ack["offset"].as_u64().expect("offset"),
                            );
                            acked.insert(key, format!("r{round}-{i}"));
                        }
                    }
                    _ => *refused.lock().expect("refused") += 1,
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut shutdowns = Vec::new();
    for (index, slot) in pods.iter_mut().enumerate() {
        // The endpoints controller drops the pod first (the preStop sleep covers that);
        // then the kubelet sends SIGTERM.
        let old = slot.url.clone();
        live.lock().expect("live").retain(|url| *url != old);
        let (took, clean) = slot.terminate(grace);
        assert!(
            clean,
            "{} did not exit cleanly within its grace period",
            slot.name
        );
        shutdowns.push(took);
        let name = format!("floe-5d8c7b9f4-r{index}");
        let replacement = Pod::start(&pod, &name, &pod_dir(&name), &secret);
        replacement.ready(&pod_dir(&name)).await;
        live.lock().expect("live").push(replacement.url.clone());
        *slot = replacement;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    producer.await.expect("producer");

    // Every acknowledged record is there, at its offset.
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() > 100,
        "the load produced only {} records",
        acked.len()
    );
    let reader = FloeClient::new(&pods[1].url).without_owner_routing();
    let mut found = 0;
    for partition in 0..PARTITIONS {
        let records = floe_tests::read_partition(&reader, TOPIC, partition).await;
        let by_offset: BTreeMap<u64, String> = records
            .into_iter()
            .map(|r| {
                (
                    r.offset,
                    r.value
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                )
            })
            .collect();
        for ((p, offset), value) in acked.range((partition, 0)..(partition + 1, 0)) {
            assert_eq!(
                by_offset.get(offset),
                Some(value),
                "{p}/{offset} lost or changed"
            );
            found += 1;
        }
    }
    assert_eq!(found, acked.len());
    eprintln!(
        "rolling restart: {} records acknowledged and read back, {} requests refused; \
         SIGTERM to exit: {:?} (grace period {grace:?})",
        acked.len(),
        refused.lock().expect("refused"),
        shutdowns
    );
}
