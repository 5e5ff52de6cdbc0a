#!/usr/bin/env python3
"""Watches the host for stalls that no process causes: lost CPU time and pressure.

    scripts/pressure.py [--every-ms 5] [--window-ms 100] [--min-ms 20] [--seconds N]

Samples, every few milliseconds until --seconds pass or it is interrupted (SIGINT/SIGTERM):
- its own wake-ups: how much later than asked each sleep returned. A sampler that sleeps
  5 ms and wakes 100 ms later was not run for 100 ms: when every process of a benchmark
  stalls at once, a late sampler says the machine (or the hypervisor under it) stopped;
  a punctual one says the stall was in the processes;
- steal time from /proc/stat (the hypervisor ran something else on this guest's CPUs),
  and iowait, both summed over CPUs, in USER_HZ ticks (10 ms);
- pressure stall information (/proc/pressure/{cpu,io,memory}, Linux 4.20+, CONFIG_PSI):
  the `some` totals (µs in which at least one task waited for the resource) and `full`
  (all non-idle tasks waited) for io and memory.

Then it prints each window of --window-ms that stands out (UTC start, the sampler's worst
lateness, steal, cpu/io/memory pressure): the sampler was --min-ms late, or steal reached
--min-ms, or a pressure figure rose --min-ms above its median window of the run (under
load some pressure is the norm: on two busy cores `cpu some` is ~50 ms a window), and a
summary with those medians. A block device that stops completing requests shows as `io
full` far above its median, with `cpu some` falling (nothing can run), and the sampler on
time; a paused guest shows as a late sampler. Steal is not scaled (it is 10-ms ticks).
floe's warnings (slow uploads, slow appends) and scripts/diskstats.py's device stalls carry
UTC times to set beside these. The sampler wakes 200 times a second on the machine it
watches: about 1 % of one core.
"""

import os
import time

import sampling

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ticks():
    """(steal, iowait) over all CPUs, in ticks: the `cpu` line of /proc/stat."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...
    return int(fields[8]) if len(fields) > 8 else 0, int(fields[5])


def pressure():
    """µs totals: cpu some, io some, io full, memory some, memory full (0 if absent)."""
    totals = []
    for resource, kinds in (("cpu", ("some",)), ("io", ("some", "full")), ("memory", ("some", "full"))):
        found = {}
        try:
            with open(f"/proc/pressure/{resource}") as lines:
                for line in lines:
                    kind, *pairs = line.split()
                    found[kind] = int(dict(p.split("=") for p in pairs)["total"])
        except OSError:
            pass
        totals.extend(found.get(kind, 0) for kind in kinds)
    return totals


NAMES = ("cpu some", "io some", "io full", "memory some", "memory full")


def main():
    parser = sampling.parser(__doc__)
    parser.add_argument("--window-ms", type=float, default=100.0)
    parser.add_argument("--min-ms", type=float, default=20.0)
    args = parser.parse_args()

    stopping = sampling.stopping()

    has_psi = os.path.exists("/proc/pressure/cpu")
    started = time.monotonic()
    wall_offset = time.time() - started
    first_ticks = cpu_ticks()
    first_psi = pressure() if has_psi else [0] * len(NAMES)

    window_ms = args.window_ms
    window_start = started
    window_late = 0.0
    window_ticks = first_ticks
    window_psi = first_psi
    windows = []
    samples = 0
    worst_late = (0.0, started)
    late_total = 0.0
    while not stopping and (args.seconds <= 0 or time.monotonic() - started < args.seconds):
        asked = args.every_ms / 1000
        before = time.monotonic()
        time.sleep(asked)
        now = time.monotonic()
        samples += 1
        late = max(0.0, (now - before - asked) * 1000)
        late_total += late
        window_late = max(window_late, late)
        if late > worst_late[0]:
            worst_late = (late, before)
        if (now - window_start) * 1000 < window_ms:
            continue
        ticks = cpu_ticks()
        psi = pressure() if has_psi else window_psi
        steal_ms = (ticks[0] - window_ticks[0]) * TICK_MS
        # Per --window-ms: a window a late sampler stretched is not flagged for its length.
        scale = window_ms / max((now - window_start) * 1000, window_ms)
        psi_ms = [(b - a) / 1000 * scale for a, b in zip(window_psi, psi)]
        windows.append((window_start, (now - window_start) * 1000, window_late, steal_ms, psi_ms))
        window_start, window_late, window_ticks, window_psi = now, 0.0, ticks, psi

    medians = [
        sorted(w[4][i] for w in windows)[len(windows) // 2] if windows else 0.0
        for i in range(len(NAMES))
    ]
    flagged = [
        w for w in windows
        if w[2] >= args.min_ms or w[3] >= args.min_ms
        or any(ms - median >= args.min_ms for ms, median in zip(w[4], medians))
    ]
    elapsed = time.monotonic() - started
    ticks = cpu_ticks()
    psi = pressure() if has_psi else first_psi
    print(
        f"host: {samples} samples in {elapsed:.1f} s (every {args.every_ms:g} ms asked), "
        f"windows of {window_ms:g} ms; pressure {'read' if has_psi else 'absent (no /proc/pressure)'}"
    )
    for since, length, late, steal_ms, psi_ms in flagged:
        parts = ", ".join(f"{name} {ms:.0f}" for name, ms in zip(NAMES, psi_ms) if ms >= 1)
        print(
            f"  at {sampling.utc(since + wall_offset)} UTC ({length:.0f} ms): sampler late {late:.0f} ms, "
            f"steal {steal_ms:.0f} ms{', ' + parts if parts else ''}"
        )
    print(
        f"  windows standing out by >= {args.min_ms:g} ms: {len(flagged)} of {len(windows)}; "
        "median window: " + ", ".join(f"{name} {ms:.0f}" for name, ms in zip(NAMES, medians))
    )
    print(
        f"  sampler lateness: mean {late_total / max(samples, 1):.2f} ms, worst {worst_late[0]:.1f} ms"
        f" at {sampling.utc(worst_late[1] + wall_offset)}"
    )
    totals = [(b - a) / 1000 for a, b in zip(first_psi, psi)]
    print(
        f"  steal {(ticks[0] - first_ticks[0]) * TICK_MS:.0f} ms, iowait "
        f"{(ticks[1] - first_ticks[1]) * TICK_MS:.0f} ms (CPU-ms over all CPUs); pressure ms: "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in zip(NAMES, totals))
    )


if __name__ == "__main__":
    main()
