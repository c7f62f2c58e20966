#!/usr/bin/env python3
"""ncu_summary.py - sum `ncu --csv --metrics gpu__time_duration.sum` rows by kernel (and grid).
Usage: ncu_summary.py NCU_CSV [STEPS]  (STEPS: decode steps the capture covers, to print per-step time)."""
import csv
import sys
from collections import defaultdict

rows = []
with open(sys.argv[1]) as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") == "gpu__time_duration.sum":
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "ns")
        v = v / 1000.0 if unit == "ns" else v * 1000.0 if unit == "ms" else v
        name = r["Kernel Name"].split("(")[0][-60:]
        rows.append((name, r.get("Grid Size", ""), v))
steps = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
agg = defaultdict(lambda: [0, 0.0])
for n, g, v in rows:
    agg[(n, g)][0] += 1
    agg[(n, g)][1] += v
tot = sum(v for _, _, v in rows)
print(f"{len(rows)} kernels, {tot:.1f} us total, {tot / steps:.1f} us per step")
for (n, g), (c, v) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:25]:
    print(f"{v / steps:9.1f} us/step {c / steps:6.1f}x  {v / c:8.2f} us  grid {g:>16}  {n}")
