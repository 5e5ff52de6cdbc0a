//! The behaviour every [`LogBackend`] must show, as functions each backend's tests call.
//!
//! A backend passes when, for a factory that reopens the same durable log, every function
//! here returns without panicking.

use std::future::Future;
use std::sync::Arc;

use floe_core::TopicConfig;

use crate::error::LogError;
use crate::log::{LogBackend, LogEntry, Recovery, Snapshot};
use crate::membership::Identity;
use crate::sequencer::{Sequencer, SequencerOptions};
use crate::state::{ClusterState, Command, Outcome};

/// The broker the suite's sequencers run as.
fn identity() -> Identity {
    Identity::new("conformance", "127.0.0.1:0")
}

/// A command creating topic `name` of one partition.
pub(crate) fn create(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partitions: 1,
        config: TopicConfig::default(),
        created_ms: 0,
    }
}

/// Commands committed before a restart are all there after it, in order, and rejected
/// ones stay rejected without having taken a log entry.
pub async fn survives_reopen<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LogBackend>>,
{
    let options = SequencerOptions {
        snapshot_every: 1_000_000,
        ..SequencerOptions::default()
    };
    let sequencer = Sequencer::open(open().await, options.clone(), identity())
        .await
        .expect("open");
    for name in ["a", "b", "c"] {
        sequencer.submit(create(name)).await.expect("create");
    }
    assert!(
        sequencer.submit(create("a")).await.is_err(),
        "a duplicate is rejected"
    );
    let before = sequencer.read(|state| state.clone());
    sequencer.shutdown().await;

    let reopened = Sequencer::open(open().await, options, identity())
        .await
        .expect("reopen");
    let after = reopened.read(|state| state.clone());
    assert_eq!(after, before);
    assert_eq!(after.applied_index, 3, "the duplicate took no entry");
    reopened.shutdown().await;
}

/// Concurrent submitters all get answers, each once, and the state reflects every
/// accepted command exactly once.
pub async fn concurrent_submitters_are_serialized<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LogBackend>>,
{
    let sequencer = Sequencer::open(open().await, SequencerOptions::default(), identity())
        .await
        .expect("open");
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let sequencer = sequencer.clone();
        tasks.push(tokio::spawn(async move {
            let mut created = 0;
            for round in 0..10 {
                // Every writer tries the same names: exactly one wins each.
                let name = format!("shared-{round}");
                if let Ok(Outcome::TopicCreated(_)) = sequencer.submit(create(&name)).await {
                    created += 1;
                }
                sequencer
                    .submit(create(&format!("own-{writer}-{round}")))
                    .await
                    .expect("unique name");
            }
            created
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += task.await.expect("writer task");
    }
    assert_eq!(winners, 10, "each shared name is created exactly once");
    assert_eq!(sequencer.read(|state| state.topics().count()), 90);
    sequencer.shutdown().await;
}

/// After a snapshot, a reopen restores the same state from it and the log tail.
pub async fn snapshots_restore_state<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LogBackend>>,
{
    let options = SequencerOptions {
        snapshot_every: 5,
        ..SequencerOptions::default()
    };
    let sequencer = Sequencer::open(open().await, options.clone(), identity())
        .await
        .expect("open");
    for index in 0..23 {
        sequencer
            .submit(create(&format!("t{index}")))
            .await
            .expect("create");
    }
    let before = sequencer.read(|state| state.clone());
    sequencer.shutdown().await;
    let reopened = Sequencer::open(open().await, options, identity())
        .await
        .expect("reopen");
    assert_eq!(reopened.read(|state| state.clone()), before);
    reopened.shutdown().await;
    let recovery = open().await.recover().await.expect("recover");
    let snapshot = recovery.snapshot.expect("a snapshot was installed");
    // Snapshots are written beside the commit loop, so the last one may have been taken
    // a few entries before the end; recovery starts right after it, wherever it fell.
    assert!(snapshot.index >= 5, "snapshot at {}", snapshot.index);
    let indexes: Vec<u64> = recovery.entries.iter().map(|entry| entry.index).collect();
    assert_eq!(indexes, (snapshot.index + 1..=23).collect::<Vec<_>>());
}

/// A snapshot is installed beside the commit loop: entries appended after the state it
/// holds was copied, before it is installed, stay in the log, and a later snapshot
/// covers them. Calls the backend directly, the way the commit loop does.
pub async fn snapshot_keeps_entries_appended_meanwhile<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LogBackend>>,
{
    let entries = |range: std::ops::RangeInclusive<u64>| -> Vec<LogEntry> {
        range
            .map(|index| LogEntry {
                index,
                command: create(&format!("t{index}")),
            })
            .collect()
    };
    let state_at = |index: u64| {
        let mut state = ClusterState::default();
        for entry in entries(1..=index) {
            state.apply(entry.index, &entry.command).expect("apply");
        }
        Snapshot {
            index,
            state: serde_json::to_vec(&state).expect("encode").into(),
        }
    };
    let indexes = |recovery: &Recovery| -> (Option<u64>, Vec<u64>) {
        (
            recovery.snapshot.as_ref().map(|snapshot| snapshot.index),
            recovery.entries.iter().map(|entry| entry.index).collect(),
        )
    };
    {
        let backend = open().await;
        backend.recover().await.expect("recover");
        backend.append(&entries(1..=5), &[]).await.expect("append");
        // The state at 5 is copied; 6..=10 commit while it is encoded and written.
        backend.append(&entries(6..=10), &[]).await.expect("append");
        backend
            .install_snapshot(state_at(5))
            .await
            .expect("snapshot");
        backend
            .append(&entries(11..=12), &[])
            .await
            .expect("append");
        backend.close().await;
    }
    {
        let backend = open().await;
        let recovery = backend.recover().await.expect("recover");
        assert_eq!(indexes(&recovery), (Some(5), (6..=12).collect()));
        backend
            .append(&entries(13..=14), &[])
            .await
            .expect("append");
        backend
            .install_snapshot(state_at(12))
            .await
            .expect("snapshot");
        backend
            .append(&entries(15..=15), &[])
            .await
            .expect("append");
        backend.close().await;
    }
    let backend = open().await;
    let recovery = backend.recover().await.expect("recover");
    assert_eq!(indexes(&recovery), (Some(12), (13..=15).collect()));
    // A snapshot task an earlier loop left running lands late: it must not move the
    // snapshot back past entries the newer one trimmed.
    assert!(matches!(
        backend.install_snapshot(state_at(10)).await,
        Err(LogError::SnapshotSuperseded {
            installed: 12,
            offered: 10
        })
    ));
    backend.close().await;
    drop(backend);
    let backend = open().await;
    let recovery = backend.recover().await.expect("recover");
    assert_eq!(indexes(&recovery), (Some(12), (13..=15).collect()));
    backend.close().await;
}
