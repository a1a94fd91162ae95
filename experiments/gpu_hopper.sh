#!/usr/bin/env bash
# Round 15 on a Hopper GPU (docs/speed.md): the Gluon GEMM of experiments/hopper_gemm.py checked, then swept beside
# cuBLAS at the prefix windows' rows. Each step runs under a timeout, so a kernel that deadlocks cannot stall the run.
#   bash experiments/gpu_hopper.sh OUT [FAMILIES] [SECONDS_PER_FAMILY] [SHAPES]
# OUT gets: smoke.json (one launch with and one without the loader warp, each in its own process), tests.log,
# compile.log (the 16 compile shares' results per family), hopper_FAMILY.json / .log (split_k_sweep.py --kernel hopper).
set -u
OUT=${1:?usage: gpu_hopper.sh OUT [FAMILIES] [SECONDS_PER_FAMILY] [SHAPES]}
FAMILIES=${2:-llada,dream}
SECONDS_PER_FAMILY=${3:-200}
SHAPES=${4:-qkv,o_proj,gate_up,down}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
WS=""
for ws in 0 1; do
  if timeout 60 python - "$ws" >> "$OUT/smoke.json" 2>> "$OUT/smoke.err" <<'EOF'; then WS="$WS,$ws"; fi
import json, sys, torch, torch.nn.functional as F
sys.path.insert(0, "experiments")
import hopper_gemm
ws = int(sys.argv[1])
gen = torch.Generator(device="cuda").manual_seed(0)
x = torch.randn(224, 4096, device="cuda", dtype=torch.bfloat16, generator=gen)
w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
ref = F.linear(x.float(), w.float())
errors = {}
for config in [(128, 256, 64, 4, 4, ws), (64, 128, 64, 1, 6, ws)]:
    y = hopper_gemm.hopper_linear(x, w, None, config)
    torch.cuda.synchronize()
    errors[str(config)] = ((y.float() - ref).abs().max() / ref.abs().max()).item()
print(json.dumps({"ws": ws, "errors": errors}))
sys.exit(0 if max(errors.values()) < 0.02 else 1)
EOF
done
WS=${WS#,}
echo "loader-warp settings that ran: '$WS'" | tee -a "$OUT/smoke.json"
[ -n "$WS" ] || exit 1
if [ "$WS" = "0,1" ]; then
  timeout 240 python -m pytest -o addopts="" -q -p no:cacheprovider tests/models/test_hopper_gemm.py > "$OUT/tests.log" 2>&1
  echo "tests exit $?" >> "$OUT/tests.log"
fi
for fam in ${FAMILIES//,/ }; do
  if [ "$fam" = llada ]; then rows=96,128,160,192,224,256; else rows=97,129,161,193,225,257; fi
  for i in $(seq 0 15); do
    timeout 150 python experiments/split_k_sweep.py --kernel hopper --ws "$WS" --family "$fam" --rows "$rows" \
      --shapes "$SHAPES" --compile-only "$i/16" > "/tmp/compile_${fam}_$i.log" 2>&1 &
  done
  wait
  for i in $(seq 0 15); do echo "== $fam share $i"; tail -3 "/tmp/compile_${fam}_$i.log"; done >> "$OUT/compile.log"
  timeout "$SECONDS_PER_FAMILY" python experiments/split_k_sweep.py --kernel hopper --ws "$WS" --family "$fam" \
    --rows "$rows" --shapes "$SHAPES" --out "$OUT/hopper_$fam.json" > "$OUT/hopper_$fam.log" 2>&1
  echo "sweep exit $?" >> "$OUT/hopper_$fam.log"
done
