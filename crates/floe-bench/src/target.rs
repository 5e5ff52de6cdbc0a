//! The systems a benchmark drives, each through its own public HTTP API and the same
//! HTTP client: floe (binary framing), s2-lite (its REST API with protobuf bodies) and a
//! sink that reads and discards request bodies (the loopback limit).

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::ValueEnum;
use floe_client::binary::{self, BinaryRecord};
use futures::StreamExt;
use reqwest::StatusCode;

use crate::s2;

/// Largest read asked for in one request, for every system: s2-lite's own cap on a unary
/// read (1 MiB, 1000 records), so both answer the same shape.
pub const READ_MAX_BYTES: usize = 1 << 20;
pub const READ_MAX_RECORDS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    Floe,
    S2,
    /// An HTTP server that reads each request body and answers at once: what loopback
    /// HTTP moves with this client, these shapes and this concurrency.
    Sink,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Floe => "floe",
            System::S2 => "s2-lite",
            System::Sink => "loopback sink",
        }
    }
}

/// An idempotent producer's request: its id, epoch and the request's number.
#[derive(Debug, Clone, Copy)]
pub struct Producing {
    pub producer_id: u64,
    pub epoch: u16,
    pub sequence: u64,
}

/// One read's answer: record values in order, and where the next read starts.
#[derive(Debug, Default)]
pub struct Read {
    pub values: Vec<Bytes>,
    pub next: u64,
    /// The partition's end when the answer was made, where the system says.
    pub end: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub system: System,
    base: String,
    http: reqwest::Client,
    /// Topic (floe) or stream-name prefix (s2-lite).
    pub topic: String,
    basin: String,
    body: Body,
}

/// How produce requests carry their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Body {
    /// floe's binary framing; s2-lite's protobuf.
    Binary,
    /// JSON with the values as text: floe's `{"records":[{"partition","value"}]}`,
    /// s2-lite's `{"records":[{"body"}]}`.
    Json,
}

