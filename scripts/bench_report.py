#!/usr/bin/env python3
"""Renders the JSON lines `floe-bench run` writes into the markdown tables of the
side-by-side report (scripts/bench.sh).

    bench_report.py RESULTS.jsonl                  # the report, on stdout
    bench_report.py --rate RESULTS.jsonl LABEL SYS # one run's records/s (for the script)
"""
import json
import os
import platform
import subprocess
import sys

NAMES = {"floe": "floe", "s2": "s2-lite", "sink": "loopback sink"}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def find(runs, label, system):
    return [r for r in runs if r.get("label") == label and r.get("system") == system]


def one(runs, label, system):
    found = find(runs, label, system)
    return found[-1] if found else None


def num(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def pct(r, key, q):
    return (r.get(key) or {}).get(q) if r else None


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}×"


def machine(runs):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    lines = [
        f"- CPU: {os.cpu_count()} × {cpu}",
        f"- memory: {mem}; kernel {platform.release()}",
    ]
    disk = next((r["disk"] for r in runs if r.get("label") == "disk"), None)
    if disk:
        lines.append(
            f"- local disk: {disk['mb_per_sec']:,.0f} MB/s writing {disk['file_size'] >> 20} MiB files "
            f"with {disk['writers']} writers (write, fsync, rename, fsync directory: what both "
            f"systems' local stores do)"
        )
    for label, shape in (("W1", "1 KiB × 100"), ("W3", "100 B × 1000")):
        sink = one(runs, label, "sink")
        if sink:
            lines.append(
                f"- loopback HTTP ({shape} per request, 64 connections, this client): "
                f"{sink['mb_per_sec']:,.0f} MB/s, {sink['records_per_sec']:,.0f} records/s, "
                f"ack p99 {num(pct(sink, 'ack_ms', 'p99'), 2)} ms"
            )
    return "\n".join(lines)


