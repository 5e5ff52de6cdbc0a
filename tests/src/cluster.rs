//! A floe cluster for tests: real etcd, a real S3-compatible server (moto), and N `floe
//! serve` processes on loopback ports sharing them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use floe_client::FloeClient;

use crate::FloeProcess;
use crate::etcd::EtcdCluster;
use crate::s3::S3Server;

pub const BUCKET: &str = "floe-test";

/// etcd, S3 and brokers, all stopped when dropped.
#[derive(Debug)]
pub struct FloeCluster {
    pub brokers: Vec<Option<FloeProcess>>,
    pub etcd: EtcdCluster,
    pub s3: S3Server,
    dir: tempfile::TempDir,
    flags: Vec<String>,
}

impl FloeCluster {
    /// Starts `etcd_members` etcd members, moto, and `brokers` brokers `b0`, `b1`, …
    /// each with `flags` (`--flag value` pairs) added to the cluster flags.
    pub fn start(brokers: usize, etcd_members: usize, flags: &[&str]) -> Self {
        let etcd = EtcdCluster::start(etcd_members);
        let s3 = S3Server::start(BUCKET);
        let mut cluster = Self {
            brokers: Vec::new(),
            etcd,
            s3,
            dir: tempfile::tempdir().expect("cluster tempdir"),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        };
        for index in 0..brokers {
            let broker = cluster.spawn(index, &[]);
            cluster.brokers.push(Some(broker));
        }
        cluster
    }

    /// A cluster on `etcd` and `s3` started by the caller (over TLS, say), with no broker
    /// yet: [`FloeCluster::spawn`] them.
    pub fn on(etcd: EtcdCluster, s3: S3Server, flags: &[&str]) -> Self {
        Self {
            brokers: Vec::new(),
            etcd,
            s3,
            dir: tempfile::tempdir().expect("cluster tempdir"),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// Starts broker `index` with the cluster flags and `extra`.
    pub fn spawn(&self, index: usize, extra: &[&str]) -> FloeProcess {
        let data: PathBuf = self.dir.path().join(format!("b{index}"));
        std::fs::create_dir_all(&data).expect("broker dir");
        let id = format!("b{index}");
        let endpoints = self.etcd.endpoints_flag();
        let store = format!("s3://{BUCKET}/cluster");
        let mut flags: Vec<&str> = vec![
            "--etcd",
            &endpoints,
            "--cluster",
            "test",
            "--broker-id",
            &id,
            "--store",
            &store,
        ];
        // Cluster-wide `--flag value` pairs, unless `extra` sets the same flag.
        for pair in self.flags.chunks(2) {
            if !extra.contains(&pair[0].as_str()) {
                flags.extend(pair.iter().map(String::as_str));
            }
        }
        flags.extend(extra);
        FloeProcess::start_with_env(&data, &flags, &self.s3.env())
    }

    /// Broker `index`, which must be running.
    pub fn broker(&self, index: usize) -> &FloeProcess {
        self.brokers[index].as_ref().expect("broker is running")
    }

    /// The index of the broker that owns `topic`/`partition`, once one is assigned.
    pub async fn owner_of(&self, topic: &str, partition: u32, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let index = self.running()[0];
            if let Ok(info) = self.client(index).cluster().await
                && let Some(owner) = info
                    .owners
                    .iter()
                    .find(|o| o.topic == topic && o.partition == partition && !o.owner.is_empty())
            {
                return owner
                    .owner
                    .trim_start_matches('b')
                    .parse()
                    .expect("broker ids are b<index>");
            }
            assert!(
                Instant::now() < deadline,
                "{topic}/{partition} got no owner"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn client(&self, index: usize) -> FloeClient {
        self.brokers[index]
            .as_ref()
            .map(FloeProcess::client)
            .expect("broker is running")
    }

    /// Indexes of running brokers.
    pub fn running(&self) -> Vec<usize> {
        (0..self.brokers.len())
            .filter(|index| self.brokers[*index].is_some())
            .collect()
    }

    /// Waits until every running broker reports `expected` live brokers and a leader, and
    /// returns the leader's index.
    pub async fn wait_settled(&self, expected: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let mut leaders = Vec::new();
            for index in self.running() {
                match self.client(index).cluster().await {
                    Ok(info) if info.brokers.len() == expected => leaders.push(info.leader),
                    _ => leaders.push(None),
                }
            }
            let first = leaders.first().cloned().flatten();
            if let Some(leader) = first
                && leaders
                    .iter()
                    .all(|l| l.as_deref() == Some(leader.as_str()))
            {
                return leader
                    .trim_start_matches('b')
                    .parse()
                    .expect("broker ids are b<index>");
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not settle on {expected} brokers and one leader: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(mut broker) = self.brokers[index].take() {
            broker.kill();
        }
    }

    /// Stops a broker gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self, index: usize) {
        if let Some(mut broker) = self.brokers[index].take() {
            broker.stop();
        }
    }
}
