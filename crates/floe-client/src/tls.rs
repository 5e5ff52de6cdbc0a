//! [`TlsOptions`]: what a [`FloeClient`](crate::FloeClient) trusts and presents beyond the
//! system's root certificates. Only PEM is read here; the handshake is reqwest's (rustls on
//! ring, as the server's listener).

use std::error::Error as _;

use crate::ClientError;

/// TLS beyond the system's trusted roots, as PEM (the contents of `.pem`/`.crt`/`.key`
/// files). The default adds nothing: `https://` servers whose certificate chains to a
/// system root are reached either way.
///
/// `Debug` shows how many bytes each part holds, never the private key.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// CA certificates (one or more `CERTIFICATE` blocks) trusted besides the system's
    /// roots: a server whose certificate one of them signed is accepted.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key, presented to a server that asks for one (mutual
    /// TLS). A floe server started with `--tls-client-ca` takes the certificate's subject
    /// (`CN=alice,O=acme`) as the principal.
    pub identity: Option<ClientIdentity>,
}

/// A client certificate with its private key, each as PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The client's certificate first, then any intermediates towards the CA.
    pub cert_pem: Vec<u8>,
    /// The certificate's private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`)
    /// or SEC1 (`EC PRIVATE KEY`), unencrypted.
    pub key_pem: Vec<u8>,
}

impl TlsOptions {
    /// Adds the CA certificates and the identity to `builder`. PEM without a certificate
    /// or key where one belongs is refused here, naming the part; what only the TLS stack
    /// can judge (a key that does not match its certificate) fails when the client is
    /// built (see [`build_error`]).
    pub(crate) fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, ClientError> {
        if let Some(ca_pem) = &self.ca_pem {
            for certificate in certificates("CA certificates", ca_pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.parse()?);
        }
        Ok(builder)
    }
}

impl ClientIdentity {
    fn parse(&self) -> Result<reqwest::Identity, ClientError> {
        // Checked on its own first, so that a failure of the two together is the key's.
        certificates("client certificate", &self.cert_pem)?;
        // rustls wants the chain and the key in one buffer; a line break keeps a file
        // without a final newline from running into the next block.
        let mut pem = Vec::with_capacity(self.cert_pem.len() + 1 + self.key_pem.len());
        pem.extend_from_slice(&self.cert_pem);
        pem.push(b'\n');
        pem.extend_from_slice(&self.key_pem);
        reqwest::Identity::from_pem(&pem).map_err(|error| ClientError::Tls {
            part: "client key",
            reason: format!(
                "not an unencrypted PKCS#8, PKCS#1 or SEC1 private key in PEM ({})",
                innermost_reasons(&error)
            ),
        })
    }
}

/// Every `CERTIFICATE` block of `pem`; none at all is an error, as an empty trust list or
/// identity is never what was meant.
fn certificates(part: &'static str, pem: &[u8]) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let certificates =
        reqwest::Certificate::from_pem_bundle(pem).map_err(|error| tls_error(part, &error))?;
    if certificates.is_empty() {
        return Err(ClientError::Tls {
            part,
            reason: "no PEM certificate found".into(),
        });
    }
    Ok(certificates)
}

/// The error of building a client with TLS options: the TLS stack refused them (a CA
/// certificate that is not valid DER, a key that does not match its certificate).
pub(crate) fn build_error(error: &reqwest::Error) -> ClientError {
    tls_error("TLS setup", error)
}

fn tls_error(part: &'static str, error: &reqwest::Error) -> ClientError {
    ClientError::Tls {
        part,
        reason: innermost_reasons(error),
    }
}

/// reqwest's own words ("builder error") say less than its sources': those, joined.
fn innermost_reasons(error: &reqwest::Error) -> String {
    let mut reasons = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        reasons.push(cause.to_string());
        source = cause.source();
    }
    if reasons.is_empty() {
        return error.to_string();
    }
    reasons.join(": ")
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.as_deref().map(ByteCount))
            .field("identity", &self.identity)
            .finish()
    }
}

/// Written by hand so the private key never reaches a log or a panic message.
impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &ByteCount(&self.cert_pem))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Shows PEM as its length.
struct ByteCount<'a>(&'a [u8]);

impl std::fmt::Debug for ByteCount<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}
