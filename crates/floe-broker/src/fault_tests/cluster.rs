//! Sequencer faults of a cluster on a real etcd, under the produce path: a forward to the
//! leader whose answer is lost after the leader committed, a leader that cannot read the
//! log and resigns after its catch-ups fail, and an etcd transaction whose answer is lost
//! (the etcd log's check finds the write, or cannot look and ends the term). The seams
//! are the cluster's own: the [`Forwarder`], the network between a broker and etcd (a
//! proxy this test controls), and etcd's keys (its HTTP gateway). `etcd` must be
//! installed (`$FLOE_ETCD_BIN` or on the `PATH`), as for the sequencer's cluster tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_core::{SystemClock, TopicConfig};
use floe_sequencer::{
    ClusterOptions, Committed, ForwardedCommand, Forwarder, Identity, LeaderInfo, MemorySnapshots,
    ProducerTag, RemoteError, Sequencer, SequencerOptions,
};
use floe_storage::SegmentStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::jobs::JobOptions;
use crate::tests::cache;
use crate::{Broker, BrokerOptions, FetchRequest, ProduceConditions, ProduceRecord};

/// How long a test waits for the cluster to reach a state before failing.
const PATIENCE: Duration = Duration::from_secs(30);
/// The brokers' lease TTL: a resigned leader campaigns again after it.
const LEASE: Duration = Duration::from_secs(5);

/// One etcd member in a temporary directory, killed when dropped.
struct Etcd {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
}

fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOE_ETCD_BIN") {
        return PathBuf::from(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.exists())
        .expect("etcd is not installed: `apt-get install etcd-server` (scripts/test.sh does)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Etcd {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("etcd dir");
        let client_port = free_port();
        let peer = format!("http://127.0.0.1:{}", free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new(etcd_binary())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "e0"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e0={peer}")])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let etcd = Self {
            child,
            client_port,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let health = http(client_port, "GET", "/health", "").await;
            if health.is_ok_and(|body| body.contains("true")) {
                return etcd;
            }
            assert!(tokio::time::Instant::now() < deadline, "etcd never healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A request to etcd's JSON gateway (keys and values base64, as the gateway wants).
    async fn gateway(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let answer = http(self.client_port, "POST", path, &body.to_string())
            .await
            .expect("etcd gateway");
        serde_json::from_str(&answer).expect("gateway json")
    }

    /// How many keys are in `[key, end)`, or just `key` without an end.
    async fn count(&self, key: &str, end: Option<&str>) -> u64 {
        let mut body = serde_json::json!({ "key": base64(key), "count_only": true });
        if let Some(end) = end {
            body["range_end"] = base64(end).into();
        }
        let answer = self.gateway("/v3/kv/range", body).await;
        // Zero is left out of the answer.
        answer["count"]
            .as_str()
            .map_or(0, |count| count.parse().expect("count"))
    }

    /// Writes `value` at `key` only if the key does not exist; returns whether it did.
    async fn create(&self, key: &str, value: &str) -> bool {
        let body = serde_json::json!({
            "compare": [{
                "key": base64(key),
                "target": "CREATE",
                "result": "EQUAL",
                "create_revision": "0",
            }],
            "success": [{ "request_put": { "key": base64(key), "value": base64(value) } }],
        });
        let answer = self.gateway("/v3/kv/txn", body).await;
        answer["succeeded"].as_bool().unwrap_or(false)
    }

    async fn delete(&self, key: &str) {
        self.gateway(
            "/v3/kv/deleterange",
            serde_json::json!({ "key": base64(key) }),
        )
        .await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange (so the answer is neither chunked nor kept alive).
async fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("etcd answered {head}")));
    }
    Ok(body.to_owned())
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (i, byte)| {
            word | u32::from(*byte) << (16 - 8 * i)
        });
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(char::from(
                    ALPHABET[(word >> (18 - 6 * position) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn leader_key(cluster: &str) -> String {
    format!("/floe/{cluster}/leader")
}

fn log_key(cluster: &str, index: u64) -> String {
    format!("/floe/{cluster}/log/{index:020}")
}

fn log_end(cluster: &str) -> String {
    format!("/floe/{cluster}/log0")
}

/// What the link between a broker and etcd does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Pass,
    /// Requests reach etcd; its answers are dropped.
    Swallow,
    /// New connections are closed at once.
    Refuse,
}

/// A TCP proxy in front of etcd whose behaviour the test sets, and which can cut every
/// connection through it.
struct Proxy {
    port: u16,
    link: watch::Sender<Link>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let link = watch::channel(Link::Pass).0;
        let cuts = watch::channel(0).0;
        let task = tokio::spawn({
            let link = link.clone();
            let cuts = cuts.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if *link.borrow() == Link::Refuse {
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, link.subscribe(), cuts.subscribe()));
                }
            }
        });
        Self {
            port,
            link,
            cuts,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// Closes every connection through the proxy.
    fn cut(&self) {
        self.cuts.send_modify(|cuts| *cuts += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    link: watch::Receiver<Link>,
    mut cuts: watch::Receiver<u64>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = tokio::io::copy(&mut from_client, &mut to_server);
    let down = async {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = from_server.read(&mut buffer).await?;
            if read == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if *link.borrow() != Link::Swallow {
                to_client.write_all(&buffer[..read]).await?;
            }
        }
    };
    // Whichever ends first, both sockets are dropped, which closes them.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cuts.changed() => {}
    }
}

/// Forwards to sequencers in this process, by broker id. The answers of the next
/// `lose_answers` forwards are lost after the leader has committed them: the follower
/// gets a transport error, the outcome unknown to it.
#[derive(Debug, Default)]
struct LossyForwarder {
    peers: Mutex<HashMap<String, Sequencer>>,
    lose_answers: AtomicUsize,
    lost: AtomicUsize,
}

#[async_trait]
impl Forwarder for LossyForwarder {
    async fn forward(
        &self,
        leader: &LeaderInfo,
        commands: Vec<ForwardedCommand>,
    ) -> Result<Vec<Result<Committed, RemoteError>>, String> {
        let peer = self.peers.lock().get(&leader.broker).cloned();
        let peer = peer.ok_or_else(|| format!("no peer {}", leader.broker))?;
        let commands = commands.into_iter().map(|c| (c.command, c.fence)).collect();
        let results: Vec<Result<Committed, RemoteError>> = peer
            .submit_forwarded(commands)
            .await
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(|result| result.map_err(RemoteError::from))
            .collect();
        let lose = self
            .lose_answers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            self.lost.fetch_add(1, Ordering::AcqRel);
            return Err("connection reset by peer after the request was sent".into());
        }
        Ok(results)
    }
}

/// A broker of `cluster` reaching etcd at `endpoint`, with background jobs off (so
/// nothing but the test commits) and a store shared by the cluster. Its session holds
/// while etcd confirms its lease within `lease_ttl`.
async fn join(
    name: &str,
    endpoint: String,
    cluster: &str,
    lease_ttl: Duration,
    forwarder: Arc<LossyForwarder>,
    store: SegmentStore,
) -> Broker {
    let options = ClusterOptions {
        endpoints: vec![endpoint],
        cluster: cluster.into(),
        lease_ttl,
        compact_etcd: false,
        sequencer: SequencerOptions::default(),
        tls: None,
    };
    let sequencer = floe_sequencer::open_cluster(
        Identity::new(name, format!("{name}:0")),
        options,
        Arc::new(MemorySnapshots::default()),
        forwarder.clone(),
        Arc::new(SystemClock),
    )
    .await
    .expect("join the cluster");
    forwarder
        .peers
        .lock()
        .insert(name.to_owned(), sequencer.clone());
    let options = BrokerOptions {
        id: name.into(),
        linger: Some(Duration::from_millis(2)),
        ..BrokerOptions::default()
    };
    let jobs = JobOptions {
        enabled: false,
        ..JobOptions::default()
    };
    Broker::builder(sequencer, store.clone(), cache(store).await)
        .options(options)
        .jobs(jobs)
        .build()
}

