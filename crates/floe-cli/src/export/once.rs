//! The one-shot export: reads a range of offsets of a topic's partitions and writes them as
//! Parquet files, cut and named as the continuous export does, so a re-run (or the
//! continuous export over the same records) rewrites the same objects.

use std::io::IsTerminal;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use floe_api::binary::BinaryRecord;
use floe_client::{ClientError, FetchOptions, FloeClient};
use floe_core::config::DEFAULT_EXPORT_TARGET_FILE_BYTES;
use floe_core::{Header, JsonSchema, Record, ValueFormat};
use floe_export::{FileSpec, JsonColumns, file_key, write_file};
use floe_storage::{S3Options, StoreUrl, open_store_with};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;
use tokio::sync::mpsc;

use super::bounds::{self, Bound, LogEnds};
use super::cut::{FileCutter, FileRecords};

/// The most one fetch asks for.
const FETCH_MAX_BYTES: usize = 16 * 1024 * 1024;
const FETCH_MAX_RECORDS: usize = 10_000;
/// Fetch answers read ahead of the file being written.
const FETCHES_AHEAD: usize = 2;
/// Attempts of one fetch that failed in a way worth retrying.
const FETCH_ATTEMPTS: u32 = 6;

/// What to export and where, as given on the command line.
#[derive(Debug, Clone)]
pub struct OnceRequest {
    pub topic: String,
    pub from: Bound,
    pub to: Bound,
    pub out: String,
    pub partition: Option<u32>,
    pub target_file_bytes: Option<u64>,
    pub value_format: Option<ValueFormat>,
    pub schema: Option<JsonSchema>,
}

/// How files are written: the command line's choices, else the topic's export config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    pub value_format: ValueFormat,
    /// A configured JSON schema (`Given`); `None` infers columns from the values.
    pub schema: Option<JsonSchema>,
    pub target_file_bytes: u64,
}

impl FileSettings {
    /// Takes each setting from the request when given there, else from the topic config's
    /// `export.parquet.*` keys, else the default.
    pub fn resolve(request: &OnceRequest, topic_config: &Value) -> anyhow::Result<Self> {
        let value_format = match (request.value_format, topic_config.get(VALUE_FORMAT_KEY)) {
            (Some(format), _) => format,
            (None, None | Some(Value::Null)) => ValueFormat::default(),
            (None, Some(Value::String(text))) => ValueFormat::parse(text)
                .ok_or_else(|| anyhow!("the topic's {VALUE_FORMAT_KEY} {text:?} is unknown"))?,
            (None, Some(other)) => bail!("the topic's {VALUE_FORMAT_KEY} {other} is unknown"),
        };
        let schema = match (&request.schema, topic_config.get(VALUE_SCHEMA_KEY)) {
            (Some(_), _) if value_format != ValueFormat::Json => bail!(
                "--schema types the columns of JSON values; the value format is \
                 {value_format} (add --value-format json)"
            ),
            (Some(schema), _) => Some(schema.clone()),
            (None, None | Some(Value::Null)) => None,
            (None, Some(configured)) => Some(
                serde_json::from_value::<JsonSchema>(configured.clone())
                    .with_context(|| format!("the topic's {VALUE_SCHEMA_KEY} {configured}"))?,
            ),
        };
        let target_file_bytes = match (request.target_file_bytes, topic_config.get(TARGET_KEY)) {
            (Some(bytes), _) => bytes,
            (None, Some(Value::Number(number))) => number
                .as_u64()
                .filter(|bytes| *bytes > 0)
                .ok_or_else(|| anyhow!("the topic's {TARGET_KEY} {number} is not a size"))?,
            (None, Some(Value::String(text))) => text
                .parse()
                .ok()
                .filter(|bytes| *bytes > 0)
                .ok_or_else(|| anyhow!("the topic's {TARGET_KEY} {text:?} is not a size"))?,
            (None, _) => DEFAULT_EXPORT_TARGET_FILE_BYTES,
        };
        Ok(Self {
            value_format,
            schema,
            target_file_bytes,
        })
    }
}

