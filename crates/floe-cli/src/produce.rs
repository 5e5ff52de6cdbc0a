//! `floe produce`: records from lines of stdin or a file.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use floe_api::{Encoding, ProduceRecordJson};
use floe_client::{ClientError, FloeClient};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (like kcat -K).
    #[arg(long, short = 'K')]
    pub key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Records per request.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Exactly once: each request carries an idempotent producer's sequence and is retried
    /// with it when its answer is lost, so no record is written twice (`--idempotent=false`:
    /// a lost answer may mean a record written twice after a retry, or not at all).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub idempotent: bool,
}

pub async fn run(client: &FloeClient, args: ProduceArgs) -> anyhow::Result<()> {
    let client = if args.idempotent {
        // Waits out a busy or restarting cluster for up to about a minute, under one
        // sequence.
        client.clone().with_retry(floe_client::RetryPolicy {
            attempts: 30,
            initial_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(3),
        })
    } else {
        client.clone().without_idempotence()
    };
    let client = &client;
    let reader: Box<dyn BufRead + Send> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let batch = args.batch as usize;
    let started = std::time::Instant::now();
    let mut pending = Vec::with_capacity(batch);
    let mut sent = 0u64;
    for line in reader.lines() {
        let line = line.context("reading input")?;
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_owned()), value.to_owned()),
                None => (None, line),
            },
            None => (None, line),
        };
        pending.push(ProduceRecordJson {
            key: key.map(Value::String),
            value: Some(Value::String(value)),
            partition: args.partition,
            ..ProduceRecordJson::default()
        });
        if pending.len() >= batch {
            sent += send(client, &args.topic, &mut pending, args.idempotent).await?;
        }
    }
    sent += send(client, &args.topic, &mut pending, args.idempotent).await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} records in {seconds:.2}s ({:.0} records/s)",
        sent as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Sends what is pending. Idempotent, the client retries under the request's sequence;
/// otherwise 429/503 answers are waited out as the server asks and the request sent again.
async fn send(
    client: &FloeClient,
    topic: &str,
    pending: &mut Vec<ProduceRecordJson>,
    idempotent: bool,
) -> anyhow::Result<u64> {
    if pending.is_empty() {
        return Ok(0);
    }
    let records = std::mem::take(pending);
    let count = records.len() as u64;
    loop {
        match client.produce(topic, records.clone(), Encoding::Text).await {
            Ok(_) => return Ok(count),
            Err(ClientError::Api {
                retry_after: Some(pause),
                status,
                ..
            }) if !idempotent && (status.as_u16() == 429 || status.as_u16() == 503) => {
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
