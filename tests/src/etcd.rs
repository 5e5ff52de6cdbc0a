//! Real etcd processes (Debian's `etcd-server`): one member, or three on loopback so a test
//! can kill the etcd leader.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the `etcd` binary is: `$FLOE_ETCD_BIN`, or `etcd` on the `PATH`.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOE_ETCD_BIN") {
        return PathBuf::from(path);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("etcd");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("etcd is not installed: `apt-get install etcd-server` (scripts/test.sh does)");
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// PEM files of etcd's TLS on client connections: its certificate and key, and the CA
/// client certificates must chain to (`--client-cert-auth`); a client here presents
/// `client_cert`/`client_key`.
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// An etcd cluster of one or more members, stopped when dropped.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    tls: Option<EtcdTlsFiles>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster answers.
    pub fn start(size: usize) -> Self {
        Self::start_with_tls(size, None)
    }

    /// Starts `size` members serving clients over TLS with client certificates required.
    /// A cluster that elects no leader within 30 s is started once more on new ports and
    /// directories, after printing its members' logs (a port taken between choosing and
    /// binding it is the known cause); a second failure panics with the logs.
    pub fn start_with_tls(size: usize, tls: Option<EtcdTlsFiles>) -> Self {
        let first = Self::launch(size, tls.clone());
        if first.wait_healthy(Duration::from_secs(30)) {
            return first;
        }
        eprintln!(
            "etcd elected no leader within 30 s; starting it again. Its logs:\n{}",
            first.log_tails()
        );
        drop(first);
        let second = Self::launch(size, tls);
        if !second.wait_healthy(Duration::from_secs(30)) {
            panic!(
                "etcd did not elect a leader within 30 s, twice. Its logs:\n{}",
                second.log_tails()
            );
        }
        second
    }

    fn launch(size: usize, tls: Option<EtcdTlsFiles>) -> Self {
        let dir = tempfile::tempdir().expect("etcd tempdir");
        // Held until every port is chosen, so no two members are given the same one.
        let listeners: Vec<std::net::TcpListener> = (0..2 * size)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
            .collect();
        let port = |index: usize| listeners[index].local_addr().expect("local addr").port();
        let members: Vec<Member> = (0..size)
            .map(|index| Member {
                name: format!("e{index}"),
                client_port: port(2 * index),
                peer_port: port(2 * index + 1),
                child: None,
            })
            .collect();
        drop(listeners);
        let mut cluster = Self { members, dir, tls };
        for index in 0..size {
            cluster.spawn(index);
        }
        cluster
    }

    /// The last lines of each member's log.
    fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|member| {
                let path = self.dir.path().join(format!("{}.log", member.name));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!(
                    "--- {} (client {}, peer {})\n{tail}",
                    member.name, member.client_port, member.peer_port
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, index: usize) {
        let initial = self.initial_cluster();
        let member = &self.members[index];
        let data = self.dir.path().join(&member.name);
        let client = format!("{}://127.0.0.1:{}", self.scheme(), member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", member.name)))
            .expect("etcd log file");
        let mut command = Command::new(etcd_binary());
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            // Per-method gRPC latency histograms on /metrics, so a benchmark can tell
            // etcd's time from its client's.
            .args(["--metrics", "extensive"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.members[index].child = Some(child);
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port))
            .collect()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The endpoints as one comma-separated flag value.
    pub fn endpoints_flag(&self) -> String {
        self.endpoints().join(",")
    }

    fn status(&self, index: usize) -> Option<serde_json::Value> {
        let url = format!(
            "{}://127.0.0.1:{}/v3/maintenance/status",
            self.scheme(),
            self.members[index].client_port
        );
        let mut curl = Command::new("curl");
        if let Some(tls) = &self.tls {
            curl.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        let output = curl
            .args(["-s", "-m", "2", "-X", "POST", "-d", "{}", &url])
            .output()
            .ok()?;
        serde_json::from_slice(&output.stdout).ok()
    }

    /// Index of the member that is etcd's raft leader now.
    pub fn leader(&self) -> Option<usize> {
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                continue;
            }
            let status = self.status(index)?;
            let member = status.pointer("/header/member_id")?.as_str()?.to_owned();
            let leader = status.pointer("/leader")?.as_str()?.to_owned();
            if member == leader {
                return Some(index);
            }
        }
        None
    }

    /// Whether a leader is elected within `limit`.
    fn wait_healthy(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.leader().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Starts a killed member again on its data directory and ports.
    pub fn restart(&mut self, index: usize) {
        if self.members[index].child.is_none() {
            self.spawn(index);
        }
    }

    /// Members running now.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].child.is_some())
            .collect()
    }

    /// SIGKILL one member.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}
