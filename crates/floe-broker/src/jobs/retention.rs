//! Retention: the owner of a partition advances its log start offset past batches that
//! expired by time (`retention.ms`, by the batch's newest timestamp, as Kafka does by
//! segment) or that the size limit (`retention.bytes`) no longer keeps. Whole batches go;
//! what is left is never smaller than the limit.

use floe_core::CleanupPolicy;
use floe_sequencer::{Command, Outcome, PartitionState, TopicState, Trim};

use crate::Broker;
use crate::error::BrokerError;

/// Index entries one retention command may remove, over all its partitions. Every
/// broker's replica applies the command at once, under its state's write lock: a trim of
/// a backlog (the first pass after `retention.ms` was lowered, or after the jobs were
/// off) is cut into steps, and commits and reads go on between them. A trim costs a
/// replica 0.15 µs per entry when whole partitions go and up to ~0.65 µs when part of
/// each does (docs/benchmarks.md), so a step holds it for 2.4 ms to an estimated 11 ms.
pub(crate) const MAX_TRIM_BATCHES: usize = 16_384;

/// One partition's part of a trim step (retention's, or a delete's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// The new log start offset.
    pub start: u64,
    /// Index entries it removes.
    pub removed: usize,
    /// The budget ran out: more may go once this step is applied.
    pub cut: bool,
}

/// How far retention moves a partition's log start at `now_ms`, if at all, looking at no
/// more than `budget` index entries past the current start (whole batches that expired
/// by `retention.ms` or that `retention.bytes` no longer keeps).
pub(crate) fn retained_start(
    topic: &TopicState,
    partition: &PartitionState,
    now_ms: i64,
    budget: usize,
) -> Option<Step> {
    let config = &topic.config;
    if config.cleanup_policy != CleanupPolicy::Delete || budget == 0 {
        return None;
    }
    // The batches a step may remove: the first `budget` that end past the log start.
    let log_start = partition.log_start_offset;
    let candidates = || {
        partition
            .batches
            .iter()
            .map(|(base, location)| (PartitionState::batch_end(*base, location), location))
            .filter(move |(end, _)| *end > log_start)
            .take(budget)
    };
    let mut start = log_start;
    if config.retention_ms >= 0 {
        let expired_before = now_ms.saturating_sub(config.retention_ms);
        for (end, location) in candidates() {
            if location.max_timestamp >= expired_before {
                break;
            }
            start = start.max(end);
        }
    }
    if config.retention_bytes >= 0 {
        let limit = config.retention_bytes as u64;
        let mut size = partition.size_bytes;
        for (end, location) in candidates() {
            let length = u64::from(location.length);
            if size <= limit || size < limit.saturating_add(length) {
                break;
            }
            size -= length;
            start = start.max(end);
        }
    }
    // An enabled export holds retention back at its cursor (the state clamps again).
    if let Some(floor) = topic.export_floor(partition) {
        start = start.min(floor);
    }
    if start <= log_start {
        return None;
    }
    let removed = candidates().take_while(|(end, _)| *end <= start).count();
    Some(Step {
        start,
        removed,
        cut: removed == budget,
    })
}

impl Broker {
    /// Trims every partition this broker runs jobs for: one command when the trim is
    /// small, steps of at most [`MAX_TRIM_BATCHES`] index entries when it is not, each
    /// planned on the state the previous one left. A pass ends with the first step that
    /// was not cut short, so records produced meanwhile wait for the next pass.
    pub(crate) async fn enforce_retention(&self) -> Result<(), BrokerError> {
        let now = self.inner.clock.now_ms();
        let mut partitions = 0;
        loop {
            let (trims, cut) = self
                .inner
                .sequencer
                .read(|state| plan_step(self.job_partitions(state), now));
            if trims.is_empty() {
                break;
            }
            let command = Command::TrimPartitions { at_ms: now, trims };
            let Outcome::Trimmed(moved) = self.inner.sequencer.submit(command).await? else {
                break;
            };
            self.inner.job_counters.retention_trims.inc_by(moved as u64);
            partitions += moved;
            // Nothing moved: the state held every start back (an export's hold the
            // plan did not see). The next pass looks again.
            if !cut || moved == 0 {
                break;
            }
        }
        if partitions > 0 {
            tracing::debug!(partitions, "retention advanced log start offsets");
        }
        Ok(())
    }
}

