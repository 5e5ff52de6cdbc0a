//! JWTs from an OIDC issuer: signed by a key of the issuer's JWKS (a file re-read when it
//! changes, or a URL fetched at start, refreshed on a period and when a token names a key
//! not yet seen), from the configured issuer, for the configured audience, not expired
//! (with a clock skew), the principal one of its claims (`sub` by default).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::time::Instant;

/// The largest JWKS document read, and the most keys kept from it.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const MAX_KEYS: usize = 100;
/// A token naming an unknown key fetches the JWKS URL again, at most this often.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// Retry of a JWKS URL that could not be fetched.
const RETRY_FETCH_EVERY: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a JWKS file is checked for changes.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// What a JWT must be to name a principal.
#[derive(Debug, Clone)]
pub struct JwtOptions {
    pub issuer: String,
    pub audience: String,
    pub principal_claim: String,
    pub clock_skew: Duration,
    pub source: JwksSource,
    /// How often a JWKS URL is fetched again.
    pub refresh: Duration,
    /// Extra CA certificates (PEM) trusted when fetching a JWKS URL.
    pub ca_pem: Option<Vec<u8>>,
}

/// Why a JWT names no principal: said in the `401`, never with the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Expired,
    NotYetValid,
    /// No signing key of the issuer matches (none loaded yet, or the token's `kid` is
    /// unknown even after the JWKS was fetched again).
    UnknownKey,
    Invalid(String),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("the token is not valid yet"),
            Self::UnknownKey => f.write_str("the token is not signed by a key of the issuer"),
            Self::Invalid(reason) => write!(f, "the token is not valid: {reason}"),
        }
    }
}

/// One usable signing key.
struct Key {
    id: Option<String>,
    /// The algorithm the JWKS pins the key to, if it does.
    algorithm: Option<Algorithm>,
    /// The algorithms its type can verify.
    family: &'static [Algorithm],
    key: DecodingKey,
}

const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const OKP: &[Algorithm] = &[Algorithm::EdDSA];

/// Parses a JWKS document into its signing keys. Keys of another use, symmetric keys
/// (an issuer never publishes those) and keys this server cannot read are skipped, so one
/// odd key does not take the others with it; a document with none left is an error.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("over {MAX_JWKS_BYTES} bytes"));
    }
    let document: Document =
        serde_json::from_slice(bytes).map_err(|error| format!("not a JWKS document: {error}"))?;
    let mut keys = Vec::new();
    for value in document.keys.into_iter().take(MAX_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA,
            AlgorithmParameters::EllipticCurve(_) => EC,
            AlgorithmParameters::OctetKeyPair(_) => OKP,
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let algorithm = match jwk.common.key_algorithm {
            Some(pinned) => match pinned.to_string().parse::<Algorithm>() {
                Ok(algorithm) if family.contains(&algorithm) => Some(algorithm),
                _ => continue,
            },
            None => None,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            id: jwk.common.key_id.clone(),
            algorithm,
            family,
            key,
        });
    }
    if keys.is_empty() {
        return Err("no signing key this server can use (RSA, EC P-256/P-384 or Ed25519)".into());
    }
    Ok(keys)
}

