//! What one retention trim costs a replica: commits SEGMENTS segments of 8 batches over a
//! 64-partition topic (the shape of `sequencer_bench`), takes a copy of the state as a
//! snapshot would, then times one `TrimPartitions` of every partition up to FRACTION of
//! its high watermark (1: everything), or, with `delete` for FRACTION, one `DeleteTopic`.
//!
//! `cargo run --release -p floe-sequencer --example trim_bench -- [SEGMENTS [FRACTION|delete]]`
use std::time::Instant;

use floe_core::segment::BatchEntry;
use floe_core::{SegmentId, TopicConfig};
use floe_sequencer::{ClusterState, Command, Outcome, Trim};

fn main() {
    let segments: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(36_000);
    let mut state = ClusterState::default();
    let mut index = 1;
    let Ok(Outcome::TopicCreated(topic)) = state.apply(
        index,
        &Command::CreateTopic {
            name: "t".into(),
            partitions: 64,
            config: TopicConfig::default(),
            created_ms: 0,
        },
    ) else {
        panic!("create the topic")
    };
    let started = Instant::now();
    for seed in 0..segments {
        index += 1;
        let batches = (0..8u32)
            .map(|i| BatchEntry {
                topic_id: topic,
                partition: ((seed.wrapping_mul(31) + u64::from(i) * 7) % 64) as u32,
                byte_offset: 16 + u64::from(i) * 1024,
                length: 1024,
                record_count: 10,
                first_timestamp: 0,
                max_timestamp: 0,
                crc32c: 0,
            })
            .collect();
        state
            .apply(
                index,
                &Command::CommitSegment {
                    segment: SegmentId::generate(),
                    batches,
                    guards: Vec::new(),
                    at_ms: 0,
                },
            )
            .expect("commit");
    }
    println!("commit {segments} segments: {:?}", started.elapsed());
    let copy = state.clone();
    if std::env::args().nth(2).as_deref() == Some("delete") {
        let started = Instant::now();
        state
            .apply(
                index + 1,
                &Command::DeleteTopic {
                    name: "t".into(),
                    at_ms: 1,
                },
            )
            .expect("delete");
        println!(
            "delete of the topic (the state shared with a copy): {:?}",
            started.elapsed()
        );
        return;
    }
    let frac: f64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1.0);
    let hw = segments * 8 / 64 * 10;
    let trims: Vec<Trim> = (0..64)
        .map(|p| Trim {
            topic_id: topic,
            partition: p,
            log_start_offset: if frac >= 1.0 {
                u64::MAX / 2
            } else {
                (hw as f64 * frac) as u64
            },
        })
        .collect();
    let started = Instant::now();
    state
        .apply(index + 1, &Command::TrimPartitions { at_ms: 1, trims })
        .expect("trim");
    println!(
        "trim of {:.0} % of every partition (the state shared with a copy): {:?}",
        frac.min(1.0) * 100.0,
        started.elapsed()
    );
    let started = Instant::now();
    drop(copy);
    println!("drop the copy: {:?}", started.elapsed());
}
