//! The write pipeline: batches from many requests share one open segment, which is sealed
//! on size, on linger, or as soon as the pipeline is idle (group commit, ADR 0011),
//! uploaded with a create-only put, and committed through the sequencer in the order it was
//! sealed. Producers are answered only after the commit is durable.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use floe_core::segment::{BatchEntry, SegmentBuilder};
use floe_core::{Clock, SegmentId, TopicId};
use floe_sequencer::{
    Command, Fence, Outcome, ProducerTag, RequestGuard, Sequencer, SequencerError,
};
use floe_storage::{ReadCache, SegmentStore, StorageError};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use object_store::PutPayload;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::BrokerError;
use crate::jobs::ProduceDelay;
use crate::metrics::{LatencyMetrics, SealReason, observe};
use crate::{BrokerOptions, Failpoints};

/// One encoded batch on its way into a segment.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    pub topic_id: TopicId,
    pub partition: u32,
    pub bytes: Bytes,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
}

/// Base offsets of a request's batches, in the order they were appended, and for a retry
/// of a committed idempotent request, the time its first attempt gave records without one.
pub(crate) type CommitReply = Result<(Vec<u64>, Option<i64>), BrokerError>;

/// What a request's batches commit under, all or none: its idempotent producer's sequence
/// and the offset a conditional append expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Conditions {
    pub producer: Option<ProducerTag>,
    pub expected_next_offset: Option<u64>,
    /// The time this broker gave the request's records that carried none.
    pub timestamp_ms: i64,
    pub principal: Option<String>,
}

impl Conditions {
    fn any(&self) -> bool {
        self.producer.is_some() || self.expected_next_offset.is_some()
    }
}

/// Log entry bytes a guard adds to a segment's commit (see `Command::approximate_size`).
const GUARD_BYTES: usize = 128;

/// The most batches one segment holds, so that its commit (about 220 bytes of log entry
/// per batch) stays under the sequencer's limit for one command.
pub(crate) const MAX_SEGMENT_BATCHES: usize = 4096;
const _: () = assert!(96 + 220 * MAX_SEGMENT_BATCHES <= floe_sequencer::MAX_COMMAND_BYTES);

#[derive(Debug)]
struct Waiter {
    batches: Range<usize>,
    reserved: usize,
    conditions: Conditions,
    reply: oneshot::Sender<(CommitReply, Instant)>,
    /// The request's span: it records the segment; the first sampled request's span is
    /// the parent of the segment's, the others are linked to it.
    span: tracing::Span,
}

#[derive(Debug)]
struct OpenSegment {
    builder: SegmentBuilder,
    waiters: Vec<Waiter>,
    generation: u64,
    /// The broker session the segment's batches were accepted under; the commit carries
    /// it, so a session lost in between refuses the commit.
    fence: Option<Fence>,
    /// When the first batch arrived.
    opened: Option<Instant>,
    /// When the segment before this one was sealed (none yet: `None`).
    previous_seal: Option<Instant>,
}

#[derive(Debug)]
struct SealedSegment {
    id: SegmentId,
    /// The object as its parts: header, the requests' batches uncopied, footer.
    payload: PutPayload,
    entries: Vec<BatchEntry>,
    waiters: Vec<Waiter>,
    fence: Option<Fence>,
    /// When it was sealed (ms).
    sealed_ms: i64,
    /// When it was sealed, for the stages that follow.
    sealed_at: Instant,
    /// From seal to answer, with the upload and the commit as children.
    span: tracing::Span,
}

/// Reads a pipeline's buffered bytes (for the metrics registry).
#[derive(Debug, Clone)]
pub(crate) struct BufferedGauge(Arc<Shared>);

