#!/usr/bin/env bash
# Train the shipped tiny model (LLaDA format) and its Dream-format twin side by side on one GPU (each is
# small enough to be launch-bound, so they share the GPU well), then pack the checkpoints, logs and
# offline W&B runs into $OUT (default ./gpu-train-out).
#
# Needs only this repository and a GPU machine with torch (CUDA), transformers, safetensors, tokenizers and
# numpy. Other dependencies (pydantic, wandb, ...) are installed from wheels in .whl/ when that folder exists;
# fill it on a machine with network access with `bash experiments/download_wheels.sh`.
#   FASTDLLM_COMMIT=$(git rev-parse HEAD) bash experiments/gpu_train.sh
# FASTDLLM_COMMIT names the commit of the code, for copies of the repository without their .git; without it,
# train_tiny.py asks git. The summary records it with a sha256 of the generated training data.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-train-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
python3 -c "import torch, pydantic, fastdllm; assert torch.cuda.is_available(), 'no CUDA device'" \
  || { echo "missing dependencies or no GPU: see the header of $0"; exit 1; }
export FASTDLLM_COMMIT=${FASTDLLM_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}
export WANDB_MODE=offline WANDB_SILENT=true PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
MINUTES=${MINUTES:-6.8}
EXAMPLES=${EXAMPLES:-1200000}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__)" | tee -a "$OUT/gpu.txt"
echo "commit ${FASTDLLM_COMMIT:-unknown}" | tee -a "$OUT/gpu.txt"
mkdir -p /tmp/work
python3 experiments/train_tiny.py --out /tmp/work/tiny-llada --family llada --minutes "$MINUTES" --examples "$EXAMPLES" \
  --workers 7 > "$OUT/train-llada.log" 2>&1 &
pid_llada=$!
python3 experiments/train_tiny.py --out /tmp/work/tiny-dream --family dream --minutes "$MINUTES" --examples "$EXAMPLES" \
  --workers 7 --seed 1 > "$OUT/train-dream.log" 2>&1 &
pid_dream=$!
wait $pid_llada; echo "llada exit $?" | tee -a "$OUT/gpu.txt"
wait $pid_dream; echo "dream exit $?" | tee -a "$OUT/gpu.txt"
for f in "$OUT"/train-*.log; do tail -n 3 "$f"; done
tar -C /tmp/work -czf "$OUT/tiny-models.tgz" .
ls -la "$OUT"
