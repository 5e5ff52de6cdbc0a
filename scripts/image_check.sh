#!/usr/bin/env bash
# Builds floe's container image with podman, offline, and checks that it runs as it should.
#
#   scripts/image_check.sh              build deploy/Dockerfile (target runtime-prebuilt)
#                                       around a prebuilt binary, run it, check it
#   scripts/image_check.sh dashboard    no container: run the binary as a process and check
#                                       deploy/grafana/floe.json against its /metrics
#   scripts/image_check.sh compose      deploy/compose.yaml with podman-compose: build the
#                                       brokers (runtime-prebuilt), start etcd, an S3 server
#                                       and three brokers, produce and consume across them,
#                                       stop and restart one, tear down
#
# compose cannot pull quay.io's etcd and MinIO either: it runs the compose file with an
# override that swaps them for stand-ins built here (Debian's etcd 3.4; moto's S3 server,
# from wheels pip downloads on this machine), and starts the services in dependency order
# because podman 4.3 without systemd runs no health checks. It publishes the compose file's
# ports (8081-8083, 9001) and tags localhost/floe:dev.
#
# No container registry is reachable where this was written, so nothing is pulled: when
# docker.io/library/debian:bookworm-slim is missing locally it is built with debootstrap
# from the Debian mirror (~30 s, once), and the image is built from the Dockerfile's
# runtime-prebuilt stage around `floe` copied, stripped, into a temporary build context.
#
# Environment:
#   FLOE_BIN                 the floe binary (default: the newer of
#                            $CARGO_TARGET_DIR/release/floe and target/release/floe, else
#                            of the debug builds)
#   FLOE_IMAGE               tag to build (default localhost/floe:dev, as deploy/compose.yaml)
#   FLOE_IMAGE_CHECK_PORT    host port to publish (default: a free one)
#   FLOE_DEBIAN_MIRROR       mirror for debootstrap (default http://deb.debian.org/debian)
#
# Needs root (or sudo) for apt-get and debootstrap; podman runs as the calling user and was
# tested as root. Prints each check; exits non-zero at the first that fails.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${FLOE_IMAGE:-localhost/floe:dev}"
BASE_IMAGE=docker.io/library/debian:bookworm-slim
MIRROR="${FLOE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
STATE="$HOME/.cache/floe/podman"
CONTAINER=""
COMPOSE=""
WORK=""
LOCAL_PID=""

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
say() { echo "image_check: $*"; }
ok() { echo "  ok   $*"; }
fail() {
  echo "  FAIL $*" >&2
  if [ -n "$CONTAINER" ]; then
    echo "--- container logs (last 40 lines)" >&2
    podman logs --tail 40 "$CONTAINER" >&2 2>&1 || true
  fi
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

cleanup() {
  if [ -n "$CONTAINER" ]; then podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true; fi
  if [ -n "$COMPOSE" ]; then compose down -v >/dev/null 2>&1 || true; fi
  if [ -n "$LOCAL_PID" ]; then kill "$LOCAL_PID" 2>/dev/null || true; wait "$LOCAL_PID" 2>/dev/null || true; fi
  if [ -n "$WORK" ]; then as_root rm -rf "$WORK"; fi
}
trap cleanup EXIT

# FLOE_BIN, else the newest release build ($CARGO_TARGET_DIR, then ./target), else the
# newest debug build: a stale binary in one target directory is not picked over a fresh one.
find_floe() {
  local target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/floe/target}" profile newest
  if [ -n "${FLOE_BIN:-}" ]; then
    [ -x "$FLOE_BIN" ] || { echo "image_check: FLOE_BIN=$FLOE_BIN is not executable" >&2; return 1; }
    echo "$FLOE_BIN"
    return 0
  fi
  for profile in release debug; do
    # shellcheck disable=SC2012  # two fixed paths, no odd names
    newest=$(ls -t "$target_dir/$profile/floe" "$REPO/target/$profile/floe" 2>/dev/null | head -1)
    if [ -n "$newest" ]; then echo "$newest"; return 0; fi
  done
  echo "image_check: no floe binary; build one with" >&2
  echo "  (source scripts/bootstrap.sh && cargo build --release --bin floe)   or set FLOE_BIN" >&2
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- tools ---------------------------------------------------------------------------------

ensure_tools() {
  local missing=()
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v strip >/dev/null 2>&1 || missing+=(binutils)
  if [ "${1:-}" = containers ]; then
    # Debian's podman with runc: crun refuses this kind of VM's hybrid cgroups.
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    [ -x /bin/busybox ] || missing+=(busybox-static)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    local started
    started=$(now)
    say "installing ${missing[*]}"
    apt_install "${missing[@]}"
    say "installed in $(since "$started") s"
  fi
}

# podman stays under the host's ulimits and uses runc with cgroupfs (docs: TOOLING).
configure_podman() {
  mkdir -p "$STATE"
  cat >"$STATE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF="$STATE/containers.conf"
}

# The official debian:bookworm-slim, rebuilt from the Debian mirror when it cannot be pulled:
# a minbase bootstrap with ca-certificates, without docs, man pages, locales and apt lists.
ensure_base_image() {
  if podman image exists "$BASE_IMAGE"; then
    ok "base image $BASE_IMAGE present"
    return 0
  fi
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local started rootfs
  started=$(now)
  rootfs="$WORK/rootfs"
  say "building $BASE_IMAGE with debootstrap from $MIRROR (once)"
  as_root debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
  as_root sh -c "
    rm -rf '$rootfs'/usr/share/doc/* '$rootfs'/usr/share/man/* '$rootfs'/usr/share/info/* \
      '$rootfs'/usr/share/locale/* '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/*.bin \
      '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/log/*.log '$rootfs'/var/log/apt/* \
      '$rootfs'/etc/hostname '$rootfs'/etc/resolv.conf
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' >'$rootfs'/etc/dpkg/dpkg.cfg.d/docker
  "
  # /dev, /proc and /sys are left empty: the runtime mounts them.
  as_root tar --numeric-owner -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' \
    --exclude='./sys/*' -c . |
    podman import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs"
  ok "base image $BASE_IMAGE built in $(since "$started") s ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# --- the checks on a running broker (container or process) ---------------------------------

# exercise URL: a topic, a produce, a fetch of what was produced, a group offset commit.
exercise() {
  local url=$1 answer
  curl -fsS --max-time 10 "$url/readyz" >/dev/null || fail "/readyz"
  ok "/readyz answers"
  answer=$(curl -sS --max-time 10 -XPOST "$url/v1/topics" -H 'content-type: application/json' \
    -d '{"name":"image-check","partitions":2}' -w '\n%{http_code}')
  [ "${answer##*$'\n'}" = 201 ] || fail "create topic: $answer"
  ok "topic created (201)"
  answer=$(curl -fsS --max-time 10 -XPOST "$url/v1/topics/image-check/partitions/0/records" \
    -H 'content-type: application/json' \
    -d '{"records":[{"key":"k1","value":"hello from the image"},{"key":"k2","value":"second"}]}') ||
    fail "produce"
  echo "$answer" | python3 -c '
import json, sys
offsets = json.load(sys.stdin)["offsets"]
assert [o["offset"] for o in offsets] == [0, 1], offsets' || fail "produce answered $answer"
  ok "produced 2 records: $answer"
  answer=$(curl -fsS --max-time 10 "$url/v1/topics/image-check/partitions/0/records?offset=0&wait_ms=1000") ||
    fail "fetch"
  echo "$answer" | python3 -c '
import json, sys
body = json.load(sys.stdin)
got = [(r["offset"], r["key"], r["value"]) for r in body["records"]]
assert got == [(0, "k1", "hello from the image"), (1, "k2", "second")], got
assert body["next_offset"] == 2 and body["high_watermark"] == 2, body' || fail "fetch answered $answer"
  ok "fetched them back (offsets 0 and 1, same keys and values)"
  curl -fsS --max-time 10 -XPOST "$url/v1/groups/image-check/offsets" -H 'content-type: application/json' \
    -d '{"offsets":[{"topic":"image-check","partition":0,"offset":1}]}' >/dev/null ||
    fail "group offset commit"
  ok "group offset committed"
}

# check_dashboard METRICS_FILE: deploy/grafana/floe.json parses, is what Grafana imports,
# and every metric its queries name is in the scrape.
check_dashboard() {
  python3 - "$REPO/deploy/grafana/floe.json" "$1" <<'PY'
import json, re, sys

dashboard = json.load(open(sys.argv[1]))
scrape = open(sys.argv[2]).read()
exported = set()
for line in scrape.splitlines():
    if line and not line.startswith("#"):
        exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))

assert dashboard.get("schemaVersion") == 39, "schemaVersion is not 39"
variables = {v["name"]: v for v in dashboard["templating"]["list"]}
assert variables["DS_PROMETHEUS"]["type"] == "datasource", "no DS_PROMETHEUS datasource variable"
assert variables["DS_PROMETHEUS"]["query"] == "prometheus"

def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))

# Words in a PromQL expression that are not metric names.
keywords = {
    "sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "le", "max",
    "min", "avg", "count", "topk", "bottomk", "clamp_min", "clamp_max", "on", "ignoring",
    "group_left", "group_right", "or", "and", "unless", "offset", "vector", "abs", "time",
    "label_replace", "deriv", "delta", "avg_over_time", "max_over_time", "sort_desc",
    "scalar", "label_values",
}
def metric_names(expr):
    """The identifiers of a PromQL expression left once labels, strings, ranges,
    grouping clauses, variables and functions are dropped: the metric names."""
    bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", expr)
    bare = re.sub(r"\$\{?\w+\}?", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r",\s*\w+\s*\)", ")", bare)  # label_values(metric, label)
    return [w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
            if w not in keywords and not w.startswith("__")]

exprs, missing, ids = 0, [], set()
for variable in variables.values():
    if variable["type"] == "query":
        exprs += 1
        missing += [f"variable {variable['name']}: {w}" for w in metric_names(variable["definition"])
                    if w not in exported]
for panel in panels(dashboard["panels"]):
    assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
    ids.add(panel["id"])
    if panel["type"] == "row":
        continue
    assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", f"panel {panel['title']}: datasource"
    assert panel.get("targets"), f"panel {panel['title']} has no queries"
    for target in panel["targets"]:
        exprs += 1
        missing += [f"{panel['title']}: {w}" for w in metric_names(target["expr"]) if w not in exported]
if missing:
    print("  FAIL metrics the dashboard queries but /metrics does not export:", file=sys.stderr)
    for name in missing:
        print("       " + name, file=sys.stderr)
    sys.exit(1)
print(f"  ok   deploy/grafana/floe.json: schemaVersion 39, {len(ids)} panels, {exprs} queries, "
      f"every metric they name is exported ({len(exported)} series names in the scrape)")
PY
}

# --- compose ---------------------------------------------------------------------------------

COMPOSE_VENV="$HOME/.cache/floe/podman-compose-venv"
COMPOSE_PROJECT="floe-compose-check"

# compose ARGS...: podman-compose on the repository's compose file plus the stand-ins.
compose() {
  "$COMPOSE_VENV/bin/podman-compose" -p "$COMPOSE_PROJECT" \
    -f "$WORK/repo/deploy/compose.yaml" -f "$WORK/standins.yaml" "$@"
}

# in_service SERVICE CMD...: runs CMD in the compose service's container.
in_service() {
  local service=$1
  shift
  podman exec -i "${COMPOSE_PROJECT}_${service}_1" "$@"
}

wait_for() {
  local what=$1 tries=0
  shift
  until "$@" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ $tries -lt 300 ] || fail "$what: not within 60 s"
    sleep 0.2
  done
}

# Stand-ins for the images compose.yaml names but no registry here serves.
ensure_standin_images() {
  local started
  if ! podman image exists localhost/floe-standin-etcd:3.4; then
    started=$(now)
    mkdir -p "$WORK/standin-etcd"
    printf '%s\n' "FROM $BASE_IMAGE" \
      'RUN apt-get update && apt-get install -y --no-install-recommends etcd-server etcd-client && rm -rf /var/lib/apt/lists/*' \
      >"$WORK/standin-etcd/Dockerfile"
    podman build --pull=never -t localhost/floe-standin-etcd:3.4 "$WORK/standin-etcd" \
      >"$WORK/standin-etcd.log" 2>&1 || { tail -20 "$WORK/standin-etcd.log" >&2; fail "etcd stand-in"; }
    ok "etcd stand-in image built (Debian's etcd-server) in $(since "$started") s"
  fi
  if ! podman image exists localhost/floe-standin-s3:moto5; then
    started=$(now)
    mkdir -p "$WORK/standin-s3/wheels"
    # Downloaded here, where pip is set up for this network, for the image's Python 3.11.
    python3 -m pip download -q -d "$WORK/standin-s3/wheels" --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
      --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
      "moto[server]>=5.1,<6" || fail "pip download moto"
    printf '%s\n' "FROM $BASE_IMAGE" 'COPY wheels /wheels' \
      'RUN apt-get update && apt-get install -y --no-install-recommends python3-venv curl && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/moto && /opt/moto/bin/pip install -q --no-index --find-links /wheels "moto[server]" && rm -rf /wheels' \
      >"$WORK/standin-s3/Dockerfile"
    podman build --pull=never -t localhost/floe-standin-s3:moto5 "$WORK/standin-s3" \
      >"$WORK/standin-s3.log" 2>&1 || { tail -20 "$WORK/standin-s3.log" >&2; fail "S3 stand-in"; }
    ok "S3 stand-in image built (moto's server) in $(since "$started") s"
  fi
}

compose_check() {
  local total started floe count stop_seconds
  total=$(now)
  ensure_tools containers
  configure_podman
  WORK=$(mktemp -d)
  floe=$(find_floe)
  if [ ! -x "$COMPOSE_VENV/bin/podman-compose" ]; then
    say "installing podman-compose 1.6.0 into $COMPOSE_VENV"
    python3 -m venv "$COMPOSE_VENV" >/dev/null 2>&1 || { apt_install python3-venv; python3 -m venv "$COMPOSE_VENV"; }
    "$COMPOSE_VENV/bin/pip" install -q "podman-compose==1.6.0" || fail "pip install podman-compose"
  fi
  ensure_base_image
  ensure_standin_images

  # The compose file as it is, in a copy of the working tree with dist/floe beside it.
  mkdir -p "$WORK/repo"
  tar -C "$REPO" --exclude=./target --exclude=./.git --exclude=./floe-data -c . | tar -x -C "$WORK/repo"
  mkdir -p "$WORK/repo/dist"
  strip --strip-all -o "$WORK/repo/dist/floe" "$floe"
  printf '%s\n' 'services:' \
    '  etcd:' \
    '    image: localhost/floe-standin-etcd:3.4' \
    '  minio:' \
    '    image: localhost/floe-standin-s3:moto5' \
    '    command: ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "9000"]' \
    '    healthcheck:' \
    '      test: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9000/moto-api/"]' \
    '  minio-init:' \
    '    image: localhost/floe-standin-s3:moto5' \
    '    entrypoint: ["curl", "-fsS", "-X", "PUT", "http://minio:9000/floe"]' \
    >"$WORK/standins.yaml"
  export FLOE_IMAGE_TARGET=runtime-prebuilt
  COMPOSE=1
  compose down -v >/dev/null 2>&1 || true

  started=$(now)
  compose build >"$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log" >&2; fail "compose build"; }
  ok "compose build (FLOE_IMAGE_TARGET=runtime-prebuilt) in $(since "$started") s"

  # In dependency order: podman 4.3 runs no health checks without systemd, so
  # podman-compose cannot wait for service_healthy.
  started=$(now)
  compose up -d etcd minio >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "up etcd minio"; }
  wait_for "S3 stand-in" in_service minio curl -fsS -o /dev/null http://127.0.0.1:9000/moto-api/
  wait_for etcd in_service etcd etcdctl --endpoints=http://127.0.0.1:2379 endpoint health
  compose up -d --no-deps minio-init >>"$WORK/up.log" 2>&1 || fail "up minio-init"
  wait_for "minio-init exit" sh -c "[ \"\$(podman inspect --format '{{.State.Status}}' ${COMPOSE_PROJECT}_minio-init_1)\" = exited ]"
  [ "$(podman inspect --format '{{.State.ExitCode}}' "${COMPOSE_PROJECT}_minio-init_1")" = 0 ] ||
    fail "minio-init failed"
  compose up -d --no-deps broker1 broker2 broker3 >>"$WORK/up.log" 2>&1 || fail "up brokers"
  for port in 8081 8082 8083; do
    wait_for "broker on $port" curl -fsS --max-time 1 "http://127.0.0.1:$port/readyz"
  done
  ok "etcd, S3 stand-in, bucket and three ready brokers in $(since "$started") s"

  curl -fsS http://127.0.0.1:8081/v1/cluster | python3 -c '
import json, sys
cluster = json.load(sys.stdin)
brokers = sorted(b["address"] for b in cluster["brokers"])
assert cluster["sequencer"] == "etcd", cluster
assert brokers == ["http://broker%d:8080" % i for i in (1, 2, 3)], cluster
assert cluster["leader"], cluster
print("  ok   one cluster: sequencer on etcd, leader %s, brokers %s" % (cluster["leader"], ", ".join(brokers)))' ||
    fail "cluster"
  curl -fsS -XPOST http://127.0.0.1:8082/v1/topics -d '{"name":"events","partitions":6}' -o /dev/null ||
    fail "create topic"
  seq 1 1000 | in_service broker1 floe produce -s http://broker3:8080 events >/dev/null || fail "produce"
  count=$(in_service broker2 floe consume -s http://broker2:8080 events -n 1000 -o earliest </dev/null | wc -l)
  [ "$count" = 1000 ] || fail "consumed $count of 1000 records"
  ok "1000 records produced through broker3, consumed through broker2 (floe inside the containers)"
  [ "$(in_service broker1 id -u </dev/null)" = 10001 ] || fail "broker1 does not run as uid 10001"

  started=$(now)
  podman stop "${COMPOSE_PROJECT}_broker2_1" >/dev/null || fail "stop broker2"
  stop_seconds=$(since "$started")
  [ "$(podman inspect --format '{{.State.ExitCode}}' "${COMPOSE_PROJECT}_broker2_1")" = 0 ] ||
    fail "broker2 did not exit 0"
  count=$(in_service broker1 floe consume -s http://broker1:8080 events -n 1000 -o earliest </dev/null | wc -l)
  [ "$count" = 1000 ] || fail "consumed $count of 1000 with broker2 stopped"
  ok "broker2 stopped in $stop_seconds s (exit 0); all 1000 records read through broker1"
  podman start "${COMPOSE_PROJECT}_broker2_1" >/dev/null || fail "start broker2"
  wait_for "broker2 after restart" curl -fsS --max-time 1 http://127.0.0.1:8082/readyz
  ok "broker2 restarted and ready"

  started=$(now)
  compose down -v >"$WORK/down.log" 2>&1 || fail "down -v"
  COMPOSE=""
  [ -z "$(podman ps -a -q --filter "name=${COMPOSE_PROJECT}_")" ] || fail "containers left after down -v"
  [ -z "$(podman volume ls -q --filter "name=${COMPOSE_PROJECT}_")" ] || fail "volumes left after down -v"
  ok "down -v in $(since "$started") s, no container or volume left"
  say "compose checks passed in $(since "$total") s"
}

# --- modes -----------------------------------------------------------------------------------

dashboard_only() {
  ensure_tools
  local floe port url
  floe=$(find_floe)
  WORK=$(mktemp -d)
  port=$(free_port)
  url="http://127.0.0.1:$port"
  say "running $floe on $url"
  "$floe" serve --listen "127.0.0.1:$port" --data-dir "$WORK/data" >"$WORK/floe.log" 2>&1 &
  LOCAL_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  exercise "$url"
  curl -fsS "$url/metrics" >"$WORK/metrics.txt" || fail "/metrics"
  check_dashboard "$WORK/metrics.txt" || fail "dashboard"
}

image_check() {
  local total floe started port url size stop_seconds exit_code
  total=$(now)
  ensure_tools containers
  configure_podman
  WORK=$(mktemp -d)
  floe=$(find_floe)
  say "podman $(podman version --format '{{.Client.Version}}'), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'), binary $floe"

  ensure_base_image

  # A build context of its own: the Dockerfile and dist/floe, nothing else.
  mkdir -p "$WORK/context/dist"
  cp "$REPO/deploy/Dockerfile" "$WORK/context/Dockerfile"
  strip --strip-all -o "$WORK/context/dist/floe" "$floe"
  ok "binary stripped: $(du -m "$floe" | cut -f1) MB -> $(du -m "$WORK/context/dist/floe" | cut -f1) MB"
  started=$(now)
  podman build --pull=never --target runtime-prebuilt -t "$IMAGE" "$WORK/context" \
    >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; fail "podman build"; }
  size=$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')
  ok "built $IMAGE (target runtime-prebuilt) in $(since "$started") s, $size"

  # The image's defaults only: its ENTRYPOINT and CMD, a read-only root, a tmpfs data dir.
  port="${FLOE_IMAGE_CHECK_PORT:-$(free_port)}"
  url="http://127.0.0.1:$port"
  started=$(now)
  # --read-only-tmpfs=false: no writable /tmp, /var/tmp or /run either, as on Kubernetes with
  # readOnlyRootFilesystem.
  CONTAINER=$(podman run -d --name "floe-image-check-$$" --network bridge --read-only \
    --read-only-tmpfs=false --tmpfs /var/lib/floe:rw,U -p "127.0.0.1:$port:8080" "$IMAGE") || fail "podman run"
  local healthy=""
  for _ in $(seq 1 300); do
    if curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1; then healthy=1; break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] || fail "container exited"
    sleep 0.1
  done
  [ -n "$healthy" ] || fail "/healthz did not answer within 30 s on $url"
  ok "/healthz answers on $url $(since "$started") s after podman run"

  exercise "$url"

  local uid gid
  uid=$(podman exec "$CONTAINER" id -u) || fail "podman exec id -u"
  gid=$(podman exec "$CONTAINER" id -g) || fail "podman exec id -g"
  [ "$uid:$gid" = "10001:10001" ] || fail "runs as $uid:$gid, not 10001:10001"
  ok "runs as uid:gid $uid:$gid"
  local pid1
  pid1=$(podman exec "$CONTAINER" cat /proc/1/cmdline | tr '\0' ' ')
  [ "${pid1%% *}" = floe ] || fail "PID 1 is '$pid1', not floe"
  ok "PID 1 is '$pid1'"
  local root_options
  root_options=$(podman exec "$CONTAINER" awk '$2 == "/" { print $4 }' /proc/mounts)
  case "$root_options" in ro,* | ro) ;; *) fail "the root filesystem is mounted '$root_options'" ;; esac
  ok "root filesystem is read-only (${root_options%%,*}), without podman's /tmp and /run tmpfs"
  local written
  written=$(podman exec "$CONTAINER" ls /var/lib/floe | tr '\n' ' ')
  ok "floe writes under /var/lib/floe: $written"
  local env_format
  env_format=$(podman exec "$CONTAINER" printenv FLOE_SERVER__LOG_FORMAT)
  [ "$env_format" = json ] || fail "FLOE_SERVER__LOG_FORMAT is '$env_format'"

  curl -fsS "$url/metrics" >"$WORK/metrics.txt" || fail "/metrics"
  grep -q '^floe_produce_latency_seconds_count 1$' "$WORK/metrics.txt" ||
    fail "/metrics has no produce counted"
  ok "/metrics counts the produce ($(grep -vc '^#' "$WORK/metrics.txt") samples)"
  check_dashboard "$WORK/metrics.txt" || fail "dashboard"

  # Graceful stop: SIGTERM to PID 1 flushes, commits and exits 0 well before podman's 10 s.
  started=$(now)
  podman stop -t 10 "$CONTAINER" >/dev/null || fail "podman stop"
  stop_seconds=$(since "$started")
  exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
  [ "$exit_code" = 0 ] || fail "exit code $exit_code after podman stop (137 = killed)"
  awk -v s="$stop_seconds" 'BEGIN { exit !(s < 5) }' || fail "podman stop took $stop_seconds s"
  ok "podman stop: exit code 0 in $stop_seconds s"

  podman logs "$CONTAINER" >"$WORK/container.log" 2>&1
  python3 - "$WORK/container.log" <<'PY' || fail "logs"
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if l]
assert lines, "no log lines"
for line in lines:
    assert "\x1b" not in line, f"ANSI escape in {line!r}"
    entry = json.loads(line)
    assert {"timestamp", "level", "fields"} <= entry.keys(), line
messages = [json.loads(l)["fields"].get("message") for l in lines]
for expected in ("floe is serving", "http stopped; flushing buffered records", "floe stopped"):
    assert expected in messages, f"no {expected!r} in the logs"
print(f"  ok   logs: {len(lines)} JSON lines, no ANSI escapes, 'floe is serving' ... 'floe stopped'")
PY

  podman rm "$CONTAINER" >/dev/null
  CONTAINER=""
  say "all checks passed in $(since "$total") s; image $IMAGE ($size) kept"
}

case "${1:-image}" in
  image) image_check ;;
  compose) compose_check ;;
  dashboard) dashboard_only ;;
  -h | --help) sed -n '2,33p' "$0" ;;
  *) echo "usage: $0 [image|dashboard|compose]" >&2; exit 2 ;;
esac
