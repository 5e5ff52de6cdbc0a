//! `floe groups`: list, describe and delete consumer groups, and reset their committed
//! offsets, in the spirit of `kafka-consumer-groups.sh`.

use std::time::UNIX_EPOCH;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use floe_api::{PartitionOffsets, ResetOffsetsRequest};
use floe_client::FloeClient;
use serde_json::{Map, Value};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups: name, state, members and generation.
    List,
    /// Show a group's state and coordinator, and per partition its member, committed
    /// offset, high watermark and lag.
    Describe { group: String },
    /// Delete a group without members, with its committed offsets.
    Delete { group: String },
    /// Move a topic's committed offsets in a group without members.
    ResetOffsets {
        group: String,
        /// The topic whose committed offsets move.
        #[arg(long)]
        topic: String,
        /// earliest, latest, an RFC 3339 time such as 2025-06-01T12:00:00Z (each partition's
        /// first record at or after it), or an offset for every partition (moved into each
        /// partition's log when outside it).
        #[arg(long, value_name = "earliest|latest|TIME|OFFSET")]
        to: String,
    },
}

pub async fn run(client: &FloeClient, command: GroupsCommand) -> anyhow::Result<()> {
    match command {
        GroupsCommand::List => {
            for group in client.list_groups().await?.groups {
                println!(
                    "{}\t{}\t{} members\tgeneration {}",
                    group.group, group.state, group.members, group.generation
                );
            }
        }
        GroupsCommand::Describe { group } => {
            let description = client.describe_group(&group).await?;
            println!("group {}", description.group);
            println!("  state = {}", description.state);
            println!("  generation = {}", description.generation);
            println!("  coordinator = {}", description.coordinator);
            println!("  members = {}", description.members.len());
            print!("{}", offsets_table(&description.offsets, true));
        }
        GroupsCommand::Delete { group } => {
            client.delete_group(&group).await?;
            println!("deleted group {group}");
        }
        GroupsCommand::ResetOffsets { group, topic, to } => {
            let target = reset_target(client, &topic, &to).await?;
            let request = ResetOffsetsRequest { topic, to: target };
            let offsets = client.reset_offsets(&group, &request).await?;
            println!("group {}", offsets.group);
            print!("{}", offsets_table(&offsets.offsets, false));
        }
    }
    Ok(())
}

/// The `to` of a reset: `earliest` and `latest` as they are, a time as its milliseconds,
/// an offset as the same offset for every partition of the topic.
async fn reset_target(client: &FloeClient, topic: &str, to: &str) -> anyhow::Result<Value> {
    if matches!(to, "earliest" | "latest") {
        return Ok(Value::String(to.to_owned()));
    }
    if let Ok(offset) = to.parse::<u64>() {
        let description = client.describe_topic(topic).await?;
        // Like kafka-consumer-groups: an offset outside a partition's log becomes its
        // nearest end, rather than failing the whole reset.
        let per_partition: Map<String, Value> = description
            .partitions
            .iter()
            .map(|partition| {
                let kept = offset
                    .max(partition.log_start_offset)
                    .min(partition.high_watermark);
                if kept != offset {
                    eprintln!(
                        "floe: partition {}: offset {offset} is outside {}..{}; using {kept}",
                        partition.partition, partition.log_start_offset, partition.high_watermark
                    );
                }
                (partition.partition.to_string(), Value::from(kept))
            })
            .collect();
        return Ok(Value::Object(per_partition));
    }
    let millis = parse_time_millis(to).with_context(|| {
        format!("--to {to:?} is not earliest, latest, an RFC 3339 time or an offset")
    })?;
    Ok(Value::from(millis))
}

