//! Test harness: starts real `floe` processes on loopback ports with their own data
//! directories, and stops them (or kills them) when asked or when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floe_client::FloeClient;

pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod etcd;
pub mod jwt;
pub mod s3;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a free port")
}

/// Where the `floe` binary is: `$FLOE_BIN`, or beside this test binary's `deps` folder.
pub fn floe_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOE_BIN") {
        return PathBuf::from(path);
    }
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("floe");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --bin floe --bin floe-bench --features \
         floe-cli/failpoints` first (scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// One `floe serve` process.
#[derive(Debug)]
pub struct FloeProcess {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
}

impl FloeProcess {
    /// Starts `floe serve` on a free loopback port with `data_dir` and extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`FloeProcess::start`] with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = Command::new(floe_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env_remove("FLOE_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn floe serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        // What the process said before it announced itself, to show if it never does.
        let early = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let heard = std::sync::Arc::clone(&early);
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !announced {
                    let mut heard = heard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if heard.len() < 40 {
                        heard.push(line.clone());
                    }
                }
                if !announced
                    && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(addr) = event.pointer("/fields/addr").and_then(|a| a.as_str())
                {
                    announced = true;
                    let _ = sender.send(addr.to_owned());
                }
                if std::env::var_os("FLOE_TEST_LOGS").is_some() {
                    eprintln!("[floe] {line}");
                }
            }
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let exited = child.try_wait().ok().flatten();
                // Not left behind: a slow broker would hold its id in the cluster.
                let _ = child.kill();
                let _ = child.wait();
                let said = early
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .join("\n");
                panic!(
                    "floe serve did not announce its address within 30 s (exit status: \
                 {exited:?}); it said:\n{said}"
                )
            });
        Self {
            child: Some(child),
            url: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// A client of exactly this broker (fetches are not routed to partition owners).
    pub fn client(&self) -> FloeClient {
        FloeClient::new(&self.url).without_owner_routing()
    }

    /// A client that starts at this broker and prefers partition owners, as users' do.
    pub fn routing_client(&self) -> FloeClient {
        FloeClient::new(&self.url)
    }

    /// The value of one sample of this broker's `/metrics`, such as
    /// `floe_store_get_requests_total{cause="fetch"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_at(&self.url, sample)
            .await
            .unwrap_or_else(|| panic!("no sample {sample} in {}/metrics", self.url))
    }

    /// The operating-system process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: the process freezes, holding its sockets, until [`FloeProcess::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after a pause.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(signal)
                .arg(pid.to_string())
                .status();
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for the process to exit by itself (a failpoint's abort, say) and
    /// returns how it exited; `None` if it is still running then (or was already stopped).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("floe did not stop within 20 s of SIGTERM");
        }
    }
}

impl Drop for FloeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of one sample of the `/metrics` of the server at `url`, if it answers and has
/// the sample.
pub async fn metric_at(url: &str, sample: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse::<f64>().ok())?
    })
}

/// Creates a topic with the default config, or panics.
pub async fn create_topic(client: &FloeClient, name: &str, partitions: u32) {
    client
        .create_topic(&floe_client::api::CreateTopicRequest {
            name: name.into(),
            partitions,
            config: Default::default(),
        })
        .await
        .unwrap_or_else(|error| panic!("creating topic {name}: {error}"));
}

/// Reads a partition from offset 0 up to its high watermark, in pages.
pub async fn read_partition(
    client: &FloeClient,
    topic: &str,
    partition: u32,
) -> Vec<floe_client::api::FetchedRecordJson> {
    let options = floe_client::FetchOptions {
        max_records: Some(5000),
        max_bytes: Some(8 << 20),
        ..floe_client::FetchOptions::default()
    };
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = client
            .fetch(topic, partition, offset, &options)
            .await
            .expect("fetch");
        records.extend(fetched.records);
        offset = fetched.next_offset;
        if offset >= fetched.high_watermark {
            return records;
        }
    }
}

/// A seed for randomised tests: `$FLOE_TEST_SEED` or a fresh one, printed so that a
/// failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("FLOE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("FLOE_TEST_SEED={seed}");
    seed
}

/// Runs the `floe` CLI with `args`, `stdin` and, of the `FLOE_*` client variables, only
/// those in `env`; waits for it to exit.
pub fn run_floe(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut command = Command::new(floe_binary());
    for variable in [
        "FLOE_SERVER",
        "FLOE_TOKEN",
        "FLOE_CA",
        "FLOE_CERT",
        "FLOE_KEY",
    ] {
        command.env_remove(variable);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("floe exits")
}

/// The stdout of a `floe` run that succeeded (its stderr in the panic otherwise).
pub fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "floe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}