def throughput_table(runs, labels):
    out = [
        "| workload | system | records/s | MB/s | ack p50 / p99 / p99.9 ms | server CPU-s per GiB | PUT / GET per GiB | % of loopback | % of disk |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    disk = next((r["disk"] for r in runs if r.get("label") == "disk"), None)
    for label in labels:
        floe, s2 = one(runs, label, "floe"), one(runs, label, "s2")
        if not floe and not s2:
            continue
        sink = one(runs, "W3" if label.startswith("W3") else "W1", "sink")
        for name, r in (("floe", floe), ("s2-lite", s2)):
            if not r:
                continue
            store = "–"
            if r.get("puts_per_gib") is not None:
                store = f"{num(r['puts_per_gib'])} / {num(r['gets_per_gib'])}"
            loop = f"{100 * r['mb_per_sec'] / sink['mb_per_sec']:.0f}%" if sink else "–"
            dsk = f"{100 * r['mb_per_sec'] / disk['mb_per_sec']:.0f}%" if disk and "S3" not in label else "–"
            errors = f" ({r['errors']} errors)" if r.get("errors") else ""
            out.append(
                f"| {label} | {name}{errors} | {num(r['records_per_sec'])} | {num(r['mb_per_sec'], 1)} | "
                f"{num(pct(r, 'ack_ms', 'p50'), 1)} / {num(pct(r, 'ack_ms', 'p99'), 1)} / {num(pct(r, 'ack_ms', 'p999'), 1)} | "
                f"{num(r.get('cpu_seconds_per_gib'), 1)} | {store} | {loop} | {dsk} |"
            )
        if floe and s2:
            out.append(
                f"| {label} | **floe / s2-lite** | {ratio(floe['records_per_sec'], s2['records_per_sec'])} | "
                f"{ratio(floe['mb_per_sec'], s2['mb_per_sec'])} | p99 {ratio(pct(floe, 'ack_ms', 'p99'), pct(s2, 'ack_ms', 'p99'))} | "
                f"{ratio(floe.get('cpu_seconds_per_gib'), s2.get('cpu_seconds_per_gib'))} | "
                f"PUT {ratio(floe.get('puts_per_gib'), s2.get('puts_per_gib'))} | | |"
            )
    return "\n".join(out)


def knee(steps):
    """The highest offered rate the system kept up with (achieved >= 95% of offered) while
    its median acknowledgement stayed within 2x its median at the lowest rate. The median,
    not the p99: a step lasts seconds, and one stall of a few hundred ms on this shared
    machine moves a step's p99 without saying anything about queueing. Returns the step and
    whether it is the sweep's last (the knee lies above the sweep)."""
    if not steps:
        return None, False
    base = pct(steps[0], "ack_ms", "p50") or 0
    best = None
    for r in steps:
        p50 = pct(r, "ack_ms", "p50")
        if p50 is None or r["records_per_sec"] < 0.95 * r["target_rate"] or p50 > 2 * base:
            break
        best = r
    return best, best is steps[-1]


def median_runs(runs):
    """One run per W2 step: the run with the median ack p99 when a step was run several
    times (FLOE_BENCH_W2_RUNS), with the range of the step's p99s and its run count."""
    by_rate = {}
    for r in runs:
        by_rate.setdefault(r["target_rate"], []).append(r)
    steps = []
    for rate in sorted(by_rate):
        group = sorted(by_rate[rate], key=lambda r: pct(r, "ack_ms", "p99") or 0)
        median = dict(group[(len(group) - 1) // 2])
        p99s = [pct(r, "ack_ms", "p99") for r in group if pct(r, "ack_ms", "p99") is not None]
        median["_runs"] = len(group)
        median["_p99_range"] = (min(p99s), max(p99s)) if p99s else None
        steps.append(median)
    return steps


def sweep_table(runs):
    out = []
    summary = []
    for system in ("floe", "s2"):
        steps = median_runs(find(runs, "W2", system))
        if not steps:
            continue
        repeated = any(r["_runs"] > 1 for r in steps)
        out.append(f"\n**{NAMES[system]}**\n")
        if repeated:
            out.append(
                "Each step was run several times on fresh servers: the row is the run with "
                "the median ack p99, and the last column the step's p99 over all its runs.\n"
            )
        out.append(
            "| offered records/s | achieved | ack p50 ms | p99 ms | p99.9 ms "
            "| sent late p99 ms | round trip p99 ms | generator's runtime delay max ms "
            + ("| runs: ack p99 min–max ms |" if repeated else "|")
        )
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if repeated else ""))
        for r in steps:
            spread = ""
            if repeated:
                low, high = r["_p99_range"] or (None, None)
                spread = f" {r['_runs']}: {num(low, 1)}–{num(high, 1)} |"
            out.append(
                f"| {num(r['target_rate'])} | {num(r['records_per_sec'])} | {num(pct(r, 'ack_ms', 'p50'), 1)} | "
                f"{num(pct(r, 'ack_ms', 'p99'), 1)} | {num(pct(r, 'ack_ms', 'p999'), 1)} | "
                f"{num(pct(r, 'late_ms', 'p99'), 1)} | {num(pct(r, 'service_ms', 'p99'), 1)} | "
                f"{num(pct(r, 'client_delay_ms', 'max'), 1)} |{spread}"
            )
        k, above = knee(steps)
        if k is None:
            text = "below the lowest step"
        else:
            text = (
                f"{'at least ' if above else ''}{num(k['target_rate'])} records/s "
                f"({num(k['mb_per_sec'], 1)} MB/s, p50 {num(pct(k, 'ack_ms', 'p50'), 1)} ms, "
                f"p99 {num(pct(k, 'ack_ms', 'p99'), 1)} ms)"
                + (" — kept up with every step of the sweep" if above else "")
            )
        summary.append(f"- {NAMES[system]} knee: {text}")
    return "\n".join(summary + out)


def tail_table(runs, labels):
    out = [
        "| workload | system | offered records/s | achieved | ack p50 / p99 ms | end-to-end p50 / p99 / p99.9 ms | server CPU-s per GiB | PUT / GET per GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        pair = {s: one(runs, label, s) for s in ("floe", "s2")}
        for system, r in pair.items():
            if not r:
                continue
            errors = f" ({r['errors']} errors)" if r.get("errors") else ""
            out.append(
                f"| {label} | {NAMES[system]}{errors} | {num(r.get('target_rate'))} | {num(r['records_per_sec'])} | "
                f"{num(pct(r, 'ack_ms', 'p50'), 1)} / {num(pct(r, 'ack_ms', 'p99'), 1)} | "
                f"{num(pct(r, 'e2e_ms', 'p50'), 1)} / {num(pct(r, 'e2e_ms', 'p99'), 1)} / {num(pct(r, 'e2e_ms', 'p999'), 1)} | "
                f"{num(r.get('cpu_seconds_per_gib'), 1)} | {num(r.get('puts_per_gib'))} / {num(r.get('gets_per_gib'))} |"
            )
        if pair["floe"] and pair["s2"]:
            out.append(
                f"| {label} | **floe / s2-lite** | | | p99 {ratio(pct(pair['floe'], 'ack_ms', 'p99'), pct(pair['s2'], 'ack_ms', 'p99'))} | "
                f"p99 {ratio(pct(pair['floe'], 'e2e_ms', 'p99'), pct(pair['s2'], 'e2e_ms', 'p99'))} | "
                f"{ratio(pair['floe'].get('cpu_seconds_per_gib'), pair['s2'].get('cpu_seconds_per_gib'))} | |"
            )
    return "\n".join(out)


def catchup_table(runs, labels):
    out = [
        "| workload | system | history | write MB/s | read MB/s after restart | read s | GET per GiB read | server CPU-s per GiB read |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        pair = {}
        for system in ("floe", "s2"):
            write, read = one(runs, f"{label}-write", system), one(runs, label, system)
            if not read:
                continue
            pair[system] = read
            out.append(
                f"| {label} | {NAMES[system]} | {read['bytes'] / (1 << 20):,.0f} MiB | "
                f"{num(write['mb_per_sec'], 1) if write else '–'} | {num(read['mb_per_sec'], 1)} | {num(read['seconds'], 1)} | "
                f"{num(read.get('gets_per_gib'))} | {num(read.get('cpu_seconds_per_gib'), 1)} |"
            )
        if len(pair) == 2:
            out.append(
                f"| {label} | **floe / s2-lite** | | | {ratio(pair['floe']['mb_per_sec'], pair['s2']['mb_per_sec'])} | | "
                f"{ratio(pair['floe'].get('gets_per_gib'), pair['s2'].get('gets_per_gib'))} | "
                f"{ratio(pair['floe'].get('cpu_seconds_per_gib'), pair['s2'].get('cpu_seconds_per_gib'))} |"
            )
    return "\n".join(out)


def report(runs):
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    parts = [
        f"# floe benchmark report (floe {rev or 'unknown'}, s2-lite 0.43.4)",
        "",
        "## Machine and its limits",
        machine(runs),
        "",
        "## W1, W3, W6, W7: maximum rate (local store; W1-S3 on moto behind the counting proxy; W7 is one partition fed JSON)",
        throughput_table(runs, ["W1", "W3", "W6", "W7", "W1-S3"]),
        "",
        "## W2: rate sweep (1 KiB × 100 per request, 100 partitions, local store)",
        sweep_table(runs),
        "",
        "## W4: tail consumers on every partition while producing",
        tail_table(runs, ["W4", "W4-S3"]),
        "",
        "## W5: catch-up read of history after a restart",
        catchup_table(runs, ["W5", "W5-S3"]),
        "",
    ]
    return "\n".join(parts)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--rate":
        r = one(load(sys.argv[2]), sys.argv[3], sys.argv[4])
        print(round(r["records_per_sec"]) if r else 0)
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(report(load(sys.argv[1])))


if __name__ == "__main__":
    main()