const VALUE_FORMAT_KEY: &str = "export.parquet.value.format";
const VALUE_SCHEMA_KEY: &str = "export.parquet.value.schema";
const TARGET_KEY: &str = "export.parquet.target.file.bytes";

/// Runs the export and prints one summary line.
pub async fn run(client: &FloeClient, request: OnceRequest) -> anyhow::Result<()> {
    let topic = client.describe_topic(&request.topic).await?;
    let settings = FileSettings::resolve(&request, &topic.config)?;
    let partitions: Vec<(u32, LogEnds)> = topic
        .partitions
        .iter()
        .filter(|p| request.partition.is_none_or(|only| only == p.partition))
        .map(|p| {
            let ends = LogEnds {
                log_start: p.log_start_offset,
                high_watermark: p.high_watermark,
            };
            (p.partition, ends)
        })
        .collect();
    if let Some(only) = request.partition
        && partitions.is_empty()
    {
        bail!(
            "topic {} has {} partitions; there is no partition {only}",
            topic.name,
            topic.partitions.len()
        );
    }
    let destination = Destination::open(&request.out).await?;

    let mut ranges = Vec::with_capacity(partitions.len());
    for (partition, ends) in partitions {
        let from = bounds::resolve(client, &topic.name, partition, request.from, ends)
            .await
            .with_context(|| format!("partition {partition}: looking up --from"))?;
        let to = bounds::resolve(client, &topic.name, partition, request.to, ends)
            .await
            .with_context(|| format!("partition {partition}: looking up --to"))?;
        ranges.push((partition, bounds::offsets_to_export(from, to, ends)));
    }
    let total: u64 = ranges
        .iter()
        .map(|(_, range)| range.end - range.start)
        .sum();

    let progress = progress_bar(total);
    let mut writer = FileWriter::new(topic.name.clone(), settings, destination);
    progress.set_message(writer.progress_message());
    let mut outcome = Ok(());
    for (partition, range) in ranges {
        outcome = export_partition(client, &mut writer, &progress, partition, range).await;
        if outcome.is_err() {
            break;
        }
    }
    match outcome {
        Ok(()) => progress.finish_and_clear(),
        Err(error) => {
            progress.abandon();
            return Err(error);
        }
    }
    let totals = writer.totals;
    let files = if totals.files == 1 { "file" } else { "files" };
    crate::write_stdout(&format!(
        "exported {} records of {} to {} {files} ({}) at {}\n",
        totals.records,
        topic.name,
        totals.files,
        HumanBytes(totals.bytes),
        writer.destination.url
    ))?;
    Ok(())
}

/// Reads `range` of one partition (a task fetching ahead) and writes its files.
async fn export_partition(
    client: &FloeClient,
    writer: &mut FileWriter,
    progress: &ProgressBar,
    partition: u32,
    range: Range<u64>,
) -> anyhow::Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let (sender, mut receiver) = mpsc::channel(FETCHES_AHEAD);
    let fetcher = tokio::spawn(fetch_range(
        client.clone(),
        writer.topic.clone(),
        partition,
        range.clone(),
        sender,
    ));
    let mut cutter = FileCutter::new(writer.settings.target_file_bytes);
    let mut done = range.start;
    while let Some(fetched) = receiver.recv().await {
        let Fetched {
            records,
            covered_to,
        } = fetched;
        for (offset, record) in records {
            cutter.push(offset, record);
        }
        for file in cutter.take_finished() {
            if let Err(error) = writer.write(partition, file).await {
                fetcher.abort();
                return Err(error);
            }
            progress.set_message(writer.progress_message());
        }
        progress.inc(covered_to.saturating_sub(done));
        done = done.max(covered_to);
    }
    fetcher
        .await
        .context("the fetching task stopped")?
        .with_context(|| format!("reading partition {partition} at offset {done}"))?;
    for file in cutter.finish() {
        writer.write(partition, file).await?;
        progress.set_message(writer.progress_message());
    }
    Ok(())
}

