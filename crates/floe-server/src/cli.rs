//! The `floe` command line: `serve`, and kcat-style client subcommands.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use floe_client::api::{CreateTopicRequest, ProduceRecordJson};
use floe_client::{Encoding, FetchOptions, FloeClient};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(name = "floe", version, about = "floe: Kafka-style event streaming on object storage", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker. With no options: 127.0.0.1:8080, data under ./floe-data.
    Serve(Box<ServeArgs>),
    /// List, create, describe, grow and delete topics.
    Topics {
        #[command(flatten)]
        server: ServerArg,
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Produce records, one per line, from stdin or a file.
    Produce(ProduceArgs),
    /// Print records of a topic from an offset, earliest or latest; follow the tail with -f.
    Consume(ConsumeArgs),
    /// The benchmark tool: load runs against floe, s2-lite or a loopback sink, the disk
    /// limit, and the helper servers a report run uses (`floe bench run --help`).
    Bench {
        #[command(subcommand)]
        command: floe_bench::BenchCommand,
    },
    /// Operator tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an S3 bucket if it is missing, then check floe can use it (reachable,
    /// create-only puts honoured).
    InitBucket {
        /// s3://BUCKET[/PREFIX]
        #[arg(long)]
        store: String,
        /// S3-compatible endpoint URL [default: AWS_ENDPOINT_URL, else AWS].
        #[arg(long)]
        s3_endpoint: Option<String>,
        /// Region [default: AWS_REGION, else us-east-1].
        #[arg(long)]
        s3_region: Option<String>,
        /// Path-style requests [default: on for a custom endpoint].
        #[arg(long)]
        s3_path_style: Option<bool>,
    },
}

pub async fn run_admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::InitBucket {
            store,
            s3_endpoint,
            s3_region,
            s3_path_style,
        } => {
            let floe_storage::StoreUrl::S3 { bucket, prefix } =
                floe_storage::StoreUrl::parse(&store)?
            else {
                bail!("init-bucket takes an s3://BUCKET/PREFIX store, got {store}");
            };
            let options = floe_storage::S3Options {
                endpoint: s3_endpoint,
                region: s3_region,
                path_style: s3_path_style,
                ..floe_storage::S3Options::default()
            };
            let outcome = floe_storage::init_bucket(&bucket, &prefix, &options).await?;
            let what = match outcome {
                floe_storage::BucketInit::Created => "created",
                floe_storage::BucketInit::AlreadyOwned => "already exists (owned by you)",
            };
            println!("bucket {bucket} {what}; create-only puts are honoured; ready for floe");
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct ServerArg {
    /// Server URL.
    #[arg(
        long,
        short = 's',
        env = "FLOE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
}

/// Flags of `floe serve`; each overrides the config file and the environment.
#[derive(Debug, Args, Serialize)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "FLOE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Data directory [default: ./floe-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Object store URL: file://DIR, s3://BUCKET/PREFIX or memory://
    /// [default: file://<data-dir>/objects].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Flush the open segment after this long, e.g. 5ms, 250ms [default: 5ms on a local
    /// store, 100ms on S3].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linger: Option<String>,
    /// Flush the open segment at this many bytes [default: 8388608].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_max_bytes: Option<usize>,
    /// Uncommitted bytes before produce answers 429 [default: 268435456].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffered_bytes: Option<usize>,
    /// Sequencer log entries between snapshots [default: 20000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_every: Option<u64>,
    /// This broker's id, unique in its cluster [default: broker-0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_id: Option<String>,
    /// etcd endpoints, comma-separated: join a cluster instead of running embedded.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<String>,
    /// Cluster name: brokers with the same etcd and name form one cluster [default: floe].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Address other brokers and clients reach this broker at [default: the bound address].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Lease TTL of registration and sequencer leadership, e.g. 5s [default: 5s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<String>,
    /// S3-compatible endpoint URL [default: AWS_ENDPOINT_URL, else AWS].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Path-style S3 requests [default: on for a custom endpoint].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_path_style: Option<bool>,
    /// Read cache memory in bytes [default: 268435456].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_memory_bytes: Option<usize>,
    /// Read cache disk tier in bytes, 0 for none [default: 0 on a local store, 4 GiB on S3].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_disk_bytes: Option<usize>,
    /// Directory of the read cache's disk tier [default: <data-dir>/cache].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Read cache block: unit of caching and GET alignment [default: 1048576].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_block_bytes: Option<u64>,
    /// Largest GET the read cache makes to fill missing blocks [default: 8388608].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_get_bytes: Option<u64>,
    /// Run retention, object lifecycle and compaction jobs [default: true].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background_jobs: Option<bool>,
    /// How often retention checks partitions, e.g. 30s [default: 30s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_check_interval: Option<String>,
    /// How often dead objects are deleted and orphans swept, e.g. 60s [default: 60s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_interval: Option<String>,
    /// Grace before a dead or uncommitted object is deleted, e.g. 5m [default: 5m].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_grace: Option<String>,
    /// How often compaction checks partitions, e.g. 10s [default: 10s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compaction_interval: Option<String>,
    /// Age of a flushed object before compaction rewrites it, e.g. 10s [default: 10s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compaction_min_age: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics.
    List,
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        /// Topic config, repeatable: -c retention.ms=60000
        #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Show a topic's config and partitions.
    Describe { name: String },
    /// Grow a topic to COUNT partitions.
    AddPartitions {
        name: String,
        #[arg(long)]
        count: u32,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub server: ServerArg,
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (like kcat -K).
    #[arg(long, short = 'K')]
    pub key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub server: ServerArg,
    pub topic: String,
    /// Partition to read; all partitions when absent.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Start offset: a number, earliest or latest.
    #[arg(long, short = 'o', default_value = "earliest")]
    pub offset: String,
    /// Keep waiting for new records at the tail.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp, \n, \t.
    #[arg(long, short = 'F', default_value = "%v")]
    pub format: String,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

pub async fn run_topics(server: &str, command: TopicsCommand) -> anyhow::Result<()> {
    let client = FloeClient::new(server);
    match command {
        TopicsCommand::List => {
            for topic in client.list_topics().await?.topics {
                println!("{}\t{} partitions", topic.name, topic.partitions);
            }
        }
        TopicsCommand::Create {
            name,
            partitions,
            config,
        } => {
            let config: BTreeMap<String, Value> = config
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let created = client
                .create_topic(&CreateTopicRequest {
                    name,
                    partitions,
                    config,
                })
                .await?;
            println!(
                "created topic {} with {} partitions",
                created.name,
                created.partitions.len()
            );
        }
        TopicsCommand::Describe { name } => {
            let topic = client.describe_topic(&name).await?;
            println!("topic {} (id {})", topic.name, topic.id);
            if let Value::Object(config) = &topic.config {
                for (key, value) in config {
                    println!("  {key} = {value}");
                }
            }
            println!("  partition  log_start  high_watermark  bytes  owner");
            for p in topic.partitions {
                println!(
                    "  {:>9}  {:>9}  {:>14}  {:>5}  {}",
                    p.partition, p.log_start_offset, p.high_watermark, p.size_bytes, p.owner
                );
            }
        }
        TopicsCommand::AddPartitions { name, count } => {
            let topic = client.add_partitions(&name, count).await?;
            println!(
                "topic {} now has {} partitions",
                topic.name,
                topic.partitions.len()
            );
        }
        TopicsCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

pub async fn run_produce(args: ProduceArgs) -> anyhow::Result<()> {
    let client = FloeClient::new(&args.server.server);
    let reader: Box<dyn BufRead + Send> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let started = std::time::Instant::now();
    let mut pending = Vec::with_capacity(args.batch);
    let mut sent = 0u64;
    for line in reader.lines() {
        let line = line.context("reading input")?;
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_owned()), value.to_owned()),
                None => (None, line),
            },
            None => (None, line),
        };
        pending.push(ProduceRecordJson {
            key: key.map(Value::String),
            value: Some(Value::String(value)),
            partition: args.partition,
            ..ProduceRecordJson::default()
        });
        if pending.len() >= args.batch.max(1) {
            sent += flush(&client, &args.topic, &mut pending).await?;
        }
    }
    sent += flush(&client, &args.topic, &mut pending).await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} records in {seconds:.2}s ({:.0} records/s)",
        sent as f64 / seconds.max(1e-9)
    );
    Ok(())
}

