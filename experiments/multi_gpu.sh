#!/usr/bin/env bash
# Data-parallel evaluation on several GPUs (NCCL), in one call: the shipped tiny model on held-out arithmetic
# problems with 1 process and with N (merged per-sample results must be equal), then the LLaDA-8B-shaped random
# model's aggregate tokens/s with 1 process and with N.
#   bash experiments/multi_gpu.sh OUT_DIR [N] [DEVICE]      (DEVICE=cpu runs the same steps with gloo, small)
set -u
OUT=${1:?usage: multi_gpu.sh OUT_DIR [N] [DEVICE]}
N=${2:-2}
DEV=${3:-cuda}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
LIMIT=200; SPEED=(--prompts 32 --batch 4)
[ "$DEV" = cpu ] && LIMIT=4 && SPEED=(--small --device cpu --prompts 4 --batch 1 --prompt-length 16 --gen-length 16 --block-length 8)
RUN=(configs/tiny.yaml "device=$DEV" dtype=float32 "task.limit=$LIMIT" task.batch_size=50 tracking.mode=disabled)
(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu) | tee "$OUT/multi_gpu.log"
t0=$(date +%s)
python -m fastdllm.cli run "${RUN[@]}" "output_dir=$OUT/one" 2>&1 | grep -vi warn | tail -2 | tee -a "$OUT/multi_gpu.log"
t1=$(date +%s)
timeout 240 torchrun --nproc_per_node="$N" -m fastdllm.cli run "${RUN[@]}" "output_dir=$OUT/many" 2>&1 | grep -vi warn | tail -2 | tee -a "$OUT/multi_gpu.log"
t2=$(date +%s)
python - "$OUT" "$N" "$((t1 - t0))" "$((t2 - t1))" <<'PY' | tee -a "$OUT/multi_gpu.log"
import json, sys
from pathlib import Path
out, n, one_s, many_s = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
read = lambda d: [json.loads(l) for l in next(d.glob("*/samples.jsonl")).read_text().splitlines()]
a, b = read(out / "one"), read(out / "many")
keys = ("index", "prompt", "output", "correct", "nfe", "commit_forward")
same = len(a) == len(b) and all(all(x[k] == y[k] for k in keys) for x, y in zip(a, b))
summary = {"tiny_samples": len(a), "samples_equal_one_vs_many": same, "world_size": n,
           "accuracy_one": sum(r["correct"] for r in a) / len(a), "accuracy_many": sum(r["correct"] for r in b) / len(b),
           "wall_s_one_process_incl_startup": one_s, "wall_s_many_incl_startup": many_s}
(out / "tiny_equality.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary))
PY
timeout 150 torchrun --nproc_per_node=1 "$HERE/multi_gpu_speed.py" "${SPEED[@]}" --out "$OUT/speed_n1.json" 2>&1 | grep -vi warn | tail -1 | tee -a "$OUT/multi_gpu.log"
timeout 150 torchrun --nproc_per_node="$N" "$HERE/multi_gpu_speed.py" "${SPEED[@]}" --out "$OUT/speed_n$N.json" 2>&1 | grep -vi warn | tail -1 | tee -a "$OUT/multi_gpu.log"
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$OUT/multi_gpu.log"
