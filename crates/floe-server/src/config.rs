//! `floe serve` configuration: defaults < TOML file < `FLOE_*` environment < flags.
//!
//! The configuration is nested sections, each the options struct of the crate that uses
//! it (`[broker]` is `floe_broker::BrokerOptions`, `[cache]` is
//! `floe_storage::CacheOptions`, …). A setting is one field with its doc comment in one of
//! those structs: its file key is `section.field`, its environment variable
//! `FLOE_<SECTION>__<FIELD>`, and `docs/configuration.md` is checked against the defaults
//! by a test. Only the settings a user types often have flags (`args.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use floe_broker::{BrokerOptions, GroupOptions, JobOptions};
use floe_core::InvalidSetting;
use floe_core::settings;
use floe_sequencer::{ClusterSettings, SequencerOptions};
use floe_storage::{CacheOptions, StoreOptions};
use serde::{Deserialize, Serialize};

/// Everything `floe serve` can be told. See `docs/configuration.md`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    pub server: ServerOptions,
    pub store: StoreOptions,
    pub broker: BrokerOptions,
    pub cache: CacheOptions,
    pub sequencer: SequencerOptions,
    pub cluster: ClusterSettings,
    pub jobs: JobOptions,
    pub groups: GroupOptions,
    pub auth: crate::auth::AuthOptions,
    pub quotas: crate::quotas::QuotaOptions,
    pub tracing: crate::telemetry::TracingOptions,
}

/// The sections, in the order of `docs/configuration.md`: environment variables are
/// read only for these, so `FLOE_SERVER_URL`-style variables of other tools are ignored.
pub const SECTIONS: [&str; 11] = [
    "server",
    "store",
    "broker",
    "cache",
    "sequencer",
    "cluster",
    "jobs",
    "groups",
    "auth",
    "quotas",
    "tracing",
];

/// The HTTP listener and the process: the `[server]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerOptions {
    /// Address the HTTP API listens on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where the embedded sequencer log, the default object store and the cache's disk
    /// tier live.
    pub data_dir: PathBuf,
    /// Address other brokers and clients reach this one at (`host:port` or a URL); the
    /// bound address when unset.
    pub advertise: Option<String>,
    /// Largest request body accepted, at most 1 GiB.
    pub max_request_bytes: usize,
    /// Memory requests in flight may hold together: bodies, the records decoded from
    /// them and fetch answers. A request that finds it spent gets `429` with
    /// `Retry-After`. At least `max_request_bytes`.
    pub request_memory_bytes: usize,
    /// `text` or `json` logs on stderr; the level comes from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// HTTP connections open at once; more are closed as soon as they are accepted.
    /// Lowered at start to what the process's open-file limit leaves room for.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, and how long a connection may
    /// sit idle between requests before it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's body once its headers arrived; slower
    /// gets `408 request_timeout`.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Fetches waiting at the tail (long-polls and event streams) this broker serves at
    /// once; more get `429 busy`.
    pub max_waiting_fetches: usize,
    /// Of those, how many one client may hold: its principal when requests authenticate,
    /// its address otherwise.
    pub max_waiting_fetches_per_client: usize,
    /// PEM certificate chain for TLS on the listener (with `tls_key_file`); re-read
    /// within 2 s of a change.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mutual TLS); a
    /// verified certificate's subject is the request's principal, and ACLs apply.
    pub tls_client_ca_file: Option<PathBuf>,
    /// PEM CA certificates other brokers' certificates chain to, trusted (besides the
    /// system's roots) when brokers call each other over TLS.
    pub peer_ca_file: Option<PathBuf>,
    /// A separate address for the routes brokers call on each other (`/internal/…`):
    /// then the public listener does not serve them.
    pub internal_listen: Option<SocketAddr>,
    /// Address other brokers reach `internal_listen` at (`host:port` or a URL); the
    /// bound address when unset.
    pub internal_advertise: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./floe-data"),
            advertise: None,
            max_request_bytes: 32 * 1024 * 1024,
            request_memory_bytes: 256 * 1024 * 1024,
            log_format: LogFormat::Text,
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_waiting_fetches: 2048,
            max_waiting_fetches_per_client: 512,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            peer_ca_file: None,
            internal_listen: None,
            internal_advertise: None,
        }
    }
}

/// A request becomes one batch per partition, and a batch's length is a u32 in the
/// segment index: keep requests far below that.
const MAX_REQUEST_BYTES_LIMIT: usize = 1 << 30;