impl BufferedGauge {
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.0.buffered.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub(crate) struct Pipeline {
    shared: Arc<Shared>,
    flusher: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    open: Mutex<OpenSegment>,
    /// `None` once shutdown has begun.
    sealed: Mutex<Option<mpsc::UnboundedSender<SealedSegment>>>,
    buffered: AtomicUsize,
    /// Segments sealed and not yet answered (uploading, waiting, committing). Changed under
    /// the `open` lock when it grows, so a check made under that lock sees every seal.
    in_flight: AtomicUsize,
    closed: AtomicBool,
    segment_max_bytes: usize,
    max_buffered_bytes: usize,
    linger: Duration,
    flush_when_idle: bool,
    min_flush_interval: Duration,
    latency: LatencyMetrics,
    /// Told each segment's seal-to-answer time: background work yields when it grows.
    produce_delay: Arc<ProduceDelay>,
    clock: Arc<dyn Clock>,
}

impl Pipeline {
    /// Starts the flusher. An unset linger is a local store's: the assembler resolves it
    /// for the store kind ([`BrokerOptions::linger_for`]).
    #[expect(
        clippy::too_many_arguments,
        reason = "the pipeline's parts, each shared with the broker; one call site"
    )]
    pub(crate) fn start(
        options: &BrokerOptions,
        sequencer: Sequencer,
        store: SegmentStore,
        cache: ReadCache,
        failpoints: Failpoints,
        latency: LatencyMetrics,
        produce_delay: Arc<ProduceDelay>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (sealed_sender, sealed_receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            open: Mutex::new(OpenSegment {
                builder: SegmentBuilder::new(),
                waiters: Vec::new(),
                generation: 0,
                fence: None,
                opened: None,
                previous_seal: None,
            }),
            sealed: Mutex::new(Some(sealed_sender)),
            buffered: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            segment_max_bytes: options.segment_max_bytes,
            max_buffered_bytes: options.max_buffered_bytes,
            linger: options.linger_for(true),
            flush_when_idle: options.flush_when_idle,
            min_flush_interval: options.min_flush_interval_for(true),
            latency,
            produce_delay,
            clock,
        });
        let flusher = Flusher {
            shared: Arc::clone(&shared),
            sequencer,
            store,
            cache,
            max_inflight: options.max_inflight_uploads,
            failpoints,
        };
        let handle = tokio::spawn(flusher.run(sealed_receiver));
        Self {
            shared,
            flusher: tokio::sync::Mutex::new(Some(handle)),
        }
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.shared.buffered.load(Ordering::Relaxed)
    }

    /// A handle that reads the buffered bytes at scrape time.
    pub(crate) fn buffered_gauge(&self) -> BufferedGauge {
        BufferedGauge(Arc::clone(&self.shared))
    }

    /// Adds one request's batches to the open segment; they commit together, under
    /// `fence` and `conditions`. The returned receiver yields their base offsets once the
    /// segment is committed, and when they were sent.
    pub(crate) fn append(
        &self,
        batches: Vec<PendingBatch>,
        fence: Option<Fence>,
        conditions: Conditions,
    ) -> Result<oneshot::Receiver<(CommitReply, Instant)>, BrokerError> {
        let size: usize = batches.iter().map(|batch| batch.bytes.len()).sum();
        self.reserve(size)?;
        let (reply, receiver) = oneshot::channel();
        let mut open = self.shared.open.lock();
        if self.shared.closed.load(Ordering::Acquire) {
            drop(open);
            self.shared.release(size);
            return Err(BrokerError::ShuttingDown);
        }
        let guards = open.waiters.iter().filter(|w| w.conditions.any()).count()
            + usize::from(conditions.any());
        let full = open.builder.len() + size > self.shared.segment_max_bytes
            || open.builder.entries().len() + batches.len() > MAX_SEGMENT_BATCHES
            || 96 + 220 * (open.builder.entries().len() + batches.len()) + GUARD_BYTES * guards
                > floe_sequencer::MAX_COMMAND_BYTES;
        if !open.builder.is_empty() && (full || open.fence != fence) {
            let reason = if full {
                SealReason::Size
            } else {
                SealReason::Fence
            };
            self.shared.seal(&mut open, reason);
        }
        let was_empty = open.builder.is_empty();
        if was_empty {
            open.fence = fence;
            open.opened = Some(Instant::now());
        }
        let first = open.builder.entries().len();
        for batch in batches {
            open.builder.append_batch(
                batch.topic_id,
                batch.partition,
                batch.bytes,
                batch.record_count,
                batch.first_timestamp,
                batch.max_timestamp,
            );
        }
        let last = open.builder.entries().len();
        open.waiters.push(Waiter {
            batches: first..last,
            reserved: size,
            conditions,
            reply,
            span: tracing::Span::current(),
        });
        if open.builder.len() >= self.shared.segment_max_bytes {
            self.shared.seal(&mut open, SealReason::Size);
        } else if was_empty && !self.shared.seal_if_idle(&mut open) {
            self.shared.schedule_linger(open.generation);
        }
        Ok(receiver)
    }

    fn reserve(&self, size: usize) -> Result<(), BrokerError> {
        let limit = self.shared.max_buffered_bytes;
        let mut current = self.shared.buffered.load(Ordering::Relaxed);
        loop {
            // One request may always go through on an idle broker, however large.
            if current > 0 && current + size > limit {
                return Err(BrokerError::Busy {
                    buffered: current,
                    retry_after: Duration::from_secs(1),
                });
            }
            match self.shared.buffered.compare_exchange_weak(
                current,
                current + size,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Refuses new batches, seals what is open and waits until every sealed segment has been
    /// uploaded, committed and answered.
    pub(crate) async fn shutdown(&self) {
        {
            let mut open = self.shared.open.lock();
            self.shared.closed.store(true, Ordering::Release);
            if !open.builder.is_empty() {
                self.shared.seal(&mut open, SealReason::Shutdown);
            }
        }
        self.shared.sealed.lock().take();
        if let Some(handle) = self.flusher.lock().await.take() {
            let _ = handle.await;
        }
    }
}

impl Shared {
    fn release(&self, size: usize) {
        self.buffered.fetch_sub(size, Ordering::AcqRel);
    }

    fn seal(&self, open: &mut OpenSegment, reason: SealReason) {
        let now = Instant::now();
        let fresh = OpenSegment {
            builder: SegmentBuilder::new(),
            waiters: Vec::new(),
            generation: open.generation + 1,
            fence: None,
            opened: None,
            previous_seal: Some(now),
        };
        let full = std::mem::replace(open, fresh);
        if let Some(opened) = full.opened {
            observe(
                &self.latency.segment_wait,
                now.saturating_duration_since(opened),
            );
        }
        self.latency.sealed(reason).inc();
        let (parts, entries) = full.builder.finish_parts();
        let payload = PutPayload::from_iter(parts);
        let id = SegmentId::generate();
        let span = segment_span(
            &full.waiters,
            id,
            payload.content_length(),
            entries.len(),
            reason,
        );
        for waiter in &full.waiters {
            waiter.span.record("segment", tracing::field::display(id));
        }
        let segment = SealedSegment {
            id,
            payload,
            entries,
            waiters: full.waiters,
            fence: full.fence,
            sealed_ms: self.clock.now_ms(),
            sealed_at: now,
            span,
        };
        let sender = self.sealed.lock();
        match sender.as_ref() {
            Some(sender) => {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                if let Err(mpsc::error::SendError(segment)) = sender.send(segment) {
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    self.fail(segment.waiters, || BrokerError::ShuttingDown);
                }
            }
            None => self.fail(segment.waiters, || BrokerError::ShuttingDown),
        }
    }

    fn schedule_linger(self: &Arc<Self>, generation: u64) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(shared.linger).await;
            let mut open = shared.open.lock();
            if open.generation == generation && !open.builder.is_empty() {
                shared.seal(&mut open, SealReason::Linger);
            }
        });
    }

    /// Seals the open segment if nothing sealed before it is still in flight and the last
    /// seal is at least `min_flush_interval` old; if only the interval is missing, comes
    /// back when it has passed. Called with the `open` lock held; true if it sealed.
    fn seal_if_idle(self: &Arc<Self>, open: &mut OpenSegment) -> bool {
        if !self.flush_when_idle
            || open.builder.is_empty()
            || self.in_flight.load(Ordering::Acquire) > 0
        {
            return false;
        }
        let due = open
            .previous_seal
            .map_or(Instant::now(), |sealed| sealed + self.min_flush_interval);
        if due <= Instant::now() {
            self.seal(open, SealReason::Idle);
            return true;
        }
        let linger_ends = open.opened.map(|opened| opened + self.linger);
        if linger_ends.is_some_and(|ends| ends <= due) {
            return false;
        }
        let shared = Arc::clone(self);
        let generation = open.generation;
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let mut open = shared.open.lock();
            if open.generation == generation {
                shared.seal_if_idle(&mut open);
            }
        });
        false
    }

    /// One sealed segment has been answered (committed or failed): if it was the last in
    /// flight, the segment that gathered meanwhile goes now.
    fn segment_done(self: &Arc<Self>) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && self.flush_when_idle {
            let mut open = self.open.lock();
            self.seal_if_idle(&mut open);
        }
    }

    fn fail(&self, waiters: Vec<Waiter>, error: impl Fn() -> BrokerError) {
        for waiter in waiters {
            self.release(waiter.reserved);
            let _ = waiter.reply.send((Err(error()), Instant::now()));
        }
    }
}

