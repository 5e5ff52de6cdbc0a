//! Cluster metadata, health, metrics and the OpenAPI document.

use std::fmt::Write;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use floe_api::{BrokerInfo, ClusterInfo, PartitionOwner};

use crate::error::ApiError;

use super::AppState;

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn cluster(State(state): State<AppState>) -> Json<ClusterInfo> {
    let sequencer = state.broker.sequencer();
    let membership = sequencer.membership();
    let brokers = membership
        .members()
        .into_iter()
        .map(|member| BrokerInfo {
            id: member.broker,
            address: member.advertise,
            started_ms: member.started_ms,
        })
        .collect();
    let (applied_index, owners) = sequencer.read(|s| {
        let owners = s
            .topics()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(index, partition)| PartitionOwner {
                        topic: topic.name.clone(),
                        partition: index as u32,
                        owner: membership
                            .owner_of(partition.owner.as_deref())
                            .unwrap_or_default(),
                        epoch: partition.owner_epoch,
                    })
            })
            .collect();
        (s.applied_index, owners)
    });
    Json(ClusterInfo {
        cluster: state.cluster_name.to_string(),
        sequencer: membership.mode().as_str().into(),
        broker: membership.broker().to_owned(),
        leader: membership.leader().map(|leader| leader.broker),
        applied_index,
        brokers,
        owners,
    })
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when this broker can commit: always when embedded; in a cluster, while its
/// session is live and a sequencer leader is known.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .broker
        .sequencer()
        .membership()
        .ready()
        .map_err(|error| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                error.to_string(),
            )
        })?;
    Ok("ready")
}

/// Prometheus text exposition: floe's own gauges and the kafka_exporter names dashboards
/// already use.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# TYPE floe_buffered_bytes gauge\nfloe_buffered_bytes {}",
        state.broker.buffered_bytes()
    );
    let applied = state.broker.sequencer().read(|s| s.applied_index);
    let _ = writeln!(
        out,
        "# TYPE floe_sequencer_applied_index gauge\nfloe_sequencer_applied_index {applied}"
    );
    write_cache_metrics(&mut out, &state.broker.cache_stats());
    write_job_metrics(
        &mut out,
        &state.broker.job_stats(),
        &state.broker.store_footprint(),
    );
    let mut partitions = String::from("# TYPE kafka_topic_partitions gauge\n");
    let mut current = String::from("# TYPE kafka_topic_partition_current_offset gauge\n");
    let mut oldest = String::from("# TYPE kafka_topic_partition_oldest_offset gauge\n");
    state.broker.sequencer().read(|s| {
        for topic in s.topics() {
            let _ = writeln!(
                partitions,
                "kafka_topic_partitions{{topic=\"{}\"}} {}",
                topic.name,
                topic.partition_count()
            );
            for (index, partition) in topic.partitions.iter().enumerate() {
                let labels = format!("topic=\"{}\",partition=\"{index}\"", topic.name);
                let _ = writeln!(
                    current,
                    "kafka_topic_partition_current_offset{{{labels}}} {}",
                    partition.high_watermark
                );
                let _ = writeln!(
                    oldest,
                    "kafka_topic_partition_oldest_offset{{{labels}}} {}",
                    partition.log_start_offset
                );
            }
        }
    });
    out.push_str(&partitions);
    out.push_str(&current);
    out.push_str(&oldest);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The background jobs' counters and the objects and index entries they keep bounded.
