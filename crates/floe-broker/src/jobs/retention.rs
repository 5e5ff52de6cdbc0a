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
/// off) is cut into steps, and commits and reads go on between them. A trim costs the
/// replica 0.3–0.5 µs per entry (docs/benchmarks.md), so a step holds it for 5–8 ms.
pub(crate) const MAX_TRIM_BATCHES: usize = 16_384;

/// The log start offset retention allows for a partition at `now_ms`, if it moves, and
/// how many index entries that removes; it moves past at most `budget` entries.
pub(crate) fn retained_start(
    topic: &TopicState,
    partition: &PartitionState,
    now_ms: i64,
    budget: usize,
) -> Option<(u64, usize)> {
    let config = &topic.config;
    if config.cleanup_policy != CleanupPolicy::Delete {
        return None;
    }
    let mut start = partition.log_start_offset;
    if config.retention_ms >= 0 {
        let expired_before = now_ms.saturating_sub(config.retention_ms);
        for (base, location) in &partition.batches {
            if location.max_timestamp >= expired_before {
                break;
            }
            start = start.max(PartitionState::batch_end(*base, location));
        }
    }
    if config.retention_bytes >= 0 {
        let limit = config.retention_bytes as u64;
        let mut size = partition.size_bytes;
        for (base, location) in &partition.batches {
            let length = u64::from(location.length);
            if size <= limit || size < limit.saturating_add(length) {
                break;
            }
            size -= length;
            start = start.max(PartitionState::batch_end(*base, location));
        }
    }
    // An enabled export holds retention back at its cursor (the state clamps again).
    if let Some(floor) = topic.export_floor(partition) {
        start = start.min(floor);
    }
    if start <= partition.log_start_offset {
        return None;
    }
    // At most `budget` whole batches: the step ends where the last of them ends.
    let mut removed = 0;
    let mut step_end = partition.log_start_offset;
    for (base, location) in &partition.batches {
        let end = PartitionState::batch_end(*base, location);
        if end > start || removed == budget {
            break;
        }
        removed += 1;
        step_end = end;
    }
    if removed == budget {
        start = step_end;
    }
    (start > partition.log_start_offset).then_some((start, removed))
}

impl Broker {
    /// Trims every partition this broker runs jobs for: one command when the trim is
    /// small, steps of at most [`MAX_TRIM_BATCHES`] index entries (and 1,000 partitions)
    /// when it is not, each planned on the state the previous one left.
    pub(crate) async fn enforce_retention(&self) -> Result<(), BrokerError> {
        let now = self.inner.clock.now_ms();
        let mut partitions = 0;
        loop {
            let trims: Vec<Trim> = self.inner.sequencer.read(|state| {
                let mut budget = MAX_TRIM_BATCHES;
                let mut trims = Vec::new();
                for (topic, index, partition) in self.job_partitions(state) {
                    if budget == 0 || trims.len() == 1000 {
                        break;
                    }
                    if let Some((start, removed)) = retained_start(topic, partition, now, budget) {
                        budget -= removed;
                        trims.push(Trim {
                            topic_id: topic.id,
                            partition: index,
                            log_start_offset: start,
                        });
                    }
                }
                trims
            });
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
            if moved == 0 {
                break;
            }
        }
        if partitions > 0 {
            tracing::debug!(partitions, "retention advanced log start offsets");
        }
        Ok(())
    }
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
            retained_start(&topic(config.clone()), &p, 1000, usize::MAX).map(|(start, _)| start),
            None
        );
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1120, usize::MAX).map(|(start, _)| start),
            Some(10)
        );
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1151, usize::MAX).map(|(start, _)| start),
            Some(20)
        );
        // The batch at 20 is the newest by timestamp; the one after it cannot go first.
        assert_eq!(
            retained_start(&topic(config.clone()), &p, 1250, usize::MAX).map(|(start, _)| start),
            Some(20)
        );
        assert_eq!(
            retained_start(&topic(config), &p, 1301, usize::MAX).map(|(start, _)| start),
            Some(40)
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
            retained_start(&topic(config), &p, 0, usize::MAX).map(|(start, _)| start),
            Some(10)
        );
        let compact = TopicConfig {
            retention_ms: 1,
            cleanup_policy: CleanupPolicy::Compact,
            ..TopicConfig::default()
        };
        assert_eq!(
            retained_start(&topic(compact), &p, 1_000_000, usize::MAX).map(|(start, _)| start),
            None
        );
    }
}
