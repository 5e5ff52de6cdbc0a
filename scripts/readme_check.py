"""Runs the README's tours as a new user would, and checks what they print.

The commands are read from README.md itself, so a tour that drifts from floe fails here:
  - "A one-minute tour": every curl against a fresh `floe serve` (the idempotent produce
    twice: the same offsets), the event stream for a few seconds;
  - the CLI tour after it, with `floe` on PATH;
  - "Consumer groups in two terminals": its commands, with terminal 1 run for a while and
    stopped with Ctrl-C (SIGINT) as the text says;
  - with --cluster, "A cluster on one machine": localstack/cluster.sh (etcd, LocalStack's
    S3, three brokers on :8081-8083), the block's commands, and the stop.

Usage: FLOE_BIN=path/to/floe python3 scripts/readme_check.py [--cluster]
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fail(message: str) -> None:
    print(f"readme: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def section_blocks(readme: str, heading: str) -> list[str]:
    """The ```sh blocks between `heading` and the next heading of the same or higher level."""
    level = len(heading.split(" ")[0])
    blocks, block, inside, fenced = [], [], False, False
    for line in readme.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            if inside and fenced and line == "```sh":
                block = []
            elif inside and not fenced and block is not None:
                blocks.append("\n".join(block) + "\n")
                block = None
            continue
        if fenced:
            if inside and block is not None:
                block.append(line)
            continue
        if line == heading:
            inside = True
        elif inside and re.match(rf"^#{{1,{level}}} ", line):
            break
    return blocks


def commands(block: str) -> list[tuple[str, str]]:
    """(command, the comments right above it and on its line); a command goes on over
    lines ending in a backslash and while a quote is open."""
    result, comment, pending = [], "", ""
    for line in block.splitlines():
        if pending:
            pending += "\n" + line
        elif line.lstrip().startswith("#") or not line.strip():
            comment = comment + " " + line.strip() if line.strip() else ""
            continue
        else:
            pending = line
        if pending.endswith("\\") or not quotes_closed(pending):
            continue
        result.append((pending, comment + " " + pending.rpartition(" #")[2]))
        pending, comment = "", ""
    return result


