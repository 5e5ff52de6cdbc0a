//! One benchmark run: producers at a fixed or maximum rate, optionally tail consumers, or
//! catch-up readers of existing history; latency into HDR histograms; a progress line
//! every second; a report at the end.
//!
//! Latency is measured from each request's *intended* send time. At a fixed rate every
//! producer has a schedule; when the system falls behind, the next request is late and
//! its wait counts against the system (no coordinated omission). At maximum rate the
//! intended time is the moment the previous request finished. Each record carries its
//! intended send time, so consumers measure end-to-end latency from the same origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::RngCore;
use serde::Serialize;

use crate::probe::{self, StoreCounts};
use crate::report::{Percentiles, Report, new_histogram, print_report};
use crate::target::{Body, Producing, System, Target};
use crate::values;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producers only.
    Produce,
    /// Producers, and one consumer per partition following the tail.
    Tail,
    /// No producers: read every partition from its start to the end it had when the run
    /// began.
    CatchUp,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The system under test.
    #[arg(long, value_enum, default_value_t = System::Floe)]
    pub system: System,
    /// Its base URL.
    #[arg(long, env = "FLOE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Mode::Produce)]
    pub mode: Mode,
    /// Topic (floe) or stream-name prefix (s2-lite); default `bench-<pid>`.
    #[arg(long)]
    pub topic: Option<String>,
    /// s2-lite basin.
    #[arg(long, default_value = "floe-bench")]
    pub basin: String,
    /// Use an existing topic instead of creating one (catch-up reads need this).
    #[arg(long)]
    pub existing: bool,
    /// Name for this run in the report.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub partitions: u32,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub record_size: u64,
    /// Records per produce request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Produce request bodies: binary framing (floe) / protobuf (s2-lite), or JSON with
    /// text values, as a curl user sends them (produce mode only).
    #[arg(long, value_enum, default_value_t = Body::Binary)]
    pub body: Body,
    /// Concurrent producers (each has one request in flight).
    #[arg(long, default_value_t = 16)]
    pub producers: usize,
    /// floe only: each producer is an idempotent producer (`POST /v1/producers`), its
    /// requests numbered 0, 1, 2, … as `FloeClient` numbers them.
    #[arg(long)]
    pub idempotent: bool,
    /// Concurrent readers in catch-up mode.
    #[arg(long, default_value_t = 16)]
    pub readers: usize,
    /// Target rate in records/s across all producers; maximum rate when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long producers run (after the warm-up).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time at the start that is run but left out of every figure.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Stop producing after this many value bytes (for writing a fixed amount of history).
    #[arg(long)]
    pub total_bytes: Option<u64>,
    /// Server process ids whose CPU time is charged to the run (repeatable).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Base URL of the counting S3 proxy in front of the store, for requests per GiB.
    #[arg(long)]
    pub store_counts: Option<String>,
    /// Append the report as one JSON line to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// A clock that reads as µs since the Unix epoch but advances monotonically, so stamps
/// written by producers and read by consumers in this process agree.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: Instant,
    origin_unix_us: u64,
}

impl Clock {
    #[expect(
        clippy::disallowed_methods,
        reason = "end-to-end latency stamps are wall-clock time shared with the consumer"
    )]
    fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            origin: Instant::now(),
            origin_unix_us: unix.as_micros() as u64,
        }
    }

    fn us(&self, at: Instant) -> u64 {
        self.origin_unix_us + at.saturating_duration_since(self.origin).as_micros() as u64
    }
}

/// Counters shared by every task of a run; the progress line and the window snapshots
/// read them.
#[derive(Debug, Default)]
struct Shared {
    acked_records: AtomicU64,
    acked_bytes: AtomicU64,
    read_records: AtomicU64,
    read_bytes: AtomicU64,
    errors: AtomicU64,
    /// Records (bytes) issued so far, for `--total-bytes`.
    issued_bytes: AtomicU64,
    producers_done: AtomicBool,
    last_ack: Mutex<Option<Instant>>,
    interval_ack: Mutex<Option<Histogram<u64>>>,
    interval_e2e: Mutex<Option<Histogram<u64>>>,
}

