//! `floe consume`: records of one or all partitions, from an offset or the ends, optionally
//! following the tail. Records and failures travel as typed events: a record's bytes can
//! never be mistaken for an error, and one partition's failure does not stop the others.
//! With `-g` the records come through a consumer group instead (`consume_group.rs`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use floe_api::{Encoding, FetchedRecordJson};
use floe_client::{ClientError, FetchOptions, FloeClient};
use serde_json::Value;
use tokio::sync::mpsc;

/// How long a following fetch waits at the tail before asking again.
const FOLLOW_WAIT: Duration = Duration::from_secs(10);
/// Retries of one request when not following; following retries until stopped.
const RETRIES_WITHOUT_FOLLOW: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Partition to read; all partitions when absent. Not with -g.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Start offset: a number, earliest or latest. With -g: where a partition without a
    /// committed offset starts, earliest or latest.
    #[arg(long, short = 'o', default_value = "earliest")]
    pub offset: String,
    /// Keep waiting for new records at the tail; retry through server restarts. With -g,
    /// consuming always follows.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Consume as a member of this consumer group: the server shares the topic's
    /// partitions among the members and keeps the group's committed offsets. Runs until
    /// Ctrl-C, SIGTERM or -n records, then commits and leaves the group. Prints a line on
    /// stderr whenever the member's partitions change.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// With -g: how often what was printed is committed; 0s commits with every request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub commit_every: Duration,
    /// With -g: the group removes a member it has not heard from for this long.
    #[arg(long, default_value = "45s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp,
    /// %h headers (name=value,…), %% a percent sign; \n, \t and \\ escapes.
    #[arg(long, short = 'F', default_value = "%v")]
    pub format: String,
    /// How keys, values and headers are printed: text (UTF-8), base64 (any bytes) or
    /// json (JSON values).
    #[arg(long, short = 'e', default_value = "text")]
    pub encoding: Encoding,
    /// Bound on one request, beyond the tail wait when following, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What a partition's reader tells the printer.
#[derive(Debug)]
enum Event {
    Record(String),
    Failed { partition: u32, error: ConsumeError },
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Where each partition's reading starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Earliest,
    Latest,
    Offset(u64),
}

impl Start {
    fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            number => number.parse().map(Self::Offset).map_err(|_| {
                anyhow::anyhow!("offset {number:?} is not a number, earliest or latest")
            }),
        }
    }
}

/// Reads and prints; exits 1 when any partition failed.
pub async fn run(server: &crate::ServerArg, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    if let Some(group) = &args.group {
        return crate::consume_group::run(server, group, &args).await;
    }
    let start = Start::parse(&args.offset)?;
    let timeout = if args.follow {
        args.timeout + FOLLOW_WAIT
    } else {
        args.timeout
    };
    let client = server.client_with_timeout(timeout)?;
    let partitions = match args.partition {
        Some(partition) => vec![partition],
        None => {
            let count = client.describe_topic(&args.topic).await?.partitions.len();
            (0..count as u32).collect()
        }
    };
    let escape = std::io::stdout().is_terminal();
    let (sender, mut receiver) = mpsc::channel::<Event>(1024);
    for partition in partitions {
        let reader = PartitionReader {
            client: client.clone(),
            topic: args.topic.clone(),
            partition,
            follow: args.follow,
            encoding: args.encoding,
            format: args.format.clone(),
            escape,
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            if let Err(error) = reader.read(start, &sender).await {
                let _ = sender.send(Event::Failed { partition, error }).await;
            }
        });
    }
    drop(sender);
    let mut printed = 0u64;
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    while let Some(event) = receiver.recv().await {
        match event {
            Event::Record(line) => {
                writeln!(stdout, "{line}")?;
                printed += 1;
                if args.count.is_some_and(|count| printed >= count) {
                    break;
                }
            }
            Event::Failed { partition, error } => {
                stdout.flush()?;
                eprintln!("floe: partition {partition}: {error}");
                failed = true;
            }
        }
    }
    stdout.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug)]
struct PartitionReader {
    client: FloeClient,
    topic: String,
    partition: u32,
    follow: bool,
    encoding: Encoding,
    format: String,
    escape: bool,
}

impl PartitionReader {
    async fn read(&self, start: Start, output: &mpsc::Sender<Event>) -> Result<(), ConsumeError> {
        let mut offset = match start {
            Start::Offset(offset) => offset,
            Start::Earliest | Start::Latest => {
                let at = if matches!(start, Start::Earliest) {
                    "earliest"
                } else {
                    "latest"
                };
                self.retrying(|| self.client.offset(&self.topic, self.partition, at))
                    .await?
                    .offset
            }
        };
        let options = FetchOptions {
            wait: self.follow.then_some(FOLLOW_WAIT),
            encoding: self.encoding,
            ..FetchOptions::default()
        };
        loop {
            let fetched = self
                .retrying(|| {
                    self.client
                        .fetch(&self.topic, self.partition, offset, &options)
                })
                .await?;
            for record in &fetched.records {
                let line = render(
                    &self.format,
                    &self.topic,
                    self.partition,
                    record,
                    self.escape,
                );
                if output.send(Event::Record(line)).await.is_err() {
                    return Ok(());
                }
            }
            offset = fetched.next_offset;
            if !self.follow && offset >= fetched.high_watermark {
                return Ok(());
            }
        }
    }

    /// Runs `request` until it succeeds or fails for good: connection errors, timeouts,
    /// 429 and 5xx are retried with backoff (forever when following, a few times
    /// otherwise); anything else is final.
    async fn retrying<T, F>(&self, request: impl Fn() -> F) -> Result<T, ClientError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let attempts = (!self.follow).then_some(RETRIES_WITHOUT_FOLLOW + 1);
        retry(request, attempts, |error| {
            eprintln!("floe: partition {}: {error}; retrying", self.partition);
        })
        .await
    }
}

