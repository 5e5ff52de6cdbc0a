//! The broker's metrics: latency histograms of produce (in total and per stage) and
//! fetch, counted where the work happens, and the gauges read from the replicated state at
//! scrape time. [`Broker::register_metrics`] puts them, the background jobs' counters and
//! the read cache's on one registry.

use std::time::Duration;

use floe_sequencer::Sequencer;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Broker;
use crate::jobs::StoreFootprint;
use crate::wakeups::Woken;

type StageFamily = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;
type ReasonFamily = Family<[(&'static str, &'static str); 1], Counter>;
type WakeupFamily = Family<[(&'static str, &'static str); 2], Counter>;

/// Why a segment was sealed, the `reason` of `floe_segments_sealed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealReason {
    /// It reached `segment_max_bytes` (or the batch count a commit can carry).
    Size,
    /// Its linger passed.
    Linger,
    /// Nothing sealed before it was still in flight (`flush_when_idle`).
    Idle,
    /// The next request came under another broker session.
    Fence,
    /// The broker is stopping.
    Shutdown,
}

impl SealReason {
    const ALL: [SealReason; 5] = [
        SealReason::Size,
        SealReason::Linger,
        SealReason::Idle,
        SealReason::Fence,
        SealReason::Shutdown,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            SealReason::Size => "size",
            SealReason::Linger => "linger",
            SealReason::Idle => "idle",
            SealReason::Fence => "fence",
            SealReason::Shutdown => "shutdown",
        }
    }
}

/// A latency histogram on floe's shared buckets ([`floe_core::metrics::latency_buckets`]).
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(floe_core::metrics::latency_buckets())
}

/// Produce and fetch latencies.
#[derive(Debug, Clone)]
pub(crate) struct LatencyMetrics {
    /// A produce request from arrival to its answer, acknowledgement or error.
    pub produce: Histogram,
    stages: StageFamily,
    /// A segment from its first batch to its seal (idle, linger, size or fence).
    pub segment_wait: Histogram,
    /// A sealed segment waiting for one of the upload slots.
    pub upload_queue: Histogram,
    /// One segment upload, retries included.
    pub upload: Histogram,
    /// An uploaded segment waiting for the segments sealed before it (commits go in seal
    /// order).
    pub commit_order: Histogram,
    /// One segment commit, from submission to the sequencer's answer.
    pub commit: Histogram,
    request_stages: StageFamily,
    /// A produce request from arrival in the broker until its batches are in the open
    /// segment: validation, partitioning, encoding, the state lookup and the append.
    pub admit: Histogram,
    /// A produce request from joining the open segment to its segment's answer: the
    /// segment's seal wait, upload and commit and its wait behind earlier segments, counted
    /// per request, so a slow segment weighs as many times as it holds requests.
    pub in_segment: Histogram,
    /// A produce request from its segment's answer until its own task runs again (the
    /// scheduler's delay).
    pub resume: Histogram,
    /// The reading part of a fetch: index lookup, cache or store, verification and decode
    /// (not the long-poll's wait for new records).
    pub fetch: Histogram,
    fetch_stages: StageFamily,
    /// Finding the batches of a fetch in the replicated index (under its read lock).
    pub fetch_index: Histogram,
    /// Reading those batches through the read cache (memory, disk, store) and checking
    /// their CRCs.
    pub fetch_read: Histogram,
    /// Decoding the batches into records.
    pub fetch_decode: Histogram,
    /// Encoding the answer (JSON, text or binary framing), measured by the HTTP layer.
    pub fetch_encode: Histogram,
    /// Segments sealed, by reason.
    sealed: ReasonFamily,
    /// Waiting fetches woken, by cause and by whether the look after found records.
    wakeups: WakeupFamily,
}

impl Default for LatencyMetrics {
    fn default() -> Self {
        let stages = StageFamily::new_with_constructor(latency_histogram);
        let stage = |name| stages.get_or_create(&[("stage", name)]).clone();
        let request_stages = StageFamily::new_with_constructor(latency_histogram);
        let admit = request_stages.get_or_create(&[("stage", "admit")]).clone();
        let in_segment = request_stages
            .get_or_create(&[("stage", "segment")])
            .clone();
        let resume = request_stages.get_or_create(&[("stage", "resume")]).clone();
        let fetch_stages = StageFamily::new_with_constructor(latency_histogram);
        let fetch_stage = |name| fetch_stages.get_or_create(&[("stage", name)]).clone();
        Self {
            produce: latency_histogram(),
            segment_wait: stage("segment_wait"),
            upload_queue: stage("upload_queue"),
            upload: stage("upload"),
            commit_order: stage("commit_order"),
            commit: stage("commit"),
            stages,
            admit,
            in_segment,
            resume,
            request_stages,
            fetch: latency_histogram(),
            fetch_index: fetch_stage("index"),
            fetch_read: fetch_stage("read"),
            fetch_decode: fetch_stage("decode"),
            fetch_encode: fetch_stage("encode"),
            fetch_stages,
            sealed: {
                let sealed = ReasonFamily::default();
                // Every reason is exported from the start, at zero.
                for reason in SealReason::ALL {
                    let _ = sealed.get_or_create(&[("reason", reason.label())]);
                }
                sealed
            },
            wakeups: {
                let wakeups = WakeupFamily::default();
                for cause in Woken::ALL {
                    for found in [true, false] {
                        let _ = wakeups.get_or_create(&wakeup_labels(cause, found));
                    }
                }
                wakeups
            },
        }
    }
}

