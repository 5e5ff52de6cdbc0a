//! `floe consume -g GROUP`: records of the partitions the group assigns to this member,
//! until stopped; then what was printed is committed and the member leaves, so its
//! partitions move to the other members at once.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use floe_api::{FetchedRecordJson, GroupRecordJson, TopicPartition};
use floe_client::{AutoOffsetReset, GroupConsumer, GroupOptions};
use tokio::task::JoinHandle;

use crate::consume::{ConsumeArgs, render};

/// The pause before polling again after a poll gave up on an unreachable server.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Joins, prints until Ctrl-C, SIGTERM or `-n` records, commits and leaves; exits 1 when
/// reading failed.
pub async fn run(
    server: &crate::ServerArg,
    group: &str,
    args: &ConsumeArgs,
) -> anyhow::Result<ExitCode> {
    if args.partition.is_some() {
        bail!("-p cannot be used with -g: the group assigns the partitions");
    }
    let auto_offset_reset: AutoOffsetReset = args.offset.parse().map_err(|_| {
        anyhow!(
            "with -g, -o is earliest or latest (where a partition without a committed \
             offset starts), not {:?}",
            args.offset
        )
    })?;
    let options = GroupOptions {
        session_timeout: args.session_timeout,
        auto_offset_reset,
        commit_every: args.commit_every,
        encoding: args.encoding,
        ..GroupOptions::new([args.topic.as_str()])
    };
    let client = server.client_with_timeout(args.timeout + options.wait)?;
    // Listening from the start: a signal while joining ends the run, not the process.
    let mut stop = tokio::spawn(floe_server::app::shutdown_signal());
    let mut consumer = tokio::select! {
        joined = client.group_consumer(group, options) => joined?,
        _ = &mut stop => return Ok(ExitCode::SUCCESS),
    };
    eprintln!(
        "floe: group {group}: joined as {} (epoch {})",
        consumer.member_id(),
        consumer.member_epoch()
    );
    let consumed = consume(&mut consumer, args, &mut stop).await;
    if let Err(error) = &consumed {
        eprintln!("floe: group {group}: {error:#}");
    }
    // A second signal stops waiting for the goodbye; the session then expires.
    let left = tokio::select! {
        left = consumer.leave() => left.map_err(anyhow::Error::from),
        () = floe_server::app::shutdown_signal() => Err(anyhow!("stopped before leaving")),
    };
    match &left {
        Ok(()) => eprintln!("floe: group {group}: left"),
        Err(error) => eprintln!("floe: group {group}: leaving: {error:#}"),
    }
    Ok(if consumed.is_ok() && left.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Polls and prints until stopped, `-n` records were printed, or a poll fails.
async fn consume(
    consumer: &mut GroupConsumer,
    args: &ConsumeArgs,
    stop: &mut JoinHandle<()>,
) -> anyhow::Result<()> {
    let group = consumer.group().to_owned();
    let escape = std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    let mut reported = BTreeSet::new();
    let mut printed = 0u64;
    let mut rejoins = 0;
    loop {
        if consumer.rejoins() > rejoins {
            rejoins = consumer.rejoins();
            eprintln!(
                "floe: group {group}: removed from the group; rejoined as {} (epoch {})",
                consumer.member_id(),
                consumer.member_epoch()
            );
        }
        if let Some(change) = assignment_change(&reported, &consumer.assignment()) {
            eprintln!("floe: group {group}: {change}");
            reported = consumer.assignment().into_iter().collect();
        }
        if let Some(count) = args.count {
            let Some(remaining) = count.checked_sub(printed).filter(|left| *left > 0) else {
                return Ok(());
            };
            // Never more than will be printed: the rest must stay uncommitted.
            consumer.set_max_records(Some(usize::try_from(remaining).unwrap_or(usize::MAX)));
        }
        let polled = tokio::select! {
            polled = consumer.poll() => polled,
            _ = &mut *stop => return Ok(()),
        };
        let records = match polled {
            Ok(records) => records,
            // The client already retried for a session's length: the server is restarting
            // or the coordinator is moving. Keep trying; a later poll rejoins if needed.
            Err(error) if error.is_retryable() => {
                eprintln!("floe: group {group}: {error}; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => continue,
                    _ = &mut *stop => return Ok(()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        for record in records {
            writeln!(
                stdout,
                "{}",
                render_group_record(&args.format, record, escape)
            )?;
            printed += 1;
        }
        stdout.flush()?;
    }
}

fn render_group_record(format: &str, record: GroupRecordJson, escape: bool) -> String {
    let GroupRecordJson {
        topic,
        partition,
        offset,
        timestamp,
        key,
        value,
        headers,
    } = record;
    let fetched = FetchedRecordJson {
        offset,
        timestamp,
        key,
        value,
        headers,
    };
    render(format, &topic, partition, &fetched, escape)
}

/// `assigned t/0,t/3; revoked t/5`: how the member's partitions moved, if they did.
fn assignment_change(before: &BTreeSet<TopicPartition>, now: &[TopicPartition]) -> Option<String> {
    let now: BTreeSet<TopicPartition> = now.iter().cloned().collect();
    let list = |partitions: Vec<&TopicPartition>| {
        partitions
            .iter()
            .map(|p| format!("{}/{}", p.topic, p.partition))
            .collect::<Vec<_>>()
            .join(",")
    };
    let assigned: Vec<&TopicPartition> = now.difference(before).collect();
    let revoked: Vec<&TopicPartition> = before.difference(&now).collect();
    let mut parts = Vec::new();
    if !assigned.is_empty() {
        parts.push(format!("assigned {}", list(assigned)));
    }
    if !revoked.is_empty() {
        parts.push(format!("revoked {}", list(revoked)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(list: &[(&str, u32)]) -> Vec<TopicPartition> {
        list.iter()
            .map(|(topic, partition)| TopicPartition {
                topic: (*topic).into(),
                partition: *partition,
            })
            .collect()
    }

    #[test]
    fn an_assignment_change_is_one_line() {
        let before: BTreeSet<_> = partitions(&[("t", 1), ("t", 5)]).into_iter().collect();
        let now = partitions(&[("t", 0), ("t", 1), ("t", 3)]);
        assert_eq!(
            assignment_change(&before, &now).as_deref(),
            Some("assigned t/0,t/3; revoked t/5")
        );
        assert_eq!(
            assignment_change(&BTreeSet::new(), &now).as_deref(),
            Some("assigned t/0,t/1,t/3")
        );
        assert_eq!(
            assignment_change(&before, &[]).as_deref(),
            Some("revoked t/1,t/5")
        );
        assert_eq!(
            assignment_change(&before, &partitions(&[("t", 5), ("t", 1)])),
            None
        );
    }

    #[test]
    fn a_group_record_renders_like_a_fetched_one() {
        let record = GroupRecordJson {
            topic: "orders".into(),
            partition: 3,
            offset: 9,
            timestamp: 1_700_000_000_000,
            key: Some("k".into()),
            value: Some("v".into()),
            headers: Vec::new(),
        };
        assert_eq!(
            render_group_record("%t/%p/%o %k=%v", record, false),
            "orders/3/9 k=v"
        );
    }
}
