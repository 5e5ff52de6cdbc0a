//! `floe serve` configuration: defaults < TOML file < `FLOE_*` environment < flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `floe serve` can be told. See `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the embedded sequencer log (and, by default, the object store) live.
    pub data_dir: PathBuf,
    /// Object store URL; `file://<data_dir>/objects` when unset.
    pub store: Option<String>,
    /// Name of this cluster, shown in `/v1/cluster`.
    pub cluster: String,
    /// This broker's id.
    pub broker_id: String,
    /// Address other brokers and clients reach this one at; the listen address when unset.
    pub advertise: Option<String>,
    /// How long the open segment waits for more data before it is flushed. When unset:
    /// 5 ms on a local (`file://`, `memory://`) store, 100 ms on S3, where every flush is
    /// a billed PUT.
    #[serde(default, with = "humantime_serde")]
    pub linger: Option<Duration>,
    /// Flush the open segment once it holds this many bytes.
    pub segment_max_bytes: usize,
    /// Bytes accepted but not yet committed before produce answers 429.
    pub max_buffered_bytes: usize,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Segments uploading at once.
    pub max_inflight_uploads: usize,
    /// Sequencer log entries between snapshots.
    pub snapshot_every: u64,
    /// etcd client URLs, comma-separated. Set: this broker joins cluster `cluster` with
    /// the sequencer on etcd. Unset: the embedded sequencer in `data_dir`.
    pub etcd: Option<String>,
    /// Lease TTL of the broker's registration and of the sequencer leadership.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Compact etcd's revision history behind each sequencer snapshot.
    pub compact_etcd: bool,
    /// S3-compatible endpoint (also `AWS_ENDPOINT_URL`); AWS itself when unset.
    pub s3_endpoint: Option<String>,
    /// S3 region (also `AWS_REGION`); `us-east-1` when unset.
    pub s3_region: Option<String>,
    /// Path-style S3 requests; on for a custom endpoint, off for AWS, when unset.
    pub s3_path_style: Option<bool>,
    /// Bound on one store request attempt.
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
    /// Bytes of segment data the read cache holds in memory.
    pub cache_memory_bytes: usize,
    /// Bytes of local disk for the read cache's second tier; 0 turns it off. When unset:
    /// off for a local (`file://`, `memory://`) store, 4 GiB for S3.
    pub cache_disk_bytes: Option<usize>,
    /// Directory of the disk tier; `<data_dir>/cache` when unset.
    pub cache_dir: Option<PathBuf>,
    /// The read cache's block: its unit of caching and of GET alignment.
    pub cache_block_bytes: u64,
    /// The largest ranged GET the read cache makes to fill missing blocks.
    pub cache_max_get_bytes: u64,
    /// Run the background jobs (retention, object lifecycle, compaction).
    pub background_jobs: bool,
    /// How often partitions are checked for data past `retention.ms` / `retention.bytes`.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
    /// How often dead objects are deleted and the store is swept for orphans.
    #[serde(with = "humantime_serde")]
    pub lifecycle_interval: Duration,
    /// How long a dead object stays (reads in flight finish) and how old an uncommitted
    /// object must be before it is deleted as an orphan.
    #[serde(with = "humantime_serde")]
    pub object_grace: Duration,
    /// How often partitions are checked for compaction work.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// How old a flushed object must be before its batches are compacted.
    #[serde(with = "humantime_serde")]
    pub compaction_min_age: Duration,
    /// The largest object compaction writes.
    pub compaction_target_bytes: u64,
    /// The size small batches are merged up to.
    pub compaction_batch_bytes: usize,
    /// How many neighbouring compacted objects of one level are merged.
    pub compaction_fan_in: usize,
    /// Bytes per second background jobs may read plus write.
    pub background_bytes_per_sec: u64,
    /// Object deletions per second.
    pub background_deletes_per_sec: u32,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

const KNOWN_KEYS: [&str; 36] = [
    "listen",
    "data_dir",
    "store",
    "cluster",
    "broker_id",
    "advertise",
    "linger",
    "segment_max_bytes",
    "max_buffered_bytes",
    "max_request_bytes",
    "max_inflight_uploads",
    "snapshot_every",
    "log_format",
    "etcd",
    "lease_ttl",
    "compact_etcd",
    "s3_endpoint",
    "s3_region",
    "s3_path_style",
    "store_timeout",
    "cache_memory_bytes",
    "cache_disk_bytes",
    "cache_dir",
    "cache_block_bytes",
    "cache_max_get_bytes",
    "background_jobs",
    "retention_check_interval",
    "lifecycle_interval",
    "object_grace",
    "compaction_interval",
    "compaction_min_age",
    "compaction_target_bytes",
    "compaction_batch_bytes",
    "compaction_fan_in",
    "background_bytes_per_sec",
    "background_deletes_per_sec",
];

impl Default for ServeConfig {
    fn default() -> Self {
        let jobs = floe_broker::JobOptions::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./floe-data"),
            store: None,
            cluster: "floe".into(),
            broker_id: "broker-0".into(),
            advertise: None,
            linger: None,
            segment_max_bytes: 8 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_request_bytes: 32 * 1024 * 1024,
            max_inflight_uploads: 4,
            snapshot_every: 20_000,
            log_format: LogFormat::Text,
            etcd: None,
            lease_ttl: Duration::from_secs(5),
            compact_etcd: true,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
            store_timeout: Duration::from_secs(30),
            cache_memory_bytes: 256 * 1024 * 1024,
            cache_disk_bytes: None,
            cache_dir: None,
            cache_block_bytes: 1024 * 1024,
            cache_max_get_bytes: 8 * 1024 * 1024,
            background_jobs: jobs.enabled,
            retention_check_interval: jobs.retention_interval,
            lifecycle_interval: jobs.lifecycle_interval,
            object_grace: jobs.grace,
            compaction_interval: jobs.compaction_interval,
            compaction_min_age: jobs.compaction_min_age,
            compaction_target_bytes: jobs.compaction_target_bytes,
            compaction_batch_bytes: jobs.compaction_batch_bytes,
            compaction_fan_in: jobs.compaction_fan_in,
            background_bytes_per_sec: jobs.bytes_per_second,
            background_deletes_per_sec: jobs.deletes_per_second,
        }
    }
}

