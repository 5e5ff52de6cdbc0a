//! Read-path measurements against running brokers (see `docs/benchmarks.md`).
//!
//! `tail_bench tail URL SECONDS RATE` — a producer sends one 1 KiB record per request at RATE
//! requests/s (paced from the intended send time) to partition 0 of a fresh topic, while a
//! consumer follows the partition with long-polls, routed to its owner. Prints the produce
//! acknowledgement latency and the end-to-end latency (intended send → consumer receives),
//! p50/p99, and the owner's fetch GETs during the run.
//!
//! `tail_bench history URL[,URL...] MIB` — writes MIB MiB of 64 KiB records to one partition
//! through its owner, then reads it all from earliest through another broker (cold: it
//! neither wrote nor owns the data) and prints the read rate and the GETs that broker made.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_client::api::CreateTopicRequest;
use floe_client::binary::BinaryRecord;
use floe_client::{FetchOptions, FloeClient};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("tail") if args.len() == 5 => tail(&args[2], args[3].parse()?, args[4].parse()?).await,
        Some("history") if args.len() == 4 => history(&args[2], args[3].parse()?).await,
        _ => anyhow::bail!("usage: tail_bench tail URL SECONDS RATE | history URL MIB"),
    }
}

async fn metric(url: &str, sample: &str) -> f64 {
    floe_tests::metric_at(url, sample).await.unwrap_or(f64::NAN)
}

const FETCH_GETS: &str = r#"floe_store_get_requests_total{cause="fetch"}"#;