/// Verifies JWTs against the issuer's keys.
pub struct JwtVerifier {
    options: JwtOptions,
    keys: parking_lot::RwLock<Arc<Vec<Key>>>,
    /// One fetch of a JWKS URL at a time.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch started: a token naming an unknown key fetches again only if
    /// this is long enough ago (checked and stamped at once).
    last_fetch: parking_lot::Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.options.issuer)
            .field("audience", &self.options.audience)
            .field("keys", &self.keys.read().len())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the keys (a JWKS file must parse at start; a URL that cannot be fetched yet
    /// is retried in the background, and tokens are refused until it is) and keeps them
    /// current.
    pub async fn start(options: JwtOptions) -> anyhow::Result<Arc<Self>> {
        let mut http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT);
        if let Some(pem) = &options.ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                http = http.add_root_certificate(certificate);
            }
        }
        let verifier = Arc::new(Self {
            keys: parking_lot::RwLock::new(Arc::new(Vec::new())),
            fetching: tokio::sync::Mutex::new(()),
            last_fetch: parking_lot::Mutex::new(None),
            http: http.build()?,
            options,
        });
        let weak = Arc::downgrade(&verifier);
        match verifier.options.source.clone() {
            JwksSource::File(path) => {
                let mut seen = file_stamp(&path);
                let keys = std::fs::read(&path)
                    .map_err(|error| error.to_string())
                    .and_then(|bytes| parse_jwks(&bytes))
                    .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
                tracing::info!(keys = keys.len(), file = %path.display(), "JWT signing keys loaded");
                *verifier.keys.write() = Arc::new(keys);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(FILE_CHECK_EVERY).await;
                        let Some(verifier) = weak.upgrade() else {
                            return;
                        };
                        let stamp = file_stamp(&path);
                        if stamp == seen {
                            continue;
                        }
                        seen = stamp;
                        match std::fs::read(&path)
                            .map_err(|error| error.to_string())
                            .and_then(|bytes| parse_jwks(&bytes))
                        {
                            Ok(keys) => {
                                tracing::info!(keys = keys.len(), file = %path.display(), "JWT signing keys reloaded");
                                *verifier.keys.write() = Arc::new(keys);
                            }
                            Err(error) => tracing::error!(
                                %error, file = %path.display(),
                                "JWKS file changed but does not parse; the previous keys stay in force"
                            ),
                        }
                    }
                });
            }
            JwksSource::Url(_) => {
                if let Err(error) = verifier.fetch().await {
                    tracing::error!(%error, "JWT signing keys not fetched yet; JWTs are refused until they are");
                }
                tokio::spawn(async move {
                    loop {
                        let Some(verifier) = weak.upgrade() else {
                            return;
                        };
                        let wait = if verifier.keys.read().is_empty() {
                            RETRY_FETCH_EVERY
                        } else {
                            verifier.options.refresh
                        };
                        drop(verifier);
                        tokio::time::sleep(wait).await;
                        let Some(verifier) = weak.upgrade() else {
                            return;
                        };
                        if let Err(error) = verifier.fetch().await {
                            tracing::error!(%error, "JWT signing keys not fetched; the previous keys stay in force");
                        }
                    }
                });
            }
        }
        Ok(verifier)
    }

    /// Fetches the JWKS URL (one fetch at a time) and installs its keys.
    async fn fetch(&self) -> Result<(), String> {
        let JwksSource::Url(url) = &self.options.source else {
            return Ok(());
        };
        let _single = self.fetching.lock().await;
        *self.last_fetch.lock() = Some(Instant::now());
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("{url}: {error}"))?;
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("{url}: over {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| format!("{url}: {error}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("{url}: over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body).map_err(|error| format!("{url}: {error}"))?;
        tracing::info!(keys = keys.len(), %url, "JWT signing keys fetched");
        *self.keys.write() = Arc::new(keys);
        Ok(())
    }

    /// Whether `token` has a JWT's shape (three base64url parts): such bearer tokens are
    /// verified here, others looked up in the tokens file.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("ey")
    }

    /// The principal `token` names, or why it names none.
    pub async fn verify(&self, token: &str) -> Result<String, JwtError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| JwtError::Invalid(format!("malformed header: {error}")))?;
        let pick = |keys: &[Key]| -> Option<usize> {
            let usable = |key: &Key| {
                key.family.contains(&header.alg)
                    && key.algorithm.is_none_or(|pinned| pinned == header.alg)
            };
            match &header.kid {
                Some(kid) => keys
                    .iter()
                    .position(|key| key.id.as_deref() == Some(kid.as_str()) && usable(key)),
                None => {
                    let mut candidates = keys.iter().enumerate().filter(|(_, key)| usable(key));
                    match (candidates.next(), candidates.next()) {
                        (Some((index, _)), None) => Some(index),
                        _ => None,
                    }
                }
            }
        };
        if !RSA.contains(&header.alg) && !EC.contains(&header.alg) && !OKP.contains(&header.alg) {
            return Err(JwtError::Invalid(format!(
                "algorithm {:?} is not accepted (an issuer signs with a public key)",
                header.alg
            )));
        }
        let mut keys = Arc::clone(&self.keys.read());
        let mut index = pick(&keys);
        if index.is_none() && matches!(self.options.source, JwksSource::Url(_)) {
            // Perhaps the issuer rotated its keys: fetch them again, at most so often.
            let due = {
                let mut last = self.last_fetch.lock();
                let due = last.is_none_or(|last| last.elapsed() >= REFETCH_AT_MOST_EVERY);
                if due {
                    *last = Some(Instant::now());
                }
                due
            };
            if due {
                if let Err(error) = self.fetch().await {
                    tracing::warn!(%error, "JWT signing keys not fetched again");
                }
                keys = Arc::clone(&self.keys.read());
                index = pick(&keys);
            }
        }
        let Some(index) = index else {
            return Err(JwtError::UnknownKey);
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.options.issuer]);
        validation.set_audience(&[&self.options.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.options.clock_skew.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &keys[index].key,
            &validation,
        )
        .map_err(|error| match error.kind() {
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::Invalid("wrong issuer".into()),
            ErrorKind::InvalidAudience => JwtError::Invalid("wrong audience".into()),
            ErrorKind::InvalidSignature => JwtError::Invalid("bad signature".into()),
            ErrorKind::MissingRequiredClaim(claim) => {
                JwtError::Invalid(format!("no {claim} claim"))
            }
            _ => JwtError::Invalid("malformed".into()),
        })?;
        let claim = &self.options.principal_claim;
        match data.claims.get(claim) {
            Some(serde_json::Value::String(principal))
                if !principal.is_empty() && principal.len() <= floe_core::acl::MAX_ACL_NAME =>
            {
                Ok(principal.clone())
            }
            _ => Err(JwtError::Invalid(format!(
                "claim {claim:?} is not a principal name (a string of 1 to {} bytes)",
                floe_core::acl::MAX_ACL_NAME
            ))),
        }
    }
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .and_then(|meta| Ok((meta.modified()?, meta.len())))
        .ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use super::*;

    /// An issuer's P-256 key: what signs, and its JWK.
    fn issuer_key(kid: &str) -> (EncodingKey, serde_json::Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("parse");
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    fn sign(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    }

    fn claims(exp_from_now: i64) -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        serde_json::json!({
            "iss": "https://idp.example", "aud": ["floe", "other"], "sub": "alice",
            "email": "alice@example.com", "exp": now + exp_from_now, "iat": now,
        })
    }

    async fn verifier(
        dir: &tempfile::TempDir,
        keys: &[serde_json::Value],
        claim: &str,
    ) -> Arc<JwtVerifier> {
        let path = dir.path().join("jwks.json");
        // A key for encryption, a symmetric key and one of an unknown algorithm are
        // skipped, not fatal.
        let mut all = keys.to_vec();
        all.push(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}));
        all.push(serde_json::json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}));
        all.push(
            serde_json::json!({"kty": "EC", "alg": "ES999", "crv": "P-256", "x": "", "y": ""}),
        );
        std::fs::write(&path, serde_json::json!({ "keys": all }).to_string()).expect("write");
        JwtVerifier::start(JwtOptions {
            issuer: "https://idp.example".into(),
            audience: "floe".into(),
            principal_claim: claim.into(),
            clock_skew: Duration::from_secs(30),
            source: JwksSource::File(path),
            refresh: Duration::from_secs(300),
            ca_pem: None,
        })
        .await
        .expect("start")
    }

    #[tokio::test]
    async fn a_valid_token_names_its_subject_and_a_bad_one_says_why() {
        let dir = tempfile::tempdir().expect("dir");
        let (key, jwk) = issuer_key("k1");
        let (other, _) = issuer_key("k1");
        let verifier = verifier(&dir, &[jwk], "sub").await;
        let token = sign(&key, "k1", claims(600));
        assert!(JwtVerifier::looks_like_jwt(&token));
        assert_eq!(verifier.verify(&token).await.as_deref(), Ok("alice"));
        // Expired beyond the skew; expired within it still passes.
        assert_eq!(
            verifier.verify(&sign(&key, "k1", claims(-120))).await,
            Err(JwtError::Expired)
        );
        assert_eq!(
            verifier
                .verify(&sign(&key, "k1", claims(-10)))
                .await
                .as_deref(),
            Ok("alice")
        );
        let mut wrong_issuer = claims(600);
        wrong_issuer["iss"] = "https://evil.example".into();
        let mut wrong_audience = claims(600);
        wrong_audience["aud"] = "someone-else".into();
        let mut no_audience = claims(600);
        no_audience.as_object_mut().expect("object").remove("aud");
        let mut not_yet = claims(600);
        not_yet["nbf"] = (jsonwebtoken::get_current_timestamp() + 3600).into();
        let mut numeric_subject = claims(600);
        numeric_subject["sub"] = 42.into();
        for (token, expected) in [
            (sign(&key, "k1", wrong_issuer), "wrong issuer"),
            (sign(&key, "k1", wrong_audience), "wrong audience"),
            (sign(&key, "k1", no_audience), "no aud claim"),
            (sign(&key, "k1", numeric_subject), "not a principal name"),
            (sign(&other, "k1", claims(600)), "bad signature"),
        ] {
            let error = verifier.verify(&token).await.expect_err(expected);
            assert!(error.to_string().contains(expected), "{error}");
        }
        assert_eq!(
            verifier.verify(&sign(&key, "k1", not_yet)).await,
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            verifier.verify(&sign(&key, "k2", claims(600))).await,
            Err(JwtError::UnknownKey)
        );
        // A symmetric token (the classic key-confusion attack) is refused outright.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(600),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("sign");
        let error = verifier.verify(&hs).await.expect_err("HS256");
        assert!(error.to_string().contains("not accepted"), "{error}");
    }

    #[tokio::test]
    async fn the_principal_claim_is_configurable_and_rotated_keys_load() {
        let dir = tempfile::tempdir().expect("dir");
        let (key, jwk) = issuer_key("k1");
        let verifier = verifier(&dir, &[jwk], "email").await;
        assert_eq!(
            verifier
                .verify(&sign(&key, "k1", claims(600)))
                .await
                .as_deref(),
            Ok("alice@example.com")
        );
        // The issuer rotates: the file gains k2, and k2's tokens pass once it is re-read.
        let (next, next_jwk) = issuer_key("k2");
        let (_, old_jwk) = issuer_key("k1");
        let path = dir.path().join("jwks.json");
        std::fs::write(
            &path,
            serde_json::json!({ "keys": [old_jwk, next_jwk, {"kty": "EC"}] }).to_string(),
        )
        .expect("rewrite");
        let token = sign(&next, "k2", claims(600));
        let mut verified = Err(JwtError::UnknownKey);
        for _ in 0..50 {
            verified = verifier.verify(&token).await;
            if verified.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(verified.as_deref(), Ok("alice@example.com"));
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"YQ"}]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