/// The span of a segment from seal to answer: a child of the first of its requests that
/// is sampled (a caller's `traceparent` can ask for one), or of the first, and linked to
/// the others ("follows from"), so every request's trace reaches it.
fn segment_span(
    waiters: &[Waiter],
    id: SegmentId,
    bytes: usize,
    batches: usize,
    reason: SealReason,
) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(first) = waiters.first() else {
        return tracing::Span::none();
    };
    if first.span.is_disabled() {
        return tracing::Span::none();
    }
    let sampled = |waiter: &&Waiter| {
        opentelemetry::trace::TraceContextExt::span(&waiter.span.context())
            .span_context()
            .is_sampled()
    };
    let parent = waiters.iter().find(sampled).unwrap_or(first);
    let span = tracing::info_span!(
        parent: &parent.span,
        "segment",
        segment = %id,
        bytes,
        batches,
        requests = waiters.len(),
        reason = reason.label(),
    );
    for waiter in waiters {
        if !std::ptr::eq(waiter, parent) {
            span.follows_from(&waiter.span);
        }
    }
    span
}

#[derive(Debug)]
struct Flusher {
    shared: Arc<Shared>,
    sequencer: Sequencer,
    store: SegmentStore,
    cache: ReadCache,
    max_inflight: usize,
    failpoints: Failpoints,
}