/// Partitions in one retention command, at most.
const MAX_TRIM_PARTITIONS: usize = 1000;

/// One retention step over `partitions`: the trims, at most [`MAX_TRIM_BATCHES`] index
/// entries and [`MAX_TRIM_PARTITIONS`] partitions, and whether a limit cut it short.
pub(crate) fn plan_step<'a>(
    partitions: impl Iterator<Item = (&'a TopicState, u32, &'a PartitionState)>,
    now_ms: i64,
) -> (Vec<Trim>, bool) {
    trim_step(partitions, |topic, _, partition, budget| {
        retained_start(topic, partition, now_ms, budget)
    })
}

/// One step of a topic's delete: trims that take at most [`MAX_TRIM_BATCHES`] index
/// entries off the front of its partitions, none past `ends` (each partition's high
/// watermark when the delete began, so records produced meanwhile cannot keep it going)
/// nor past an export's hold, and whether a limit (or [`MAX_TRIM_PARTITIONS`]) cut it
/// short. Deleting a topic releases every entry of its index on every replica; done in
/// these steps first, the `DeleteTopic` that follows releases only what is left.
pub(crate) fn delete_step(topic: &TopicState, ends: &[u64]) -> (Vec<Trim>, bool) {
    let partitions = topic
        .partitions
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(index, (partition, _))| (topic, index as u32, partition));
    trim_step(partitions, |topic, index, partition, budget| {
        let end = ends[index as usize];
        let limit = topic
            .export_floor(partition)
            .map_or(end, |floor| floor.min(end));
        let log_start = partition.log_start_offset;
        let (start, removed) = partition
            .batches
            .iter()
            .map(|(base, location)| PartitionState::batch_end(*base, location))
            .filter(|batch_end| *batch_end > log_start)
            .take_while(|batch_end| *batch_end <= limit)
            .take(budget)
            .fold((log_start, 0), |(_, removed), batch_end| {
                (batch_end, removed + 1)
            });
        (start > log_start).then_some(Step {
            start,
            removed,
            cut: removed == budget,
        })
    })
}

/// One trim command over `partitions`, in order: `step` says how far each partition's log
/// start may move within the budget of index entries left (`None`: not at all). At most
/// [`MAX_TRIM_BATCHES`] entries and [`MAX_TRIM_PARTITIONS`] partitions; the flag says
/// whether a limit cut the command short, so the caller runs another.
fn trim_step<'a>(
    partitions: impl Iterator<Item = (&'a TopicState, u32, &'a PartitionState)>,
    mut step: impl FnMut(&TopicState, u32, &PartitionState, usize) -> Option<Step>,
) -> (Vec<Trim>, bool) {
    let mut budget = MAX_TRIM_BATCHES;
    let mut trims = Vec::new();
    for (topic, index, partition) in partitions {
        let Some(step) = step(topic, index, partition, budget) else {
            continue;
        };
        if trims.len() == MAX_TRIM_PARTITIONS {
            return (trims, true);
        }
        budget -= step.removed;
        trims.push(Trim {
            topic_id: topic.id,
            partition: index,
            log_start_offset: step.start,
        });
        if step.cut {
            return (trims, true);
        }
    }
    (trims, false)
}

#[cfg(test)]
mod tests {
    use floe_core::{SegmentId, TopicConfig, TopicId};
    use floe_sequencer::BatchLocation;

    use super::*;

    fn partition(batches: &[(u32, i64)]) -> PartitionState {
        let segment = SegmentId::generate();
        let mut partition = PartitionState::default();
        for (length, max_timestamp) in batches {
            partition.batches.insert(
                partition.high_watermark,
                BatchLocation {
                    segment,
                    byte_offset: 16,
                    length: *length,
                    record_count: 10,
                    first_timestamp: *max_timestamp - 5,
                    max_timestamp: *max_timestamp,
                    crc32c: 0,
                },
            );
            partition.high_watermark += 10;
            partition.size_bytes += u64::from(*length);
        }
        partition
    }

    fn topic(config: TopicConfig) -> TopicState {
        TopicState {
            id: TopicId(1),
            name: "t".into(),
            config,
            created_ms: 0,
            partitions: Vec::new(),
            export_schema: None,
        }
    }