/// One fetch answer's records within the range, and the offset it covered up to.
#[derive(Debug)]
struct Fetched {
    records: Vec<(u64, Record)>,
    covered_to: u64,
}

async fn fetch_range(
    client: FloeClient,
    topic: String,
    partition: u32,
    range: Range<u64>,
    sender: mpsc::Sender<Fetched>,
) -> Result<(), FetchError> {
    let options = FetchOptions {
        max_records: Some(FETCH_MAX_RECORDS),
        max_bytes: Some(FETCH_MAX_BYTES),
        // Not clamped: records retention deletes while the export runs end it with
        // `416 offset_out_of_range` instead of a silent gap in the files.
        clamp: false,
        ..FetchOptions::default()
    };
    let mut offset = range.start;
    while offset < range.end {
        let fetched = crate::consume::retry(
            || client.fetch_binary(&topic, partition, offset, &options),
            Some(FETCH_ATTEMPTS),
            |_| {},
        )
        .await?;
        let records: Vec<(u64, Record)> = fetched
            .records
            .into_iter()
            .filter(|record| (offset..range.end).contains(&record.offset))
            .map(to_record)
            .collect();
        if fetched.next_offset <= offset && records.is_empty() {
            return Err(FetchError::NoProgress {
                offset,
                high_watermark: fetched.high_watermark,
            });
        }
        let next_offset = fetched.next_offset.max(offset + 1);
        let covered_to = next_offset.min(range.end);
        if sender
            .send(Fetched {
                records,
                covered_to,
            })
            .await
            .is_err()
        {
            // The writer stopped; it reports why.
            return Ok(());
        }
        offset = next_offset;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the server returned nothing at offset {offset} (high watermark {high_watermark})")]
    NoProgress { offset: u64, high_watermark: u64 },
}

pub(crate) fn to_record(binary: BinaryRecord) -> (u64, Record) {
    let headers = binary
        .headers
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect();
    let record = Record {
        key: binary.key,
        value: binary.value,
        headers,
        timestamp_ms: binary.timestamp.unwrap_or(-1),
    };
    (binary.offset, record)
}

/// Where files go: the store `--out` names and the key prefix within it.
#[derive(Debug)]
pub(crate) struct Destination {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl Destination {
    /// Opens `--out` and checks that an object can be written there, so that a wrong
    /// destination fails before anything is read.
    pub(crate) async fn open(url: &str) -> anyhow::Result<Self> {
        let parsed = StoreUrl::parse(url).map_err(|error| anyhow!("--out {error}"))?;
        if parsed == StoreUrl::Memory {
            bail!(
                "--out {url}: memory:// is gone when floe exits; use file://DIR or s3://BUCKET/PREFIX"
            );
        }
        let (store, prefix) = open_store_with(&parsed, &S3Options::default(), false)
            .map_err(|error| anyhow!("--out {url}: {error}"))?;
        let destination = Self {
            url: url.to_owned(),
            store,
            prefix,
        };
        let probe = destination.path_of(&format!("_floe_export_probe_{}", probe_suffix()))?;
        destination
            .store
            .put(&probe, PutPayload::from_static(b"floe export probe"))
            .await
            .map_err(|error| anyhow!("cannot write to {url}: {error}"))?;
        // Deleting may not be allowed where writing is; the probe is then left behind.
        let _ = destination.store.delete(&probe).await;
        Ok(destination)
    }

    fn path_of(&self, key: &str) -> anyhow::Result<Path> {
        let full = if self.prefix.as_ref().is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|error| anyhow!("{full:?} is not an object key: {error}"))
    }
}

/// A suffix that keeps concurrent probes apart.
fn probe_suffix() -> String {
    use floe_core::Clock;
    format!("{}_{}", std::process::id(), floe_core::SystemClock.now_ms())
}

/// What has been written so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub records: u64,
    pub files: u64,
    pub bytes: u64,
}

