//! [`FloeClient`]: one method per `/v1` operation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

pub use crate::sse::EventStream;
use crate::tls::{self, TlsOptions};
use floe_api::Encoding;
use floe_api::binary::{self, BinaryFetch, BinaryRecord};
use floe_api::{
    AclJson, AclList, AclsChanged, AclsRequest, AddPartitionsRequest, AlterConfigRequest,
    ClusterInfo, CreateTopicRequest, ErrorBody, ExportStatus, FetchResponse, OWNER_HEADER,
    OffsetResponse, ProduceRecordJson, ProduceRequest, ProduceResponse, TopicDescription,
    TopicList,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{status} {}: {}", body.error_code, body.message)]
    Api {
        status: StatusCode,
        body: ErrorBody,
        retry_after: Option<Duration>,
    },
    #[error("could not decode response: {0}")]
    Decode(String),
    /// An event stream ended with an `error` event.
    #[error("stream ended: {}: {}", .0.error_code, .0.message)]
    Stream(ErrorBody),
    /// A group name or member id that no URL can carry: `.` and `..` are path steps.
    #[error("{what} {name:?} cannot be a URL path segment")]
    Unaddressable { what: &'static str, name: String },
    /// [`TlsOptions`] the client cannot use: PEM without a certificate or key where one
    /// belongs, or material the TLS stack refuses. `part` says which: `CA certificates`,
    /// `client certificate`, `client key` or, for what only shows when the parts come
    /// together (a key that does not match its certificate), `TLS setup`.
    #[error("{part}: {reason}")]
    Tls { part: &'static str, reason: String },
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Api { body, .. } | Self::Stream(body) => Some(&body.error_code),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: the server could not be reached or the
    /// connection broke, or it answered 429, 502, 503 or 504 (overloaded, restarting, a
    /// partition or group moving between brokers).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http(error) => {
                error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
            }
            Self::Api { status, .. } => matches!(status.as_u16(), 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Options of a fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
    pub wait: Option<Duration>,
    pub clamp: bool,
    pub encoding: Encoding,
}

/// Options of a group member's records call (`GET /v1/groups/{g}/members/{m}/records`).
#[derive(Debug, Clone, Default)]
pub struct GroupRecordsOptions {
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
    pub wait: Option<Duration>,
    pub encoding: Encoding,
    /// `commit=auto`: the server first commits what the member's previous records call
    /// returned.
    pub auto_commit: bool,
    /// The `ack` of the last answer received: an answer lost on the way is then read
    /// again instead of being committed unseen.
    pub ack: Option<u64>,
    /// The member epoch whose assignment the member has applied: partitions given later
    /// are not read until it has.
    pub member_epoch: Option<u64>,
}

/// A client of a floe cluster, reached through one server's URL.
///
/// Fetches prefer the partition's owner: every fetch answer names the owner's address
/// (header `floe-partition-owner`), and later fetches of that partition go there, where the
/// tail is warm. If the owner cannot be reached, the client forgets it and goes back to
/// the server it was given; any broker serves any fetch correctly.
///
/// With [`FloeClient::with_token`], every request, to the given server or to an owner,
/// carries `Authorization: Bearer TOKEN`.
///
/// `https://` servers are reached over TLS (rustls), trusting the system's root
/// certificates; [`FloeClient::with_tls`] trusts more CAs and presents a client
/// certificate, to a server with its own CA or one that wants mutual TLS:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use floe_client::{ClientIdentity, FloeClient, TlsOptions};
///
/// let tls = TlsOptions {
///     ca_pem: Some(std::fs::read("ca.pem")?),
///     identity: Some(ClientIdentity {
///         cert_pem: std::fs::read("alice.pem")?,
///         key_pem: std::fs::read("alice.key")?,
///     }),
/// };
/// let client = FloeClient::with_tls("https://floe.internal:8080", None, &tls)?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FloeClient {
    base: String,
    http: reqwest::Client,
    owners: Arc<Mutex<HashMap<(String, u32), String>>>,
    prefer_owner: bool,
    token: Option<BearerToken>,
    /// Produce requests carry an idempotent producer's sequence and are retried (the
    /// default).
    pub(crate) idempotent: bool,
    pub(crate) retry: crate::idempotent::RetryPolicy,
    pub(crate) producers: Arc<crate::idempotent::Producers>,
}

/// The `Authorization` value of a bearer token. Its `Debug` never shows the token, and the
/// header is marked sensitive so the HTTP stack does not log it either.
#[derive(Clone)]
struct BearerToken(Result<HeaderValue, UnusableToken>);

/// A token no header can carry (a control character, say): requests that would carry it
/// fail before they are sent, rather than go out unauthenticated.
#[derive(Clone)]
struct UnusableToken;

impl BearerToken {
    fn new(token: &str) -> Self {
        let header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map(|mut value| {
                value.set_sensitive(true);
                value
            })
            .map_err(|_| UnusableToken);
        Self(header)
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.0 {
            Ok(value) => request.header(AUTHORIZATION, value.clone()),
            // reqwest keeps the refused value's error and returns it from `send`; a bare
            // control character is refused without naming the token.
            Err(UnusableToken) => request.header(AUTHORIZATION, "\n"),
        }
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt("<redacted>", f)
    }
}

impl FloeClient {
    /// `base` is the server's root URL, such as `http://127.0.0.1:8080`. Requests have no
    /// overall deadline; see [`FloeClient::with_timeout`].
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_tls(base, None, &TlsOptions::default())
            .expect("a client without TLS options always builds")
    }

    /// Like [`FloeClient::new`], with every request (connect, send, read the answer)
    /// bounded by `timeout`. A long-poll's `wait` must fit inside it.
    pub fn with_timeout(base: impl Into<String>, timeout: Duration) -> Self {
        Self::with_tls(base, Some(timeout), &TlsOptions::default())
            .expect("a client without TLS options always builds")
    }

    /// A client that also trusts `tls.ca_pem` and presents `tls.identity`, its requests
    /// bounded by `timeout` if there is one. PEM that holds no certificate (or key) where
    /// one belongs, or that the TLS stack refuses, is a [`ClientError::Tls`] naming the
    /// part.
    pub fn with_tls(
        base: impl Into<String>,
        timeout: Option<Duration>,
        tls: &TlsOptions,
    ) -> Result<Self, ClientError> {
        // floe closes connections idle for its header timeout (10 s by default): drop
        // them from the pool before that.
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(timeout) = timeout {
            builder = builder
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)));
        }
        let http = tls
            .apply(builder)?
            .build()
            .map_err(|error| tls::build_error(&error))?;
        Ok(Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http,
            owners: Arc::default(),
            prefer_owner: true,
            token: None,
            idempotent: true,
            retry: crate::idempotent::RetryPolicy::default(),
            producers: Arc::default(),
        })
    }

    /// Produces without an idempotent producer and without retries: a lost answer is an
    /// error, and the records may or may not have been written.
    pub fn without_idempotence(mut self) -> Self {
        self.idempotent = false;
        self
    }

    /// How produce requests are retried (idempotent producers only).
    pub fn with_retry(mut self, retry: crate::idempotent::RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends every request to the given server, never to partition owners.
    pub fn without_owner_routing(mut self) -> Self {
        self.prefer_owner = false;
        self
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(BearerToken::new(&token.into()));
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_at(&self.base, method, path)
    }

    /// Every request the client sends is built here, so every one carries the token.
    fn request_at(&self, base: &str, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{base}{path}"));
        match &self.token {
            Some(token) => token.authorize(request),
            None => request,
        }
    }

    /// The server a fetch of this partition goes to: its owner when known.
    pub fn fetch_target(&self, topic: &str, partition: u32) -> String {
        if !self.prefer_owner {
            return self.base.clone();
        }
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .cloned()
            .unwrap_or_else(|| self.base.clone())
    }

    /// Sends a fetch-like request to the partition's owner (or the given server), falls
    /// back to the given server if the owner is unreachable, and learns the owner from the
    /// answer.
    async fn send_routed(
        &self,
        topic: &str,
        partition: u32,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let target = self.fetch_target(topic, partition);
        let response = match build(&target).send().await {
            Ok(response) => response,
            Err(error) if target != self.base && (error.is_connect() || error.is_timeout()) => {
                self.learn_owner(topic, partition, None);
                build(&self.base).send().await?
            }
            Err(error) => return Err(error.into()),
        };
        let owner = response
            .headers()
            .get(OWNER_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(|owner| owner.trim_end_matches('/').to_owned());
        if owner.is_some() {
            self.learn_owner(topic, partition, owner);
        }
        Ok(response)
    }

    fn learn_owner(&self, topic: &str, partition: u32, owner: Option<String>) {
        if !self.prefer_owner {
            return;
        }
        let mut owners = self
            .owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (topic.to_owned(), partition);
        match owner {
            Some(owner) => owners.insert(key, owner),
            None => owners.remove(&key),
        };
    }

    pub async fn list_topics(&self) -> Result<TopicList, ClientError> {
        json(self.request(Method::GET, "/v1/topics").send().await?).await
    }

    pub async fn create_topic(
        &self,
        request: &CreateTopicRequest,
    ) -> Result<TopicDescription, ClientError> {
        json(
            self.request(Method::POST, "/v1/topics")
                .json(request)
                .send()
                .await?,
        )
        .await
    }

    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, ClientError> {
        json(
            self.request(Method::GET, &format!("/v1/topics/{topic}"))
                .send()
                .await?,
        )
        .await
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let response = self
            .request(Method::DELETE, &format!("/v1/topics/{topic}"))
            .send()
            .await?;
        check(response).await.map(|_| ())
    }

    pub async fn add_partitions(
        &self,
        topic: &str,
        count: u32,
    ) -> Result<TopicDescription, ClientError> {
        let path = format!("/v1/topics/{topic}/partitions");
        json(
            self.request(Method::POST, &path)
                .json(&AddPartitionsRequest { count })
                .send()
                .await?,
        )
        .await
    }

    /// Changes a topic's config incrementally: keys in `set` take their values, keys in
    /// `reset` go back to their defaults, all or nothing. Answers the topic as changed.
    pub async fn alter_topic_config(
        &self,
        topic: &str,
        set: BTreeMap<String, serde_json::Value>,
        reset: Vec<String>,
    ) -> Result<TopicDescription, ClientError> {
        let path = format!("/v1/topics/{topic}/config");
        json(
            self.request(Method::PATCH, &path)
                .json(&AlterConfigRequest { set, reset })
                .send()
                .await?,
        )
        .await
    }

    /// The topic's Parquet export: its settings and each partition's progress.
    pub async fn export_status(&self, topic: &str) -> Result<ExportStatus, ClientError> {
        let path = format!("/v1/topics/{topic}/export");
        json(self.request(Method::GET, &path).send().await?).await
    }

    /// Produces JSON records, each with its own partition or none.
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecordJson>,
        encoding: Encoding,
    ) -> Result<ProduceResponse, ClientError> {
        let path = format!("/v1/topics/{topic}/records?encoding={}", encoding.as_str());
        let body = self
            .send_idempotent(|producer| {
                self.request(Method::POST, &path)
                    .json(&crate::idempotent::IdempotentProduce {
                        records: &records,
                        producer_id: producer.map(|(p, _)| p.producer_id),
                        producer_epoch: producer.map(|(p, _)| p.producer_epoch),
                        sequence: producer.map(|(_, sequence)| sequence),
                    })
            })
            .await?;
        serde_json::from_slice(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Appends records to one partition only if its next offset is `expected_next_offset`
    /// when they commit (a conditional append: `412 offset_mismatch` otherwise, with the
    /// actual next offset as the error's `high_watermark`). Not retried: a writer that
    /// lost the answer reads the partition's end to learn whether it won.
    pub async fn produce_if_next_offset(
        &self,
        topic: &str,
        partition: u32,
        expected_next_offset: u64,
        records: Vec<ProduceRecordJson>,
        encoding: Encoding,
    ) -> Result<ProduceResponse, ClientError> {
        let path = format!(
            "/v1/topics/{topic}/partitions/{partition}/records?encoding={}&expected_next_offset={expected_next_offset}",
            encoding.as_str()
        );
        let response = self
            .request(Method::POST, &path)
            .json(&ProduceRequest { records })
            .send()
            .await?;
        json(response).await
    }

    /// Produces records in the binary framing.
    pub async fn produce_binary(
        &self,
        topic: &str,
        records: &[BinaryRecord],
    ) -> Result<ProduceResponse, ClientError> {
        let encoded = binary::encode_produce(records);
        let body = self
            .send_idempotent(|producer| {
                let mut path = format!("/v1/topics/{topic}/records");
                if let Some((identity, sequence)) = producer {
                    path.push_str(&format!(
                        "?producer_id={}&producer_epoch={}&sequence={sequence}",
                        identity.producer_id, identity.producer_epoch
                    ));
                }
                self.request(Method::POST, &path)
                    .header(reqwest::header::CONTENT_TYPE, binary::CONTENT_TYPE)
                    .body(encoded.clone())
            })
            .await?;
        serde_json::from_slice(&body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    fn fetch_path(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: &FetchOptions,
    ) -> String {
        let mut path = format!(
            "/v1/topics/{topic}/partitions/{partition}/records?offset={offset}&encoding={}",
            options.encoding.as_str()
        );
        push_read_limits(
            &mut path,
            options.max_records,
            options.max_bytes,
            options.wait,
        );
        if options.clamp {
            path.push_str("&clamp=true");
        }
        path
    }

    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: &FetchOptions,
    ) -> Result<FetchResponse, ClientError> {
        let path = self.fetch_path(topic, partition, offset, options);
        let response = self
            .send_routed(topic, partition, |base| {
                self.request_at(base, Method::GET, &path)
            })
            .await?;
        json(response).await
    }

    /// Fetches with the binary framing in the response.
    pub async fn fetch_binary(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: &FetchOptions,
    ) -> Result<BinaryFetch, ClientError> {
        let path = self.fetch_path(topic, partition, offset, options);
        let response = self
            .send_routed(topic, partition, |base| {
                self.request_at(base, Method::GET, &path)
                    .header(reqwest::header::ACCEPT, binary::CONTENT_TYPE)
            })
            .await?;
        let body = check(response).await?.bytes().await?;
        binary::decode_fetch(body).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Follows a partition as Server-Sent Events from `offset` (or, with `resume_from`, from
    /// the `Last-Event-ID` of an earlier stream). Each item is one `records` event; a
    /// stream-ending `error` event becomes an error item.
    pub async fn stream(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: &FetchOptions,
    ) -> Result<EventStream, ClientError> {
        let path = self.fetch_path(topic, partition, offset, options);
        let response = self
            .send_routed(topic, partition, |base| {
                self.request_at(base, Method::GET, &path)
                    .header(reqwest::header::ACCEPT, "text/event-stream")
            })
            .await?;
        Ok(EventStream::new(check(response).await?))
    }

    /// Looks up `earliest`, `latest` or a timestamp in milliseconds.
    pub async fn offset(
        &self,
        topic: &str,
        partition: u32,
        at: &str,
    ) -> Result<OffsetResponse, ClientError> {
        let path = format!("/v1/topics/{topic}/partitions/{partition}/offsets?at={at}");
        json(self.request(Method::GET, &path).send().await?).await
    }

    pub async fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        json(self.request(Method::GET, "/v1/cluster").send().await?).await
    }

    /// Every ACL of the cluster.
    pub async fn list_acls(&self) -> Result<AclList, ClientError> {
        json(self.request(Method::GET, "/v1/acls").send().await?).await
    }

    /// Adds ACLs; answers how many were new (`created`).
    pub async fn create_acls(&self, acls: Vec<AclJson>) -> Result<AclsChanged, ClientError> {
        self.post_json("/v1/acls", &AclsRequest { acls }).await
    }

    /// Removes ACLs; answers how many of them there were (`deleted`).
    pub async fn delete_acls(&self, acls: Vec<AclJson>) -> Result<AclsChanged, ClientError> {
        let response = self
            .request(Method::DELETE, "/v1/acls")
            .json(&AclsRequest { acls })
            .send()
            .await?;
        json(response).await
    }

    /// Sends a raw request (for tests of malformed input).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self
            .request(method, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.into())
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.bytes().await?))
    }
}

impl FloeClient {
    /// POSTs `body` as JSON to `path` and decodes the JSON answer.
    async fn post_json<B: serde::Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        json(self.request(Method::POST, path).json(body).send().await?).await
    }
}

/// Appends a read's limits to a query already started (`?…`): how many records, how many
/// bytes, how long to wait for the first.
fn push_read_limits(
    path: &mut String,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    wait: Option<Duration>,
) {
    if let Some(max_records) = max_records {
        path.push_str(&format!("&max_records={max_records}"));
    }
    if let Some(max_bytes) = max_bytes {
        path.push_str(&format!("&max_bytes={max_bytes}"));
    }
    if let Some(wait) = wait {
        path.push_str(&format!("&wait_ms={}", wait.as_millis()));
    }
}

pub(crate) async fn check(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
        error_code: "http_error".into(),
        message: String::from_utf8_lossy(&bytes).into_owned(),
        ..ErrorBody::default()
    });
    Err(ClientError::Api {
        status,
        body,
        retry_after,
    })
}

pub(crate) async fn json<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let bytes = check(response).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|error| ClientError::Decode(error.to_string()))
}

mod groups;
