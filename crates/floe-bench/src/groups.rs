//! Consumer group figures against a running floe: offset commits per second through one
//! broker, end-to-end latency of a group member (produce → the member's records call), and
//! the time a 3 → 4 member rebalance takes on a topic of many partitions. Members here
//! speak the HTTP protocol directly, heartbeating at the interval the server gives and
//! releasing what they are asked back at once, as a prompt consumer would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// The broker to measure.
    #[arg(long, env = "FLOE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Partitions of the topic the rebalance and latency runs use.
    #[arg(long, default_value_t = 100)]
    pub partitions: u32,
    /// Concurrent committers in the commit run.
    #[arg(long, default_value_t = 32)]
    pub committers: usize,
    /// How long the commit and latency runs last.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Records per second the latency run produces.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| path.to_owned())?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body).await?;
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }
}

/// Wall-clock ms: producer and member are one process, so their clocks agree.
#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark stamps records with the wall clock it reads them back with"
)]
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_id() -> String {
    format!("{:x}", rand::random::<u32>())
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: args.target.trim_end_matches('/').to_owned(),
    });
    commits(&api, &args).await?;
    latency(&api, &args).await?;
    rebalance(&api, &args).await?;
    Ok(())
}

async fn topic(api: &Api, partitions: u32) -> anyhow::Result<String> {
    let name = format!("bench-groups-{}", run_id());
    api.ok(
        Method::POST,
        "/v1/topics",
        Some(json!({"name": name, "partitions": partitions})),
    )
    .await?;
    Ok(name)
}

/// Simple commits, one group per committer, as fast as answers come.
async fn commits(api: &Arc<Api>, args: &GroupArgs) -> anyhow::Result<()> {
    let topic = topic(api, 1).await?;
    api.ok(
        Method::POST,
        &format!("/v1/topics/{topic}/partitions/0/records"),
        Some(json!({"records": [{"value": "x"}]})),
    )
    .await?;
    let deadline = Instant::now() + args.duration;
    let tasks: Vec<_> = (0..args.committers)
        .map(|worker| {
            let api = Arc::clone(api);
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new(3).expect("histogram");
                let group = format!("bench-commit-{worker}-{}", run_id());
                let mut offset = 0;
                while Instant::now() < deadline {
                    let body =
                        json!({"offsets": [{"topic": topic, "partition": 0, "offset": offset}]});
                    let started = Instant::now();
                    api.ok(
                        Method::POST,
                        &format!("/v1/groups/{group}/offsets"),
                        Some(body),
                    )
                    .await?;
                    latency.record(started.elapsed().as_micros() as u64)?;
                    offset = 1 - offset;
                }
                api.ok(Method::DELETE, &format!("/v1/groups/{group}"), None)
                    .await?;
                anyhow::Ok(latency)
            })
        })
        .collect();
    let mut total = Histogram::<u64>::new(3)?;
    for task in tasks {
        total.add(task.await??)?;
    }
    let seconds = args.duration.as_secs_f64();
    println!(
        "offset commits: {} committers, {:.0} commits/s, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.committers,
        total.len() as f64 / seconds,
        total.value_at_quantile(0.5) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
        total.max() as f64 / 1000.0,
    );
    Ok(())
}