impl Target {
    pub fn new(system: System, url: &str, topic: &str, basin: &str) -> anyhow::Result<Self> {
        // Servers close connections idle for a while (floe's `server.header_read_timeout`,
        // 10 s): a pooled connection idle for about that long can be closed as a request
        // goes out on it, which fails the request ("connection closed before message
        // completed"). Idle ones are dropped well before that, as floe's client does.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self {
            system,
            base: url.trim_end_matches('/').to_owned(),
            http,
            topic: topic.to_owned(),
            basin: basin.to_owned(),
            body: Body::Binary,
        })
    }

    /// The same target, producing with `body`.
    pub fn with_body(self, body: Body) -> Self {
        Self { body, ..self }
    }

    fn stream(&self, partition: u32) -> String {
        format!("{}-{partition}", self.topic)
    }

    /// Creates the topic (floe) or the basin and one stream per partition (s2-lite).
    pub async fn create(&self, partitions: u32) -> anyhow::Result<()> {
        match self.system {
            System::Sink => Ok(()),
            System::Floe => {
                let body = serde_json::json!({ "name": self.topic, "partitions": partitions });
                let response = self
                    .http
                    .post(format!("{}/v1/topics", self.base))
                    .json(&body)
                    .send()
                    .await?;
                expect_success(response, "create topic").await
            }
            System::S2 => {
                let response = self
                    .http
                    .post(format!("{}/v1/basins", self.base))
                    .json(&serde_json::json!({ "basin": self.basin }))
                    .send()
                    .await?;
                if response.status() != StatusCode::CONFLICT {
                    expect_success(response, "create basin").await?;
                }
                let streams = futures::stream::iter(0..partitions).map(|partition| async move {
                    let response = self
                        .http
                        .post(format!("{}/v1/streams", self.base))
                        .header(s2::BASIN_HEADER, &self.basin)
                        .json(&serde_json::json!({ "stream": self.stream(partition) }))
                        .send()
                        .await?;
                    expect_success(response, "create stream").await
                });
                let results: Vec<_> = streams.buffer_unordered(16).collect().await;
                results.into_iter().collect()
            }
        }
    }

    /// A new idempotent producer (floe only).
    pub async fn init_producer(&self) -> anyhow::Result<Producing> {
        #[derive(serde::Deserialize)]
        struct Initialized {
            producer_id: u64,
            producer_epoch: u16,
        }
        if self.system != System::Floe {
            bail!("idempotent producers are floe's");
        }
        let response = self
            .http
            .post(format!("{}/v1/producers", self.base))
            .send()
            .await?;
        let body = success_body(response, "init producer").await?;
        let initialized: Initialized = serde_json::from_slice(&body)?;
        Ok(Producing {
            producer_id: initialized.producer_id,
            epoch: initialized.producer_epoch,
            sequence: 0,
        })
    }

    /// floe's (or the sink's) produce URL, with `producing`'s request in its query.
    fn produce_path(&self, producing: Option<Producing>) -> String {
        let path = match self.system {
            System::Sink => format!("{}/sink", self.base),
            _ => format!("{}/v1/topics/{}/records", self.base, self.topic),
        };
        match producing {
            Some(producing) => format!(
                "{path}?producer_id={}&producer_epoch={}&sequence={}",
                producing.producer_id, producing.epoch, producing.sequence
            ),
            None => path,
        }
    }

    /// Appends `values` to one partition, as `producing`'s request when given; returns
    /// once the system acknowledges them (both acknowledge only what their store has
    /// durably accepted).
    pub async fn produce(
        &self,
        partition: u32,
        values: &[Bytes],
        producing: Option<Producing>,
    ) -> anyhow::Result<()> {
        let request = match (self.system, self.body) {
            (System::Floe, Body::Json) => {
                let path = self.produce_path(producing);
                let head = format!(r#"{{"partition":{partition},"value":"#);
                self.http
                    .post(path)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(json_records(&head, values))
            }
            (System::S2, Body::Json) => self
                .http
                .post(format!(
                    "{}/v1/streams/{}/records",
                    self.base,
                    self.stream(partition)
                ))
                .header(s2::BASIN_HEADER, &self.basin)
                .header(s2::FORMAT_HEADER, "raw")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json_records(r#"{"body":"#, values)),
            (System::Floe | System::Sink, _) => {
                let records: Vec<BinaryRecord> = values
                    .iter()
                    .map(|value| BinaryRecord {
                        partition: Some(partition),
                        value: Some(value.clone()),
                        ..BinaryRecord::default()
                    })
                    .collect();
                let path = self.produce_path(producing);
                self.http
                    .post(path)
                    .header(reqwest::header::CONTENT_TYPE, binary::CONTENT_TYPE)
                    .body(binary::encode_produce(&records))
            }
            (System::S2, Body::Binary) => self
                .http
                .post(format!(
                    "{}/v1/streams/{}/records",
                    self.base,
                    self.stream(partition)
                ))
                .header(s2::BASIN_HEADER, &self.basin)
                .header(reqwest::header::CONTENT_TYPE, s2::PROTOBUF)
                .header(reqwest::header::ACCEPT, s2::PROTOBUF)
                .body(s2::encode_append(values)),
        };
        let response = request.send().await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            bail!("produce: {status}: {}", truncate(&body));
        }
        response.bytes().await?;
        Ok(())
    }

    /// Reads from `offset`, waiting up to `wait` for records when at the end.
    pub async fn read(&self, partition: u32, offset: u64, wait: Duration) -> anyhow::Result<Read> {
        match self.system {
            System::Sink => bail!("the sink keeps nothing to read"),
            System::Floe => {
                let url = format!(
                    "{}/v1/topics/{}/partitions/{partition}/records?offset={offset}&max_bytes={READ_MAX_BYTES}&max_records={READ_MAX_RECORDS}&wait_ms={}",
                    self.base,
                    self.topic,
                    wait.as_millis()
                );
                let response = self
                    .http
                    .get(url)
                    .header(reqwest::header::ACCEPT, binary::CONTENT_TYPE)
                    .send()
                    .await?;
                let body = success_body(response, "fetch").await?;
                let fetched = binary::decode_fetch(body).context("decoding a floe fetch")?;
                Ok(Read {
                    values: fetched
                        .records
                        .into_iter()
                        .filter_map(|record| record.value)
                        .collect(),
                    next: fetched.next_offset,
                    end: Some(fetched.high_watermark),
                })
            }
            System::S2 => {
                let url = format!(
                    "{}/v1/streams/{}/records?seq_num={offset}&bytes={READ_MAX_BYTES}&count={READ_MAX_RECORDS}&wait={}",
                    self.base,
                    self.stream(partition),
                    wait.as_secs().max(1)
                );
                let response = self
                    .http
                    .get(url)
                    .header(s2::BASIN_HEADER, &self.basin)
                    .header(reqwest::header::ACCEPT, s2::PROTOBUF)
                    .send()
                    .await?;
                let body = success_body(response, "read").await?;
                let batch = s2::decode_read(&body)?;
                let next = batch.records.last().map_or(offset, |r| r.seq_num + 1);
                Ok(Read {
                    next,
                    end: batch.tail.map(|tail| tail.seq_num),
                    values: batch.records.into_iter().map(|r| r.body).collect(),
                })
            }
        }
    }

    /// The partition's end offset (next offset to be assigned).
    pub async fn end_offset(&self, partition: u32) -> anyhow::Result<u64> {
        match self.system {
            System::Sink => Ok(0),
            System::Floe => {
                let url = format!(
                    "{}/v1/topics/{}/partitions/{partition}/records?offset=0&max_records=1",
                    self.base, self.topic
                );
                let response = self
                    .http
                    .get(url)
                    .header(reqwest::header::ACCEPT, binary::CONTENT_TYPE)
                    .send()
                    .await?;
                let body = success_body(response, "fetch").await?;
                Ok(binary::decode_fetch(body)?.high_watermark)
            }
            System::S2 => {
                let url = format!(
                    "{}/v1/streams/{}/records/tail",
                    self.base,
                    self.stream(partition)
                );
                let response = self
                    .http
                    .get(url)
                    .header(s2::BASIN_HEADER, &self.basin)
                    .send()
                    .await?;
                let body = success_body(response, "check tail").await?;
                let tail: serde_json::Value = serde_json::from_slice(&body)?;
                tail["tail"]["seq_num"]
                    .as_u64()
                    .context("s2-lite tail answer has no tail.seq_num")
            }
        }
    }
}

