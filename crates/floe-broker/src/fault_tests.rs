//! Store faults injected under the write path: failed puts, hung puts, and puts that
//! landed but whose response was lost. No acknowledgement without a durable object, no
//! record committed twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use floe_core::TopicConfig;
use floe_storage::SegmentStore;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

use super::*;
use crate::tests::cache;

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The put fails and nothing is stored.
    Error,
    /// The put never answers.
    Hang,
    /// The put is stored, but the caller gets an error.
    LostResponse,
}

/// An in-memory store that injects the next planned fault into each put.
#[derive(Debug)]
struct FaultyStore {
    inner: InMemory,
    plan: Mutex<VecDeque<Option<Fault>>>,
    always_fail: bool,
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore")
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: what.to_owned().into(),
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.always_fail {
            return Err(injected("store down"));
        }
        let fault = self.plan.lock().pop_front().flatten();
        match fault {
            None => self.inner.put_opts(location, payload, options).await,
            Some(Fault::Error) => Err(injected("503 SlowDown")),
            Some(Fault::Hang) => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Err(injected("hung"))
            }
            Some(Fault::LostResponse) => {
                self.inner.put_opts(location, payload, options).await?;
                Err(injected("connection reset after the put landed"))
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        options: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, options).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

async fn broker_on(store: Arc<FaultyStore>) -> Broker {
    let sequencer = crate::tests::memory_sequencer().await;
    let options = BrokerOptions {
        linger: Some(Duration::from_millis(2)),
        ..BrokerOptions::default()
    };
    let store =
        SegmentStore::new(store, Path::default()).with_attempt_timeout(Duration::from_millis(200));
    let broker = Broker::builder(sequencer, store.clone(), cache(store).await)
        .options(options)
        .build();
    broker
        .create_topic("t", 1, TopicConfig::default())
        .await
        .expect("create");
    broker
}

fn records(request: usize) -> Vec<ProduceRecord> {
    (0..10)
        .map(|i| ProduceRecord {
            partition: Some(0),
            key: None,
            value: Some(Bytes::from(format!("r{request}-{i}"))),
            headers: Vec::new(),
            timestamp_ms: None,
        })
        .collect()
}

#[tokio::test]
async fn transient_faults_are_retried_and_nothing_commits_twice() {
    // Faults before most puts; never five in a row, so every upload finally lands.
    let pattern = [
        Some(Fault::Error),
        Some(Fault::LostResponse),
        None,
        Some(Fault::Hang),
        None,
        Some(Fault::LostResponse),
        Some(Fault::Error),
        Some(Fault::Error),
        None,
    ];
    let plan = pattern.iter().copied().cycle().take(400).collect();
    let store = Arc::new(FaultyStore {
        inner: InMemory::new(),
        plan: Mutex::new(plan),
        always_fail: false,
    });
    let broker = broker_on(store.clone()).await;
    let mut expected = Vec::new();
    for request in 0..30 {
        let acks = broker
            .produce("t", records(request))
            .await
            .expect("acknowledged");
        assert_eq!(acks.len(), 10);
        for (i, ack) in acks.iter().enumerate() {
            assert_eq!(ack.offset, expected.len() as u64, "dense, in order");
            expected.push(format!("r{request}-{i}"));
        }
    }
    let fetched = broker
        .fetch(FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_records: 1000,
            max_bytes: 1 << 20,
            wait: Duration::ZERO,
            clamp: false,
        })
        .await
        .expect("fetch");
    let values: Vec<String> = fetched
        .records
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(
        values, expected,
        "each acknowledged record once, nothing else"
    );
    assert_eq!(fetched.high_watermark, 300);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_store_that_keeps_failing_acknowledges_nothing() {
    let store = Arc::new(FaultyStore {
        inner: InMemory::new(),
        plan: Mutex::new(VecDeque::new()),
        always_fail: true,
    });
    let broker = broker_on(store).await;
    let error = broker
        .produce("t", records(0))
        .await
        .expect_err("no durable object, no acknowledgement");
    assert_eq!(error.kind(), floe_core::ErrorKind::Unavailable);
    let described = broker.describe_topic("t").expect("describe");
    assert_eq!(described.partitions[0].high_watermark, 0);
    broker.shutdown().await;
}