fn write_job_metrics(
    out: &mut String,
    stats: &floe_broker::JobStats,
    footprint: &floe_broker::StoreFootprint,
) {
    let _ = writeln!(
        out,
        "# HELP floe_retention_trims_total Partition log starts advanced by retention.\n\
         # TYPE floe_retention_trims_total counter\n\
         floe_retention_trims_total {}\n\
         # HELP floe_objects_deleted_total Objects deleted from the store, by why.\n\
         # TYPE floe_objects_deleted_total counter\n\
         floe_objects_deleted_total{{reason=\"dead\"}} {}\n\
         floe_objects_deleted_total{{reason=\"orphan\"}} {}\n\
         # HELP floe_compactions_total Compactions committed, by kind.\n\
         # TYPE floe_compactions_total counter\n\
         floe_compactions_total{{kind=\"flush\"}} {}\n\
         floe_compactions_total{{kind=\"merge\"}} {}\n\
         floe_compactions_total{{kind=\"clean\"}} {}\n\
         # HELP floe_compaction_conflicts_total Compaction swaps refused because the run changed.\n\
         # TYPE floe_compaction_conflicts_total counter\n\
         floe_compaction_conflicts_total {}\n\
         # HELP floe_compaction_bytes_total Bytes compaction read and wrote.\n\
         # TYPE floe_compaction_bytes_total counter\n\
         floe_compaction_bytes_total{{direction=\"read\"}} {}\n\
         floe_compaction_bytes_total{{direction=\"written\"}} {}\n\
         # HELP floe_background_job_errors_total Background job runs that failed.\n\
         # TYPE floe_background_job_errors_total counter\n\
         floe_background_job_errors_total {}\n\
         # HELP floe_background_throttled_seconds_total Time background jobs waited for pacing or for produce.\n\
         # TYPE floe_background_throttled_seconds_total counter\n\
         floe_background_throttled_seconds_total {:.3}\n\
         # HELP floe_objects Objects the index refers to (live) and dead ones awaiting deletion.\n\
         # TYPE floe_objects gauge\n\
         floe_objects{{state=\"live\"}} {}\n\
         floe_objects{{state=\"dead\"}} {}\n\
         # HELP floe_live_bytes Bytes of live batches in the store.\n\
         # TYPE floe_live_bytes gauge\n\
         floe_live_bytes {}\n\
         # HELP floe_index_entries Batch index entries in the sequencer state.\n\
         # TYPE floe_index_entries gauge\n\
         floe_index_entries {}",
        stats.retention_trims,
        stats.dead_objects_deleted,
        stats.orphans_deleted,
        stats.compactions_flush,
        stats.compactions_merge,
        stats.compactions_clean,
        stats.compaction_conflicts,
        stats.compaction_bytes_read,
        stats.compaction_bytes_written,
        stats.job_errors,
        stats.throttled_ms as f64 / 1000.0,
        footprint.live_objects,
        footprint.dead_objects,
        footprint.live_bytes,
        footprint.index_entries,
    );
}

/// The read cache's counters: hits by tier, misses, GETs by cause, bytes by source.
fn write_cache_metrics(out: &mut String, stats: &floe_storage::CacheStats) {
    let _ = writeln!(
        out,
        "# HELP floe_cache_hits_total Block lookups answered by the read cache, by tier.\n\
         # TYPE floe_cache_hits_total counter\n\
         floe_cache_hits_total{{tier=\"memory\"}} {}\n\
         floe_cache_hits_total{{tier=\"disk\"}} {}\n\
         # HELP floe_cache_misses_total Block lookups that waited for the object store.\n\
         # TYPE floe_cache_misses_total counter\n\
         floe_cache_misses_total {}\n\
         # HELP floe_store_get_requests_total Ranged GETs made to the object store, by cause.\n\
         # TYPE floe_store_get_requests_total counter\n\
         floe_store_get_requests_total{{cause=\"fetch\"}} {}\n\
         floe_store_get_requests_total{{cause=\"prefetch\"}} {}\n\
         floe_store_get_requests_total{{cause=\"background\"}} {}\n\
         # HELP floe_store_get_bytes_total Bytes received from the object store.\n\
         # TYPE floe_store_get_bytes_total counter\n\
         floe_store_get_bytes_total {}\n\
         # HELP floe_fetch_bytes_total Segment bytes handed to fetches, by where they came from.\n\
         # TYPE floe_fetch_bytes_total counter\n\
         floe_fetch_bytes_total{{source=\"cache\"}} {}\n\
         floe_fetch_bytes_total{{source=\"store\"}} {}\n\
         # HELP floe_cache_blocks_written_total Blocks put in the cache by this broker's uploads.\n\
         # TYPE floe_cache_blocks_written_total counter\n\
         floe_cache_blocks_written_total {}\n\
         # HELP floe_cache_corrupt_blocks_total Disk-tier blocks dropped for a bad CRC.\n\
         # TYPE floe_cache_corrupt_blocks_total counter\n\
         floe_cache_corrupt_blocks_total {}\n\
         # TYPE floe_cache_memory_bytes gauge\n\
         floe_cache_memory_bytes {}\n\
         # TYPE floe_cache_memory_capacity_bytes gauge\n\
         floe_cache_memory_capacity_bytes {}",
        stats.memory_hits,
        stats.disk_hits,
        stats.misses,
        stats.fetch_gets,
        stats.prefetch_gets,
        stats.background_gets,
        stats.bytes_from_store,
        stats.bytes_served_cache,
        stats.bytes_served_store,
        stats.blocks_written,
        stats.corrupt_blocks,
        stats.memory_usage,
        stats.memory_capacity,
    );
}
