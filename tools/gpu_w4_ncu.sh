#!/bin/sh
# gpu_w4_ncu.sh - one device call: where the batched NVFP4 product (gemm_w4's wgmma kernel, the gate
# weight of a 12B layer at T rows) stalls, instruction by instruction. ncu samples warp stalls per
# SASS instruction (SourceCounters); the report's source page is printed as CSV and the 40
# instructions with the most stall samples are listed with their SASS and stall reasons.
# Usage (device): sh tools/gpu_w4_ncu.sh [T] [kernel regex]   (default 64, k_gemm_w4_gmma)
# Needs .devbin (tools/devpack.sh), .devlibs. Output under $OUT.
. tools/device_env.sh
T=${1:-64}; K=${2:-k_gemm_w4_gmma}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu)
# launches of the bench, per product: 4 per repetition; product order q k v o gate up down -> gate = 16
timeout 200 $NCU --kernel-name regex:$K --launch-skip 16 --launch-count 1 --set full --import-source yes \
  -o $OUT/w4 -f $B/bench_cuda_gemm --t $T --reps 1 > $OUT/ncu_run.log 2>&1; echo "ncu rc=$?"
timeout 120 $NCU -i $OUT/w4.ncu-rep --page source --csv --print-source sass > $OUT/w4_sass.csv 2>&1; echo "source page rc=$? $(wc -l < $OUT/w4_sass.csv) lines"
python3 - "$OUT/w4_sass.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr = next((i for i, r in enumerate(rows) if any("Source" == c.strip() for c in r)), None)
if hdr is None:
    print("no header found"); print("\n".join(",".join(r) for r in rows[:5])); sys.exit(0)
h = [c.strip() for c in rows[hdr]]
src = h.index("Source")
samp = [i for i, c in enumerate(h) if "Sampling" in c and "All" in c] or [i for i, c in enumerate(h) if "Warp Stall Sampling" in c]
stall = [i for i, c in enumerate(h) if c.startswith("stall_") or "Stall" in c]
def num(x):
    try: return float(x.replace(",", ""))
    except ValueError: return 0.0
body = [r for r in rows[hdr + 1:] if len(r) == len(h)]
key = samp[0] if samp else None
print("columns:", [h[i] for i in ([key] if key is not None else []) + stall[:12]])
tot = sum(num(r[key]) for r in body) if key is not None else 0
top = sorted(body, key=lambda r: -num(r[key]))[:40] if key is not None else body[:40]
for r in top:
    reasons = sorted(((num(r[i]), h[i]) for i in stall if num(r[i]) > 0), reverse=True)[:3]
    print(f"{num(r[key]) / max(tot, 1) * 100:5.1f}%  {r[src].strip()[:70]:70s}  " + " ".join(f"{n}={v:.0f}" for v, n in reasons))
PY
