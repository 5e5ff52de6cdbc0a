//! An OIDC issuer for tests: a P-256 signing key (made with rcgen, as the TLS tests' keys),
//! its JWKS document, and tokens it signs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.floe.test";
pub const AUDIENCE: &str = "floe";

pub struct Issuer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    pub fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key_raw();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            kid: kid.to_owned(),
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk,
        }
    }

    /// The JWKS document of this issuer's key.
    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// A token for `subject`, for floe, expiring `expires_in` seconds from now (negative:
    /// already expired).
    pub fn token(&self, subject: &str, expires_in: i64) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject,
            "iat": now, "exp": now + expires_in,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}
