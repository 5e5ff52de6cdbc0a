//! Where one-shot export files are cut: the same rule the broker's continuous export
//! follows, so that both name the same files for the same records.

use floe_core::Record;
use floe_export::hour_of;

/// What one decoded record is counted as beyond its payload (the broker's figure).
const RECORD_OVERHEAD: usize = 96;

/// The records of one file, in offset order.
pub(crate) type FileRecords = Vec<(u64, Record)>;

/// Groups records, in offset order, into files: a file ends before a record of another UTC
/// hour than its first record's, and after the record that brings its records (payload
/// plus [`RECORD_OVERHEAD`] each) to the target size.
#[derive(Debug)]
pub(crate) struct FileCutter {
    target_bytes: usize,
    open: FileRecords,
    open_bytes: usize,
    open_hour: Option<i64>,
    finished: Vec<FileRecords>,
}

impl FileCutter {
    pub(crate) fn new(target_bytes: u64) -> Self {
        Self {
            target_bytes: usize::try_from(target_bytes).unwrap_or(usize::MAX),
            open: Vec::new(),
            open_bytes: 0,
            open_hour: None,
            finished: Vec::new(),
        }
    }

    /// Adds the next record; files it completes are then in [`FileCutter::take_finished`].
    pub(crate) fn push(&mut self, offset: u64, record: Record) {
        debug_assert!(
            self.open.last().is_none_or(|(last, _)| *last < offset),
            "records are pushed in offset order"
        );
        let hour = hour_of(record.timestamp_ms);
        if self.open_hour.is_some_and(|open_hour| open_hour != hour) {
            self.close();
        }
        self.open_hour = Some(hour);
        self.open_bytes += record.payload_size() + RECORD_OVERHEAD;
        self.open.push((offset, record));
        if self.open_bytes >= self.target_bytes {
            self.close();
        }
    }

    /// The files completed so far, oldest first.
    pub(crate) fn take_finished(&mut self) -> Vec<FileRecords> {
        std::mem::take(&mut self.finished)
    }

    /// Ends the input: the files not yet taken, the last one however small.
    pub(crate) fn finish(mut self) -> Vec<FileRecords> {
        self.close();
        self.finished
    }

    fn close(&mut self) {
        if !self.open.is_empty() {
            self.finished.push(std::mem::take(&mut self.open));
        }
        self.open_bytes = 0;
        self.open_hour = None;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn record(timestamp_ms: i64, value_len: usize) -> Record {
        Record {
            key: None,
            value: Some(Bytes::from(vec![b'v'; value_len])),
            headers: Vec::new(),
            timestamp_ms,
        }
    }

    fn cut(records: Vec<(u64, Record)>, target_bytes: u64) -> Vec<Vec<u64>> {
        let mut cutter = FileCutter::new(target_bytes);
        let mut files = Vec::new();
        for (offset, record) in records {
            cutter.push(offset, record);
            files.extend(cutter.take_finished());
        }
        files.extend(cutter.finish());
        files
            .into_iter()
            .map(|file| file.into_iter().map(|(offset, _)| offset).collect())
            .collect()
    }

    #[test]
    fn a_file_ends_after_the_record_that_reaches_the_target() {
        // Each record counts 4 + 96 = 100 bytes.
        let records = (0..7).map(|offset| (offset, record(0, 4))).collect();
        assert_eq!(cut(records, 300), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }

    #[test]
    fn a_file_ends_before_a_record_of_another_hour() {
        let records = vec![
            (10, record(HOUR_MS - 2, 1)),
            (11, record(HOUR_MS - 1, 1)),
            (12, record(HOUR_MS, 1)),
            // An earlier hour again (CreateTime is the producer's clock) also cuts.
            (14, record(5, 1)),
            (15, record(6, 1)),
        ];
        assert_eq!(
            cut(records, 1 << 20),
            [vec![10, 11], vec![12], vec![14, 15]]
        );
    }

    #[test]
    fn a_record_over_the_target_is_a_file_of_its_own() {
        let records = vec![
            (0, record(0, 1)),
            (1, record(HOUR_MS, 10_000)),
            (2, record(HOUR_MS, 1)),
        ];
        assert_eq!(cut(records, 1000), [vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn sizes_count_keys_and_headers_and_restart_with_each_file() {
        let mut with_key = record(0, 0);
        with_key.key = Some(Bytes::from_static(b"0123456789"));
        with_key.headers.push(floe_core::Header {
            name: "h".into(),
            value: Some(Bytes::from_static(b"xyz")),
        });
        // 10 + 1 + 3 + 96 = 110 bytes each.
        let records = (0..5).map(|offset| (offset, with_key.clone())).collect();
        assert_eq!(cut(records, 220), [vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn no_records_make_no_file() {
        assert!(cut(Vec::new(), 100).is_empty());
    }
}
