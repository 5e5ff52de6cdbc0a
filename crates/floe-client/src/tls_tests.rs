//! [`TlsOptions`] as [`FloeClient::with_tls`] takes them: good PEM builds a client, bad PEM
//! is an error naming the part, and the private key never shows in `Debug`. The handshake
//! itself is tested against a real `floe serve` (tests/tests/tls.rs).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::{ClientError, ClientIdentity, FloeClient, TlsOptions};

/// A CA's certificate, and a client certificate it signed with that certificate's key, as
/// PEM.
struct Material {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn material() -> Material {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, "alice");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
    Material {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn build(tls: &TlsOptions) -> Result<FloeClient, ClientError> {
    FloeClient::with_tls("https://127.0.0.1:1", None, tls)
}

fn identity(cert_pem: &str, key_pem: &str) -> Option<ClientIdentity> {
    Some(ClientIdentity {
        cert_pem: cert_pem.as_bytes().to_vec(),
        key_pem: key_pem.as_bytes().to_vec(),
    })
}

/// The part a refusal names, and its message.
fn refusal(tls: &TlsOptions) -> (&'static str, String) {
    match build(tls) {
        Err(error @ ClientError::Tls { part, .. }) => (part, error.to_string()),
        Err(other) => panic!("not a TLS error: {other}"),
        Ok(_) => panic!("built with {tls:?}"),
    }
}

#[test]
fn a_ca_bundle_and_a_client_identity_build_a_client() {
    let material = material();
    let other = self::material();
    // Several CAs in one file, files without a final newline: all taken.
    let bundle = format!("{}{}", material.ca_pem, other.ca_pem);
    let tls = TlsOptions {
        ca_pem: Some(bundle.trim_end().as_bytes().to_vec()),
        identity: identity(material.cert_pem.trim_end(), &material.key_pem),
    };
    build(&tls).expect("builds");
    build(&TlsOptions::default()).expect("builds without options");
}

#[test]
fn pem_without_what_belongs_in_it_is_refused_naming_the_part() {
    let material = material();
    let (part, message) = refusal(&TlsOptions {
        ca_pem: Some(b"not a certificate".to_vec()),
        identity: None,
    });
    assert_eq!(part, "CA certificates");
    assert!(message.contains("no PEM certificate"), "{message}");
    let (part, _) = refusal(&TlsOptions {
        ca_pem: Some(material.key_pem.as_bytes().to_vec()),
        identity: None,
    });
    assert_eq!(part, "CA certificates", "a key is no CA certificate");
    let (part, message) = refusal(&TlsOptions {
        ca_pem: Some(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec()),
        identity: None,
    });
    assert_eq!(part, "CA certificates", "{message}");

    let (part, _) = refusal(&TlsOptions {
        ca_pem: None,
        identity: identity(&material.key_pem, &material.key_pem),
    });
    assert_eq!(part, "client certificate");
    let (part, _) = refusal(&TlsOptions {
        ca_pem: None,
        identity: identity(&material.cert_pem, &material.cert_pem),
    });
    assert_eq!(part, "client key");
    let (part, _) = refusal(&TlsOptions {
        ca_pem: None,
        identity: identity(&material.cert_pem, ""),
    });
    assert_eq!(part, "client key");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_when_the_client_is_built() {
    let material = material();
    let stranger = self::material();
    let (part, message) = refusal(&TlsOptions {
        ca_pem: None,
        identity: identity(&material.cert_pem, &stranger.key_pem),
    });
    assert_eq!(part, "TLS setup");
    assert!(message.contains("KeyMismatch"), "{message}");
}

#[test]
fn the_private_key_never_shows_in_debug() {
    let material = material();
    let tls = TlsOptions {
        ca_pem: Some(material.ca_pem.as_bytes().to_vec()),
        identity: identity(&material.cert_pem, &material.key_pem),
    };
    let key_body = material
        .key_pem
        .lines()
        .nth(1)
        .expect("a base64 line of the key");
    let debug = format!("{tls:?}");
    assert!(!debug.contains(key_body), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let client = build(&tls).expect("builds");
    let debug = format!("{client:?}");
    assert!(!debug.contains(key_body), "{debug}");
}