    #[test]
    fn time_retention_stops_at_the_first_live_batch() {
        let config = TopicConfig {
            retention_ms: 100,
            ..TopicConfig::default()
        };
        let p = partition(&[(10, 1000), (10, 1050), (10, 1200), (10, 1100)]);
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1000, usize::MAX).map(|step| step.start),
            None
        );
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1120, usize::MAX).map(|step| step.start),
            Some(10)
        );
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1151, usize::MAX).map(|step| step.start),
            Some(20)
        );
        // The batch at 20 is the newest by timestamp; the one after it cannot go first.
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1250, usize::MAX).map(|step| step.start),
            Some(20)
        );
        assert_eq!(
            retained_start(&topic(config), &p, 1301, usize::MAX).map(|step| step.start),
            Some(40)
        );
    }

    #[test]
    fn a_step_looks_at_no_more_than_its_budget_and_says_when_it_was_cut() {
        let config = TopicConfig {
            retention_ms: 100,
            ..TopicConfig::default()
        };
        // Four expired batches of 10 offsets, then a live one.
        let p = partition(&[(10, 1), (10, 2), (10, 3), (10, 4), (10, 5_000)]);
        let step = |budget| retained_start(&topic(config.clone()), &p, 1_000, budget);
        let cut = |start, removed| {
            Some(Step {
                start,
                removed,
                cut: true,
            })
        };
        assert_eq!(step(0), None);
        assert_eq!(step(1), cut(10, 1));
        assert_eq!(step(3), cut(30, 3));
        // Exactly the budget: cut, so the next step looks again (and finds nothing).
        assert_eq!(step(4), cut(40, 4));
        assert_eq!(
            step(5),
            Some(Step {
                start: 40,
                removed: 4,
                cut: false
            })
        );
        // A log start inside the first batch: that batch still counts.
        let mut inside = p.clone();
        inside.log_start_offset = 5;
        let step = retained_start(&topic(config), &inside, 1_000, 2);
        assert_eq!(step, cut(20, 2));
    }

    #[test]
    fn a_delete_step_stops_at_the_ends_the_budget_and_an_export_hold() {
        // Two partitions of five 10-offset batches each.
        let five = [(10, 1); 5];
        let mut t = topic(TopicConfig::default());
        t.partitions = vec![partition(&five), partition(&five)];
        let trim = |partition, log_start_offset| Trim {
            topic_id: t.id,
            partition,
            log_start_offset,
        };
        // Everything, in one step.
        assert_eq!(
            delete_step(&t, &[50, 50]),
            (vec![trim(0, 50), trim(1, 50)], false)
        );
        // No further than the ends taken when the delete began (later records are left
        // to the delete), and none where an end is at the log start.
        t.partitions[1].log_start_offset = 20;
        assert_eq!(delete_step(&t, &[30, 20]), (vec![trim(0, 30)], false));
        // An enabled export holds each partition at its cursor.
        t.config.export_enabled = true;
        t.partitions[0].export = Some(floe_sequencer::ExportCursor {
            next_offset: 25,
            ..Default::default()
        });
        t.partitions[1].export = Some(floe_sequencer::ExportCursor {
            next_offset: 50,
            ..Default::default()
        });
        // Partition 0 stops at the last batch ending at or before 25; partition 1 goes.
        assert_eq!(
            delete_step(&t, &[50, 50]),
            (vec![trim(0, 20), trim(1, 50)], false)
        );
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let config = TopicConfig {
            retention_bytes: 25,
            ..TopicConfig::default()
        };
        let p = partition(&[(10, 1), (10, 2), (10, 3), (10, 4)]);
        // 40 bytes, limit 25: dropping one batch leaves 30, two would leave 20.
        assert_eq!(
            retained_start(&topic(config), &p, 0, usize::MAX).map(|step| step.start),
            Some(10)
        );
        let compact = TopicConfig {
            retention_ms: 1,
            cleanup_policy: CleanupPolicy::Compact,
            ..TopicConfig::default()
        };
        assert_eq!(
            retained_start(&topic(compact), &p, 1_000_000, usize::MAX).map(|step| step.start),
            None
        );
    }
}