impl ServerOptions {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        settings::within(
            "max_request_bytes",
            self.max_request_bytes,
            1,
            MAX_REQUEST_BYTES_LIMIT,
        )?;
        settings::at_least(
            "request_memory_bytes",
            self.request_memory_bytes,
            self.max_request_bytes,
        )?;
        settings::at_least("max_connections", self.max_connections, 1)?;
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(InvalidSetting::new(
                "tls_cert_file",
                "tls_cert_file and tls_key_file go together".to_owned(),
            ));
        }
        if self.internal_advertise.is_some() && self.internal_listen.is_none() {
            return Err(InvalidSetting::new(
                "internal_advertise",
                "names the address of internal_listen, which is unset".to_owned(),
            ));
        }
        if self
            .internal_listen
            .is_some_and(|internal| internal == self.listen)
        {
            return Err(InvalidSetting::new(
                "internal_listen",
                "must differ from listen".to_owned(),
            ));
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            return Err(InvalidSetting::new(
                "tls_client_ca_file",
                "mutual TLS needs tls_cert_file and tls_key_file".to_owned(),
            ));
        }
        settings::positive("header_read_timeout", self.header_read_timeout)?;
        settings::positive("body_read_timeout", self.body_read_timeout)?;
        settings::at_least("max_waiting_fetches", self.max_waiting_fetches, 1)?;
        settings::at_least(
            "max_waiting_fetches_per_client",
            self.max_waiting_fetches_per_client,
            1,
        )
    }

    /// `max_connections`, lowered so that connections leave [`FDS_FOR_THE_REST`] file
    /// descriptors of the process's soft limit to segments, the cache, etcd and the store.
    pub fn effective_max_connections(&self) -> usize {
        match open_file_limit() {
            Some(limit) if limit < self.max_connections + FDS_FOR_THE_REST => {
                let lowered = limit.saturating_sub(FDS_FOR_THE_REST).max(16);
                tracing::warn!(
                    max_connections = self.max_connections,
                    open_file_limit = limit,
                    lowered,
                    "the open-file limit is too low for server.max_connections; lowering it"
                );
                lowered
            }
            _ => self.max_connections,
        }
    }

    /// The URL other brokers and clients reach this one at: `advertise` (a scheme is
    /// added when missing), or the address actually bound. `None` when neither names an
    /// address anyone could connect to (bound to `0.0.0.0` or `::` with no `advertise`):
    /// floe never hands out an unspecified address.
    pub fn advertised(&self, bound: SocketAddr) -> Option<String> {
        self.url(self.advertise.as_deref(), bound)
    }

    /// The URL other brokers reach the internal listener at, as [`Self::advertised`].
    pub fn internal_advertised(&self, bound: SocketAddr) -> Option<String> {
        self.url(self.internal_advertise.as_deref(), bound)
    }

    fn url(&self, advertise: Option<&str>, bound: SocketAddr) -> Option<String> {
        let scheme = if self.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        match advertise {
            Some(address) if address.contains("://") => {
                Some(address.trim_end_matches('/').to_owned())
            }
            Some(address) => Some(format!("{scheme}://{address}")),
            None if bound.ip().is_unspecified() => None,
            None => Some(format!("{scheme}://{bound}")),
        }
    }
}

/// File descriptors kept for everything but HTTP connections.
const FDS_FOR_THE_REST: usize = 256;

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration that cannot be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    #[error("{old} is no longer read; set {new} instead (docs/configuration.md)")]
    Renamed { old: String, new: String },
}

