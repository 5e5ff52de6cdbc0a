//! `floe topics`: list, create, describe, grow and delete topics.

use std::collections::BTreeMap;

use clap::Subcommand;
use floe_api::CreateTopicRequest;
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
            let topic = client.describe_topic(&name).await?;
            println!("topic {} (id {})", topic.name, topic.id);
            if let Value::Object(config) = &topic.config {
                for (key, value) in config {
                    println!("  {key} = {value}");
                }
            }
            println!("  partition  log_start  high_watermark  bytes  owner");
            for p in topic.partitions {
                println!(
                    "  {:>9}  {:>9}  {:>14}  {:>5}  {}",
                    p.partition, p.log_start_offset, p.high_watermark, p.size_bytes, p.owner
                );
            }
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