impl Shared {
    fn record_interval(slot: &Mutex<Option<Histogram<u64>>>, micros: u64) {
        let mut slot = slot.lock();
        let histogram = slot.get_or_insert_with(new_histogram);
        let _ = histogram.record(micros.max(1));
    }

    fn take_interval_p99(slot: &Mutex<Option<Histogram<u64>>>) -> Option<f64> {
        slot.lock()
            .take()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    read_records: u64,
    read_bytes: u64,
    cpu: f64,
    store: Option<StoreCounts>,
}

async fn snapshot(shared: &Shared, args: &RunArgs) -> Snapshot {
    let store = match &args.store_counts {
        Some(url) => match probe::store_counts(url).await {
            Ok(counts) => Some(counts),
            Err(error) => {
                eprintln!("store counts unavailable: {error:#}");
                None
            }
        },
        None => None,
    };
    Snapshot {
        at: Some(Instant::now()),
        read_records: shared.read_records.load(Ordering::Relaxed),
        read_bytes: shared.read_bytes.load(Ordering::Relaxed),
        cpu: probe::cpu_seconds(&args.server_pids),
        store,
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    if args.body == Body::Json && args.mode != Mode::Produce {
        bail!("--body json is for --mode produce: tail readers decode binary stamps");
    }
    if args.body == Body::Json && args.system == System::Sink {
        bail!("--body json is for floe and s2: the sink takes binary framing only");
    }
    if args.system == System::Sink && args.mode != Mode::Produce {
        bail!("the sink only takes produce runs");
    }
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("bench-{}", std::process::id()));
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.mode).to_lowercase());
    let target = Target::new(args.system, &args.url, &topic, &args.basin)?.with_body(args.body);
    if !args.existing && args.mode != Mode::CatchUp {
        target
            .create(args.partitions)
            .await
            .with_context(|| format!("creating {topic} on {}", args.system.name()))?;
    }
    let shared = Arc::new(Shared::default());
    let clock = Clock::new();
    let report = match args.mode {
        Mode::CatchUp => catch_up(&args, &target, &shared, &label).await?,
        Mode::Produce | Mode::Tail => produce(&args, &target, &shared, clock, &label).await?,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{}", serde_json::to_string(&report)?)?;
    }
    Ok(report)
}