async fn flush(
    client: &FloeClient,
    topic: &str,
    pending: &mut Vec<ProduceRecordJson>,
) -> anyhow::Result<u64> {
    if pending.is_empty() {
        return Ok(0);
    }
    let records = std::mem::take(pending);
    let count = records.len() as u64;
    // Retry while the server sheds load; anything else is final.
    loop {
        match client.produce(topic, records.clone(), Encoding::Text).await {
            Ok(_) => return Ok(count),
            Err(floe_client::ClientError::Api {
                retry_after: Some(pause),
                status,
                ..
            }) if status.as_u16() == 429 || status.as_u16() == 503 => {
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

pub async fn run_consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = FloeClient::new(&args.server.server);
    let partitions = match args.partition {
        Some(partition) => vec![partition],
        None => (0..client.describe_topic(&args.topic).await?.partitions.len() as u32).collect(),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(1024);
    for partition in partitions {
        let client = client.clone();
        let sender = sender.clone();
        let topic = args.topic.clone();
        let start = args.offset.clone();
        let format = args.format.clone();
        let follow = args.follow;
        tokio::spawn(async move {
            if let Err(error) =
                consume_partition(&client, &topic, partition, &start, follow, &format, &sender)
                    .await
            {
                let _ = sender
                    .send(format!("\u{0}error: partition {partition}: {error}"))
                    .await;
            }
        });
    }
    drop(sender);
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = receiver.recv().await {
        if let Some(error) = line.strip_prefix('\u{0}') {
            bail!("{error}");
        }
        writeln!(stdout, "{line}")?;
        printed += 1;
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
    }
    Ok(())
}

async fn consume_partition(
    client: &FloeClient,
    topic: &str,
    partition: u32,
    start: &str,
    follow: bool,
    format: &str,
    output: &tokio::sync::mpsc::Sender<String>,
) -> anyhow::Result<()> {
    let mut offset = match start {
        "earliest" | "latest" => client.offset(topic, partition, start).await?.offset,
        number => number
            .parse::<u64>()
            .with_context(|| format!("offset {number:?} is not a number, earliest or latest"))?,
    };
    let options = FetchOptions {
        wait: follow.then_some(Duration::from_secs(10)),
        ..FetchOptions::default()
    };
    loop {
        let fetched = client.fetch(topic, partition, offset, &options).await?;
        for record in &fetched.records {
            if output
                .send(render(format, topic, partition, record))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        offset = fetched.next_offset;
        if !follow && offset >= fetched.high_watermark {
            return Ok(());
        }
    }
}

fn render(
    format: &str,
    topic: &str,
    partition: u32,
    record: &floe_client::api::FetchedRecordJson,
) -> String {
    let text = |value: &Option<Value>| match value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match (c, c == '%' || c == '\\') {
            (_, false) => out.push(c),
            _ => match (c, chars.next()) {
                ('%', Some('t')) => out.push_str(topic),
                ('%', Some('p')) => out.push_str(&partition.to_string()),
                ('%', Some('o')) => out.push_str(&record.offset.to_string()),
                ('%', Some('k')) => out.push_str(&text(&record.key)),
                ('%', Some('v')) => out.push_str(&text(&record.value)),
                ('%', Some('T')) => out.push_str(&record.timestamp.to_string()),
                ('\\', Some('n')) => out.push('\n'),
                ('\\', Some('t')) => out.push('\t'),
                (c, Some(other)) => {
                    out.push(c);
                    out.push(other);
                }
                (c, None) => out.push(c),
            },
        }
    }
    out
}