fn shared_store() -> SegmentStore {
    SegmentStore::new(Arc::new(InMemory::new()), Path::default())
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `broker` leads and its topic "t" has owners (the leader's own commits are
/// done, so the test knows every commit that follows).
async fn settled_leader(broker: &Broker) {
    eventually("a leader", async || {
        broker.sequencer().membership().is_leader()
    })
    .await;
    broker
        .create_topic("t", 1, TopicConfig::default())
        .await
        .expect("create");
    eventually("owners assigned", async || {
        broker.sequencer().read(|state| {
            state
                .topic("t")
                .is_some_and(|t| t.partitions.iter().all(|p| p.owner.is_some()))
        })
    })
    .await;
}

fn batch(name: &str) -> Vec<ProduceRecord> {
    (0..10)
        .map(|i| ProduceRecord {
            partition: Some(0),
            key: None,
            value: Some(Bytes::from(format!("{name}-{i}"))),
            headers: Vec::new(),
            timestamp_ms: None,
        })
        .collect()
}

fn expected(batches: &[&str]) -> Vec<(u64, String)> {
    batches
        .iter()
        .flat_map(|name| (0..10).map(move |i| format!("{name}-{i}")))
        .enumerate()
        .map(|(offset, value)| (offset as u64, value))
        .collect()
}

async fn read_all(broker: &Broker) -> Vec<(u64, String)> {
    let fetched = broker
        .fetch(FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_records: 10_000,
            max_bytes: 1 << 24,
            wait: Duration::ZERO,
            clamp: false,
        })
        .await
        .expect("fetch");
    fetched
        .records
        .iter()
        .map(|r| {
            let value = r.record.value.as_deref().unwrap_or_default();
            (r.offset, String::from_utf8_lossy(value).into_owned())
        })
        .collect()
}

fn first_offset(acks: &[crate::RecordAck]) -> u64 {
    acks.first().expect("an ack").offset
}

/// A follower forwards a segment's commit; the leader commits it and the answer is lost.
/// The follower's producer gets an error, never an acknowledgement, and the commit is
/// not sent again: the records are in the log once, and the next produce lands after
/// them. An idempotent producer's retry of such a request is answered with the offsets
/// the lost commit got, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_whose_answer_is_lost_acknowledges_nothing_and_commits_once() {
    let etcd = Etcd::start().await;
    let forwarder = Arc::new(LossyForwarder::default());
    let store = shared_store();
    let leader = join(
        "a",
        etcd.endpoint(),
        "fw",
        LEASE,
        forwarder.clone(),
        store.clone(),
    )
    .await;
    settled_leader(&leader).await;
    let follower = join("b", etcd.endpoint(), "fw", LEASE, forwarder.clone(), store).await;
    eventually("the follower knows the leader", async || {
        follower
            .sequencer()
            .membership()
            .leader()
            .is_some_and(|info| info.broker == "a")
            && follower.sequencer().read(|s| s.topic("t").is_some())
    })
    .await;
    assert!(!follower.sequencer().membership().is_leader());

    let acks = follower.produce("t", batch("a")).await.expect("produce a");
    assert_eq!(first_offset(&acks), 0);
    forwarder.lose_answers.store(1, Ordering::Release);
    let lost = follower
        .produce("t", batch("b"))
        .await
        .expect_err("a lost answer is not an acknowledgement");
    assert_eq!(lost.kind(), floe_core::ErrorKind::Unavailable, "{lost}");
    assert_eq!(forwarder.lost.load(Ordering::Acquire), 1);
    assert_eq!(follower.buffered_bytes(), 0);
    let acks = follower.produce("t", batch("c")).await.expect("produce c");
    assert_eq!(first_offset(&acks), 20, "b committed once, before c");
    assert_eq!(read_all(&follower).await, expected(&["a", "b", "c"]));

    // An idempotent producer retries the request whose answer was lost.
    let (producer_id, epoch) = follower
        .init_producer(None, None)
        .await
        .expect("init producer");
    let conditions = ProduceConditions {
        producer: Some(ProducerTag {
            producer_id,
            epoch,
            sequence: 0,
        }),
        ..ProduceConditions::default()
    };
    forwarder.lose_answers.store(1, Ordering::Release);
    follower
        .produce_with("t", batch("d"), conditions.clone())
        .await
        .expect_err("the answer is lost");
    let retried = follower
        .produce_with("t", batch("d"), conditions)
        .await
        .expect("the retry is answered");
    assert_eq!(
        retried.iter().map(|a| a.offset).collect::<Vec<_>>(),
        (30..40).collect::<Vec<_>>(),
        "the offsets the lost commit got"
    );
    let everything = expected(&["a", "b", "c", "d"]);
    assert_eq!(read_all(&follower).await, everything);
    eventually("the leader's replica has it all", async || {
        leader.sequencer().read(|s| {
            s.topic("t")
                .is_some_and(|t| t.partitions[0].high_watermark == 40)
        })
    })
    .await;
    assert_eq!(read_all(&leader).await, everything);
    follower.shutdown().await;
    leader.shutdown().await;
}