impl Flusher {
    async fn run(self, mut sealed: mpsc::UnboundedReceiver<SealedSegment>) {
        let mut uploads = FuturesOrdered::new();
        let mut commits = futures::stream::FuturesUnordered::new();
        let mut receiving = true;
        loop {
            tokio::select! {
                next = sealed.recv(), if receiving && uploads.len() < self.max_inflight => match next {
                    Some(segment) => {
                        let span = tracing::info_span!(parent: &segment.span, "upload");
                        uploads.push_back(upload(self.store.clone(), segment, self.shared.latency.clone()).instrument(span));
                    }
                    None => receiving = false,
                },
                Some((segment, uploaded, done)) = uploads.next(), if !uploads.is_empty() => {
                    // Uploads finish in any order but are committed in seal order.
                    observe(&self.shared.latency.commit_order, done.elapsed());
                    match self.commit(segment, uploaded).await {
                        Some(commit) => commits.push(commit),
                        None => self.shared.segment_done(),
                    }
                }
                Some(()) = commits.next(), if !commits.is_empty() => {}
                else => break,
            }
        }
    }

    async fn commit(
        &self,
        segment: SealedSegment,
        uploaded: Result<(), StorageError>,
    ) -> Option<futures::future::BoxFuture<'static, ()>> {
        if let Err(error) = uploaded {
            // A failed upload (throttled, timed out) slows produce as much as a slow one.
            self.shared.produce_delay.failed();
            tracing::warn!(segment = %segment.id, %error, "segment upload failed; its producers get an error");
            let message = error.to_string();
            self.shared.fail(segment.waiters, || {
                BrokerError::Unavailable(format!("segment upload failed: {message}"))
            });
            return None;
        }
        if self.failpoints.crash_after_upload {
            tracing::error!(segment = %segment.id, "failpoint: dying between upload and commit");
            std::process::abort();
        }
        // Readers of this segment on this broker, the tail consumers above all, need no GET.
        self.cache
            .insert_segment(segment.id, segment.payload.as_ref());
        let guards = segment
            .waiters
            .iter()
            .filter(|waiter| waiter.conditions.any())
            .map(|waiter| RequestGuard {
                first: waiter.batches.start as u32,
                count: waiter.batches.len() as u32,
                producer: waiter.conditions.producer,
                expected_next_offset: waiter.conditions.expected_next_offset,
                timestamp_ms: waiter.conditions.timestamp_ms,
                principal: waiter.conditions.principal.clone(),
            })
            .collect();
        let command = Command::CommitSegment {
            segment: segment.id,
            batches: segment.entries,
            guards,
            at_ms: segment.sealed_ms,
        };
        let submitted = Instant::now();
        let outcome = match self.sequencer.submit_ordered(command, segment.fence).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.shared.fail(segment.waiters, || {
                    BrokerError::Sequencer(SequencerError::Stopped)
                });
                tracing::warn!(segment = %segment.id, %error, "segment commit could not be submitted");
                return None;
            }
        };
        let shared = Arc::clone(&self.shared);
        let segment_id = segment.id;
        let waiters = segment.waiters;
        let sealed_at = segment.sealed_at;
        let span = tracing::info_span!(parent: &segment.span, "commit");
        Some(Box::pin(async move {
            let outcome = outcome.await;
            observe(&shared.latency.commit, submitted.elapsed());
            match outcome {
                Ok(Outcome::SegmentCommitted(results)) => {
                    shared.produce_delay.observe(sealed_at.elapsed());
                    answer(&shared, waiters, &results)
                }
                Ok(other) => {
                    tracing::error!(segment = %segment_id, ?other, "commit answered with a foreign outcome");
                    shared.fail(waiters, || {
                        BrokerError::Corrupt("unexpected commit outcome".into())
                    });
                }
                Err(error) => {
                    tracing::warn!(segment = %segment_id, %error, "segment commit failed");
                    let message = error.to_string();
                    shared.fail(waiters, || {
                        BrokerError::Unavailable(format!("segment commit failed: {message}"))
                    });
                }
            }
            shared.segment_done();
        }.instrument(span)))
    }
}