/// `{"records":[HEAD"value"},…]}`, written directly as a fixed-body load tool (wrk, curl)
/// sends it, so the load generator spends little of the shared CPU on it. The values are
/// the workload's text values, which need no JSON escapes.
fn json_records(head: &str, values: &[Bytes]) -> Vec<u8> {
    let size: usize = values
        .iter()
        .map(|value| head.len() + value.len() + 4)
        .sum();
    let mut body = Vec::with_capacity(size + 16);
    body.extend_from_slice(br#"{"records":["#);
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(head.as_bytes());
        body.push(b'"');
        body.extend_from_slice(value);
        body.extend_from_slice(b"\"}");
    }
    body.extend_from_slice(b"]}");
    body
}

async fn success_body(response: reqwest::Response, what: &str) -> anyhow::Result<Bytes> {
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "{what}: {status}: {}",
            truncate(&String::from_utf8_lossy(&body))
        );
    }
    Ok(body)
}

async fn expect_success(response: reqwest::Response, what: &str) -> anyhow::Result<()> {
    success_body(response, what).await.map(drop)
}

fn truncate(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(300)
        .map_or(text.len(), |(index, _)| index);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_is_the_json_of_the_values() {
        let values = [
            Bytes::from_static(b"1.2.abc"),
            Bytes::from_static(b"3.4.de-_"),
        ];
        let body = json_records(r#"{"partition":7,"value":"#, &values);
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!({"records": [
                {"partition": 7, "value": "1.2.abc"},
                {"partition": 7, "value": "3.4.de-_"},
            ]})
        );
        let body = json_records(r#"{"body":"#, &values[..1]);
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!({"records": [{"body": "1.2.abc"}]})
        );
    }
}