/// Writes files of one topic and puts them in the destination, carrying the inferred JSON
/// schema from file to file.
#[derive(Debug)]
pub(crate) struct FileWriter {
    topic: String,
    settings: FileSettings,
    destination: Destination,
    inferred: Option<JsonSchema>,
    pub totals: Totals,
}

impl FileWriter {
    pub(crate) fn new(topic: String, settings: FileSettings, destination: Destination) -> Self {
        Self {
            topic,
            settings,
            destination,
            inferred: None,
            totals: Totals::default(),
        }
    }

    /// Writes one file and returns its key.
    pub(crate) async fn write(
        &mut self,
        partition: u32,
        records: FileRecords,
    ) -> anyhow::Result<String> {
        let Some(first_timestamp) = records.first().map(|(_, record)| record.timestamp_ms) else {
            bail!("partition {partition}: a file needs at least one record");
        };
        let json = match (&self.settings.schema, self.settings.value_format) {
            (Some(schema), ValueFormat::Json) => JsonColumns::Given(schema.clone()),
            _ => JsonColumns::Inferred(self.inferred.clone()),
        };
        let inferring = matches!(json, JsonColumns::Inferred(_))
            && self.settings.value_format == ValueFormat::Json;
        let spec = FileSpec {
            topic: self.topic.clone(),
            partition,
            value_format: self.settings.value_format,
            json,
        };
        let file = tokio::task::spawn_blocking(move || write_file(&spec, &records))
            .await
            .context("the parquet writer stopped")?
            .with_context(|| format!("writing a parquet file of partition {partition}"))?;
        if inferring {
            self.inferred = file.schema.clone();
        }
        let key = file_key(
            &self.topic,
            partition,
            first_timestamp,
            file.first_offset,
            file.last_offset,
        );
        let path = self.destination.path_of(&key)?;
        let length = file.bytes.len() as u64;
        self.destination
            .store
            .put(&path, PutPayload::from(file.bytes))
            .await
            .map_err(|error| anyhow!("writing {key} to {}: {error}", self.destination.url))?;
        self.totals.records += file.rows;
        self.totals.files += 1;
        self.totals.bytes += length;
        Ok(key)
    }

    fn progress_message(&self) -> String {
        format!(
            "{} files, {}",
            self.totals.files,
            HumanBytes(self.totals.bytes)
        )
    }
}