def quotes_closed(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
        return True
    except ValueError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(
    command: str, env: dict, cwd: Path, timeout: float | None = None, limit: float = 120
) -> tuple[int, str]:
    """Runs `command` in bash; with `timeout`, stops it with SIGINT (Ctrl-C) then; without,
    fails if it takes longer than `limit` seconds."""
    process = subprocess.Popen(
        ["bash", "-c", "set -o pipefail\n" + command],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout or limit)
    except subprocess.TimeoutExpired:
        if timeout is None:
            os.killpg(process.pid, signal.SIGKILL)
            fail(f"{command!r} did not finish in {limit} s")
        os.killpg(process.pid, signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, _ = process.communicate()
            fail(f"{command!r} ignored Ctrl-C:\n{out}")
    print(f"$ {command}\n{out.rstrip()}", flush=True)
    return process.returncode, out


def json_answer(command: str, out: str, comment: str) -> dict:
    try:
        answer = json.loads(out)
    except json.JSONDecodeError:
        fail(f"{command!r} did not answer JSON: {out!r}")
    if "error_code" in answer and "error" not in comment:
        fail(f"{command!r} failed: {answer}")
    return answer


class Server:
    """A `floe serve` on the embedded default, on a free port, in a temporary directory."""

    def __init__(self, floe: Path, workdir: Path):
        self.port = free_port()
        self.log = open(workdir / "floe.log", "w")
        self.process = subprocess.Popen(
            [str(floe), "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", str(workdir / "floe-data")],
            cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        fail("floe serve did not listen within 30 s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            fail("floe serve did not stop within 30 s of SIGTERM")
        self.log.close()


def environment(floe: Path, workdir: Path, server: str) -> dict:
    bin_dir = workdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "floe").exists():
        (bin_dir / "floe").symlink_to(floe)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["FLOE_SERVER"] = server
    return env


def curl_tour(block: str, env: dict, workdir: Path, port: int) -> None:
    answers = []
    for command, comment in commands(block):
        if command.startswith("scripts/run.sh"):
            continue  # the server is already running, as `floe serve`
        command = command.replace("localhost:8080", f"127.0.0.1:{port}")
        if "-sN" in command:  # an event stream: follow it for a few seconds
            status, out = run(command, env, workdir, timeout=3)
            if "data:" not in out or "id:" not in out:
                fail(f"the event stream sent no events: {out!r}")
            continue
        status, out = run(command, env, workdir)
        if status != 0:
            fail(f"{command!r} exited with {status}")
        answer = json_answer(command, out, comment)
        if "error" in comment and answer.get("error_code") != "offset_out_of_range":
            fail(f"the error example answered {answer}")
        if "/v1/producers" in command and command.rstrip().endswith("producers"):
            if set(answer) != {"producer_id", "producer_epoch"}:
                fail(f"POST /v1/producers answered {answer}")
        if '"sequence"' in command:
            # "send it again: same answer, nothing written"
            _, again = run(command, env, workdir)
            if json.loads(again) != answer:
                fail(f"the idempotent retry answered {again}, the first send {answer}")
        if "expected_next_offset" in command and "offset" not in json.dumps(answer):
            fail(f"the conditional append answered {answer}")
        answers.append(answer)
    print(f"readme: the one-minute tour: {len(answers)} requests answered as it says")


def cli_tour(block: str, env: dict, workdir: Path) -> None:
    for command, _ in commands(block):
        follows = " -f" in command
        status, out = run(command, env, workdir, timeout=4 if follows else None)
        if not follows and status != 0:
            fail(f"{command!r} exited with {status}")
        if "-F '%p/%o %k=%v'" in command:
            printed = {line.split(" ", 1)[1] for line in out.splitlines()}
            if not {"alice=home", "bob=cart"} <= printed:
                fail(f"floe consume printed {out!r}")
        if command.startswith("floe bench run") and "records/s" not in out:
            fail(f"floe bench printed no rate: {out!r}")
    print("readme: the CLI tour ran")


def groups_tour(block: str, env: dict, workdir: Path) -> None:
    """The two-terminal picture becomes: terminal 1 alone, stopped with Ctrl-C."""
    listed = commands(block)
    terminal_1 = next(c for c, _ in listed if c.startswith("floe consume"))
    terminal_1 = terminal_1.split("  ")[0].rstrip(" \\") + " -F '%p/%o %v'"
    for command, _ in listed:
        if command.lstrip().startswith("-"):
            continue  # terminal 1's last line, beside terminal 2's command
        if command.startswith("floe consume"):
            status, out = run(terminal_1, env, workdir, timeout=6)
            values = sorted(line.split(" ", 1)[1] for line in out.splitlines()
                            if re.match(r"^\d+/\d+ ", line))
            if values != sorted(f"order-{n}" for n in range(1, 9)):
                fail(f"terminal 1 printed {out!r}")
            continue
        status, out = run(command, env, workdir)
        if status != 0:
            fail(f"{command!r} exited with {status}")
        if command.startswith("floe groups describe"):
            rows = [line.split() for line in out.splitlines() if line.strip().startswith("orders")]
            # Ctrl-C committed what terminal 1 printed: all 8 records, nothing left to read.
            committed = sum(int(row[3]) for row in rows)
            if len(rows) != 4 or committed != 8 or any(row[5] != "0" for row in rows):
                fail(f"describe after terminal 1 stopped: {out!r}")
    print("readme: the consumer-group tour ran")


def cluster_tour(block: str, floe: Path, workdir: Path) -> None:
    env = environment(floe, workdir, "http://127.0.0.1:8081")
    env["FLOE_BIN"] = str(floe)
    env["FLOE_CLUSTER_DIR"] = str(workdir / "cluster")
    env["FLOE_ETCD_DIR"] = str(workdir / "etcd")
    for variable in ("FLOE_LOCALSTACK_VENV", "FLOE_ETCD_PORT", "FLOE_LOCALSTACK_ADDR"):
        if variable in os.environ:
            env[variable] = os.environ[variable]
    started = False
    try:
        for command, _ in commands(block):
            if command.startswith("cargo build"):
                continue  # FLOE_BIN is built already
            command = command.replace("localhost:", "127.0.0.1:")
            command = command.replace("localstack/cluster.sh", str(ROOT / "localstack/cluster.sh"))
            started = started or "cluster.sh" in command
            # The first start installs LocalStack into a venv.
            status, out = run(command, env, workdir, limit=900)
            if status != 0:
                fail(f"{command!r} exited with {status}")
            if "| wc -l" in command and out.strip() != "1000":
                fail(f"the cluster read back {out.strip()} records, not 1000")
            if command.endswith("/v1/cluster") or "/v1/cluster " in command:
                brokers = json.loads(out).get("brokers", [])
                if len(brokers) != 3:
                    fail(f"the cluster has {len(brokers)} brokers: {out}")
            if "stop" in command:
                started = False
    finally:
        if started:
            run(f"{ROOT}/localstack/cluster.sh stop", env, workdir)
    print("readme: the cluster on one machine ran")


def main() -> None:
    floe = Path(os.environ.get("FLOE_BIN", "")).resolve()
    if not floe.is_file():
        fail("set FLOE_BIN to the floe binary")
    readme = (ROOT / "README.md").read_text()
    tour, cli = section_blocks(readme, "## A one-minute tour")[:2]
    (groups,) = section_blocks(readme, "### Consumer groups in two terminals")
    with tempfile.TemporaryDirectory(prefix="floe-readme-") as scratch:
        # Each tour on a server of its own: both create a topic named orders.
        on_a_fresh_server(floe, Path(scratch) / "tour", lambda env, workdir, port: (
            curl_tour(tour, env, workdir, port), cli_tour(cli, env, workdir)))
        on_a_fresh_server(floe, Path(scratch) / "groups", lambda env, workdir, port:
                          groups_tour(groups, env, workdir))
        if "--cluster" in sys.argv:
            (cluster,) = section_blocks(readme, "## A cluster on one machine")
            workdir = Path(scratch) / "cluster"
            workdir.mkdir()
            cluster_tour(cluster, floe, workdir)


def on_a_fresh_server(floe: Path, workdir: Path, tour) -> None:
    workdir.mkdir()
    server = Server(floe, workdir)
    try:
        tour(environment(floe, workdir, f"http://127.0.0.1:{server.port}"), workdir, server.port)
    finally:
        server.stop()

if __name__ == "__main__":
    main()
