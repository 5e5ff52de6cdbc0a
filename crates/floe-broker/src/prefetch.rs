//! Keeping the tail warm: the owner of a partition fetches each newly committed range of it
//! that another broker wrote, as the commit is applied and before any reader waiting at the
//! tail is woken, so a consumer following the partition at its owner joins that GET (or
//! finds the bytes cached) and never makes one of its own.

use std::ops::Range;

use floe_sequencer::{ApplyError, ApplyObserver, ClusterState, Command, Outcome};
use floe_storage::ReadCache;

#[derive(Debug)]
pub(crate) struct TailPrefetcher {
    broker_id: String,
    cache: ReadCache,
}

impl TailPrefetcher {
    pub(crate) fn new(broker_id: String, cache: ReadCache) -> Self {
        Self { broker_id, cache }
    }
}

impl ApplyObserver for TailPrefetcher {
    fn applied(
        &self,
        state: &ClusterState,
        command: &Command,
        outcome: &Result<Outcome, ApplyError>,
    ) {
        let (
            Command::CommitSegment {
                segment, batches, ..
            },
            Ok(Outcome::SegmentCommitted(results)),
        ) = (command, outcome)
        else {
            return;
        };
        let mut owned: Option<Range<u64>> = None;
        for (batch, written) in batches.iter().zip(results.written()) {
            if written.is_none() {
                continue;
            }
            let is_owner = state
                .topic_by_id(batch.topic_id)
                .and_then(|topic| topic.partitions.get(batch.partition as usize))
                .and_then(|partition| partition.owner.as_deref())
                == Some(self.broker_id.as_str());
            if !is_owner {
                continue;
            }
            let range = batch.byte_offset..batch.byte_offset + u64::from(batch.length);
            owned = Some(match owned {
                Some(span) => span.start.min(range.start)..span.end.max(range.end),
                None => range,
            });
        }
        // One span per segment: the blocks between owned batches are few (a segment is one
        // flush) and fetching them in the same GET costs less than another request.
        if let Some(span) = owned {
            self.cache.prefetch(*segment, span);
        }
    }
}