async fn produce(
    args: &RunArgs,
    target: &Target,
    shared: &Arc<Shared>,
    clock: Clock,
    label: &str,
) -> anyhow::Result<Report> {
    let start = Instant::now() + Duration::from_millis(50);
    let window_start = start + args.warmup;
    let end = window_start + args.duration;
    let pool = Bytes::from({
        let mut pool = vec![0u8; 1 << 20];
        rand::rng().fill_bytes(&mut pool);
        pool
    });

    let mut producers = Vec::new();
    for index in 0..args.producers {
        let producer = Producer {
            index,
            target: target.clone(),
            shared: shared.clone(),
            pool: pool.clone(),
            clock,
            args: args.clone(),
            start,
            window_start,
            end,
        };
        producers.push(tokio::spawn(producer.run()));
    }
    let mut consumers = Vec::new();
    let stop_consumers = Arc::new(AtomicBool::new(false));
    if args.mode == Mode::Tail {
        for partition in 0..args.partitions {
            let consumer = TailConsumer {
                partition,
                target: target.clone(),
                shared: shared.clone(),
                clock,
                window: (clock.us(window_start), clock.us(end)),
                stop: stop_consumers.clone(),
            };
            consumers.push(tokio::spawn(consumer.run()));
        }
    }
    let progress = tokio::spawn(progress(label.to_owned(), shared.clone(), start));
    let delay = probe::SchedulingDelay::start(tokio::runtime::Handle::current(), window_start);

    // CPU time and store requests are read at the window's edges; records and bytes
    // count the requests whose intended send time falls inside the window.
    let edges = {
        let (shared, args) = (shared.clone(), args.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(window_start.into()).await;
            let first = snapshot(&shared, &args).await;
            while Instant::now() < end && !shared.producers_done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (first, snapshot(&shared, &args).await)
        })
    };
    let (mut ack, mut late, mut service) = (new_histogram(), new_histogram(), new_histogram());
    for producer in producers {
        let timings = producer.await.context("a producer panicked")?;
        ack.add(timings.ack)?;
        late.add(timings.late)?;
        service.add(timings.service)?;
    }
    shared.producers_done.store(true, Ordering::Relaxed);
    let (first, last) = edges.await.context("the window probe panicked")?;
    let delay = delay.finish();
    let mut e2e = new_histogram();
    if !consumers.is_empty() {
        // Let consumers reach what was produced, then stop them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop_consumers.store(true, Ordering::Relaxed);
        for consumer in consumers {
            e2e.add(consumer.await.context("a consumer panicked")??)?;
        }
    }
    progress.abort();
    eprintln!();

    let window = match args.total_bytes {
        // A run that stopped at its byte budget ends when its last request was acked.
        Some(_) => first.at.map_or(args.duration, |at| {
            shared
                .last_ack
                .lock()
                .map_or(args.duration, |last| last - at)
        }),
        None => args.duration,
    };
    let report = finish(
        args,
        label,
        window.as_secs_f64(),
        shared.acked_records.load(Ordering::Relaxed),
        shared.acked_bytes.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
        Percentiles::of(&ack),
        Percentiles::of(&e2e),
        &first,
        &last,
    );
    Ok(Report {
        late_ms: args.rate.and(Percentiles::of(&late)),
        service_ms: Percentiles::of(&service),
        client_delay_ms: Percentiles::of(&delay),
        ..report
    })
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &RunArgs,
    label: &str,
    seconds: f64,
    records: u64,
    bytes: u64,
    errors: u64,
    ack_ms: Option<Percentiles>,
    e2e_ms: Option<Percentiles>,
    first: &Snapshot,
    last: &Snapshot,
) -> Report {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let per_gib = |value: f64| (gib > 0.0).then(|| value / gib);
    let cpu = (!args.server_pids.is_empty()).then_some(last.cpu - first.cpu);
    let store = match (first.store, last.store) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    Report {
        label: label.to_owned(),
        system: args.system,
        mode: args.mode,
        partitions: args.partitions,
        record_size: args.record_size,
        batch: args.batch,
        body: args.body,
        producers: match args.mode {
            Mode::CatchUp => args.readers,
            _ => args.producers,
        },
        target_rate: args.rate,
        seconds,
        records,
        bytes,
        records_per_sec: records as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
        errors,
        ack_ms,
        e2e_ms,
        late_ms: None,
        service_ms: None,
        client_delay_ms: None,
        cpu_seconds: cpu,
        cpu_seconds_per_gib: cpu.and_then(per_gib),
        store,
        puts_per_gib: store.and_then(|s| per_gib(s.put as f64)),
        gets_per_gib: store.and_then(|s| per_gib(s.get as f64)),
    }
}

#[derive(Debug)]
struct Producer {
    index: usize,
    target: Target,
    shared: Arc<Shared>,
    pool: Bytes,
    clock: Clock,
    args: RunArgs,
    start: Instant,
    window_start: Instant,
    end: Instant,
}

/// A producer's acknowledged requests in the window, in µs: from the intended send time
/// to the answer (`ack`), and its two parts, until sent (`late`) and after (`service`).
struct Timings {
    ack: Histogram<u64>,
    late: Histogram<u64>,
    service: Histogram<u64>,
}

