//! `floe export`: a one-shot Parquet export of a range of a topic (`floe export TOPIC
//! --out …`), and the continuous export's progress (`floe export status TOPIC`).

mod bounds;
mod cut;
mod once;
mod status;

use anyhow::bail;
use clap::{Args, Subcommand};
use floe_client::FloeClient;
use floe_core::{JsonSchema, ValueFormat};

use bounds::Bound;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExportCommand {
    #[command(subcommand)]
    pub command: Option<ExportSubcommand>,
    #[command(flatten)]
    pub once: OnceArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExportSubcommand {
    /// Show a topic's continuous Parquet export: its settings, and each partition's cursor,
    /// lag, files and last error.
    Status {
        /// The topic.
        topic: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The one-shot export's arguments. `topic` and `out` are required unless a subcommand is
/// given, which clap checks; they are options here only so that `status` parses.
#[derive(Debug, Args)]
pub struct OnceArgs {
    /// The topic to export.
    #[arg(required = true)]
    pub topic: Option<String>,
    /// Start here, inclusive: earliest (the log start), an offset (in every partition) or
    /// a UTC time such as 2026-12-02T10:00:00Z (the first record at or after it).
    /// An offset below the log start means the log start.
    #[arg(
        long,
        default_value = "earliest",
        value_name = "earliest|OFFSET|TIME",
        value_parser = bounds::parse_from
    )]
    pub from: Bound,
    /// Stop before this offset / time: latest (the high watermark when the export
    /// starts), an offset (in every partition) or a UTC time (records from the first one
    /// at or after it are not exported).
    #[arg(
        long,
        default_value = "latest",
        value_name = "latest|OFFSET|TIME",
        value_parser = bounds::parse_to
    )]
    pub to: Bound,
    /// Where the files go: file://DIR or s3://BUCKET/PREFIX (S3 endpoint, region and
    /// credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, …). Files are
    /// named as the continuous export names them, so a re-run rewrites the same objects.
    #[arg(long, required = true, value_name = "URL")]
    pub out: Option<String>,
    /// Export this partition only; all partitions when absent.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Close a file once its records reach this many bytes (payload plus 96 per record)
    /// [default: the topic's export.parquet.target.file.bytes, 64 MiB unless set].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub target_file_bytes: Option<u64>,
    /// How values are written: binary, string or json (top-level fields as typed
    /// columns) [default: the topic's export.parquet.value.format, binary unless set].
    #[arg(long, value_name = "binary|string|json", value_parser = parse_value_format)]
    pub value_format: Option<ValueFormat>,
    /// With json values: the typed columns, as a JSON object of field to type (boolean,
    /// long, double, string, json) [default: the topic's export.parquet.value.schema;
    /// inferred from the values unless set].
    #[arg(long, value_name = "JSON", value_parser = parse_schema)]
    pub schema: Option<JsonSchema>,
}

fn parse_value_format(text: &str) -> Result<ValueFormat, String> {
    ValueFormat::parse(text).ok_or_else(|| format!("{text:?} is not binary, string or json"))
}

fn parse_schema(text: &str) -> Result<JsonSchema, String> {
    JsonSchema::parse(text)
}

pub async fn run(client: &FloeClient, command: ExportCommand) -> anyhow::Result<()> {
    match command.command {
        Some(ExportSubcommand::Status { topic, json }) => {
            let status = client.export_status(&topic).await?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&status)?)
            } else {
                status::render(&status)
            };
            Ok(crate::write_stdout(&text)?)
        }
        None => {
            let OnceArgs {
                topic: Some(topic),
                out: Some(out),
                from,
                to,
                partition,
                target_file_bytes,
                value_format,
                schema,
            } = command.once
            else {
                bail!("floe export needs a TOPIC and --out (see floe export --help)");
            };
            let request = once::OnceRequest {
                topic,
                from,
                to,
                out,
                partition,
                target_file_bytes,
                value_format,
                schema,
            };
            once::run(client, request).await
        }
    }
}
