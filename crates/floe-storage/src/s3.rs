//! S3-compatible stores: the `object_store` client on the data path, and the AWS SDK where
//! `object_store` has no API (creating and checking a bucket).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::{BackoffConfig, ClientOptions, CredentialProvider, RetryConfig};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::segments::StorageError;
use crate::store::S3Options;

const DEFAULT_REGION: &str = "us-east-1";

fn endpoint(options: &S3Options) -> Option<String> {
    options
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|endpoint| !endpoint.is_empty())
}

fn region(options: &S3Options) -> String {
    options
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|region| !region.is_empty())
        .unwrap_or_else(|| DEFAULT_REGION.to_owned())
}

fn path_style(options: &S3Options, endpoint: Option<&str>) -> bool {
    options.path_style.unwrap_or(endpoint.is_some())
}

/// The CA file's PEM, when one is configured.
fn ca_pem(bucket: &str, options: &S3Options) -> Result<Option<Vec<u8>>, StorageError> {
    let Some(path) = &options.ca_file else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|error| {
        StorageError::Setup(format!(
            "s3://{bucket}: CA file {}: {error}",
            path.display()
        ))
    })
}

/// Builds the data-path client for `bucket`.
pub(crate) fn build(bucket: &str, options: &S3Options) -> Result<AmazonS3, StorageError> {
    let endpoint = endpoint(options);
    let mut client = ClientOptions::new()
        .with_timeout(options.request_timeout)
        .with_connect_timeout(options.connect_timeout)
        .with_allow_http(
            endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        );
    if let Some(pem) = ca_pem(bucket, options)? {
        let certificates = object_store::Certificate::from_pem_bundle(&pem)
            .map_err(|error| StorageError::Setup(format!("s3://{bucket}: CA file: {error}")))?;
        for certificate in certificates {
            client = client.with_root_certificate(certificate);
        }
    }
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(region(options))
        .with_virtual_hosted_style_request(!path_style(options, endpoint.as_deref()))
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: options.max_retries,
            retry_timeout: options.retry_timeout,
        })
        .with_client_options(client);
    if let Some(endpoint) = &endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    // Static keys in the environment are read by `from_env`; everything else (profile and
    // credentials files, SSO, web identity, container and instance roles) goes through the
    // AWS SDK's provider chain.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        builder = builder.with_credentials(Arc::new(SdkCredentials::default()));
    }
    builder
        .build()
        .map_err(|error| StorageError::Setup(format!("s3://{bucket}: {error}")))
}

/// Adapts the AWS SDK's default credential chain to `object_store`, caching credentials
/// until shortly before they expire.
#[derive(Debug, Default)]
struct SdkCredentials {
    chain: OnceCell<aws_credential_types::provider::SharedCredentialsProvider>,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    #[expect(
        clippy::disallowed_methods,
        reason = "credential expiry is a SystemTime from the AWS SDK; compared as such"
    )]
    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some((credential, expiry)) = self.cached.lock().clone() {
            let fresh =
                expiry.is_none_or(|expiry| SystemTime::now() + REFRESH_BEFORE_EXPIRY < expiry);
            if fresh {
                return Ok(credential);
            }
        }
        let chain = self
            .chain
            .get_or_try_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                config
                    .credentials_provider()
                    .ok_or_else(|| object_store::Error::Generic {
                        store: "S3",
                        source: "no AWS credentials: set AWS_ACCESS_KEY_ID and \
                                 AWS_SECRET_ACCESS_KEY, a profile, or an instance role"
                            .into(),
                    })
            })
            .await?;
        let credentials =
            chain
                .provide_credentials()
                .await
                .map_err(|error| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(error),
                })?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        *self.cached.lock() = Some((Arc::clone(&credential), credentials.expiry()));
        Ok(credential)
    }
}

/// What `init_bucket` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketInit {
    Created,
    AlreadyOwned,
}

/// Creates `bucket` if it is missing, then checks it answers and honours create-only puts.
/// Uses the AWS SDK with request checksums off, which S3-compatible servers often reject.
pub async fn init_bucket(
    bucket: &str,
    prefix: &str,
    options: &S3Options,
) -> Result<BucketInit, StorageError> {
    let endpoint = endpoint(options);
    let region = region(options);
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(region.clone()));
    if let Some(pem) = ca_pem(bucket, options)? {
        use aws_smithy_http_client::tls;
        let context = tls::TlsContext::builder()
            .with_trust_store(tls::TrustStore::default().with_pem_certificate(pem))
            .build()
            .map_err(|error| StorageError::Setup(format!("s3://{bucket}: CA file: {error}")))?;
        loader = loader.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context)
                .build_https(),
        );
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .force_path_style(path_style(options, endpoint.as_deref()));
    if let Some(endpoint) = &endpoint {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_s3::Client::from_conf(config.build());
    let fail =
        |what: &str, error: String| StorageError::Setup(format!("s3://{bucket}: {what}: {error}"));

    // Look first: in us-east-1, S3 answers a create of a bucket you already own with 200.
    let exists = client.head_bucket().bucket(bucket).send().await.is_ok();
    let mut create = client.create_bucket().bucket(bucket);
    if region != DEFAULT_REGION {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    region.as_str(),
                ))
                .build(),
        );
    }
    let outcome = if exists {
        BucketInit::AlreadyOwned
    } else {
        match create.send().await {
            Ok(_) => BucketInit::Created,
            Err(error) => match error.as_service_error() {
                Some(service) if service.is_bucket_already_owned_by_you() => {
                    BucketInit::AlreadyOwned
                }
                Some(service) if service.is_bucket_already_exists() => {
                    return Err(fail(
                        "create bucket",
                        "the name is taken by another account".into(),
                    ));
                }
                _ => return Err(fail("create bucket", display_sdk_error(&error))),
            },
        }
    };
    client
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|error| fail("head bucket", display_sdk_error(&error)))?;

    let key = format!(
        "{}_probe/{}",
        if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
        ulid::Ulid::new()
    );
    let put = |body: &'static [u8]| {
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .if_none_match("*")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
            .send()
    };
    put(b"first")
        .await
        .map_err(|error| fail("probe put", display_sdk_error(&error)))?;
    let second = put(b"second").await;
    let _ = client.delete_object().bucket(bucket).key(&key).send().await;
    match second {
        Err(error)
            if error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 412) =>
        {
            Ok(outcome)
        }
        Ok(_) => Err(fail(
            "create-only check",
            "the store overwrote an object despite If-None-Match: *".into(),
        )),
        Err(error) => Err(fail("create-only check", display_sdk_error(&error))),
    }
}

fn display_sdk_error<E: std::error::Error + 'static>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
