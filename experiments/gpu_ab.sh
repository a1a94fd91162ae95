#!/usr/bin/env bash
# A/B of two trees of the project in one device call (the same GPU, alternating processes): the working tree
# and a snapshot of a base commit under ab_base/ (made by `git archive BASE fastdllm experiments | tar -x -C
# ab_base`, not committed). Each family runs bench_gpu.py at batch 1 (dual and prefix, k = 1 and 4) from the
# base tree with BASE_MODES and from this tree with NEW_MODES, base first; every run writes its JSON and log
# under OUT_DIR/{base,new}/. Optional GPU tests first (TESTS: pytest paths, quoted; empty skips them).
#
#   BASE_COMMIT=833cdb3 BASE_MODES=plain,kernels,tuned NEW_MODES=plain,kernels-unfused-rope,kernels,tuned TESTS="tests/models/x.py" \
#       bash experiments/gpu_ab.sh OUT_DIR [FAMILIES]
set -u
OUT=${1:?usage: gpu_ab.sh OUT_DIR [FAMILIES]}
FAMILIES=${2:-llada,dream}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
mkdir -p "$OUT/base" "$OUT/new"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/ab.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/ab.log"
if [ -n "${TESTS:-}" ]; then
  stamp "pytest $TESTS"
  # shellcheck disable=SC2086
  (cd "$ROOT" && python -m pytest -q -o addopts="" $TESTS 2>&1 | tail -15) | tee -a "$OUT/ab.log"
fi
args=(--batches 1 --ks 1,4 --caches dual,prefix --repeats 2 --forward-repeats 3)
for family in ${FAMILIES//,/ }; do
  stamp "base $family"
  (cd "$ROOT/ab_base" && FASTDLLM_COMMIT="${BASE_COMMIT:-unknown}" PYTHONPATH="${PYTHONPATH%%:*}:$ROOT/ab_base" python experiments/bench_gpu.py --family "$family" \
     "${args[@]}" --modes "${BASE_MODES:-plain,tuned}" --out "$OUT/base/gpu_${family}_b1.json" 2>&1 \
     | grep -v -i warn > "$OUT/base/gpu_${family}_b1.log")
  stamp "new $family"
  (cd "$ROOT" && python experiments/bench_gpu.py --family "$family" "${args[@]}" --modes "${NEW_MODES:-plain,tuned}" \
     --out "$OUT/new/gpu_${family}_b1.json" 2>&1 | grep -v -i warn > "$OUT/new/gpu_${family}_b1.log")
done
stamp done
