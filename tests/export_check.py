#!/usr/bin/env python3
"""Checks a Parquet export the way an analyst meets it: DuckDB over the Hive layout, and
pyarrow reading every file.

    export_check.py rows --root ROOT --topic T --expected FILE.jsonl
        Every acknowledged record (one JSON object a line: partition, offset, key, value,
        headers [[name, value]], timestamp_ms; bytes as base64, null for none) is in the
        export exactly once with identical key, value, headers and timestamp; per-partition
        counts and offset ranges match; the topic/date/hour/partition columns DuckDB
        derives from the path agree with the rows; pyarrow reads and validates every file.

    export_check.py json --root ROOT --topic T --expected FILE.json
        `SELECT customer, avg(total), count(*) ... GROUP BY customer` over the typed columns
        matches the expected {customer: [avg, count]}, and `_raw` holds the expected number
        of records that did not fit.

ROOT is `s3://BUCKET/PREFIX` (with --s3-endpoint) or a directory. Prints what it checked;
exits 1 with the differences on a mismatch.
"""

import argparse
import base64
import json
import os
import sys

import duckdb
import duckdb_extension_httpfs
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def fail(message):
    print(f"export_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def connect(args):
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")
    if args.root.startswith("s3://"):
        ext = os.path.join(
            os.path.dirname(duckdb_extension_httpfs.__file__),
            "extensions",
            f"v{duckdb.__version__}",
            "httpfs.duckdb_extension",
        )
        con.sql(f"LOAD '{ext}'")
        endpoint = args.s3_endpoint.removeprefix("http://")
        con.sql(
            "CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
        )
    return con


def files(args):
    """Every .parquet file under ROOT/topic=T, as (filesystem, path)."""
    if args.root.startswith("s3://"):
        fs = pafs.S3FileSystem(
            access_key="test",
            secret_key="test",
            region="us-east-1",
            endpoint_override=args.s3_endpoint,
            scheme="http",
        )
        base = args.root.removeprefix("s3://").rstrip("/")
    else:
        fs = pafs.LocalFileSystem()
        base = args.root.rstrip("/")
    selector = pafs.FileSelector(f"{base}/topic={args.topic}", recursive=True)
    found = [
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    ]
    return fs, found


def validate_files(args):
    """pyarrow reads every file; each has floe's metadata, zstd and statistics, its name
    is its offset range and it holds one hour."""
    fs, found = files(args)
    if not found:
        fail(f"no parquet files under {args.root}/topic={args.topic}")
    rows = 0
    for path in found:
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            meta = parquet.metadata
            kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
            for key in ("floe.version", "floe.topic", "floe.first_offset", "floe.last_offset"):
                if key not in kv:
                    fail(f"{path}: key-value metadata has no {key}: {sorted(kv)}")
            first, last = int(kv["floe.first_offset"]), int(kv["floe.last_offset"])
            if not path.endswith(f"/{first:020}-{last:020}.parquet"):
                fail(f"{path}: name does not match offsets {first}..{last}")
            for group in range(meta.num_row_groups):
                column = meta.row_group(group).column(1)
                if column.compression != "ZSTD":
                    fail(f"{path}: offset column is {column.compression}, not ZSTD")
                if not column.is_stats_set or column.statistics.min != first and group == 0:
                    fail(f"{path}: offset statistics missing or wrong")
            table = pq.read_table(handle)
            table.validate(full=True)
            rows += table.num_rows
            hours = {ts // 3_600_000 for ts in table.column("timestamp").cast(pa.int64()).to_pylist()}
            if len(hours) != 1:
                fail(f"{path}: holds {len(hours)} hours")
    print(f"pyarrow: {len(found)} files, {rows} rows, all valid")
    return found, rows


def glob(args):
    return f"{args.root.rstrip('/')}/topic={args.topic}/**/*.parquet"


def b64(value):
    return None if value is None else base64.b64decode(value)


def check_rows(args):
    found, file_rows = validate_files(args)
    expected = {
        "partition": [], "offset": [], "key": [], "value": [], "headers": [], "ts": [],
    }
    with open(args.expected) as handle:
        for line in handle:
            record = json.loads(line)
            expected["partition"].append(record["partition"])
            expected["offset"].append(record["offset"])
            expected["key"].append(b64(record["key"]))
            expected["value"].append(b64(record["value"]))
            expected["headers"].append(
                [{"name": name, "value": b64(value)} for name, value in record["headers"]]
            )
            expected["ts"].append(record["timestamp_ms"])
    header = pa.struct([("name", pa.string()), ("value", pa.binary())])
    table = pa.table(
        {
            "partition": pa.array(expected["partition"], pa.int64()),
            "offset": pa.array(expected["offset"], pa.int64()),
            "key": pa.array(expected["key"], pa.binary()),
            "value": pa.array(expected["value"], pa.binary()),
            "headers": pa.array(expected["headers"], pa.list_(header)),
            "ts": pa.array(expected["ts"], pa.timestamp("ms", tz="UTC")),
        }
    )
    con = connect(args)
    con.register("expected", table)
    con.sql(
        f"CREATE TABLE exported AS SELECT * FROM read_parquet('{glob(args)}', hive_partitioning = true)"
    )
    count = con.sql("SELECT count(*) FROM exported").fetchone()[0]
    if count != file_rows:
        fail(f"DuckDB read {count} rows, pyarrow {file_rows}")
    groups = 'SELECT partition, count(*), min("offset"), max("offset") FROM {} GROUP BY ALL ORDER BY 1'
    got = con.sql(groups.format("exported")).fetchall()
    want = con.sql(groups.format("expected")).fetchall()
    if got != want:
        fail(f"per-partition counts and ranges differ:\n exported {got}\n expected {want}")
    print(f"duckdb: per partition (partition, count, min, max): {got}")
    twice = con.sql(
        'SELECT partition, "offset", count(*) FROM exported GROUP BY ALL HAVING count(*) > 1 LIMIT 5'
    ).fetchall()
    if twice:
        fail(f"offsets exported more than once: {twice}")
    differ = con.sql(
        """SELECT e.partition, e."offset", x.partition, x."offset"
           FROM expected e FULL OUTER JOIN exported x
             ON e.partition = x.partition AND e."offset" = x."offset"
           WHERE x."offset" IS NULL OR e."offset" IS NULL
              OR x.key IS DISTINCT FROM e.key OR x.value IS DISTINCT FROM e.value
              OR x.headers IS DISTINCT FROM e.headers OR x.timestamp IS DISTINCT FROM e.ts
           LIMIT 5"""
    ).fetchall()
    if differ:
        fail(f"rows missing, extra or different (expected p/o, exported p/o): {differ}")
    misplaced = con.sql(
        f"""SELECT count(*) FROM exported
            WHERE topic <> '{args.topic}' OR date <> CAST(timestamp AS DATE)
               OR CAST(hour AS INTEGER) <> hour(timestamp)"""
    ).fetchone()[0]
    if misplaced:
        fail(f"{misplaced} rows whose topic/date/hour path columns disagree with the row")
    print(f"duckdb: {count} rows, each acknowledged record exactly once and identical; "
          "path columns agree")


def check_json(args):
    validate_files(args)
    with open(args.expected) as handle:
        expected = json.load(handle)
    con = connect(args)
    source = f"read_parquet('{glob(args)}', hive_partitioning = true, union_by_name = true)"
    types = dict(
        con.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {source})").fetchall()
    )
    if types.get("total") != "DOUBLE" or types.get("customer") != "VARCHAR":
        fail(f"typed columns missing: {types}")
    got = {
        customer: [round(avg, 6), count]
        for customer, avg, count in con.sql(
            f"SELECT customer, avg(total), count(*) FROM {source} "
            "WHERE customer IS NOT NULL GROUP BY customer"
        ).fetchall()
    }
    want = {customer: [round(avg, 6), count] for customer, (avg, count) in expected["groups"].items()}
    if got != want:
        fail(f"avg(total) by customer differs:\n got  {got}\n want {want}")
    raw = con.sql(f"SELECT count(*) FROM {source} WHERE _raw IS NOT NULL").fetchone()[0]
    if raw != expected["raw"]:
        fail(f"{raw} rows in _raw, expected {expected['raw']}")
    print(f"duckdb: avg(total) by customer matches ({len(got)} customers); {raw} rows in _raw")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=["rows", "json"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--s3-endpoint")
    args = parser.parse_args()
    if args.root.startswith("s3://") and not args.s3_endpoint:
        parser.error("an s3:// root needs --s3-endpoint")
    {"rows": check_rows, "json": check_json}[args.check](args)


if __name__ == "__main__":
    main()