/// Another writer has taken the log index the leader writes next, with a group no broker
/// can read. The leader's append is refused, its term ends, and each new term's catch-up
/// fails: after a few, it resigns (the election key is deleted) so that a broker that can
/// read the log may lead. Nothing is acknowledged meanwhile. Once the log is readable
/// again, the broker leads and the produce that waited commits, right after what was
/// acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_catch_up_resigns_and_leads_again_once_it_can() {
    let etcd = Etcd::start().await;
    let forwarder = Arc::new(LossyForwarder::default());
    let broker = join("s", etcd.endpoint(), "rs", LEASE, forwarder, shared_store()).await;
    settled_leader(&broker).await;
    broker.produce("t", batch("a")).await.expect("produce a");

    let next = broker.sequencer().read(|s| s.applied_index) + 1;
    let taken = log_key("rs", next);
    assert!(
        etcd.create(&taken, "not a log group").await,
        "the next index is free"
    );
    let refused = broker
        .produce("t", batch("b"))
        .await
        .expect_err("the index is taken: the append is refused");
    assert_eq!(
        refused.kind(),
        floe_core::ErrorKind::Unavailable,
        "{refused}"
    );
    eventually("the leader resigns", async || {
        etcd.count(&leader_key("rs"), None).await == 0
    })
    .await;
    assert!(
        !broker.sequencer().membership().is_leader(),
        "a resigned leader no longer claims the term"
    );

    let waiting = tokio::spawn({
        let broker = broker.clone();
        async move { broker.produce("t", batch("c")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "nothing commits without a leader");
    etcd.delete(&taken).await;
    let acks = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the broker leads again once it can read the log")
        .expect("task")
        .expect("produce c");
    assert_eq!(first_offset(&acks), 10, "b never committed");
    assert_eq!(read_all(&broker).await, expected(&["a", "c"]));
    assert!(broker.sequencer().membership().is_leader());
    broker.shutdown().await;
}

/// Waits until etcd holds a log group past the broker's replica: the append in flight
/// has landed.
async fn landed_past(etcd: &Etcd, cluster: &str, applied: u64) {
    let from = log_key(cluster, applied + 1);
    let end = log_end(cluster);
    eventually("the append lands in etcd", async || {
        etcd.count(&from, Some(&end)).await > 0
    })
    .await;
}

/// Produces `name` while etcd's answers are dropped, waits until the append has landed in
/// etcd, then cuts the broker's connections and leaves the link `after`: the answer of the
/// append is lost with its connection.
async fn produce_losing_the_answer(
    broker: &Broker,
    etcd: &Etcd,
    proxy: &Proxy,
    name: &str,
    after: Link,
) -> Result<Vec<crate::RecordAck>, crate::BrokerError> {
    let applied = broker.sequencer().read(|s| s.applied_index);
    proxy.set(Link::Swallow);
    let mut producing = tokio::spawn({
        let broker = broker.clone();
        let records = batch(name);
        async move { broker.produce("t", records).await }
    });
    tokio::select! {
        () = landed_past(etcd, "tx", applied) => {}
        answer = &mut producing => panic!("answered before the append landed: {answer:?}"),
    }
    proxy.set(after);
    proxy.cut();
    tokio::time::timeout(PATIENCE, producing)
        .await
        .expect("answered")
        .expect("task")
}

/// Waits until the broker's replica holds `records` records of "t": a new term has caught
/// up what the last one wrote.
async fn caught_up_to(broker: &Broker, records: u64) {
    eventually("a new term catches up", async || {
        broker.sequencer().read(|s| {
            s.topic("t")
                .is_some_and(|t| t.partitions[0].high_watermark == records)
        })
    })
    .await;
}

/// The leader's append reaches etcd and lands, and the answer is lost with its
/// connection. When the etcd log can look, it finds its write and the producer is
/// acknowledged, once. When it cannot look, the outcome is unknown: the producer gets an
/// error, the term ends, and the next term finds the write in the log, so the records are
/// there once and the next produce lands after them.
///
/// The look is one request, sent as soon as the append fails; under load it can go out
/// on the connection that was just cut and fail too, which ends the term like the second
/// case. So the first case is tried until the look succeeds once, checking every round's
/// outcome either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_append_whose_answer_is_lost_is_checked_or_ends_the_term() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(etcd.client_port).await;
    let forwarder = Arc::new(LossyForwarder::default());
    // Every lost answer also stalls the lease's keep-alives on the same connection: a
    // long lease keeps the session through them.
    let lease = Duration::from_secs(30);
    let broker = join(
        "s",
        proxy.endpoint(),
        "tx",
        lease,
        forwarder,
        shared_store(),
    )
    .await;
    settled_leader(&broker).await;
    broker.produce("t", batch("a")).await.expect("produce a");
    let mut in_log = vec!["a".to_owned()];

    // The answer is lost; the check can reach etcd and finds the write.
    let mut checked = false;
    for round in 0..5 {
        let name = format!("b{round}");
        let answer = produce_losing_the_answer(&broker, &etcd, &proxy, &name, Link::Pass).await;
        let landed_at = 10 * in_log.len() as u64;
        in_log.push(name);
        match answer {
            Ok(acks) => {
                assert_eq!(first_offset(&acks), landed_at);
                checked = true;
                break;
            }
            Err(error) => {
                assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable, "{error}");
                caught_up_to(&broker, 10 * in_log.len() as u64).await;
            }
        }
    }
    assert!(checked, "the check never found the write: {in_log:?}");

    // The answer is lost and the check cannot reach etcd.
    let error = produce_losing_the_answer(&broker, &etcd, &proxy, "c", Link::Refuse)
        .await
        .expect_err("an unknown outcome is not an acknowledgement");
    assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable, "{error}");
    in_log.push("c".into());
    proxy.set(Link::Pass);

    let acks = tokio::time::timeout(PATIENCE, broker.produce("t", batch("d")))
        .await
        .expect("a new term commits")
        .expect("produce d");
    assert_eq!(
        first_offset(&acks),
        10 * in_log.len() as u64,
        "c landed once, before d"
    );
    in_log.push("d".into());
    let names: Vec<&str> = in_log.iter().map(String::as_str).collect();
    assert_eq!(read_all(&broker).await, expected(&names));
    assert_eq!(broker.buffered_bytes(), 0);
    broker.shutdown().await;
}
