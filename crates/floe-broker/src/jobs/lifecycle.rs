//! The object lifecycle: dead objects (nothing in them live) are deleted once their grace
//! period is over, then forgotten by the sequencer; objects that were never committed
//! (a broker died between upload and commit, a compaction lost its race) are deleted once
//! they are older than the orphan horizon, which the sequencer refuses to commit behind.

use floe_core::SegmentId;
use floe_sequencer::Command;

use super::Pacer;
use crate::Broker;
use crate::error::BrokerError;

/// The most objects one `ForgetObjects` names.
const FORGET_CHUNK: usize = 1000;

impl Broker {
    pub(crate) async fn run_lifecycle(&self) -> Result<(), BrokerError> {
        if !self.runs_lifecycle() {
            return Ok(());
        }
        let now = self.inner.clock.now_ms();
        let grace = self.inner.job_options.object_grace.as_millis() as i64;
        let horizon = now - grace;
        let store = self.inner.store.clone();
        let pacer = Pacer::new(u64::from(self.inner.job_options.deletes_per_second));

        // Dead objects past their grace period.
        let due: Vec<SegmentId> = self.inner.sequencer.read(|state| {
            state
                .garbage()
                .iter()
                .filter(|(_, since)| **since <= horizon)
                .map(|(segment, _)| *segment)
                .collect()
        });
        for chunk in due.chunks(FORGET_CHUNK) {
            let mut deleted = Vec::with_capacity(chunk.len());
            for segment in chunk {
                pacer.take(1).await;
                match store.delete_segment(*segment).await {
                    Ok(()) => deleted.push(*segment),
                    Err(error) => tracing::warn!(%segment, %error, "dead object not deleted"),
                }
            }
            let count = deleted.len() as u64;
            self.inner
                .sequencer
                .submit(Command::ForgetObjects { segments: deleted })
                .await?;
            self.inner.job_counters.dead_objects_deleted.inc_by(count);
        }

        // Orphans: first make sure nothing that old can still be committed.
        let applied_horizon = self.inner.sequencer.read(|state| state.orphan_horizon_ms());
        if horizon > applied_horizon {
            self.inner
                .sequencer
                .submit(Command::RaiseOrphanHorizon {
                    horizon_ms: horizon,
                })
                .await?;
        }
        let applied_horizon = self.inner.sequencer.read(|state| state.orphan_horizon_ms());
        let listed = store.list_segments().await?;
        let orphans: Vec<SegmentId> = self.inner.sequencer.read(|state| {
            listed
                .iter()
                .map(|(segment, _)| *segment)
                .filter(|segment| {
                    segment.created_ms() <= applied_horizon && !state.knows_object(*segment)
                })
                .collect()
        });
        for segment in &orphans {
            pacer.take(1).await;
            match store.delete_segment(*segment).await {
                Ok(()) => {
                    self.inner.job_counters.orphans_deleted.inc();
                    tracing::info!(%segment, "deleted an orphan object (never committed)");
                }
                Err(error) => tracing::warn!(%segment, %error, "orphan object not deleted"),
            }
        }
        let probes = store.sweep_probes(applied_horizon).await?;
        self.inner
            .job_counters
            .orphans_deleted
            .inc_by(probes as u64);
        if !due.is_empty() || !orphans.is_empty() {
            tracing::debug!(
                dead = due.len(),
                orphans = orphans.len(),
                probes,
                "object lifecycle pass"
            );
        }
        Ok(())
    }
}
