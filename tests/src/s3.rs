//! A real S3-compatible server for tests: moto's server mode, which enforces create-only
//! puts (`If-None-Match: *`) atomically.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// `$FLOE_MOTO_BIN`, the venv scripts/test.sh makes, or `moto_server` on the `PATH`.
pub fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOE_MOTO_BIN") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = PathBuf::from(home).join(".cache/floe/venv/bin/moto_server");
        if venv.exists() {
            return venv;
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("moto_server");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("moto_server is not installed: scripts/test.sh installs it into ~/.cache/floe/venv");
}

/// A moto server on a loopback port, stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and creates `bucket`.
    pub fn start(bucket: &str) -> Self {
        Self::start_with_tls(bucket, None)
    }

    /// Starts the server over TLS with `(certificate, key, ca)` PEM files, if given.
    pub fn start_with_tls(
        bucket: &str,
        tls: Option<(&std::path::Path, &std::path::Path, &std::path::Path)>,
    ) -> Self {
        let port = free_port();
        let mut command = Command::new(moto_binary());
        if let Some((cert, key, _)) = tls {
            command.arg("-c").arg(cert).arg("-k").arg(key);
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = Self {
            child,
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // moto accepts unsigned requests: a bare PUT creates the bucket.
            let mut curl = Command::new("curl");
            if let Some((_, _, ca)) = tls {
                curl.arg("--cacert").arg(ca);
            }
            let created = curl
                .args(["-s", "-f", "-m", "2", "-X", "PUT"])
                .arg(format!("{}/{bucket}", server.endpoint))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if created {
                return server;
            }
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many objects are stored under `prefix` in `bucket`, and their total bytes.
    pub async fn objects(&self, bucket: &str, prefix: &str) -> (usize, u64) {
        let (mut count, mut bytes) = (0, 0);
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint);
            if let Some(token) = &token {
                url.push_str(&format!("&continuation-token={token}"));
            }
            let body = reqwest::get(&url)
                .await
                .expect("list objects")
                .text()
                .await
                .expect("list body");
            for size in xml_values(&body, "Size") {
                count += 1;
                bytes += size.parse::<u64>().expect("object size");
            }
            token = xml_values(&body, "NextContinuationToken")
                .next()
                .map(str::to_owned);
            if token.is_none() {
                return (count, bytes);
            }
        }
    }

    /// The environment a floe process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of every `<tag>…</tag>` in a (flat, trusted) XML answer.
fn xml_values<'a>(body: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    body.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(value, _)| value))
        .collect::<Vec<_>>()
        .into_iter()
}
