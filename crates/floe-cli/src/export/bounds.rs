//! `--from` and `--to` of a one-shot export: an end of the log, an offset or a time, and
//! the offsets they come to in one partition.

use std::ops::Range;
use std::time::UNIX_EPOCH;

use floe_client::{ClientError, FloeClient};

/// A place in every partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The log start.
    Earliest,
    /// The high watermark when the export starts.
    Latest,
    /// The same offset in every partition.
    Offset(u64),
    /// The first offset whose timestamp is at or after this time, in ms since the epoch.
    Time(i64),
}

/// Parses `--from`: `earliest`, an offset or an RFC 3339 time.
pub fn parse_from(text: &str) -> Result<Bound, String> {
    match parse(text, "earliest")? {
        Bound::Latest => Err("--from latest would export nothing; use earliest, an \
                              offset or a time"
            .to_owned()),
        bound => Ok(bound),
    }
}

/// Parses `--to`: `latest`, an offset or an RFC 3339 time.
pub fn parse_to(text: &str) -> Result<Bound, String> {
    match parse(text, "latest")? {
        Bound::Earliest => Err("--to earliest would export nothing; use latest, an \
                                offset or a time"
            .to_owned()),
        bound => Ok(bound),
    }
}

fn parse(text: &str, end_word: &str) -> Result<Bound, String> {
    match text {
        "earliest" => return Ok(Bound::Earliest),
        "latest" => return Ok(Bound::Latest),
        _ => {}
    }
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse()
            .map(Bound::Offset)
            .map_err(|_| format!("offset {text} is too large"));
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|error| {
        format!(
            "{text:?} is not {end_word}, an offset or a UTC time such as \
             2026-12-02T10:00:00Z ({error})"
        )
    })?;
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?;
    i64::try_from(since_epoch.as_millis())
        .map(Bound::Time)
        .map_err(|_| format!("{text:?} is too far in the future"))
}

/// A partition's log as it is when the export starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEnds {
    pub log_start: u64,
    pub high_watermark: u64,
}

/// The offset `bound` comes to in one partition; times are looked up on the server.
pub async fn resolve(
    client: &FloeClient,
    topic: &str,
    partition: u32,
    bound: Bound,
    ends: LogEnds,
) -> Result<u64, ClientError> {
    match bound {
        Bound::Earliest => Ok(ends.log_start),
        Bound::Latest => Ok(ends.high_watermark),
        Bound::Offset(offset) => Ok(offset),
        Bound::Time(timestamp_ms) => Ok(client
            .offset(topic, partition, &timestamp_ms.to_string())
            .await?
            .offset),
    }
}

/// The offsets to export, `from` inclusive and `to` exclusive, kept within the log: from
/// its start to its high watermark at the start of the export. Empty when `from` is not
/// before `to`.
pub fn offsets_to_export(from: u64, to: u64, ends: LogEnds) -> Range<u64> {
    let start = from.max(ends.log_start);
    let end = to.min(ends.high_watermark);
    start..end.max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ends_offsets_and_times() {
        assert_eq!(parse_from("earliest"), Ok(Bound::Earliest));
        assert_eq!(parse_to("latest"), Ok(Bound::Latest));
        assert_eq!(parse_from("0"), Ok(Bound::Offset(0)));
        assert_eq!(parse_to("1234"), Ok(Bound::Offset(1234)));
        assert_eq!(
            parse_from("2026-12-02T10:00:00Z"),
            Ok(Bound::Time(1_796_205_600_000))
        );
        assert_eq!(
            parse_to("2026-12-02T10:00:00.250Z"),
            Ok(Bound::Time(1_796_205_600_250))
        );
        // Without a zone the time is UTC.
        assert_eq!(
            parse_from("2026-12-02 10:00:00"),
            Ok(Bound::Time(1_796_205_600_000))
        );
    }

    #[test]
    fn refuses_what_is_no_bound() {
        for text in [
            "",
            "-1",
            "12a",
            "yesterday",
            "2026-12-02",
            "2026-13-02T10:00:00Z",
            "2026-12-02T10:00:00+02:00",
            "1969-12-31T23:59:59Z",
            "99999999999999999999999",
        ] {
            assert!(parse_from(text).is_err(), "{text:?} parsed");
            assert!(parse_to(text).is_err(), "{text:?} parsed");
        }
        assert!(parse_from("latest").is_err());
        assert!(parse_to("earliest").is_err());
        let message = parse_from("soon").expect_err("not a bound");
        assert!(message.contains("2026-12-02T10:00:00Z"), "{message}");
    }

    #[test]
    fn the_range_stays_within_the_log() {
        let ends = LogEnds {
            log_start: 100,
            high_watermark: 500,
        };
        assert_eq!(offsets_to_export(0, u64::MAX, ends), 100..500);
        assert_eq!(offsets_to_export(150, 200, ends), 150..200);
        assert_eq!(offsets_to_export(0, 50, ends), 100..100);
        assert_eq!(offsets_to_export(600, 700, ends), 600..600);
        assert_eq!(offsets_to_export(300, 200, ends), 300..300);
        assert!(offsets_to_export(300, 200, ends).is_empty());
    }
}