impl Producer {
    async fn run(self) -> Timings {
        let args = &self.args;
        let mut timings = Timings {
            ack: new_histogram(),
            late: new_histogram(),
            service: new_histogram(),
        };
        let producers = args.producers as u64;
        // At a fixed rate each producer sends every `interval`, phase-shifted so the
        // producers interleave evenly.
        let interval = args
            .rate
            .map(|rate| Duration::from_secs_f64((producers * args.batch) as f64 / rate.max(1e-3)));
        let mut next = self.start
            + interval.map_or(Duration::ZERO, |i| i * self.index as u32 / producers as u32);
        let request_bytes = args.batch * args.record_size;
        let mut sequence = 0u64;
        let mut partition_turn = self.index as u64;
        // An idempotent producer's id, epoch and next request number. A request that
        // failed may or may not have committed: the producer starts over as a new one.
        let mut idempotent: Option<Producing> = None;
        tokio::time::sleep_until(self.start.into()).await;
        loop {
            let now = Instant::now();
            if now >= self.end || next >= self.end {
                break;
            }
            if let Some(total) = args.total_bytes {
                let issued = self
                    .shared
                    .issued_bytes
                    .fetch_add(request_bytes, Ordering::Relaxed);
                if issued >= total {
                    break;
                }
            }
            let intended = match interval {
                Some(_) => {
                    tokio::time::sleep_until(next.into()).await;
                    next
                }
                None => now,
            };
            let partition = (partition_turn % args.partitions as u64) as u32;
            partition_turn += producers;
            let values = self.values(intended, &mut sequence);
            let sent = Instant::now();
            let result = if args.idempotent {
                self.produce_idempotent(&mut idempotent, partition, &values)
                    .await
            } else {
                self.target.produce(partition, &values, None).await
            };
            let done = Instant::now();
            let micros = done.saturating_duration_since(intended).as_micros() as u64;
            match result {
                Ok(()) => {
                    if intended >= self.window_start {
                        let _ = timings.ack.record(micros.max(1));
                        let late = sent.saturating_duration_since(intended).as_micros() as u64;
                        let _ = timings.late.record(late.max(1));
                        let service = done.saturating_duration_since(sent).as_micros() as u64;
                        let _ = timings.service.record(service.max(1));
                        *self.shared.last_ack.lock() = Some(done);
                        self.shared
                            .acked_records
                            .fetch_add(args.batch, Ordering::Relaxed);
                        self.shared
                            .acked_bytes
                            .fetch_add(request_bytes, Ordering::Relaxed);
                    }
                    Shared::record_interval(&self.shared.interval_ack, micros);
                }
                Err(error) => {
                    if self.shared.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("\nproducer {}: {error:#}", self.index);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if let Some(interval) = interval {
                next += interval;
            }
        }
        timings
    }

    async fn produce_idempotent(
        &self,
        producing: &mut Option<Producing>,
        partition: u32,
        values: &[Bytes],
    ) -> anyhow::Result<()> {
        let current = match producing {
            Some(current) => *current,
            None => *producing.insert(self.target.init_producer().await?),
        };
        let result = self.target.produce(partition, values, Some(current)).await;
        *producing = match result {
            Ok(()) => Some(Producing {
                sequence: current.sequence + 1,
                ..current
            }),
            Err(_) => None,
        };
        result
    }

    fn values(&self, intended: Instant, sequence: &mut u64) -> Vec<Bytes> {
        values::request(
            &self.pool,
            self.args.body,
            self.args.record_size as usize,
            self.args.batch as usize,
            self.clock.us(intended),
            sequence,
        )
    }
}

#[derive(Debug)]
struct TailConsumer {
    partition: u32,
    target: Target,
    shared: Arc<Shared>,
    clock: Clock,
    /// Intended send times (µs since the epoch) whose records count.
    window: (u64, u64),
    stop: Arc<AtomicBool>,
}

impl TailConsumer {
    async fn run(self) -> anyhow::Result<Histogram<u64>> {
        let mut histogram = new_histogram();
        let mut offset = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let read = match self
                .target
                .read(self.partition, offset, Duration::from_secs(1))
                .await
            {
                Ok(read) => read,
                Err(error) => {
                    if self.shared.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("\nconsumer {}: {error:#}", self.partition);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let now = self.clock.us(Instant::now());
            let mut bytes = 0;
            for value in &read.values {
                bytes += value.len() as u64;
                let Some(stamp) = value.get(..8) else {
                    continue;
                };
                let stamp = u64::from_le_bytes(stamp.try_into().expect("eight bytes"));
                let micros = now.saturating_sub(stamp);
                if (self.window.0..self.window.1).contains(&stamp) {
                    let _ = histogram.record(micros.max(1));
                }
                Shared::record_interval(&self.shared.interval_e2e, micros);
            }
            self.shared
                .read_records
                .fetch_add(read.values.len() as u64, Ordering::Relaxed);
            self.shared.read_bytes.fetch_add(bytes, Ordering::Relaxed);
            offset = read.next.max(offset);
        }
        Ok(histogram)
    }
}

async fn catch_up(
    args: &RunArgs,
    target: &Target,
    shared: &Arc<Shared>,
    label: &str,
) -> anyhow::Result<Report> {
    let mut ends = Vec::new();
    for partition in 0..args.partitions {
        ends.push(target.end_offset(partition).await?);
    }
    let expected: u64 = ends.iter().sum();
    let queue = Arc::new(Mutex::new((0..args.partitions).collect::<Vec<_>>()));
    let started = Instant::now();
    let first = snapshot(shared, args).await;
    let progress = tokio::spawn(progress(label.to_owned(), shared.clone(), started));
    let delay = probe::SchedulingDelay::start(tokio::runtime::Handle::current(), started);
    let mut readers = Vec::new();
    for _ in 0..args.readers.max(1) {
        let (queue, target, shared, ends) =
            (queue.clone(), target.clone(), shared.clone(), ends.clone());
        readers.push(tokio::spawn(async move {
            loop {
                let Some(partition) = queue.lock().pop() else {
                    return anyhow::Ok(());
                };
                let end = ends[partition as usize];
                let mut offset = 0;
                while offset < end {
                    let read = target
                        .read(partition, offset, Duration::from_secs(1))
                        .await
                        .with_context(|| format!("reading partition {partition} at {offset}"))?;
                    let bytes: u64 = read.values.iter().map(|v| v.len() as u64).sum();
                    shared
                        .read_records
                        .fetch_add(read.values.len() as u64, Ordering::Relaxed);
                    shared.read_bytes.fetch_add(bytes, Ordering::Relaxed);
                    if read.next <= offset {
                        bail!("partition {partition}: no progress at {offset} (end {end})");
                    }
                    offset = read.next;
                }
            }
        }));
    }
    for reader in readers {
        reader.await.context("a reader panicked")??;
    }
    let last = snapshot(shared, args).await;
    progress.abort();
    eprintln!();
    let records = last.read_records - first.read_records;
    if records != expected {
        bail!("read {records} records but the partitions held {expected}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = finish(
        args,
        label,
        seconds,
        records,
        last.read_bytes - first.read_bytes,
        shared.errors.load(Ordering::Relaxed),
        None,
        None,
        &first,
        &last,
    );
    Ok(Report {
        client_delay_ms: Percentiles::of(&delay.finish()),
        ..report
    })
}

async fn progress(label: String, shared: Arc<Shared>, start: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut previous = (0u64, 0u64, 0u64);
    loop {
        ticker.tick().await;
        let acked = shared.acked_bytes.load(Ordering::Relaxed);
        let records = shared.acked_records.load(Ordering::Relaxed);
        let read = shared.read_bytes.load(Ordering::Relaxed);
        let mut line = format!(
            "\r[{label}] {:>5.0}s  produce {:>9.0} rec/s {:>7.1} MB/s",
            start.elapsed().as_secs_f64(),
            (records - previous.1) as f64,
            (acked - previous.0) as f64 / 1e6,
        );
        if let Some(p99) = Shared::take_interval_p99(&shared.interval_ack) {
            line.push_str(&format!("  ack p99 {p99:>7.1} ms"));
        }
        if read > 0 {
            line.push_str(&format!(
                "  read {:>7.1} MB/s",
                (read - previous.2) as f64 / 1e6
            ));
        }
        if let Some(p99) = Shared::take_interval_p99(&shared.interval_e2e) {
            line.push_str(&format!("  e2e p99 {p99:>7.1} ms"));
        }
        let errors = shared.errors.load(Ordering::Relaxed);
        if errors > 0 {
            line.push_str(&format!("  errors {errors}"));
        }
        eprint!("{line}   ");
        previous = (acked, records, read);
    }
}