/// Runs `request` until it succeeds, fails in a way a retry cannot help (see
/// [`retry_pause`]), or has been tried `attempts` times (`None`: no limit), with
/// exponential backoff; `first_failure` hears of the first error that is retried.
pub(crate) async fn retry<T, F>(
    request: impl Fn() -> F,
    attempts: Option<u32>,
    first_failure: impl Fn(&ClientError),
) -> Result<T, ClientError>
where
    F: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut tried = 0u32;
    loop {
        let error = match request().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        tried += 1;
        let Some(pause) = retry_pause(&error, backoff) else {
            return Err(error);
        };
        if attempts.is_some_and(|attempts| tried >= attempts) {
            return Err(error);
        }
        if tried == 1 {
            first_failure(&error);
        }
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How long to wait before retrying after `error`, or `None` when retrying cannot help.
/// Connection failures and timeouts, and 429, 502, 503 and 504 answers, are worth a retry;
/// a 500 (a corrupt batch, say) or a malformed URL would fail the same way again.
fn retry_pause(error: &ClientError, backoff: Duration) -> Option<Duration> {
    match error {
        ClientError::Http(error) if error.is_connect() || error.is_timeout() => Some(backoff),
        ClientError::Api {
            status,
            retry_after,
            ..
        } if matches!(status.as_u16(), 429 | 502 | 503 | 504) => {
            Some(retry_after.unwrap_or(backoff).min(MAX_BACKOFF))
        }
        _ => None,
    }
}

/// Formats a record per `-F`. With `escape` (a terminal), control characters from the
/// record are shown as escapes rather than sent to the terminal.
pub(crate) fn render(
    format: &str,
    topic: &str,
    partition: u32,
    record: &FetchedRecordJson,
    escape: bool,
) -> String {
    let field = |value: &Option<Value>| {
        let text = match value {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        if escape { escape_controls(&text) } else { text }
    };
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' && c != '\\' {
            out.push(c);
            continue;
        }
        match (c, chars.next()) {
            ('%', Some('t')) => out.push_str(topic),
            ('%', Some('p')) => out.push_str(&partition.to_string()),
            ('%', Some('o')) => out.push_str(&record.offset.to_string()),
            ('%', Some('k')) => out.push_str(&field(&record.key)),
            ('%', Some('v')) => out.push_str(&field(&record.value)),
            ('%', Some('T')) => out.push_str(&record.timestamp.to_string()),
            ('%', Some('h')) => {
                let headers: Vec<String> = record
                    .headers
                    .iter()
                    .map(|header| {
                        let name = if escape {
                            escape_controls(&header.name)
                        } else {
                            header.name.clone()
                        };
                        format!("{name}={}", field(&header.value))
                    })
                    .collect();
                out.push_str(&headers.join(","));
            }
            ('%', Some('%')) => out.push('%'),
            ('\\', Some('n')) => out.push('\n'),
            ('\\', Some('t')) => out.push('\t'),
            ('\\', Some('\\')) => out.push('\\'),
            (c, Some(other)) => {
                out.push(c);
                out.push(other);
            }
            (c, None) => out.push(c),
        }
    }
    out
}

/// Replaces control characters (C0, DEL, C1) with `\xNN` / `\u{NNNN}` escapes, so a record
/// cannot move the cursor, recolour or retitle the terminal it is printed on.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let code = c as u32;
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> FetchedRecordJson {
        FetchedRecordJson {
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: Some(Value::String("k".into())),
            value: Some(Value::String(value.into())),
            headers: vec![floe_api::HeaderJson {
                name: "h".into(),
                value: Some(Value::String("v".into())),
            }],
        }
    }

    #[test]
    fn renders_every_placeholder_and_escape() {
        let line = render(
            "%t/%p/%o %k=%v @%T [%h] 100%% a\\tb\\\\",
            "orders",
            2,
            &record("x"),
            false,
        );
        assert_eq!(line, "orders/2/7 k=x @1700000000000 [h=v] 100% a\tb\\");
    }

    #[test]
    fn a_nul_prefixed_value_is_data() {
        assert_eq!(render("%v", "t", 0, &record("\0pwned"), false), "\0pwned");
    }

    #[test]
    fn control_characters_are_escaped_for_a_terminal() {
        let line = render("%v", "t", 0, &record("a\u{1b}[2Jb\u{7}\u{9b}"), true);
        assert_eq!(line, "a\\x1b[2Jb\\x07\\x9b");
        // The format's own newlines and tabs stay.
        assert_eq!(render("%v\\n", "t", 0, &record("x"), true), "x\n");
    }

    #[test]
    fn retries_only_what_can_recover() {
        let api = |status: u16| ClientError::Api {
            status: reqwest_status(status),
            body: floe_api::ErrorBody {
                error_code: "x".into(),
                ..floe_api::ErrorBody::default()
            },
            retry_after: None,
        };
        let backoff = Duration::from_millis(100);
        assert_eq!(retry_pause(&api(503), backoff), Some(backoff));
        assert_eq!(retry_pause(&api(429), backoff), Some(backoff));
        assert_eq!(retry_pause(&api(416), backoff), None);
        assert_eq!(retry_pause(&api(404), backoff), None);
        assert_eq!(
            retry_pause(&api(500), backoff),
            None,
            "a corrupt batch stays corrupt"
        );
    }

    fn reqwest_status(code: u16) -> floe_client::StatusCode {
        floe_client::StatusCode::from_u16(code).expect("valid status")
    }
}
