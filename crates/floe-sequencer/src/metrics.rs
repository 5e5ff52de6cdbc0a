//! The sequencer's metrics, recorded by whichever commit loop runs in this process (the
//! embedded sequencer, or this broker while it leads the cluster): how long a group's
//! durable append takes, how many commands a group carries, and what each snapshot cost,
//! stage by stage — `copy` is the only stage that holds the commit loop. A follower
//! records its side of a commit: the call that forwards a group to the leader, and its own
//! replica's catch-up to each committed command before it answers.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type StageFamily = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(floe_core::metrics::latency_buckets())
}

/// What the commit loop measures; cheap to clone (the metrics are shared).
#[derive(Debug, Clone)]
pub(crate) struct CommitMetrics {
    append: Histogram,
    group: Histogram,
    snapshot: StageFamily,
    snapshot_bytes: Gauge,
    forward: Histogram,
    catch_up: Histogram,
    refused: Counter,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        Self {
            append: latency_histogram(),
            group: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            snapshot: StageFamily::new_with_constructor(latency_histogram),
            snapshot_bytes: Gauge::default(),
            forward: latency_histogram(),
            catch_up: latency_histogram(),
            refused: Counter::default(),
        }
    }
}

/// The stages of a snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SnapshotStage {
    /// Copying the state under its read lock: the commit loop waits for this.
    Copy,
    /// Serialising the copy, beside the commit loop.
    Encode,
    /// Storing it durably and trimming the log, beside the commit loop.
    Install,
    /// The commit loop taking no commands because the log reached its bound
    /// (`MAX_LOG_INTERVALS` intervals) with a snapshot still in flight: snapshots slower
    /// than the commits between them.
    Held,
}

impl SnapshotStage {
    const ALL: [Self; 4] = [Self::Copy, Self::Encode, Self::Install, Self::Held];

    fn name(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Encode => "encode",
            Self::Install => "install",
            Self::Held => "held",
        }
    }
}

impl CommitMetrics {
    /// One group written durably: its append's duration and its size in commands.
    pub(crate) fn appended(&self, elapsed: std::time::Duration, commands: usize) {
        self.append.observe(elapsed.as_secs_f64());
        self.group.observe(commands as f64);
    }

    /// Commands the state refused where they stood in their group, answered without a
    /// log entry.
    pub(crate) fn refused_before_log(&self, commands: usize) {
        self.refused.inc_by(commands as u64);
    }

    pub(crate) fn snapshot_stage(&self, stage: SnapshotStage, elapsed: std::time::Duration) {
        self.snapshot
            .get_or_create(&[("stage", stage.name())])
            .observe(elapsed.as_secs_f64());
    }

    /// A follower's call forwarding one group to the leader, answered (or failed).
    pub(crate) fn forwarded(&self, elapsed: std::time::Duration) {
        self.forward.observe(elapsed.as_secs_f64());
    }

    /// A follower's wait, after the leader's answer, until its replica applied a command.
    pub(crate) fn caught_up(&self, elapsed: std::time::Duration) {
        self.catch_up.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn snapshot_installed(&self, bytes: usize) {
        self.snapshot_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_sequencer_append_seconds",
            "Durable log appends of one group of commands, by the commit loop in this process",
            self.append.clone(),
        );
        registry.register(
            "floe_sequencer_group_commands",
            "Commands per durable log append",
            self.group.clone(),
        );
        registry.register(
            "floe_sequencer_refused_before_log",
            "Commands the state refused, answered without writing them to the log",
            self.refused.clone(),
        );
        // Every stage is exported from the start, so a dashboard shows a zero, not no data.
        for stage in SnapshotStage::ALL {
            let _ = self.snapshot.get_or_create(&[("stage", stage.name())]);
        }
        registry.register(
            "floe_sequencer_snapshot_stage_seconds",
            "Snapshot stages: copy (always holds the commit loop), encode and install (beside \
             it); held: the commit loop taking nothing, its log at the bound with a snapshot \
             in flight",
            self.snapshot.clone(),
        );
        registry.register(
            "floe_sequencer_snapshot_bytes",
            "Size of the last snapshot this process installed",
            self.snapshot_bytes.clone(),
        );
        registry.register(
            "floe_sequencer_forward_seconds",
            "A follower's calls forwarding a group of commands to the leader",
            self.forward.clone(),
        );
        registry.register(
            "floe_sequencer_catch_up_seconds",
            "A follower's wait, after the leader answered, for its replica to apply a command",
            self.catch_up.clone(),
        );
    }
}
