//! Parquet export throughput on one core: records → Parquet bytes, as the broker's exporter
//! writes them (one file at a time, `target.file.bytes` of records per file).
//!
//! ```sh
//! cargo run --release -p floe-export --example export_bench -- [MIB] [FORMAT] [OUT_DIR]
//! ```
//!
//! Generates MIB (default 1024) mebibytes of order-like records (a key, one header, a JSON
//! value of ~200 bytes, timestamps one hour apart every 2^20 records), writes them as 64 MiB
//! files in FORMAT (`binary`, `string` or `json`, default `json`), and prints the input and
//! output rates. With OUT_DIR, the files are also written there in the export's Hive layout,
//! for a reader to scan (`scripts/export_bench.sh` times DuckDB over them).

use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_core::{Header, Record, ValueFormat};
use floe_export::{FileSpec, JsonColumns, file_key, hour_of, write_file};

const TARGET: usize = 64 * 1024 * 1024;
const OVERHEAD: usize = 96;

fn record(i: u64, start: i64) -> Record {
    let value = format!(
        r#"{{"order_id":{i},"customer":"customer-{:05}","total":{}.{:02},"currency":"EUR","items":[{{"sku":"sku-{}","qty":{}}}],"paid":{},"note":"order note number {i} for the benchmark"}}"#,
        i % 10_000,
        i % 997,
        i % 100,
        i % 5000,
        1 + i % 7,
        i.is_multiple_of(3)
    );
    Record {
        key: Some(Bytes::from(format!("customer-{:05}", i % 10_000))),
        value: Some(Bytes::from(value)),
        headers: vec![Header {
            name: "source".into(),
            value: Some(Bytes::from_static(b"web")),
        }],
        timestamp_ms: start + (i >> 20) as i64 * 3_600_000 + (i & 0xfffff) as i64 / 300,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mebibytes: usize = args
        .next()
        .map_or(1024, |text| text.parse().expect("MIB is a number"));
    let format = args.next().map_or(ValueFormat::Json, |text| {
        ValueFormat::parse(&text).expect("FORMAT is binary, string or json")
    });
    let out = args.next().map(std::path::PathBuf::from);
    let start = 1_764_633_600_000; // 2025-12-02T00:00:00Z
    let total = mebibytes * 1024 * 1024;
    let (mut offset, mut input, mut output, mut files, mut raw) = (0u64, 0usize, 0usize, 0, 0);
    let mut writing = Duration::ZERO;
    let mut schema = None;
    while input < total {
        let mut records = Vec::new();
        let mut held = 0;
        let hour = hour_of(record(offset, start).timestamp_ms);
        while held < TARGET && input + held < total {
            let next = record(offset, start);
            if hour_of(next.timestamp_ms) != hour {
                break;
            }
            held += next.payload_size() + OVERHEAD;
            records.push((offset, next));
            offset += 1;
        }
        let payload: usize = records.iter().map(|(_, r)| r.payload_size()).sum();
        let spec = FileSpec {
            topic: "orders".into(),
            partition: 0,
            value_format: format,
            json: JsonColumns::Inferred(schema.clone()),
        };
        let began = Instant::now();
        let file = write_file(&spec, &records).expect("write");
        writing += began.elapsed();
        schema = file.schema.clone();
        input += payload;
        output += file.bytes.len();
        raw += file.raw_rows;
        files += 1;
        if let Some(dir) = &out {
            let key = file_key(
                "orders",
                0,
                records[0].1.timestamp_ms,
                file.first_offset,
                file.last_offset,
            );
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &file.bytes).expect("write file");
        }
    }
    let seconds = writing.as_secs_f64();
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "format={format} records={offset} files={files} raw_rows={raw} input={:.1} MiB \
         output={:.1} MiB ratio={:.2}",
        mib(input),
        mib(output),
        input as f64 / output as f64
    );
    println!(
        "writing: {seconds:.2} s on one core = {:.1} MiB/s of records in, {:.0} records/s, \
         {:.1} MiB/s of Parquet out",
        mib(input) / seconds,
        offset as f64 / seconds,
        mib(output) / seconds
    );
}