/// Environment variables of the flat configuration before sections (ADR 0005), and the
/// variable that replaced each: one set by an old deployment fails start-up by name
/// instead of being ignored.
const RENAMED_VARIABLES: [(&str, &str); 36] = [
    ("FLOE_LISTEN", "FLOE_SERVER__LISTEN"),
    ("FLOE_DATA_DIR", "FLOE_SERVER__DATA_DIR"),
    ("FLOE_ADVERTISE", "FLOE_SERVER__ADVERTISE"),
    ("FLOE_MAX_REQUEST_BYTES", "FLOE_SERVER__MAX_REQUEST_BYTES"),
    ("FLOE_LOG_FORMAT", "FLOE_SERVER__LOG_FORMAT"),
    ("FLOE_STORE", "FLOE_STORE__URL"),
    ("FLOE_S3_ENDPOINT", "FLOE_STORE__S3_ENDPOINT"),
    ("FLOE_S3_REGION", "FLOE_STORE__S3_REGION"),
    ("FLOE_S3_PATH_STYLE", "FLOE_STORE__S3_PATH_STYLE"),
    ("FLOE_STORE_TIMEOUT", "FLOE_STORE__REQUEST_TIMEOUT"),
    ("FLOE_BROKER_ID", "FLOE_BROKER__ID"),
    ("FLOE_LINGER", "FLOE_BROKER__LINGER"),
    ("FLOE_SEGMENT_MAX_BYTES", "FLOE_BROKER__SEGMENT_MAX_BYTES"),
    ("FLOE_MAX_BUFFERED_BYTES", "FLOE_BROKER__MAX_BUFFERED_BYTES"),
    (
        "FLOE_MAX_INFLIGHT_UPLOADS",
        "FLOE_BROKER__MAX_INFLIGHT_UPLOADS",
    ),
    ("FLOE_CACHE_MEMORY_BYTES", "FLOE_CACHE__MEMORY_BYTES"),
    ("FLOE_CACHE_DISK_BYTES", "FLOE_CACHE__DISK_BYTES"),
    ("FLOE_CACHE_DIR", "FLOE_CACHE__DIR"),
    ("FLOE_CACHE_BLOCK_BYTES", "FLOE_CACHE__BLOCK_BYTES"),
    ("FLOE_CACHE_MAX_GET_BYTES", "FLOE_CACHE__MAX_GET_BYTES"),
    ("FLOE_SNAPSHOT_EVERY", "FLOE_SEQUENCER__SNAPSHOT_EVERY"),
    ("FLOE_ETCD", "FLOE_CLUSTER__ETCD"),
    ("FLOE_CLUSTER", "FLOE_CLUSTER__NAME"),
    ("FLOE_LEASE_TTL", "FLOE_CLUSTER__LEASE_TTL"),
    ("FLOE_COMPACT_ETCD", "FLOE_CLUSTER__COMPACT_ETCD"),
    ("FLOE_BACKGROUND_JOBS", "FLOE_JOBS__ENABLED"),
    (
        "FLOE_RETENTION_CHECK_INTERVAL",
        "FLOE_JOBS__RETENTION_INTERVAL",
    ),
    ("FLOE_LIFECYCLE_INTERVAL", "FLOE_JOBS__LIFECYCLE_INTERVAL"),
    ("FLOE_OBJECT_GRACE", "FLOE_JOBS__OBJECT_GRACE"),
    ("FLOE_COMPACTION_INTERVAL", "FLOE_JOBS__COMPACTION_INTERVAL"),
    ("FLOE_COMPACTION_MIN_AGE", "FLOE_JOBS__COMPACTION_MIN_AGE"),
    (
        "FLOE_COMPACTION_TARGET_BYTES",
        "FLOE_JOBS__COMPACTION_TARGET_BYTES",
    ),
    (
        "FLOE_COMPACTION_BATCH_BYTES",
        "FLOE_JOBS__COMPACTION_BATCH_BYTES",
    ),
    ("FLOE_COMPACTION_FAN_IN", "FLOE_JOBS__COMPACTION_FAN_IN"),
    (
        "FLOE_BACKGROUND_BYTES_PER_SEC",
        "FLOE_JOBS__BYTES_PER_SECOND",
    ),
    (
        "FLOE_BACKGROUND_DELETES_PER_SEC",
        "FLOE_JOBS__DELETES_PER_SECOND",
    ),
];

impl ServeConfig {
    /// Layers the sources: defaults, then the TOML file if given, then `FLOE_*` variables,
    /// then `flags` (dotted keys of the flags that were set), and validates the result.
    pub fn load(
        file: Option<&Path>,
        flags: &[(&'static str, serde_json::Value)],
    ) -> Result<Self, ConfigError> {
        if let Some((old, new)) = RENAMED_VARIABLES
            .iter()
            .find(|(old, _)| std::env::var_os(old).is_some())
        {
            return Err(ConfigError::Renamed {
                old: (*old).to_owned(),
                new: (*new).to_owned(),
            });
        }
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(
            Env::prefixed("FLOE_")
                .filter(|key| is_setting_variable(key.as_str()))
                .split("__"),
        );
        for (key, value) in flags {
            figment = figment.merge(Serialized::default(key, value));
        }
        let config: Self = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses any value that cannot be used, naming its key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.server.validate().map_err(|e| e.in_section("server"))?;
        self.store.validate().map_err(|e| e.in_section("store"))?;
        self.broker.validate().map_err(|e| e.in_section("broker"))?;
        self.cache.validate().map_err(|e| e.in_section("cache"))?;
        self.sequencer
            .validate()
            .map_err(|e| e.in_section("sequencer"))?;
        self.cluster
            .validate()
            .map_err(|e| e.in_section("cluster"))?;
        self.jobs.validate().map_err(|e| e.in_section("jobs"))?;
        self.groups.validate().map_err(|e| e.in_section("groups"))?;
        self.auth.validate().map_err(|e| e.in_section("auth"))?;
        self.tracing.validate().map_err(|e| e.in_section("tracing"))
    }

    /// The object store's URL, `file://<data_dir>/objects` by default.
    pub fn store_url(&self) -> String {
        self.store.url_or_default(&self.server.data_dir)
    }
}

/// Whether an environment variable (its name after `FLOE_`) is a setting:
/// `<SECTION>__<FIELD>` with a known section. Others (`FLOE_SERVER`, `FLOE_BIN`) belong
/// to other tools.
fn is_setting_variable(name: &str) -> bool {
    name.split_once("__").is_some_and(|(section, _)| {
        SECTIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(section))
    })
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
