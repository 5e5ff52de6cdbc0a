#!/usr/bin/env python3
"""Watches one block device for stalls: spans in which it held requests and finished none.

    scripts/diskstats.py [--device vda] [--every-ms 5] [--min-stall-ms 20] [--seconds N]

Samples /proc/diskstats every few milliseconds until --seconds pass or it is interrupted
(SIGINT/SIGTERM), then prints each stall of at least --min-stall-ms (UTC start, length,
requests in flight) and a summary: completed writes and flushes, their mean service time,
and the worst sample's mean write and flush time. A stall is measured from the first sample
before the one that saw requests in flight and no completion, to the sample that saw one
finish, so its length is exact to one sampling interval (it may be that much too long).
floe's warnings (slow segment uploads, slow sequencer appends) carry UTC times to set
beside these.

Fields (Documentation/admin-guide/iostats.rst): after major, minor and name come reads
completed (0), reads merged, sectors read, ms reading (3), writes completed (4), writes
merged, sectors written, ms writing (7), in flight (8), ms doing I/O, weighted ms, discards
completed (11), merged, sectors, ms discarding, flushes completed (15), ms flushing (16).
"""

import time

import sampling


def read(device):
    with open("/proc/diskstats") as stats:
        for line in stats:
            fields = line.split()
            if fields[2] == device:
                return [int(f) for f in fields[3:]]
    raise SystemExit(f"no device {device!r} in /proc/diskstats")


def completions(sample):
    # Discards (4.18) and flushes (5.5) are later fields; older kernels have fewer.
    return sample[0] + sample[4] + sum(sample[i] for i in (11, 15) if i < len(sample))


def main():
    parser = sampling.parser(__doc__)
    parser.add_argument("--device", default="vda")
    parser.add_argument("--min-stall-ms", type=float, default=20.0)
    args = parser.parse_args()

    stopping = sampling.stopping()

    first = previous = read(args.device)
    started = last = time.monotonic()
    wall_offset = time.time() - started
    stall_since = None
    stall_depth = 0
    stalls = []
    worst_write = worst_flush = (0.0, 0.0)
    samples = 0
    while not stopping and (args.seconds <= 0 or last - started < args.seconds):
        time.sleep(args.every_ms / 1000)
        now = time.monotonic()
        sample = read(args.device)
        samples += 1
        done = completions(sample) - completions(previous)
        if done == 0 and sample[8] > 0:
            if stall_since is None:
                stall_since = last
            stall_depth = max(stall_depth, sample[8])
        elif stall_since is not None:
            stalls.append((stall_since, now - stall_since, stall_depth))
            stall_since, stall_depth = None, 0
        writes = sample[4] - previous[4]
        if writes:
            worst_write = max(worst_write, ((sample[7] - previous[7]) / writes, now))
        if len(sample) > 16:
            flushes = sample[15] - previous[15]
            if flushes:
                worst_flush = max(worst_flush, ((sample[16] - previous[16]) / flushes, now))
        previous, last = sample, now
    if stall_since is not None:
        stalls.append((stall_since, last - stall_since, stall_depth))

    elapsed = last - started
    long_ones = [s for s in stalls if s[1] * 1000 >= args.min_stall_ms]
    print(
        f"{args.device}: {samples} samples in {elapsed:.1f} s "
        f"(every {args.every_ms:g} ms asked; {elapsed / max(samples, 1) * 1000:.1f} ms kept)"
    )
    for since, length, depth in long_ones:
        print(f"  stall at {sampling.utc(since + wall_offset)} UTC: {length * 1000:.0f} ms, up to {depth} in flight")
    writes = previous[4] - first[4]
    flushes = previous[15] - first[15] if len(previous) > 16 else 0
    print(
        f"  stalls >= {args.min_stall_ms:g} ms: {len(long_ones)}; longest "
        f"{max((s[1] for s in stalls), default=0) * 1000:.0f} ms"
    )
    print(
        f"  writes: {writes} ({writes / max(elapsed, 1e-9):.0f}/s), mean "
        f"{(previous[7] - first[7]) / max(writes, 1):.2f} ms; worst sample's mean "
        f"{worst_write[0]:.1f} ms at {sampling.utc(worst_write[1] + wall_offset) if worst_write[1] else '-'}"
    )
    if len(previous) > 16:
        print(
            f"  flushes: {flushes} ({flushes / max(elapsed, 1e-9):.0f}/s), mean "
            f"{(previous[16] - first[16]) / max(flushes, 1):.2f} ms; worst sample's mean "
            f"{worst_flush[0]:.1f} ms at {sampling.utc(worst_flush[1] + wall_offset) if worst_flush[1] else '-'}"
        )


if __name__ == "__main__":
    main()