fn wakeup_labels(cause: Woken, found: bool) -> [(&'static str, &'static str); 2] {
    [
        ("cause", cause.label()),
        ("found", if found { "records" } else { "nothing" }),
    ]
}

impl LatencyMetrics {
    /// The counter of segments sealed for `reason`.
    pub(crate) fn sealed(&self, reason: SealReason) -> Counter {
        self.sealed
            .get_or_create(&[("reason", reason.label())])
            .clone()
    }

    /// The counter of waiting fetches woken by `cause` whose next look found records
    /// (`found`) or nothing.
    pub(crate) fn woken(&self, cause: Woken, found: bool) -> Counter {
        self.wakeups
            .get_or_create(&wakeup_labels(cause, found))
            .clone()
    }
}

/// Records `elapsed` in `histogram`, in seconds.
pub(crate) fn observe(histogram: &Histogram, elapsed: Duration) {
    histogram.observe(elapsed.as_secs_f64());
}

/// Observes the time from its start to its drop, whichever way the scope is left.
pub(crate) struct Timer<'a> {
    histogram: &'a Histogram,
    started: std::time::Instant,
}

impl<'a> Timer<'a> {
    pub(crate) fn start(histogram: &'a Histogram) -> Self {
        Self {
            histogram,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        observe(self.histogram, self.started.elapsed());
    }
}

impl Broker {
    /// Records the time taken to encode a fetch's answer (`floe_fetch_stage_seconds`,
    /// stage `encode`); the HTTP layer does the encoding.
    pub fn observe_fetch_encode(&self, elapsed: Duration) {
        observe(&self.inner.latency.fetch_encode, elapsed);
    }

    /// Registers every metric of this broker (produce, fetch, jobs, the read cache, and
    /// the state gauges) on `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let latency = &self.inner.latency;
        registry.register(
            "floe_produce_latency_seconds",
            "Produce requests from arrival to answer (acknowledgement or error)",
            latency.produce.clone(),
        );
        registry.register(
            "floe_produce_stage_seconds",
            "Produce stages per segment: segment_wait (first batch to seal), upload_queue, \
             upload, commit_order (waiting for earlier segments), commit",
            latency.stages.clone(),
        );
        registry.register(
            "floe_produce_request_stage_seconds",
            "Produce stages per request: admit (arrival in the broker to its batches joining \
             the open segment), segment (joining it to its segment's answer), resume (that \
             answer to the request running again)",
            latency.request_stages.clone(),
        );
        registry.register(
            "floe_segments_sealed",
            "Segments sealed, by reason: size, linger, idle (nothing earlier in flight), fence \
             (another broker session), shutdown",
            latency.sealed.clone(),
        );
        registry.register(
            "floe_fetch_latency_seconds",
            "Fetch reads: index lookup, cache or store, verification and decode",
            latency.fetch.clone(),
        );
        registry.register(
            "floe_fetch_stage_seconds",
            "Fetch stages: index (finding the batches), read (cache, disk or store, CRC \
             checks), decode (into records), encode (the answer's body)",
            latency.fetch_stages.clone(),
        );
        registry.register(
            "floe_fetch_wakeups",
            "Waiting fetches (long-polls, event streams, group fetches) woken before their \
             deadline, by cause \
             (partition: a commit to it; broadcast: a command that may move any partition; \
             recheck: the periodic look) and by whether the look after found records",
            latency.wakeups.clone(),
        );
        self.inner.sequencer.register_metrics(registry);
        self.inner.job_counters.register(registry);
        registry.register_collector(Box::new(crate::jobs::BudgetGauges(std::sync::Arc::clone(
            &self.inner.produce_delay,
        ))));
        self.inner.cache.register_metrics(registry);
        self.inner.store.register_metrics(registry);
        registry.register_collector(Box::new(StateGauges {
            sequencer: self.inner.sequencer.clone(),
            pipeline: self.inner.pipeline.buffered_gauge(),
        }));
        registry.register(
            "floe_group_rebalances",
            "Group writes that moved partitions between members (on this coordinator)",
            self.groups().rebalances.clone(),
        );
        registry.register(
            "floe_group_commit_latency_seconds",
            "Offset commits from submission to the sequencer's answer",
            self.groups().commit_latency.clone(),
        );
        registry.register_collector(Box::new(GroupGauges {
            broker: self.clone(),
        }));
        self.inner.exporter.register(registry);
        registry.register_collector(Box::new(crate::export::ExportGauges {
            broker: self.clone(),
        }));
    }
}

/// kafka_exporter's consumer group gauges, for the groups this broker coordinates (so a
/// sum across brokers counts each group once).
#[derive(Debug)]
struct GroupGauges {
    broker: Broker,
}

