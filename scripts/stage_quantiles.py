#!/usr/bin/env python3
"""Quantiles of every histogram between two /metrics scrapes (bucket deltas), e.g. the
produce stages over one benchmark run:

    curl -s $URL/metrics >before.txt; floe-bench run ...; curl -s $URL/metrics >after.txt
    scripts/stage_quantiles.py before.txt after.txt

A quantile is reported as the upper bound of the bucket it falls in (buckets double), so
"p99<=64.0" means between 32 and 64 ms; "max" is the bucket of the slowest observation.
"""
import sys, re, collections
def parse(path):
    b = collections.defaultdict(dict); c = {}; s = {}
    for line in open(path):
        m = re.match(r'^(\w+)_bucket\{(.*)\} (\S+)', line)
        if m:
            name, labels, v = m.groups()
            le = re.search(r'le="([^"]+)"', labels).group(1)
            rest = re.sub(r',?le="[^"]+"', '', labels).strip(',')
            b[(name, rest)][float('inf') if le == '+Inf' else float(le)] = float(v)
            continue
        m = re.match(r'^(\w+)_count(\{.*\})? (\S+)', line)
        if m: c[(m.group(1), (m.group(2) or '').strip('{}'))] = float(m.group(3))
        m = re.match(r'^(\w+)_sum(\{.*\})? (\S+)', line)
        if m: s[(m.group(1), (m.group(2) or '').strip('{}'))] = float(m.group(3))
    return b, c, s
b0, c0, s0 = parse(sys.argv[1]); b1, c1, s1 = parse(sys.argv[2])
for key in sorted(b1):
    d = {le: b1[key][le] - b0.get(key, {}).get(le, 0) for le in b1[key]}
    n = d[float('inf')]
    if n <= 0: continue
    mean = (s1.get(key, 0) - s0.get(key, 0)) / n
    def q(p):
        for le in sorted(d):
            if d[le] >= p * n: return le
    f = lambda x: 'inf' if x == float('inf') else (f"{x*1000:.1f}" if 'seconds' in key[0] else f"{x:.0f}")
    print(f"{key[0]}{{{key[1]}}}: n={n:.0f} mean={mean*1000 if 'seconds' in key[0] else mean:.2f} p50<={f(q(0.5))} p99<={f(q(0.99))} p99.9<={f(q(0.999))} max<={f(q(1.0))}")
