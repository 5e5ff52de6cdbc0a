//! The hold that bounds the log when snapshots are slower than the commits between them.

use tokio::sync::Semaphore;

use super::*;
use crate::conformance::create;
use crate::memory::MemoryLog;
use crate::state::ClusterState;

/// A log whose snapshot installs wait for a permit from the test.
#[derive(Debug)]
struct GatedSnapshots {
    log: MemoryLog,
    gate: Semaphore,
}

#[async_trait::async_trait]
impl LogBackend for GatedSnapshots {
    async fn recover(&self) -> Result<crate::log::Recovery, LogError> {
        self.log.recover().await
    }

    async fn append(&self, entries: &[LogEntry], fences: &[Fence]) -> Result<(), LogError> {
        self.log.append(entries, fences).await
    }

    async fn install_snapshot(&self, snapshot: Snapshot) -> Result<(), LogError> {
        let _permit = self.gate.acquire().await.expect("the gate stays open");
        self.log.install_snapshot(snapshot).await
    }
}

#[tokio::test]
async fn a_loop_whose_log_reached_its_bound_takes_nothing_until_the_snapshot_lands() {
    let log = Arc::new(GatedSnapshots {
        log: MemoryLog::new(),
        gate: Semaphore::new(0),
    });
    let replica = Arc::new(Replica::new(ClusterState::default()));
    let metrics = CommitMetrics::default();
    let snapshot_every = 2;
    let mut commit = CommitLoop::new(
        log.clone(),
        Arc::clone(&replica),
        64,
        snapshot_every,
        metrics.clone(),
    );
    let (sender, mut receiver) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        commit
            .run(&mut receiver, async {
                let _ = stopped.await;
            })
            .await
    });
    let submit = |name: &str| {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            command: create(name),
            fence: None,
            remote: false,
            reply,
        };
        sender.try_send(submission).expect("room in the queue");
        answer
    };

    // One command a group. After two a snapshot starts (and waits at the gate); the
    // log reaches its bound of MAX_LOG_INTERVALS intervals at eight.
    assert_eq!(MAX_LOG_INTERVALS * snapshot_every, 8);
    for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        let answer = tokio::time::timeout(Duration::from_secs(10), submit(name))
            .await
            .unwrap_or_else(|_| panic!("{name} held below the log's bound"));
        answer.expect("answered").expect("committed");
    }
    let mut held = submit("i");
    let early = tokio::time::timeout(Duration::from_millis(200), &mut held).await;
    assert!(early.is_err(), "taken with the log at its bound: {early:?}");
    assert_eq!(replica.applied_index(), 8);

    // The snapshot lands (and the next one with it): the loop takes the command.
    log.gate.add_permits(16);
    let committed = held.await.expect("answered").expect("committed");
    assert_eq!(committed.index, 9);
    let recovery = log.recover().await.expect("recover");
    assert!(
        recovery.snapshot.is_some_and(|s| s.index >= 2),
        "a snapshot was installed"
    );

    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("floe_sequencer_snapshot_stage_seconds_count{stage=\"held\"} 1"),
        "{text}"
    );
    let _ = stop.send(());
    running.await.expect("the loop").expect("stopped cleanly");
}
