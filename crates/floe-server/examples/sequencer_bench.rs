//! Commit throughput and latency of the cluster sequencer: three brokers in this process,
//! each a full `floe serve` (HTTP forwarding to the leader included), on a real one-member
//! etcd and a local-directory store. Each broker commits a segment of 8 batches every
//! 10 ms (the paced phase), then as fast as 16 concurrent committers per broker can (the
//! saturated phase). Latency is from submission to the durable, applied commit, as the
//! broker's produce path sees it.
//!
//! `cargo run --release -p floe-server --example sequencer_bench [-- SECONDS [SNAPSHOT_EVERY]]`
//! (SNAPSHOT_EVERY: sequencer log entries between snapshots, 20,000 by default).

use std::time::{Duration, Instant};

use floe_core::segment::BatchEntry;
use floe_core::{SegmentId, TopicConfig};
use floe_sequencer::{Command, Outcome, Sequencer};
use floe_server::ServeConfig;
use floe_server::app::Server;
use floe_tests::etcd::EtcdCluster;
use hdrhistogram::Histogram;

const PARTITIONS: u32 = 64;
const BATCHES_PER_SEGMENT: u32 = 8;
const COMMITTERS_SATURATED: usize = 16;

fn segment(topic: floe_core::TopicId, seed: u64) -> Command {
    let batches = (0..BATCHES_PER_SEGMENT)
        .map(|i| BatchEntry {
            topic_id: topic,
            partition: ((seed.wrapping_mul(31) + u64::from(i) * 7) % u64::from(PARTITIONS)) as u32,
            byte_offset: 16 + u64::from(i) * 1024,
            length: 1024,
            record_count: 10,
            first_timestamp: 0,
            max_timestamp: 0,
            crc32c: 0,
        })
        .collect();
    Command::CommitSegment {
        segment: SegmentId::generate(),
        batches,
        guards: Vec::new(),
        at_ms: 0,
    }
}

async fn commit(sequencer: &Sequencer, command: Command) -> Duration {
    let started = Instant::now();
    let fence = sequencer.fence().expect("live session");
    let outcome = sequencer
        .submit_ordered(command, fence)
        .await
        .expect("enqueue")
        .await
        .expect("commit");
    assert!(matches!(outcome, Outcome::SegmentCommitted(_)));
    started.elapsed()
}

/// Runs `committers` loops per broker for `length`; `pace` spaces each loop's commits.
async fn phase(
    brokers: &[Sequencer],
    topic: floe_core::TopicId,
    committers: usize,
    pace: Option<Duration>,
    length: Duration,
) -> (Vec<Histogram<u64>>, usize) {
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for (index, sequencer) in brokers.iter().enumerate() {
        for committer in 0..committers {
            let sequencer = sequencer.clone();
            tasks.push(tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new(3).expect("histogram");
                let mut ticker = pace.map(tokio::time::interval);
                let mut seed = (index * 1000 + committer) as u64;
                while Instant::now() < deadline {
                    if let Some(ticker) = ticker.as_mut() {
                        ticker.tick().await;
                    }
                    seed += 1;
                    let latency = commit(&sequencer, segment(topic, seed)).await;
                    let _ = histogram.record(latency.as_micros() as u64);
                }
                (index, histogram)
            }));
        }
    }
    let mut per_broker: Vec<Histogram<u64>> = (0..brokers.len())
        .map(|_| Histogram::new(3).expect("histogram"))
        .collect();
    let mut total = 0;
    for task in tasks {
        let (index, histogram) = task.await.expect("committer");
        total += histogram.len() as usize;
        per_broker[index].add(&histogram).expect("merge");
    }
    (per_broker, total)
}