impl ServeConfig {
    /// Layers the sources: defaults, then the TOML file if given, then `FLOE_*` variables,
    /// then `overrides` (the flags that were set).
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &impl Serialize,
    ) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            // Only the keys this config knows: FLOE_SERVER, FLOE_BIN and the like belong to
            // other tools and must not stop the server from starting.
            .merge(
                Env::prefixed("FLOE_")
                    .filter(|key| KNOWN_KEYS.contains(&key.as_str().to_ascii_lowercase().as_str())),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)
    }

    pub fn store_url(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.data_dir.join("objects").display()))
    }

    /// The flush window, with its default resolved for the store kind: a local store
    /// flushes after a few ms, S3 waits long enough that PUTs are counted per broker and
    /// second rather than per request.
    pub fn linger(&self, store_is_local: bool) -> Duration {
        self.linger.unwrap_or(if store_is_local {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(100)
        })
    }

    /// The read cache's sizing, with the disk tier's defaults resolved for the store kind.
    pub fn cache_options(&self, store_is_local: bool) -> floe_storage::CacheOptions {
        let disk_bytes = self
            .cache_disk_bytes
            .unwrap_or(if store_is_local { 0 } else { 4 << 30 });
        floe_storage::CacheOptions {
            memory_bytes: self.cache_memory_bytes,
            disk_bytes,
            disk_dir: Some(
                self.cache_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("cache")),
            ),
            block_bytes: self.cache_block_bytes,
            max_get_bytes: self.cache_max_get_bytes,
        }
    }

    /// The background jobs' tuning.
    pub fn job_options(&self) -> floe_broker::JobOptions {
        floe_broker::JobOptions {
            enabled: self.background_jobs,
            retention_interval: self.retention_check_interval,
            lifecycle_interval: self.lifecycle_interval,
            grace: self.object_grace,
            compaction_interval: self.compaction_interval,
            compaction_min_age: self.compaction_min_age,
            compaction_target_bytes: self.compaction_target_bytes.max(1),
            compaction_batch_bytes: self.compaction_batch_bytes.max(1),
            compaction_fan_in: self.compaction_fan_in.max(2),
            bytes_per_second: self.background_bytes_per_sec.max(1),
            deletes_per_second: self.background_deletes_per_sec.max(1),
        }
    }

    /// The etcd endpoints, when clustered.
    pub fn etcd_endpoints(&self) -> Option<Vec<String>> {
        let endpoints: Vec<String> = self
            .etcd
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
            .map(|endpoint| {
                if endpoint.contains("://") {
                    endpoint.to_owned()
                } else {
                    format!("http://{endpoint}")
                }
            })
            .collect();
        (!endpoints.is_empty()).then_some(endpoints)
    }

    /// The URL other brokers and clients reach this one at: `advertise` (a scheme is
    /// added when missing), or the address actually bound.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        match &self.advertise {
            Some(address) if address.contains("://") => address.trim_end_matches('/').to_owned(),
            Some(address) => format!("http://{address}"),
            None => format!("http://{bound}"),
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment's Jail fixes the closure's error type"
)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn layers_file_environment_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "floe.toml",
                "linger = \"250ms\"\nbroker_id = \"from-file\"\nsegment_max_bytes = 1000\n",
            )?;
            jail.set_env("FLOE_BROKER_ID", "from-env");
            let flags = BTreeMap::from([("segment_max_bytes", 2000)]);
            let config = ServeConfig::load(Some(std::path::Path::new("floe.toml")), &flags)
                .map_err(|e| *e)?;
            assert_eq!(config.linger, Some(Duration::from_millis(250)));
            assert_eq!(config.linger(false), Duration::from_millis(250));
            assert_eq!(config.broker_id, "from-env");
            assert_eq!(config.segment_max_bytes, 2000);
            assert_eq!(config.listen, ServeConfig::default().listen);
            Ok(())
        });
    }

    #[test]
    fn linger_defaults_by_store_kind_and_a_setting_wins_on_both() {
        figment::Jail::expect_with(|_jail| {
            let none: BTreeMap<String, String> = BTreeMap::new();
            let config = ServeConfig::load(None, &none).map_err(|e| *e)?;
            assert_eq!(config.linger(true), Duration::from_millis(5));
            assert_eq!(config.linger(false), Duration::from_millis(100));
            let flags = BTreeMap::from([("linger", "20ms")]);
            let config = ServeConfig::load(None, &flags).map_err(|e| *e)?;
            assert_eq!(config.linger(true), Duration::from_millis(20));
            assert_eq!(config.linger(false), Duration::from_millis(20));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("floe.toml", "lingr = \"5ms\"\n")?;
            let flags: BTreeMap<String, String> = BTreeMap::new();
            assert!(ServeConfig::load(Some(std::path::Path::new("floe.toml")), &flags).is_err());
            Ok(())
        });
    }
}
