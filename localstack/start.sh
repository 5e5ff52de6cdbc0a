#!/usr/bin/env bash
# Starts LocalStack's S3 in host mode, in the background, on $FLOE_LOCALSTACK_ADDR
# (default 127.0.0.1:4566), waits until S3 answers, creates bucket $FLOE_BUCKET (default
# floe) and prints how to point floe at it. Safe to run again while it is up.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$HERE/common.sh"

if [ "${#BUCKET}" -lt 3 ]; then
  echo "start: bucket name '$BUCKET' is too short (S3 needs at least 3 characters)" >&2
  exit 1
fi

if pid_alive "$LS_PIDFILE" localstack; then
  echo "start: LocalStack already running (pid $(cat "$LS_PIDFILE")) on $LS_ADDR"
else
  if port_busy "$LS_ADDR"; then
    echo "start: $LS_ADDR is taken by another process; set FLOE_LOCALSTACK_ADDR" >&2
    exit 1
  fi
  "$HERE/install.sh"
  mkdir -p "$LS_DIR"
  # FILESYSTEM_ROOT: host mode keeps its tmp/cache/state tree there instead of inside the
  # venv. DNS_ADDRESS=0: no DNS server (it would want port 53). DISABLE_EVENTS and
  # SKIP_SSL_CERT_DOWNLOAD: no calls home, so it also starts offline.
  # The community edition keeps S3 objects only for the life of the process.
  SERVICES=s3 GATEWAY_LISTEN="$LS_ADDR" DNS_ADDRESS=0 \
    FILESYSTEM_ROOT="$LS_DIR/filesystem" DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
    nohup "$VENV/bin/python" -m localstack.runtime.main >"$LS_LOG" 2>&1 </dev/null &
  echo $! >"$LS_PIDFILE"
  echo "start: LocalStack starting (pid $!), log $LS_LOG"
fi

# /_localstack/health lists each service as "available" (loads on first use) or "running".
s3_ready() {
  "$VENV/bin/python" - "http://$LS_ADDR/_localstack/health" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        state = json.load(r).get("services", {}).get("s3")
except Exception:
    sys.exit(1)
sys.exit(0 if state in ("available", "running") else 1)
PY
}
wait_until 120 "$LS_PIDFILE" "$LS_LOG" LocalStack s3_ready

"$VENV/bin/python" - "http://$LS_ADDR" "$BUCKET" <<'PY'
import sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(s3={"addressing_style": "path"}),
)
try:
    s3.create_bucket(Bucket=bucket)
    print(f"start: created bucket {bucket}")
except ClientError as e:
    if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
        raise
    print(f"start: bucket {bucket} already exists")
PY

cat <<MSG

LocalStack S3 is up at http://$LS_ADDR (bucket: $BUCKET). Run a broker against it with:

  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \\
  AWS_ENDPOINT_URL=http://$LS_ADDR \\
  floe serve --store s3://$BUCKET/cluster1 --etcd http://127.0.0.1:2379 --cluster dev \\
    --advertise 127.0.0.1:8081 --listen 127.0.0.1:8081

(or pass --s3-endpoint http://$LS_ADDR instead of AWS_ENDPOINT_URL). Stop it with
localstack/stop.sh; S3 contents are lost when it stops.
MSG