fn report(
    name: &str,
    brokers: &[Sequencer],
    histograms: &[Histogram<u64>],
    total: usize,
    length: Duration,
) {
    println!(
        "\n{name}: {:.0} commits/s in total",
        total as f64 / length.as_secs_f64()
    );
    println!("| broker | role | commits | p50 ms | p99 ms | p99.9 ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for (index, histogram) in histograms.iter().enumerate() {
        let role = if brokers[index].membership().is_leader() {
            "leader"
        } else {
            "follower (HTTP hop)"
        };
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| b{index} | {role} | {} | {:.2} | {:.2} | {:.2} |",
            histogram.len(),
            ms(0.5),
            ms(0.99),
            ms(0.999)
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let snapshot_every: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let length = Duration::from_secs(seconds);
    // Warnings (a slow append, a runtime stall of 100 ms or more) go to stderr with their
    // time: RUST_LOG=info shows snapshots and catch-ups too.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The server's own probe: how late a task ready to run started, every 10 ms. A
    // runtime whose workers are busy or blocked delays every task in this process, the
    // commit loop and etcd's answers among them.
    let probe = floe_server::runtime_probe::RuntimeProbe::start(tokio::runtime::Handle::current());
    let etcd = EtcdCluster::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    // SEQUENCER_BENCH_OBJECTS puts the object store (snapshots) elsewhere, e.g. on tmpfs
    // to take its disk writes out of etcd's way.
    let objects = std::env::var_os("SEQUENCER_BENCH_OBJECTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("objects"));
    let store = format!("file://{}", objects.display());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut brokers = Vec::new();
    let mut servers = Vec::new();
    for index in 0..3 {
        let mut config = ServeConfig::default();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.server.data_dir = dir.path().join(format!("b{index}"));
        config.store.url = Some(store.clone());
        config.broker.id = format!("b{index}");
        config.cluster.name = "bench".into();
        config.cluster.etcd = Some(etcd.endpoints_flag());
        config.sequencer.snapshot_every = snapshot_every;
        // The segments committed here are index entries without objects: compaction
        // would fail on each and retention (their timestamps are 1970) would trim them
        // all at once, 30 s in. Neither is the sequencer's cost. SEQUENCER_BENCH_JOBS=1
        // runs the jobs anyway.
        config.jobs.enabled = std::env::var("SEQUENCER_BENCH_JOBS").as_deref() == Ok("1");
        // SEQUENCER_BENCH_COMPACT=0: leave etcd's history uncompacted after snapshots.
        config.cluster.compact_etcd =
            std::env::var("SEQUENCER_BENCH_COMPACT").as_deref() != Ok("0");
        let server = Server::bind(&config).await.expect("bind");
        brokers.push(server.broker().sequencer().clone());
        let mut stopped = stopped.clone();
        servers.push(tokio::spawn(server.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    while !brokers.iter().any(|b| b.membership().is_leader()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = brokers[0]
        .submit(Command::CreateTopic {
            name: "bench".into(),
            partitions: PARTITIONS,
            config: TopicConfig::default(),
            created_ms: 0,
        })
        .await
        .expect("create");
    let Outcome::TopicCreated(topic) = created else {
        panic!("create")
    };
    // Warm up connections and the replicas.
    let _ = phase(
        &brokers,
        topic,
        1,
        Some(Duration::from_millis(10)),
        Duration::from_secs(1),
    )
    .await;

    println!(
        "sequencer commit benchmark: 3 brokers, 1-member etcd on loopback, segments of \
         {BATCHES_PER_SEGMENT} batches over {PARTITIONS} partitions, {seconds} s per phase, \
         a snapshot every {snapshot_every} entries"
    );
    let (histograms, total) =
        phase(&brokers, topic, 1, Some(Duration::from_millis(10)), length).await;
    report(
        "paced: each broker commits every 10 ms",
        &brokers,
        &histograms,
        total,
        length,
    );
    let (histograms, total) = phase(&brokers, topic, COMMITTERS_SATURATED, None, length).await;
    report(
        &format!("saturated: {COMMITTERS_SATURATED} concurrent committers per broker"),
        &brokers,
        &histograms,
        total,
        length,
    );
    // What the leader's commit loop measured: its appends and the snapshot stages
    // (copy holds the loop; encode and install run beside it; held is the loop taking
    // nothing while the log is at its bound with a snapshot in flight).
    if let Some(leader) = brokers.iter().find(|b| b.membership().is_leader()) {
        println!("\nleader's sequencer metrics (sums in seconds):");
        for line in sequencer_metrics(leader).lines().filter(|line| {
            line.contains("_sum")
                || line.contains("_count")
                || line.contains("snapshot_bytes ")
                || line.contains("append_seconds_bucket")
                || (line.contains("snapshot_stage_seconds_bucket")
                    && (line.contains("\"encode\"") || line.contains("\"held\"")))
        }) {
            println!("  {line}");
        }
    }
    // And the followers' side of their commits: the forwarding call, and their replica's
    // catch-up to each answered command.
    for (index, follower) in brokers.iter().enumerate() {
        if follower.membership().is_leader() {
            continue;
        }
        println!("\nb{index}'s forward and catch-up (sums in seconds):");
        for line in sequencer_metrics(follower).lines().filter(|line| {
            (line.contains("forward_seconds") || line.contains("catch_up_seconds"))
                && !line.starts_with('#')
        }) {
            println!("  {line}");
        }
    }
    println!("\nthis process's runtime scheduling delay (buckets in seconds, cumulative):");
    let mut registry = prometheus_client::registry::Registry::default();
    probe.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        println!("  {line}");
    }
    // etcd's own view of the same appends: how long it held each Txn (from receiving it
    // to answering), its WAL fsyncs and backend commits. A slow append the leader saw
    // that etcd did not is time spent on the client's side of the connection.
    println!("\netcd's side (buckets in seconds, cumulative):");
    match etcd_metrics(&etcd.endpoints()[0]).await {
        Ok(text) => {
            for line in text.lines().filter(|line| {
                (line.starts_with("grpc_server_handling_seconds_bucket")
                    && line.contains("grpc_method=\"Txn\""))
                    || line.starts_with("etcd_disk_wal_fsync_duration_seconds_bucket")
                    || line.starts_with("etcd_disk_backend_commit_duration_seconds_bucket")
                    || line.starts_with("etcd_server_slow_apply_total")
                    || line.starts_with("go_gc_duration_seconds{")
            }) {
                println!("  {line}");
            }
        }
        Err(error) => println!("  unavailable: {error}"),
    }
    stop.send_replace(true);
    for server in servers {
        let _ = server.await;
    }
}

/// etcd's `/metrics` page (the test cluster runs it with `--metrics extensive`).
async fn etcd_metrics(endpoint: &str) -> Result<String, reqwest::Error> {
    reqwest::get(format!("{endpoint}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await
}

/// A broker's sequencer metrics in the text exposition format.
fn sequencer_metrics(broker: &Sequencer) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    broker.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}
