//! The flags of `floe serve`.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

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
