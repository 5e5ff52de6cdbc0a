//! The member's pure parts: reconciliation, error classes, retries.

use super::*;

fn partition(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

fn assigned(topic: &str, partition: u32, offset: u64) -> AssignedPartition {
    AssignedPartition {
        topic: topic.into(),
        partition,
        offset,
    }
}

fn held(partitions: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
    partitions.iter().map(|(t, p)| partition(t, *p)).collect()
}

#[test]
fn an_unchanged_assignment_moves_nothing() {
    let owned = held(&[("t", 0), ("t", 1)]);
    let assignment = [assigned("t", 1, 9), assigned("t", 0, 4)];
    assert_eq!(reconcile(&owned, &assignment), Reconciliation::default());
}

#[test]
fn revoked_and_added_are_the_two_differences() {
    let owned = held(&[("t", 0), ("t", 1), ("u", 0)]);
    let assignment = [
        assigned("t", 1, 9),
        assigned("t", 2, 0),
        assigned("u", 3, 7),
    ];
    let moves = reconcile(&owned, &assignment);
    assert_eq!(moves.revoked, vec![partition("t", 0), partition("u", 0)]);
    assert_eq!(moves.added, vec![assigned("t", 2, 0), assigned("u", 3, 7)]);
}

#[test]
fn an_empty_assignment_revokes_everything() {
    let owned = held(&[("t", 0), ("t", 1)]);
    let moves = reconcile(&owned, &[]);
    assert_eq!(moves.revoked, owned.into_iter().collect::<Vec<_>>());
    assert!(moves.added.is_empty());
}

#[test]
fn a_partition_listed_twice_is_added_once() {
    let moves = reconcile(
        &BTreeSet::new(),
        &[assigned("t", 0, 3), assigned("t", 0, 3)],
    );
    assert_eq!(moves.added, vec![assigned("t", 0, 3)]);
}

fn api_error(status: u16, code: &str) -> ClientError {
    ClientError::Api {
        status: reqwest::StatusCode::from_u16(status).expect("valid status"),
        body: floe_api::ErrorBody {
            error_code: code.into(),
            ..floe_api::ErrorBody::default()
        },
        retry_after: None,
    }
}

#[test]
fn only_a_lost_member_or_epoch_fences() {
    assert!(is_fencing(&api_error(404, "unknown_member")));
    assert!(is_fencing(&api_error(409, "unknown_member")));
    assert!(is_fencing(&api_error(409, "stale_member_epoch")));
    assert!(!is_fencing(&api_error(409, "group_not_empty")));
    assert!(!is_fencing(&api_error(503, "unavailable")));
    assert!(is_refusal_of_revoked(&api_error(
        409,
        "partition_not_owned"
    )));
}

#[test]
fn overload_and_restarts_are_retried_refusals_are_not() {
    for status in [429, 502, 503, 504] {
        assert!(api_error(status, "x").is_retryable(), "{status}");
    }
    for status in [400, 404, 409, 500] {
        assert!(!api_error(status, "x").is_retryable(), "{status}");
    }
    assert!(surely_unprocessed(&api_error(503, "x")));
    assert!(
        !surely_unprocessed(&api_error(504, "x")),
        "a gateway timeout may have joined"
    );
}

#[tokio::test]
async fn retrying_gives_up_when_patience_runs_out() {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let result: Result<(), _> = retrying(
        Duration::from_millis(250),
        ClientError::is_retryable,
        || {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Err(api_error(503, "unavailable")) }
        },
    )
    .await;
    assert!(result.is_err());
    // 100 ms then 200 ms of backoff would pass the deadline at the second pause.
    assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn retrying_stops_at_a_final_error() {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let result: Result<(), _> =
        retrying(Duration::from_secs(60), ClientError::is_retryable, || {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Err(api_error(409, "stale_member_epoch")) }
        })
        .await;
    assert!(result.is_err());
    assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 1);
}