fn answer(shared: &Shared, waiters: Vec<Waiter>, results: &floe_sequencer::SegmentResults) {
    for waiter in waiters {
        shared.release(waiter.reserved);
        let repeated = results
            .repeated
            .iter()
            .find(|(first, _, _)| *first as usize == waiter.batches.start)
            .map(|(_, _, timestamp_ms)| *timestamp_ms);
        let reply = results[waiter.batches.clone()]
            .iter()
            .map(|result| result.clone().map_err(BrokerError::from))
            .collect::<Result<Vec<u64>, BrokerError>>()
            .map(|bases| (bases, repeated));
        let _ = waiter.reply.send((reply, Instant::now()));
    }
}

/// Uploads a sealed segment ([`SegmentStore::upload_hedged`]: create-only, retried,
/// exactly once, with a second upload beside a slow one) and hands it back with the
/// outcome and when it was done.
async fn upload(
    store: SegmentStore,
    segment: SealedSegment,
    latency: LatencyMetrics,
) -> (SealedSegment, Result<(), StorageError>, Instant) {
    let started = Instant::now();
    observe(
        &latency.upload_queue,
        started.saturating_duration_since(segment.sealed_at),
    );
    let result = store.upload_hedged(segment.id, &segment.payload).await;
    let elapsed = started.elapsed();
    observe(&latency.upload, elapsed);
    // Every request in the segment, and the commits of segments sealed after it, waited
    // for it: worth a line with its time (`SegmentStore::slow_upload`).
    if elapsed >= store.slow_upload() {
        tracing::warn!(
            segment = %segment.id,
            bytes = segment.payload.content_length(),
            elapsed_ms = elapsed.as_millis() as u64,
            ok = result.is_ok(),
            "segment upload was slow; its requests, and the commits of segments sealed after it, waited"
        );
    }
    (segment, result, Instant::now())
}
