//! `floe topics`: list, create, describe, alter, grow and delete topics.

use std::collections::BTreeMap;

use clap::Subcommand;
use floe_api::{CreateTopicRequest, TopicDescription};
use floe_client::FloeClient;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics.
    List,
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        /// Topic config, repeatable: -c retention.ms=60000
        #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Show a topic's config and partitions.
    Describe { name: String },
    /// Change a topic's config: set keys, reset keys to their defaults; all or nothing.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "reset"])))]
    Alter {
        name: String,
        /// Set a config key, repeatable: --set export.parquet.enabled=true
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_setting)]
        set: Vec<(String, String)>,
        /// Reset a config key to its default, repeatable: --reset retention.ms
        #[arg(long, value_name = "KEY")]
        reset: Vec<String>,
    },
    /// Grow a topic to COUNT partitions.
    AddPartitions {
        name: String,
        #[arg(long)]
        count: u32,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

/// Parses an `--set`: the key is everything before the first `=`, the value the rest.
fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some(("", _)) => Err(format!(
            "{text:?} has no key before '='; expected KEY=VALUE"
        )),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!(
            "{text:?} has no '='; expected KEY=VALUE (use --reset {text} to reset a key)"
        )),
    }
}

pub async fn run(client: &FloeClient, command: TopicsCommand) -> anyhow::Result<()> {
    match command {
        TopicsCommand::List => {
            for topic in client.list_topics().await?.topics {
                println!("{}\t{} partitions", topic.name, topic.partitions);
            }
        }
        TopicsCommand::Create {
            name,
            partitions,
            config,
        } => {
            let config: BTreeMap<String, Value> = config
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect();
            let created = client
                .create_topic(&CreateTopicRequest {
                    name,
                    partitions,
                    config,
                })
                .await?;
            println!(
                "created topic {} with {} partitions",
                created.name,
                created.partitions.len()
            );
        }
        TopicsCommand::Describe { name } => {
            print_topic(&client.describe_topic(&name).await?)?;
        }
        TopicsCommand::Alter { name, set, reset } => {
            let set = set
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect();
            print_topic(&client.alter_topic_config(&name, set, reset).await?)?;
        }
        TopicsCommand::AddPartitions { name, count } => {
            let topic = client.add_partitions(&name, count).await?;
            println!(
                "topic {} now has {} partitions",
                topic.name,
                topic.partitions.len()
            );
        }
        TopicsCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

/// Prints a topic's config and partitions, as `describe` shows them.
fn print_topic(topic: &TopicDescription) -> std::io::Result<()> {
    let mut out = format!("topic {} (id {})\n", topic.name, topic.id);
    if let Value::Object(config) = &topic.config {
        for (key, value) in config {
            out.push_str(&format!("  {key} = {value}\n"));
        }
    }
    out.push_str("  partition  log_start  high_watermark  bytes  owner\n");
    for p in &topic.partitions {
        out.push_str(&format!(
            "  {:>9}  {:>9}  {:>14}  {:>5}  {}\n",
            p.partition, p.log_start_offset, p.high_watermark, p.size_bytes, p.owner
        ));
    }
    crate::write_stdout(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_setting("export.parquet.value.schema={\"a\":\"long\"}"),
            Ok((
                "export.parquet.value.schema".to_owned(),
                "{\"a\":\"long\"}".to_owned()
            ))
        );
        assert_eq!(parse_setting("k="), Ok(("k".to_owned(), String::new())));
        assert_eq!(
            parse_setting("k=a=b"),
            Ok(("k".to_owned(), "a=b".to_owned()))
        );
        let error = parse_setting("retention.ms").expect_err("no '='");
        assert!(error.contains("no '='"), "{error}");
        assert!(parse_setting("=1").is_err());
    }
}
