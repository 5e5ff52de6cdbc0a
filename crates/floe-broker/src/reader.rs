//! Reading batches back: the one path from the batch index to verified records, shared by
//! fetch and compaction. Bytes come through the read cache (memory, disk, then one GET per
//! run of missing blocks); every batch is checked against the CRC the index recorded for
//! it before anything decodes it.

use bytes::Bytes;
use floe_core::segment::verify_batch;
use floe_core::{Record, SegmentId, decode_batch};
use floe_sequencer::BatchLocation;
use floe_storage::{ReadCache, ReadCause};
use futures::future::try_join_all;

use crate::error::BrokerError;

/// A batch to read, and how far into its segment a miss may read ahead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    pub base: u64,
    pub location: BatchLocation,
    pub read_ahead_to: u64,
}

/// Reads batches of segments through the read cache.
#[derive(Debug, Clone)]
pub(crate) struct SegmentReader {
    cache: ReadCache,
}

impl SegmentReader {
    pub(crate) fn new(cache: ReadCache) -> Self {
        Self { cache }
    }

    /// Reads one batch: its records with their absolute offsets.
    pub(crate) async fn read_batch(
        &self,
        base: u64,
        location: BatchLocation,
        cause: ReadCause,
    ) -> Result<Vec<(u64, Record)>, BrokerError> {
        if location.length == 0 {
            return Ok(Vec::new());
        }
        let bytes = self
            .cache
            .read(location.segment, byte_range(&location), 0, cause)
            .await?;
        verify(base, &location, &bytes)?;
        decode_verified(base, location, &bytes)
    }

    /// Reads `batches` verified, in order, skipping empty ones (runs whose records
    /// compaction dropped). Each segment's batches are read in one cache call, so their
    /// missing blocks are fetched together; segments are read concurrently (the caller's
    /// selection bounds the bytes). Decoding is left to the caller, which can stop once
    /// it has enough.
    pub(crate) async fn read_verified(
        &self,
        batches: &[Wanted],
        cause: ReadCause,
    ) -> Result<Vec<(u64, BatchLocation, Bytes)>, BrokerError> {
        let mut segments: Vec<(SegmentId, Vec<usize>)> = Vec::new();
        for (index, wanted) in batches.iter().enumerate() {
            if wanted.location.length == 0 {
                continue;
            }
            match segments
                .iter_mut()
                .find(|(segment, _)| *segment == wanted.location.segment)
            {
                Some((_, members)) => members.push(index),
                None => segments.push((wanted.location.segment, vec![index])),
            }
        }
        let reads = segments.iter().map(|(segment, members)| {
            let ranges: Vec<_> = members
                .iter()
                .map(|index| byte_range(&batches[*index].location))
                .collect();
            let read_ahead_to = members
                .iter()
                .map(|index| batches[*index].read_ahead_to)
                .max()
                .unwrap_or(0);
            let cache = &self.cache;
            async move {
                cache
                    .read_ranges(*segment, &ranges, read_ahead_to, cause)
                    .await
            }
        });
        let mut raw: Vec<Bytes> = vec![Bytes::new(); batches.len()];
        for ((_, members), answers) in segments.iter().zip(try_join_all(reads).await?) {
            for (index, answer) in members.iter().zip(answers) {
                raw[*index] = answer;
            }
        }
        batches
            .iter()
            .zip(raw)
            .filter(|(wanted, _)| wanted.location.length > 0)
            .map(|(wanted, bytes)| {
                verify(wanted.base, &wanted.location, &bytes)?;
                Ok((wanted.base, wanted.location, bytes))
            })
            .collect()
    }
}

fn byte_range(location: &BatchLocation) -> std::ops::Range<u64> {
    location.byte_offset..location.byte_offset + u64::from(location.length)
}

/// Checks a batch's bytes against the CRC the index recorded for it.
fn verify(base: u64, location: &BatchLocation, bytes: &Bytes) -> Result<(), BrokerError> {
    verify_batch(bytes, location.crc32c).map_err(|error| {
        BrokerError::Corrupt(format!(
            "segment {} batch at offset {base}: {error}",
            location.segment
        ))
    })
}

/// Decodes a batch whose CRC was verified, placing its records at absolute offsets, and
/// refuses one that reaches past the offsets the index gave it.
pub(crate) fn decode_verified(
    base: u64,
    location: BatchLocation,
    bytes: &Bytes,
) -> Result<Vec<(u64, Record)>, BrokerError> {
    let batch = decode_batch(bytes).map_err(|error| {
        BrokerError::Corrupt(format!(
            "segment {} batch at offset {base}: {error}",
            location.segment
        ))
    })?;
    if batch.offset_span() > u64::from(location.record_count) {
        return Err(BrokerError::Corrupt(format!(
            "segment {} batch at offset {base} reaches {} offsets, index says {}",
            location.segment,
            batch.offset_span(),
            location.record_count
        )));
    }
    Ok(batch
        .offsets
        .into_iter()
        .zip(batch.records)
        .map(|(relative, record)| (base + u64::from(relative), record))
        .collect())
}
