//! The `[cluster]` section of `floe.toml`: whether this broker runs the embedded
//! sequencer or joins a cluster through etcd, and how.

use std::time::Duration;

use floe_core::InvalidSetting;
use serde::{Deserialize, Serialize};

/// How a broker finds its cluster. With `etcd` unset the sequencer is embedded (a
/// cluster of one, its log in the data directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Cluster name: brokers with the same etcd and name form one cluster (keys under
    /// `/floe/<name>/`).
    pub name: String,
    /// etcd client URLs, comma-separated (`http://` added when missing). Set: join the
    /// cluster with the sequencer on etcd. Unset: the embedded sequencer.
    pub etcd: Option<String>,
    /// TTL of the broker's registration and of the sequencer leadership; whole seconds.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Compact etcd's revision history behind each sequencer snapshot.
    pub compact_etcd: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            name: "floe".into(),
            etcd: None,
            lease_ttl: Duration::from_secs(5),
            compact_etcd: true,
        }
    }
}

impl ClusterSettings {
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

    /// Refuses values a cluster cannot work with, naming the setting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.name.is_empty() || self.name.contains('/') {
            return Err(InvalidSetting::new(
                "name",
                format!("{:?} must be non-empty and without '/'", self.name),
            ));
        }
        let clustered = self.etcd.is_some();
        if clustered
            && (self.lease_ttl < Duration::from_secs(1) || self.lease_ttl.subsec_nanos() != 0)
        {
            return Err(InvalidSetting::new(
                "lease_ttl",
                "must be a whole number of seconds, at least 1s (etcd leases have second \
                 granularity)",
            ));
        }
        if self.etcd.is_some() && self.etcd_endpoints().is_none() {
            return Err(InvalidSetting::new("etcd", "names no endpoint"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_blanks_are_dropped() {
        let settings = ClusterSettings {
            etcd: Some("a:2379, http://b:2379,,".into()),
            ..ClusterSettings::default()
        };
        assert_eq!(
            settings.etcd_endpoints(),
            Some(vec!["http://a:2379".into(), "http://b:2379".into()])
        );
        assert!(settings.validate().is_ok());
        let blank = ClusterSettings {
            etcd: Some(" , ".into()),
            ..ClusterSettings::default()
        };
        assert_eq!(blank.validate().expect_err("blank").key, "etcd");
        let fractional = ClusterSettings {
            etcd: Some("a:2379".into()),
            lease_ttl: Duration::from_millis(1500),
            ..ClusterSettings::default()
        };
        assert_eq!(fractional.validate().expect_err("1.5s").key, "lease_ttl");
        let embedded = ClusterSettings {
            etcd: None,
            ..fractional
        };
        assert!(
            embedded.validate().is_ok(),
            "the lease is a cluster's setting"
        );
    }
}