/// Records done of `total`, files and bytes written, the rate and the time left; on
/// stderr, and only when it is a terminal.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} records, {msg}, \
         {per_sec:0}, ETA {eta}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    fn request() -> OnceRequest {
        OnceRequest {
            topic: "orders".into(),
            from: Bound::Earliest,
            to: Bound::Latest,
            out: "file:///tmp/x".into(),
            partition: None,
            target_file_bytes: None,
            value_format: None,
            schema: None,
        }
    }

    fn schema(text: &str) -> JsonSchema {
        JsonSchema::parse(text).expect("a valid schema")
    }

    #[test]
    fn settings_default_to_the_topic_config() {
        let config = json!({
            "retention.ms": 1000,
            "export.parquet.value.format": "json",
            "export.parquet.value.schema": {"total": "double"},
            "export.parquet.target.file.bytes": 1_048_576,
        });
        let settings = FileSettings::resolve(&request(), &config).expect("resolves");
        assert_eq!(settings.value_format, ValueFormat::Json);
        assert_eq!(settings.schema, Some(schema(r#"{"total":"double"}"#)));
        assert_eq!(settings.target_file_bytes, 1_048_576);

        let plain = FileSettings::resolve(&request(), &json!({})).expect("resolves");
        assert_eq!(
            plain,
            FileSettings {
                value_format: ValueFormat::Binary,
                schema: None,
                target_file_bytes: 64 * 1024 * 1024,
            }
        );
    }

    #[test]
    fn the_command_line_overrides_the_topic_config() {
        let config = json!({
            "export.parquet.value.format": "binary",
            "export.parquet.target.file.bytes": "2048",
        });
        let mut request = request();
        request.value_format = Some(ValueFormat::Json);
        request.schema = Some(schema(r#"{"id":"long"}"#));
        request.target_file_bytes = Some(10);
        let settings = FileSettings::resolve(&request, &config).expect("resolves");
        assert_eq!(settings.value_format, ValueFormat::Json);
        assert_eq!(settings.schema, Some(schema(r#"{"id":"long"}"#)));
        assert_eq!(settings.target_file_bytes, 10);
    }

    #[test]
    fn a_schema_needs_the_json_format() {
        let mut request = request();
        request.schema = Some(schema(r#"{"id":"long"}"#));
        let error = FileSettings::resolve(&request, &json!({})).expect_err("not json");
        assert!(error.to_string().contains("--value-format json"), "{error}");
        let bad = json!({"export.parquet.value.format": "avro"});
        assert!(FileSettings::resolve(&self::request(), &bad).is_err());
    }

    #[test]
    fn binary_records_become_records() {
        let binary = BinaryRecord {
            partition: None,
            offset: 42,
            timestamp: Some(1_700_000_000_000),
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
        };
        let (offset, record) = to_record(binary);
        assert_eq!(offset, 42);
        assert_eq!(record.timestamp_ms, 1_700_000_000_000);
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value, None);
        assert_eq!(record.headers[0].name, "h");
    }

    fn record(timestamp_ms: i64, value: &str) -> Record {
        Record {
            key: None,
            value: Some(Bytes::from(value.to_owned())),
            headers: Vec::new(),
            timestamp_ms,
        }
    }

    #[tokio::test]
    async fn files_go_under_the_continuous_export_keys_and_rewrite_on_a_rerun() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = format!("file://{}", dir.path().join("out").display());
        let settings = FileSettings {
            value_format: ValueFormat::Json,
            schema: None,
            target_file_bytes: 1 << 20,
        };
        for _run in 0..2 {
            let destination = Destination::open(&out).await.expect("opens");
            let mut writer = FileWriter::new("orders".into(), settings.clone(), destination);
            let first = vec![(7, record(0, r#"{"id":1}"#)), (8, record(1, r#"{"id":2}"#))];
            let key = writer.write(3, first).await.expect("writes");
            assert_eq!(
                key,
                "topic=orders/date=1970-01-01/hour=00/partition=3/\
                 00000000000000000007-00000000000000000008.parquet"
            );
            // The second file widens the inferred schema the first one began.
            let second = vec![(9, record(2, r#"{"id":2.5,"name":"x"}"#))];
            writer.write(3, second).await.expect("writes");
            assert_eq!(
                writer.inferred,
                Some(schema(r#"{"id":"double","name":"string"}"#))
            );
            assert_eq!(writer.totals.records, 3);
            assert_eq!(writer.totals.files, 2);
        }
        let partition_dir = dir
            .path()
            .join("out/topic=orders/date=1970-01-01/hour=00/partition=3");
        let mut names: Vec<String> = std::fs::read_dir(&partition_dir)
            .expect("the partition directory")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        // The probe is gone.
        let top: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .expect("the destination")
            .collect();
        assert_eq!(top.len(), 1);
    }

    #[tokio::test]
    async fn an_unusable_destination_fails_before_reading() {
        let error = Destination::open("memory://").await.expect_err("refused");
        assert!(error.to_string().contains("memory://"), "{error}");
        let error = Destination::open("ftp://x").await.expect_err("refused");
        assert!(error.to_string().contains("file://DIR"), "{error}");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("written");
        let error = Destination::open(&format!("file://{}/sub", file.display()))
            .await
            .expect_err("a file is no directory");
        assert!(error.to_string().contains("--out"), "{error}");
    }
}