/// Milliseconds since the epoch of an RFC 3339 time; `Z` or a `+HH:MM`/`-HH:MM` offset
/// (UTC when it has neither).
fn parse_time_millis(text: &str) -> anyhow::Result<u64> {
    let (local, offset_seconds) = split_utc_offset(text);
    let time = humantime::parse_rfc3339_weak(local)?;
    let utc_seconds = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow!("before 1970"))?
        .as_millis();
    let millis = i128::try_from(utc_seconds)? - i128::from(offset_seconds) * 1000;
    u64::try_from(millis).map_err(|_| anyhow!("before 1970"))
}

/// Splits a trailing `+HH:MM` or `-HH:MM` off (humantime reads UTC only); the offset in
/// seconds east of UTC.
fn split_utc_offset(text: &str) -> (&str, i64) {
    let bytes = text.as_bytes();
    let Some(start) = bytes.len().checked_sub(6) else {
        return (text, 0);
    };
    let sign = match bytes[start] {
        b'+' => 1,
        b'-' => -1,
        _ => return (text, 0),
    };
    let suffix = &bytes[start + 1..];
    let digits = [suffix[0], suffix[1], suffix[3], suffix[4]];
    if suffix[2] != b':' || !digits.iter().all(u8::is_ascii_digit) {
        return (text, 0);
    }
    let number = |high: u8, low: u8| i64::from(high - b'0') * 10 + i64::from(low - b'0');
    let seconds = number(digits[0], digits[1]) * 3600 + number(digits[2], digits[3]) * 60;
    (&text[..start], sign * seconds)
}

/// The per-partition table: TOPIC PARTITION [MEMBER] COMMITTED HIGH-WATERMARK LAG.
fn offsets_table(offsets: &[PartitionOffsets], with_member: bool) -> String {
    let mut header = vec!["TOPIC", "PARTITION"];
    if with_member {
        header.push("MEMBER");
    }
    header.extend(["COMMITTED", "HIGH-WATERMARK", "LAG"]);
    let mut sorted: Vec<&PartitionOffsets> = offsets.iter().collect();
    sorted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let rows: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|p| {
            let mut row = vec![p.topic.clone(), p.partition.to_string()];
            if with_member {
                row.push(p.member_id.clone().unwrap_or_else(|| "-".into()));
            }
            row.push(
                p.committed_offset
                    .map_or_else(|| "-".into(), |offset| offset.to_string()),
            );
            row.push(p.high_watermark.to_string());
            row.push(p.lag.to_string());
            row
        })
        .collect();
    table(&header, &rows)
}

/// Left-aligned columns two spaces apart, indented like `floe topics describe`.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(topic: &str, partition: u32, committed: Option<u64>) -> PartitionOffsets {
        PartitionOffsets {
            topic: topic.into(),
            partition,
            committed_offset: committed,
            metadata: None,
            log_start_offset: 0,
            high_watermark: 12,
            lag: 12 - committed.unwrap_or(0),
            member_id: committed.map(|_| "member-1".into()),
        }
    }

    #[test]
    fn the_offsets_table_lines_up_and_sorts() {
        let table = offsets_table(&[offsets("t", 10, None), offsets("t", 2, Some(10))], true);
        assert_eq!(
            table,
            "  TOPIC  PARTITION  MEMBER    COMMITTED  HIGH-WATERMARK  LAG\n  \
             t      2          member-1  10         12              2\n  \
             t      10         -         -          12              12\n"
        );
    }

    #[test]
    fn times_are_rfc_3339_with_any_utc_offset() {
        let utc = parse_time_millis("2025-06-01T12:00:00Z").expect("utc");
        assert_eq!(utc, 1_748_779_200_000);
        assert_eq!(
            parse_time_millis("2025-06-01T14:00:00+02:00").expect("east"),
            utc
        );
        assert_eq!(
            parse_time_millis("2025-06-01T07:30:00-04:30").expect("west"),
            utc
        );
        assert_eq!(
            parse_time_millis("2025-06-01T12:00:00.250Z").expect("fraction"),
            utc + 250
        );
        assert!(parse_time_millis("yesterday").is_err());
        assert!(parse_time_millis("2025-06-01T12:00:00+2:00").is_err());
    }
}