async fn create(client: &FloeClient, name: &str) -> anyhow::Result<()> {
    client
        .create_topic(&CreateTopicRequest {
            name: name.into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await?;
    Ok(())
}

async fn tail(url: &str, seconds: u64, rate: u64) -> anyhow::Result<()> {
    let client = FloeClient::new(url);
    let topic = format!("tail-{}", ulid::Ulid::new());
    create(&client, &topic).await?;
    // Learn the owner before the clock starts.
    client.fetch(&topic, 0, 0, &FetchOptions::default()).await?;
    let owner = client.fetch_target(&topic, 0);
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let total = seconds * rate;
    let consumer = {
        let client = client.clone();
        let topic = topic.clone();
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            let mut e2e = Histogram::<u64>::new(3).expect("histogram");
            let options = FetchOptions {
                wait: Some(Duration::from_secs(5)),
                ..FetchOptions::default()
            };
            let (mut offset, mut received) = (0, 0);
            while received < total {
                let fetched = client.fetch(&topic, 0, offset, &options).await?;
                let now = Instant::now();
                for record in &fetched.records {
                    let id: u64 = record
                        .key
                        .as_ref()
                        .and_then(serde_json::Value::as_str)
                        .and_then(|key| key.parse().ok())
                        .unwrap_or(u64::MAX);
                    if let Some(at) = sent.lock().get(&id) {
                        e2e.record(now.duration_since(*at).as_micros() as u64)?;
                    }
                    received += 1;
                }
                offset = fetched.next_offset;
            }
            anyhow::Ok(e2e)
        })
    };
    let gets_before = metric(&owner, FETCH_GETS).await;
    // Sends are paced from their intended times and do not wait for earlier answers, so a
    // slow acknowledgement shows up as latency, not as a lower rate.
    let ack = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let start = Instant::now();
    let value = Bytes::from(vec![b'v'; 1024]);
    let mut sends = tokio::task::JoinSet::new();
    for id in 0..total {
        let intended = start + Duration::from_micros(id * 1_000_000 / rate);
        tokio::time::sleep_until(intended.into()).await;
        sent.lock().insert(id, intended);
        let record = BinaryRecord {
            partition: Some(0),
            offset: 0,
            timestamp: None,
            key: Some(Bytes::from(id.to_string())),
            value: Some(value.clone()),
            headers: Vec::new(),
        };
        let (client, topic, ack) = (client.clone(), topic.clone(), Arc::clone(&ack));
        sends.spawn(async move {
            client.produce_binary(&topic, &[record]).await?;
            ack.lock().record(intended.elapsed().as_micros() as u64)?;
            anyhow::Ok(())
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent??;
    }
    let ack = ack.lock().clone();
    let e2e = consumer.await??;
    let gets_after = metric(&owner, FETCH_GETS).await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{total} records at {rate}/s for {seconds}s via {url}, consumer at owner {owner}\n\
         produce ack   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
         end to end    p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
         owner fetch GETs during the run: {}",
        ms(&ack, 0.5),
        ms(&ack, 0.99),
        ack.max() as f64 / 1000.0,
        ms(&e2e, 0.5),
        ms(&e2e, 0.99),
        e2e.max() as f64 / 1000.0,
        gets_after - gets_before
    );
    Ok(())
}

async fn history(urls: &str, mib: u64) -> anyhow::Result<()> {
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let routing = FloeClient::new(&urls[0]);
    let topic = format!("history-{}", ulid::Ulid::new());
    create(&routing, &topic).await?;
    routing
        .fetch(&topic, 0, 0, &FetchOptions::default())
        .await?;
    let owner = routing.fetch_target(&topic, 0);
    let writer = FloeClient::new(&owner).without_owner_routing();
    let record_size = 64 * 1024;
    let records = mib * 1024 * 1024 / record_size as u64;
    let per_request = 32;
    let value = Bytes::from(vec![b'h'; record_size]);
    let write_start = Instant::now();
    let mut handles = Vec::new();
    let requests = records.div_ceil(per_request);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..8 {
        let (writer, topic, value, next) =
            (writer.clone(), topic.clone(), value.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let request = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if request >= requests {
                    return anyhow::Ok(());
                }
                let batch: Vec<BinaryRecord> = (0..per_request)
                    .map(|_| BinaryRecord {
                        partition: Some(0),
                        offset: 0,
                        timestamp: None,
                        key: None,
                        value: Some(value.clone()),
                        headers: Vec::new(),
                    })
                    .collect();
                writer.produce_binary(&topic, &batch).await?;
            }
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let written = requests * per_request;
    println!(
        "wrote {written} records ({:.0} MiB) in {:.1} s",
        (written * record_size as u64) as f64 / 1048576.0,
        write_start.elapsed().as_secs_f64()
    );
    let read_url = urls
        .iter()
        .find(|url| url.trim_end_matches('/') != owner)
        .unwrap_or(&urls[0])
        .clone();
    let reader = FloeClient::new(&read_url).without_owner_routing();
    let gets_before = metric(&read_url, FETCH_GETS).await;
    let bytes_before = metric(&read_url, "floe_store_get_bytes_total").await;
    let options = FetchOptions {
        max_bytes: Some(8 << 20),
        max_records: Some(10_000),
        ..FetchOptions::default()
    };
    let start = Instant::now();
    let (mut offset, mut bytes) = (0u64, 0u64);
    while offset < written {
        let fetched = reader.fetch_binary(&topic, 0, offset, &options).await?;
        bytes += fetched
            .records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64))
            .sum::<u64>();
        offset = fetched.next_offset;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let gets = metric(&read_url, FETCH_GETS).await - gets_before;
    let from_store = metric(&read_url, "floe_store_get_bytes_total").await - bytes_before;
    let memory = metric(&read_url, "floe_cache_memory_bytes").await;
    let capacity = metric(&read_url, "floe_cache_memory_capacity_bytes").await;
    println!(
        "read {:.0} MiB from earliest via {read_url} in {elapsed:.1} s ({:.0} MiB/s)\n\
         GETs {gets} for {:.0} MiB from the store: {:.2} MiB per GET \
         (bytes / 8 MiB = {:.0})\n\
         cache memory {:.0} MiB of {:.0} MiB",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / elapsed,
        from_store / 1048576.0,
        from_store / 1048576.0 / gets,
        (from_store / (8.0 * 1048576.0)).ceil(),
        memory / 1048576.0,
        capacity / 1048576.0
    );
    Ok(())
}
