//! The `[cluster]` section of `floe.toml`: whether this broker runs the embedded
//! sequencer or joins a cluster through etcd, and how.

use std::path::PathBuf;
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
    /// PEM CA certificates etcd's server certificate must chain to: etcd is reached over
    /// TLS (`https://` added to endpoints without a scheme).
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to etcd (its `--client-cert-auth`), with
    /// `etcd_key_file`.
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of `etcd_cert_file`.
    pub etcd_key_file: Option<PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            name: "floe".into(),
            etcd: None,
            lease_ttl: Duration::from_secs(5),
            compact_etcd: true,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
        }
    }
}

/// TLS to etcd: the CA its certificate chains to (the system's roots otherwise) and the
/// client certificate and key, PEM.
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl EtcdTls {
    /// The etcd client's TLS options.
    pub fn options(&self) -> etcd_client::TlsOptions {
        let mut options = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            options = options.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            options = options.identity(etcd_client::Identity::from_pem(cert, key));
        }
        options
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
                } else if self.etcd_tls_on() {
                    format!("https://{endpoint}")
                } else {
                    format!("http://{endpoint}")
                }
            })
            .collect();
        (!endpoints.is_empty()).then_some(endpoints)
    }

    fn etcd_tls_on(&self) -> bool {
        self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some()
    }

    /// TLS to etcd, its files read; `None` without it.
    pub fn etcd_tls(&self) -> Result<Option<EtcdTls>, String> {
        if !self.etcd_tls_on() {
            return Ok(None);
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))
        };
        let ca_pem = self.etcd_ca_file.as_ref().map(read).transpose()?;
        let identity = match (&self.etcd_cert_file, &self.etcd_key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        Ok(Some(EtcdTls { ca_pem, identity }))
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
        if self.etcd_cert_file.is_some() && self.etcd_ca_file.is_none() {
            return Err(InvalidSetting::new(
                "etcd_ca_file",
                "TLS to etcd needs the CA its certificate chains to",
            ));
        }
        if self.etcd_cert_file.is_some() != self.etcd_key_file.is_some() {
            return Err(InvalidSetting::new(
                "etcd_cert_file",
                "etcd_cert_file and etcd_key_file go together",
            ));
        }
        if self.etcd_tls_on()
            && self
                .etcd_endpoints()
                .is_some_and(|endpoints| endpoints.iter().any(|e| e.starts_with("http://")))
        {
            return Err(InvalidSetting::new(
                "etcd",
                "TLS to etcd is configured (etcd_ca_file or etcd_cert_file) but an endpoint \
                 is http://",
            ));
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