/// One member long-polling its records while a producer writes at a fixed rate; the
/// latency is from the producer's send to the member's receipt.
async fn latency(api: &Arc<Api>, args: &GroupArgs) -> anyhow::Result<()> {
    let topic = topic(api, args.partitions).await?;
    let group = format!("bench-latency-{}", run_id());
    let joined = api
        .ok(
            Method::POST,
            &format!("/v1/groups/{group}/members"),
            Some(json!({"topics": [topic], "auto_offset_reset": "latest"})),
        )
        .await?;
    let member = joined["member_id"]
        .as_str()
        .context("member id")?
        .to_owned();
    let epoch = joined["member_epoch"].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let api = Arc::clone(api);
        let topic = topic.clone();
        let stop = Arc::clone(&stop);
        let every = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let api = Arc::clone(&api);
                let topic = topic.clone();
                tokio::spawn(async move {
                    let body = json!({"records": [{"value": now_ms().to_string()}]});
                    let _ = api
                        .call(
                            Method::POST,
                            &format!("/v1/topics/{topic}/records"),
                            Some(body),
                        )
                        .await;
                });
            }
        })
    };
    let mut latency = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + args.duration;
    let mut last_heartbeat = Instant::now();
    let owned: Vec<Value> = (0..args.partitions)
        .map(|p| json!({"topic": topic, "partition": p}))
        .collect();
    while Instant::now() < deadline {
        if last_heartbeat.elapsed() > Duration::from_secs(1) {
            api.ok(
                Method::POST,
                &format!("/v1/groups/{group}/members/{member}/heartbeat"),
                Some(json!({"member_epoch": epoch, "owned": owned})),
            )
            .await?;
            last_heartbeat = Instant::now();
        }
        let answer = api
            .ok(
                Method::GET,
                &format!("/v1/groups/{group}/members/{member}/records?wait_ms=500&commit=auto&max_records=1000"),
                None,
            )
            .await?;
        let received = now_ms();
        for record in answer["records"].as_array().into_iter().flatten() {
            if let Some(sent) = record["value"].as_str().and_then(|v| v.parse::<u64>().ok()) {
                latency.record(received.saturating_sub(sent).max(1))?;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    producer.await?;
    api.ok(
        Method::DELETE,
        &format!("/v1/groups/{group}/members/{member}"),
        None,
    )
    .await?;
    println!(
        "group consumer end to end ({} records/s over {} partitions): {} records, p50 {} ms, p99 {} ms, max {} ms",
        args.rate,
        args.partitions,
        latency.len(),
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max(),
    );
    Ok(())
}

/// A member that heartbeats at the interval it is given and releases at once what it is
/// asked back. Counts its partitions in `held`.
fn member(
    api: Arc<Api>,
    group: String,
    topic: String,
    held: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let joined = api
            .ok(
                Method::POST,
                &format!("/v1/groups/{group}/members"),
                Some(json!({"topics": [topic], "session_timeout_ms": 30000})),
            )
            .await?;
        let id = joined["member_id"]
            .as_str()
            .context("member id")?
            .to_owned();
        let mut answer = joined;
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) {
            let owned: Vec<Value> = answer["assignment"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| json!({"topic": a["topic"], "partition": a["partition"]}))
                .collect();
            held.store(owned.len() as u64, Ordering::SeqCst);
            // Partitions asked back are released at once (the next heartbeat acknowledges);
            // otherwise the member waits the interval it was given.
            if owned.len() >= sent {
                let interval = answer["heartbeat_interval_ms"].as_u64().unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(interval)).await;
            }
            sent = owned.len();
            answer = api
                .ok(
                    Method::POST,
                    &format!("/v1/groups/{group}/members/{id}/heartbeat"),
                    Some(json!({"member_epoch": answer["member_epoch"], "owned": owned})),
                )
                .await?;
        }
        api.ok(
            Method::DELETE,
            &format!("/v1/groups/{group}/members/{id}"),
            None,
        )
        .await?;
        Ok(())
    })
}

async fn balanced(held: &[Arc<AtomicU64>], partitions: u32) -> bool {
    let counts: Vec<u64> = held.iter().map(|h| h.load(Ordering::SeqCst)).collect();
    let (min, max) = (counts.iter().min(), counts.iter().max());
    counts.iter().sum::<u64>() == u64::from(partitions)
        && matches!((min, max), (Some(min), Some(max)) if max - min <= 1)
}

/// Three members settle, a fourth joins; the time until every member holds its share.
async fn rebalance(api: &Arc<Api>, args: &GroupArgs) -> anyhow::Result<()> {
    let topic = topic(api, args.partitions).await?;
    let group = format!("bench-rebalance-{}", run_id());
    let stop = Arc::new(AtomicBool::new(false));
    let mut held: Vec<Arc<AtomicU64>> = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let counter = Arc::new(AtomicU64::new(0));
        held.push(Arc::clone(&counter));
        tasks.push(member(
            Arc::clone(api),
            group.clone(),
            topic.clone(),
            counter,
            Arc::clone(&stop),
        ));
    }
    let settle = Instant::now() + Duration::from_secs(60);
    while !balanced(&held, args.partitions).await {
        if Instant::now() > settle {
            bail!("three members did not settle");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    held.push(Arc::clone(&counter));
    tasks.push(member(
        Arc::clone(api),
        group.clone(),
        topic.clone(),
        counter,
        Arc::clone(&stop),
    ));
    while !balanced(&held, args.partitions).await {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("four members did not settle");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await??;
    }
    println!(
        "rebalance 3 → 4 members on {} partitions: {:.0} ms until every member held its share",
        args.partitions,
        took.as_secs_f64() * 1000.0
    );
    Ok(())
}
