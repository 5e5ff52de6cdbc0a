//! `floe bench`: a first load generator. Producers send fixed-size records at full speed
//! from several connections, each request's acknowledgement latency goes into an HDR
//! histogram; then every partition is read back from earliest and the read rate reported.
//! (The full benchmark tool, with peers and fixed-rate runs, is its own piece of work.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use floe_client::api::CreateTopicRequest;
use floe_client::binary::BinaryRecord;
use floe_client::{FetchOptions, FloeClient};
use hdrhistogram::Histogram;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub server: super::ServerArg,
    /// Records to produce in all.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent producers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Use JSON bodies instead of the binary framing.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let client = FloeClient::new(&args.server.server);
    let topic = format!("bench-{}", std::process::id());
    client
        .create_topic(&CreateTopicRequest {
            name: topic.clone(),
            partitions: args.partitions,
            config: Default::default(),
        })
        .await?;
    let requests = args.records.div_ceil(args.batch as u64);
    let next_request = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![b'x'; args.record_size]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, topic, next_request, value) = (
            client.clone(),
            topic.clone(),
            next_request.clone(),
            value.clone(),
        );
        let (batch, json) = (args.batch, args.json);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("3 significant figures is valid");
            while next_request.fetch_add(1, Ordering::Relaxed) < requests {
                let sent = Instant::now();
                if json {
                    let records = (0..batch)
                        .map(|_| floe_client::api::ProduceRecordJson {
                            value: Some(serde_json::Value::String(
                                String::from_utf8_lossy(&value).into_owned(),
                            )),
                            ..Default::default()
                        })
                        .collect();
                    client
                        .produce(&topic, records, floe_client::Encoding::Text)
                        .await?;
                } else {
                    let records: Vec<BinaryRecord> = (0..batch)
                        .map(|_| BinaryRecord {
                            value: Some(value.clone()),
                            ..BinaryRecord::default()
                        })
                        .collect();
                    client.produce_binary(&topic, &records).await?;
                }
                histogram.record(sent.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for task in tasks {
        latency.add(task.await??)?;
    }
    let produce_seconds = started.elapsed().as_secs_f64();
    let produced = requests * args.batch as u64;
    let bytes = produced * args.record_size as u64;
    println!(
        "produce: {produced} records of {} B in {produce_seconds:.2}s",
        args.record_size
    );
    println!(
        "  {:.0} records/s, {:.1} MB/s; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        produced as f64 / produce_seconds,
        bytes as f64 / produce_seconds / 1e6,
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0,
    );

    let started = Instant::now();
    let mut readers = Vec::new();
    for partition in 0..args.partitions {
        let (client, topic) = (client.clone(), topic.clone());
        readers.push(tokio::spawn(async move {
            let options = FetchOptions {
                max_records: Some(10_000),
                max_bytes: Some(16 << 20),
                ..FetchOptions::default()
            };
            let mut offset = 0;
            let mut count = 0u64;
            loop {
                let fetched = client
                    .fetch_binary(&topic, partition, offset, &options)
                    .await?;
                count += fetched.records.len() as u64;
                offset = fetched.next_offset;
                if offset >= fetched.high_watermark {
                    return anyhow::Ok(count);
                }
            }
        }));
    }
    let mut fetched = 0;
    for reader in readers {
        fetched += reader.await??;
    }
    let fetch_seconds = started
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_micros(1).as_secs_f64());
    println!("fetch: {fetched} records in {fetch_seconds:.2}s");
    println!(
        "  {:.0} records/s, {:.1} MB/s",
        fetched as f64 / fetch_seconds,
        (fetched * args.record_size as u64) as f64 / fetch_seconds / 1e6
    );
    if fetched != produced {
        anyhow::bail!("read back {fetched} records but produced {produced}");
    }
    client.delete_topic(&topic).await?;
    Ok(())
}
