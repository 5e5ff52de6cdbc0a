//! The flags of `floe serve`: the handful of settings users type, each naming the key it
//! sets. Defaults and meanings live on the settings themselves (their options structs and
//! `docs/configuration.md`); a flag only overrides.

use std::path::PathBuf;

use clap::Args;

/// Declares the flags and the key each sets, in one list.
macro_rules! serve_flags {
    ($( $(#[doc = $doc:expr])* $([arg $($arg:tt)*])? $field:ident : $ty:ty => $key:literal, )*) => {
        /// Flags of `floe serve`; each overrides the config file and the environment.
        #[derive(Debug, Default, Args)]
        pub struct ServeArgs {
            /// TOML config file (see docs/configuration.md).
            #[arg(long, env = "FLOE_CONFIG")]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg(long $(, $($arg)*)?)]
                pub $field: Option<$ty>,
            )*
        }

        impl ServeArgs {
            /// Every flag (its field name) and the key it sets.
            pub const KEYS: &[(&str, &str)] = &[$((stringify!($field), $key)),*];

            /// The settings the given flags override, as dotted keys and values.
            pub fn settings(&self) -> Vec<(&'static str, serde_json::Value)> {
                let mut settings = Vec::new();
                $(
                    if let Some(value) = &self.$field {
                        settings.push(($key, serde_json::json!(value)));
                    }
                )*
                settings
            }
        }
    };
}

serve_flags! {
    /// Address to listen on.
    listen: String => "server.listen",
    /// Data directory.
    data_dir: PathBuf => "server.data_dir",
    /// Address other brokers and clients reach this broker at.
    advertise: String => "server.advertise",
    /// A separate address for the routes brokers call on each other.
    internal_listen: String => "server.internal_listen",
    /// Address other brokers reach --internal-listen at.
    internal_advertise: String => "server.internal_advertise",
    /// PEM CA of other brokers' certificates (brokers calling each other over TLS).
    peer_ca: PathBuf => "server.peer_ca_file",
    /// Log format: text or json.
    log_format: String => "server.log_format",
    /// Object store URL: file://DIR, s3://BUCKET/PREFIX or memory://.
    store: String => "store.url",
    /// S3-compatible endpoint URL.
    s3_endpoint: String => "store.s3_endpoint",
    /// S3 region.
    s3_region: String => "store.s3_region",
    /// Path-style S3 requests.
    s3_path_style: bool => "store.s3_path_style",
    /// PEM CA certificates trusted for the S3 endpoint.
    s3_ca: PathBuf => "store.s3_ca_file",
    /// This broker's id, unique in its cluster.
    broker_id: String => "broker.id",
    /// Flush the open segment after this long, e.g. 5ms, 250ms.
    linger: String => "broker.linger",
    /// Flush as soon as the pipeline is idle (true) or only on linger and size (false).
    [arg num_args = 0..=1, default_missing_value = "true"]
    flush_when_idle: bool => "broker.flush_when_idle",
    /// Shortest time between two idle flushes, e.g. 0ms, 100ms.
    min_flush_interval: String => "broker.min_flush_interval",
    /// Flush the open segment at this many bytes.
    segment_max_bytes: usize => "broker.segment_max_bytes",
    /// Uncommitted bytes before produce answers 429.
    max_buffered_bytes: usize => "broker.max_buffered_bytes",
    /// Read cache memory in bytes.
    cache_memory_bytes: usize => "cache.memory_bytes",
    /// Read cache disk tier in bytes, 0 for none.
    cache_disk_bytes: usize => "cache.disk_bytes",
    /// Directory of the read cache's disk tier.
    cache_dir: PathBuf => "cache.dir",
    /// Read cache block: unit of caching and GET alignment.
    cache_block_bytes: u64 => "cache.block_bytes",
    /// Largest GET the read cache makes to fill missing blocks.
    cache_max_get_bytes: u64 => "cache.max_get_bytes",
    /// Sequencer log entries between snapshots.
    snapshot_every: u64 => "sequencer.snapshot_every",
    /// etcd endpoints, comma-separated: join a cluster instead of running embedded.
    etcd: String => "cluster.etcd",
    /// PEM CA certificates of etcd's server certificate: reach etcd over TLS.
    etcd_ca: PathBuf => "cluster.etcd_ca_file",
    /// Cluster name: brokers with the same etcd and name form one cluster.
    cluster: String => "cluster.name",
    /// Lease TTL of registration and sequencer leadership, e.g. 5s.
    lease_ttl: String => "cluster.lease_ttl",
    /// Run retention, object lifecycle and compaction jobs.
    background_jobs: bool => "jobs.enabled",
    /// How often retention checks partitions, e.g. 30s.
    retention_check_interval: String => "jobs.retention_interval",
    /// How often dead objects are deleted and orphans swept, e.g. 60s.
    lifecycle_interval: String => "jobs.lifecycle_interval",
    /// Grace before a dead or uncommitted object is deleted, e.g. 5m.
    object_grace: String => "jobs.object_grace",
    /// How often compaction checks partitions, e.g. 10s.
    compaction_interval: String => "jobs.compaction_interval",
    /// Age of a flushed object before compaction rewrites it, e.g. 10s.
    compaction_min_age: String => "jobs.compaction_min_age",
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    tls_cert: PathBuf => "server.tls_cert_file",
    /// PEM private key of --tls-cert.
    tls_key: PathBuf => "server.tls_key_file",
    /// PEM CA of client certificates (mutual TLS; the subject is the principal).
    tls_client_ca: PathBuf => "server.tls_client_ca_file",
    /// Bearer tokens file (principal:SHA256-HEX or principal:$argon2… a line): requests
    /// must authenticate and ACLs apply.
    auth_tokens: PathBuf => "auth.tokens_file",
    /// JWKS URL of an OIDC issuer: bearer JWTs it signs name principals (with --jwt-issuer
    /// and --jwt-audience).
    jwks_url: String => "auth.jwks_url",
    /// The `iss` a JWT must carry.
    jwt_issuer: String => "auth.jwt_issuer",
    /// The `aud` a JWT must include.
    jwt_audience: String => "auth.jwt_audience",
    /// Principals allowed everything, semicolon-separated (subjects hold commas).
    [arg value_delimiter = ';']
    super_users: Vec<String> => "auth.super_users",
    /// OTLP/HTTP collector to export traces to, e.g. http://otel-collector:4318.
    otlp_endpoint: String => "tracing.otlp_endpoint",
    /// Serve without authentication on a non-loopback address (logged as a warning).
    [arg num_args = 0..=1, default_missing_value = "true"]
    allow_anonymous: bool => "auth.allow_anonymous",
}
