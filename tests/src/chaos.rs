//! Faults between clients and brokers, and a checker of what the log holds afterwards
//! (issue 19, ADR 0010).
//!
//! [`FaultyProxy`] forwards TCP connections to the live brokers and, drawn from a seed,
//! cuts a connection just as the broker's answer starts to come back (the request reached
//! the broker and was handled; the client never learns how), or delays the answer. The
//! [`check`] compares what producers were told with what every broker serves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to answers: the share of connections cut as the answer begins, and
/// the share delayed (by up to `max_delay`).
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub cut: f64,
    pub delay: f64,
    pub max_delay: Duration,
}

/// Counts of faults injected, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub cut: AtomicU64,
    pub delayed: AtomicU64,
    pub connections: AtomicU64,
}

impl FaultCounts {
    pub fn summary(&self) -> String {
        format!(
            "{} connections, {} answers cut, {} delayed",
            self.connections.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
            self.delayed.load(Ordering::Relaxed)
        )
    }
}

/// A TCP proxy in front of the brokers, injecting [`Faults`] drawn from a seed.
#[derive(Debug)]
pub struct FaultyProxy {
    pub url: String,
    upstreams: Arc<Mutex<Vec<String>>>,
    pub counts: Arc<FaultCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// Listens on a loopback port and forwards each connection to one of `upstreams`
    /// (`host:port`), round robin.
    pub async fn start(upstreams: Vec<String>, faults: Faults, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let upstreams = Arc::new(Mutex::new(upstreams));
        let counts = Arc::new(FaultCounts::default());
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        let task = {
            let upstreams = Arc::clone(&upstreams);
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let mut next = 0usize;
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let target = {
                        let upstreams = upstreams.lock();
                        if upstreams.is_empty() {
                            continue;
                        }
                        next += 1;
                        upstreams[next % upstreams.len()].clone()
                    };
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    let rng = Arc::clone(&rng);
                    let counts = Arc::clone(&counts);
                    tokio::spawn(relay(client, target, faults, rng, counts));
                }
            })
        };
        Self {
            url,
            upstreams,
            counts,
            task,
        }
    }

    /// Replaces the brokers new connections go to (a broker restarted on a new port).
    pub fn set_upstreams(&self, upstreams: Vec<String>) {
        *self.upstreams.lock() = upstreams;
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut client: TcpStream,
    target: String,
    faults: Faults,
    rng: Arc<Mutex<StdRng>>,
    counts: Arc<FaultCounts>,
) {
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let answers = async {
        let mut buffer = vec![0u8; 64 * 1024];
        // Each chunk that starts an answer after a pause in the flow is a new answer:
        // decide its fate as its first bytes arrive.
        let mut answering = false;
        loop {
            let read = if answering {
                match tokio::time::timeout(
                    Duration::from_millis(2),
                    upstream_read.read(&mut buffer),
                )
                .await
                {
                    Ok(read) => read,
                    Err(_) => {
                        answering = false;
                        continue;
                    }
                }
            } else {
                upstream_read.read(&mut buffer).await
            };
            let Ok(read @ 1..) = read else { return };
            if !answering {
                if !decide(&faults, &rng, &counts).await {
                    return;
                }
                answering = true;
            }
            if client_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    // Either side ending ends the connection (a cut answer drops both).
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}

/// Whether an answer goes through (after any delay); `false` cuts the connection.
async fn decide(faults: &Faults, rng: &Mutex<StdRng>, counts: &FaultCounts) -> bool {
    let (cut, delay) = {
        let mut rng = rng.lock();
        let cut = rng.random::<f64>() < faults.cut;
        let delay = (rng.random::<f64>() < faults.delay)
            .then(|| faults.max_delay.mul_f64(rng.random::<f64>()));
        (cut, delay)
    };
    if cut {
        counts.cut.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if let Some(delay) = delay {
        counts.delayed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    }
    true
}

/// What one producer was told: each value's partition and offset.
pub type Acks = Vec<(String, u32, u64)>;

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Records read from the log.
    pub records: u64,
    /// Values acknowledged to a producer.
    pub acknowledged: u64,
    /// Acknowledged values not in the log.
    pub lost: u64,
    /// Values in the log more than once (counting each extra copy).
    pub duplicated: u64,
    /// Acknowledged values found at another offset than the one acknowledged.
    pub misplaced: u64,
    /// Values of one producer appearing in a partition out of their send order.
    pub out_of_order: u64,
    /// Offsets at which brokers disagree about the record.
    pub inconsistent: u64,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.misplaced == 0
            && self.out_of_order == 0
            && self.inconsistent == 0
    }
}

/// Checks the logs read from every broker (`logs[broker][partition]`: values by offset)
/// against what producers were told. Values are `p<producer>-<n>`, `n` counting up per
/// producer.
pub fn check(logs: &[Vec<BTreeMap<u64, String>>], acks: &[Acks]) -> Verdict {
    let mut verdict = Verdict::default();
    let reference = &logs[0];
    for other in &logs[1..] {
        for (partition, log) in other.iter().enumerate() {
            for (offset, value) in log {
                if reference[partition].get(offset) != Some(value) {
                    verdict.inconsistent += 1;
                }
            }
            verdict.inconsistent += reference[partition]
                .keys()
                .filter(|offset| !log.contains_key(offset))
                .count() as u64;
        }
    }
    let mut seen: HashMap<&str, Vec<(u32, u64)>> = HashMap::new();
    for (partition, log) in reference.iter().enumerate() {
        // The last sequence number seen per producer in this partition.
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (offset, value) in log {
            verdict.records += 1;
            seen.entry(value.as_str())
                .or_default()
                .push((partition as u32, *offset));
            if let Some((producer, number)) = value.split_once('-')
                && let Ok(number) = number.parse::<u64>()
            {
                if last
                    .get(producer)
                    .is_some_and(|previous| *previous >= number)
                {
                    verdict.out_of_order += 1;
                }
                last.insert(producer, number);
            }
        }
    }
    verdict.duplicated = seen.values().map(|places| places.len() as u64 - 1).sum();
    for producer in acks {
        for (value, partition, offset) in producer {
            verdict.acknowledged += 1;
            match seen.get(value.as_str()) {
                None => verdict.lost += 1,
                Some(places) if !places.contains(&(*partition, *offset)) => {
                    verdict.misplaced += 1;
                }
                Some(_) => {}
            }
        }
    }
    verdict
}

/// Every record of `partitions` partitions of `topic` as `client` serves them: values
/// (text) by offset, per partition.
pub async fn read_log(
    client: &floe_client::FloeClient,
    topic: &str,
    partitions: u32,
) -> Vec<BTreeMap<u64, String>> {
    let options = floe_client::FetchOptions {
        max_records: Some(5_000),
        ..floe_client::FetchOptions::default()
    };
    let mut logs = Vec::new();
    for partition in 0..partitions {
        let mut log = BTreeMap::new();
        let mut offset = 0;
        loop {
            let answer = client
                .fetch(topic, partition, offset, &options)
                .await
                .expect("fetch for the check");
            for record in &answer.records {
                let value = record
                    .value
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned();
                log.insert(record.offset, value);
            }
            if answer.next_offset >= answer.high_watermark || answer.records.is_empty() {
                break;
            }
            offset = answer.next_offset;
        }
        logs.push(log);
    }
    logs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_counts_each_kind_of_wrong() {
        let log = |values: &[&str]| -> BTreeMap<u64, String> {
            values
                .iter()
                .enumerate()
                .map(|(offset, value)| (offset as u64, (*value).to_owned()))
                .collect()
        };
        let good = vec![log(&["p0-0", "p0-1", "p1-0"])];
        let acks = vec![
            vec![("p0-0".to_owned(), 0, 0), ("p0-1".to_owned(), 0, 1)],
            vec![("p1-0".to_owned(), 0, 2)],
        ];
        assert!(check(&[good.clone(), good.clone()], &acks).clean());
        let duplicated = vec![log(&["p0-0", "p0-1", "p0-1", "p1-0"])];
        let verdict = check(&[duplicated], &acks);
        assert_eq!(
            (verdict.duplicated, verdict.out_of_order, verdict.misplaced),
            (1, 1, 1)
        );
        let lost = vec![log(&["p0-0", "p1-0"])];
        assert_eq!(check(&[lost], &acks).lost, 1);
        let other = vec![log(&["p0-0", "p0-1", "p1-9"])];
        assert_eq!(check(&[good, other], &acks).inconsistent, 1);
    }
}
