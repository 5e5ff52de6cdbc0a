#!/usr/bin/env bash
# Parquet export benchmarks (docs/benchmarks.md, "Parquet export"):
#   1. the writer on one core: 1 GiB of order-like records → Parquet, binary and json;
#   2. DuckDB scanning the 1 GiB (of records) exported as json: count, an aggregate over
#      typed columns, and a scan of every column;
#   3. end to end through a release `floe serve` on the local store: GIB of 1 KiB records
#      produced into 6 partitions with export off, then export turned on with the
#      background budget lifted, timed until every partition's lag is 0.
# Usage: scripts/export_bench.sh [MIB]   (default 1024; installs what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
ensure_chart_tools
MIB="${1:-1024}"
TARGET="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d)"
trap 'kill "${floe_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -p floe-export --example export_bench
cargo build --release --bin floe --bin floe-bench

echo "== 1. writer, one core"
"$TARGET/release/examples/export_bench" "$MIB" binary
"$TARGET/release/examples/export_bench" "$MIB" json "$work/lake"

echo "== 2. DuckDB over the exported json ($(du -sh "$work/lake" | cut -f1) of Parquet)"
"$FLOE_PYTHON" - "$work/lake" <<'EOF'
import sys, time, duckdb
glob = f"{sys.argv[1]}/topic=orders/**/*.parquet"
con = duckdb.connect()
source = f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
for label, sql in [
    ("count(*)", f"SELECT count(*) FROM {source}"),
    ("avg(total) by customer", f"SELECT customer, avg(total) FROM {source} GROUP BY customer"),
    ("every column", f"SELECT count(*), sum(octet_length(key)), sum(len(headers)), max(note), "
                     f"sum(order_id), max(items), sum(CAST(paid AS INT)), max(\"offset\") FROM {source}"),
]:
    best = None
    for _ in range(3):
        began = time.perf_counter()
        con.sql(sql).fetchall()
        took = time.perf_counter() - began
        best = took if best is None else min(best, took)
    print(f"duckdb {label}: best of 3 {best * 1000:.0f} ms")
EOF

echo "== 3. end to end through floe serve (local store)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
cat > "$work/floe.toml" <<EOF
[jobs]
export_interval = "100ms"
bytes_per_second = 4294967296
EOF
"$TARGET/release/floe" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --config "$work/floe.toml" 2>"$work/floe.log" &
floe_pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "$url/v1/topics" -d '{"name":"e2e","partitions":6}' >/dev/null
"$TARGET/release/floe-bench" run --url "$url" --topic e2e --existing --partitions 6 \
  --record-size 1024 --batch 100 --producers 8 --total-bytes $(( MIB * 1024 * 1024 )) >/dev/null
records=$(curl -sf "$url/v1/topics/e2e" | python3 -c 'import json,sys; print(sum(p["high_watermark"] for p in json.load(sys.stdin)["partitions"]))')
began=$(date +%s.%N)
curl -sf -X PATCH "$url/v1/topics/e2e/config" \
  -d '{"set":{"export.parquet.enabled":true,"export.parquet.max.delay.ms":100}}' >/dev/null
while :; do
  lag=$(curl -sf "$url/v1/topics/e2e/export" | python3 -c 'import json,sys; print(sum(p["lag_records"] for p in json.load(sys.stdin)["partitions"]))')
  [ "$lag" = 0 ] && break
  sleep 0.1
done
ended=$(date +%s.%N)
curl -sf "$url/v1/topics/e2e/export" | python3 -c "
import json, sys
status = json.load(sys.stdin)
took = $ended - $began
records = $records
parquet = sum(p['bytes'] for p in status['partitions'])
files = sum(p['files'] for p in status['partitions'])
mib = records * 1024 / 2**20
print(f'exported {records} records ({mib:.0f} MiB of values) in {took:.1f} s: '
      f'{mib / took:.1f} MiB/s, {records / took:.0f} records/s; {files} files, '
      f'{parquet / 2**20:.0f} MiB of Parquet')
"
