//! TLS on the listener (rustls): a certificate and key from files, re-read when they
//! change, and optionally a client CA for mutual TLS, whose verified certificates name the
//! request's principal (their subject, as Kafka's SSL principals do).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// How often the certificate and key files are checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The subject of a verified client certificate: the principal of mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert(pub String);

/// The listener's certificate, swapped when its files change.
#[derive(Debug)]
struct ReloadingCert {
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|error| anyhow::anyhow!("{}: {error}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| anyhow::anyhow!("{}: {error}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}: no certificate in it",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| anyhow::anyhow!("{}: {error}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| anyhow::anyhow!("the private key: {error}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|error| anyhow::anyhow!("certificate and key do not belong together: {error}"))?;
    Ok(certified)
}

fn stamp(paths: &[&Path]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|path| {
            std::fs::metadata(path)
                .and_then(|meta| Ok((meta.modified()?, meta.len())))
                .ok()
        })
        .collect()
}

/// Builds the acceptor (an error at start if the files are missing or do not match) and
/// starts watching the certificate and key for changes.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let provider = provider();
    let resolver = Arc::new(ReloadingCert {
        current: parking_lot::RwLock::new(Arc::new(load_key(cert, key, &provider)?)),
    });
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| anyhow::anyhow!("TLS versions: {error}"))?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(path)
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?
            {
                let ca = ca.map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
                roots
                    .add(ca)
                    .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            }
            // A client without a certificate may still present a bearer token; the
            // authentication layer answers 401 when it has neither.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|error| anyhow::anyhow!("client CA: {error}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (cert, key): (PathBuf, PathBuf) = (cert.to_owned(), key.to_owned());
    let weak = Arc::downgrade(&resolver);
    tokio::spawn(async move {
        let mut seen = stamp(&[&cert, &key]);
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let Some(resolver) = weak.upgrade() else {
                return;
            };
            let now = stamp(&[&cert, &key]);
            if now == seen {
                continue;
            }
            match load_key(&cert, &key, &provider) {
                Ok(certified) => {
                    *resolver.current.write() = Arc::new(certified);
                    seen = now;
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                }
                // A half-written pair is retried on the next check.
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate changed but does not load yet; the previous one stays")
                }
            }
        }
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject of a client certificate as `CN=alice,O=acme` (Kafka's form of an SSL
/// principal), or `None` when it does not parse.
pub fn subject(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let parts: Vec<String> = parsed
        .subject()
        .iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .filter_map(|attribute| {
            let name = x509_parser::objects::oid2abbrev(
                attribute.attr_type(),
                x509_parser::objects::oid_registry(),
            )
            .map(str::to_owned)
            .unwrap_or_else(|_| attribute.attr_type().to_id_string());
            let value = attribute.as_str().ok()?;
            Some(format!("{name}={value}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}
