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

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use floe_broker::{BrokerOptions, JobOptions};
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
}

/// The sections, in the order of `docs/configuration.md`: environment variables are
/// read only for these, so `FLOE_SERVER_URL`-style variables of other tools are ignored.
pub const SECTIONS: [&str; 7] = [
    "server",
    "store",
    "broker",
    "cache",
    "sequencer",
    "cluster",
    "jobs",
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
    /// `text` or `json` logs on stderr; the level comes from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./floe-data"),
            advertise: None,
            max_request_bytes: 32 * 1024 * 1024,
            log_format: LogFormat::Text,
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
        )
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
}

impl ServeConfig {
    /// Layers the sources: defaults, then the TOML file if given, then `FLOE_*` variables,
    /// then `flags` (dotted keys of the flags that were set), and validates the result.
    pub fn load(
        file: Option<&Path>,
        flags: &[(&'static str, serde_json::Value)],
    ) -> Result<Self, ConfigError> {
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
        self.jobs.validate().map_err(|e| e.in_section("jobs"))
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