impl Collector for GroupGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let names: Vec<String> = self
            .broker
            .inner
            .sequencer
            .read(|state| state.groups().map(|(name, _)| name.clone()).collect());
        let placement = self.broker.placement();
        let mut members = Vec::new();
        let mut partitions = Vec::new();
        for name in names.into_iter().filter(|name| placement.is_here(name)) {
            let Ok(offsets) = self.broker.group_offsets(&name) else {
                continue;
            };
            let count = self
                .broker
                .inner
                .sequencer
                .read(|state| state.group(&name).map_or(0, |group| group.members.len()));
            members.push((name.clone(), count as u64));
            for offset in offsets {
                partitions.push((name.clone(), offset));
            }
        }
        // A family without samples is left out: OpenMetrics parsers reject a descriptor
        // with nothing under it when another family follows.
        if members.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "kafka_consumergroup_members",
            "Members of each consumer group",
            None,
            MetricType::Gauge,
        )?;
        for (group, count) in &members {
            ConstGauge::new(*count)
                .encode(family.encode_family(&[("consumergroup", group.as_str())])?)?;
        }
        for (name, help, committed) in [
            (
                "kafka_consumergroup_current_offset",
                "The committed offset of each group's partitions",
                true,
            ),
            (
                "kafka_consumergroup_lag",
                "High watermark minus committed offset (from the log start when none)",
                false,
            ),
        ] {
            let committed_any = partitions
                .iter()
                .any(|(_, offset)| offset.committed.is_some());
            if partitions.is_empty() || (committed && !committed_any) {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (group, offset) in &partitions {
                let value = if committed {
                    match &offset.committed {
                        Some((committed, _)) => *committed,
                        None => continue,
                    }
                } else {
                    offset.lag
                };
                let partition = offset.partition.to_string();
                let labels = [
                    ("consumergroup", group.as_str()),
                    ("topic", offset.topic.as_str()),
                    ("partition", partition.as_str()),
                ];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Gauges read at scrape time. The state is copied out under its read lock and formatted
/// after, so a scrape holds up commits only for the copy.
#[derive(Debug)]
struct StateGauges {
    sequencer: Sequencer,
    pipeline: crate::pipeline::BufferedGauge,
}

/// One partition's offsets, copied out of the state.
struct PartitionOffsets {
    topic: String,
    partition: String,
    log_start: u64,
    high_watermark: u64,
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (applied, footprint, counts, offsets) = self.sequencer.read(|state| {
            let counts: Vec<(String, u64)> = state
                .topics()
                .map(|topic| (topic.name.clone(), u64::from(topic.partition_count())))
                .collect();
            let offsets: Vec<PartitionOffsets> = state
                .topics()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(index, partition)| PartitionOffsets {
                            topic: topic.name.clone(),
                            partition: index.to_string(),
                            log_start: partition.log_start_offset,
                            high_watermark: partition.high_watermark,
                        })
                })
                .collect();
            (
                state.applied_index,
                StoreFootprint::of(state),
                counts,
                offsets,
            )
        });
        gauge(
            &mut encoder,
            "floe_buffered_bytes",
            "Bytes accepted and not yet committed",
            self.pipeline.buffered_bytes() as u64,
        )?;
        gauge(
            &mut encoder,
            "floe_sequencer_applied_index",
            "The last sequencer log index this broker's replica applied",
            applied,
        )?;
        let mut objects = encoder.encode_descriptor(
            "floe_objects",
            "Objects the index refers to (live) and dead ones awaiting deletion",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in [
            ("live", footprint.live_objects),
            ("dead", footprint.dead_objects),
        ] {
            ConstGauge::new(value).encode(objects.encode_family(&[("state", state)])?)?;
        }
        gauge(
            &mut encoder,
            "floe_live_bytes",
            "Bytes of live batches in the store",
            footprint.live_bytes,
        )?;
        gauge(
            &mut encoder,
            "floe_index_entries",
            "Batch index entries in the sequencer state",
            footprint.index_entries,
        )?;
        // kafka_exporter's names, which existing dashboards query.
        let mut partitions = encoder.encode_descriptor(
            "kafka_topic_partitions",
            "Partitions of each topic",
            None,
            MetricType::Gauge,
        )?;
        for (topic, count) in &counts {
            ConstGauge::new(*count)
                .encode(partitions.encode_family(&[("topic", topic.as_str())])?)?;
        }
        for (name, help, value) in [
            (
                "kafka_topic_partition_current_offset",
                "The next offset of each partition (its high watermark)",
                (|p: &PartitionOffsets| p.high_watermark) as fn(&PartitionOffsets) -> u64,
            ),
            (
                "kafka_topic_partition_oldest_offset",
                "The first offset still kept in each partition (its log start)",
                |p: &PartitionOffsets| p.log_start,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for partition in &offsets {
                let labels = [
                    ("topic", partition.topic.as_str()),
                    ("partition", partition.partition.as_str()),
                ];
                ConstGauge::new(value(partition)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}
