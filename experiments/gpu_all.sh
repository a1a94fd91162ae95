#!/usr/bin/env bash
# The complete GPU speed measurement, in one run of under 540 s on an H100/H200 (both families at full
# model shape, random bf16 weights): batch 1 for every cache x k = 1, 4; batch 16 (and LLaDA 4, 32) at k = 4.
# Each bench_gpu.py run checks the optimised path's tokens against the plain eager path's in the run; at batch 1
# every mode is also compared with a decode of the same weights in fp32 (--fp32-check, the cached settings).
# `compiled` mode = torch.compile + CUDA graphs + fused q/k/v and gate/up projections (before the fuse
# branch it ran the projections separately: bench_gpu.py --modes compiled-unfused).
#
#   bash experiments/gpu_all.sh OUT_DIR [B1_CACHES] [BATCH_CACHES] [PART]
#     B1_CACHES     registered cache names for batch 1 (default none,prefix,dual)
#     BATCH_CACHES  cache names for LLaDA batch 16 (default dual,prefix; the other batches run dual)
#     PART          all (default), llada or dream: with the kernels mode at batch 1 the whole set needs
#                   two calls of the 600 s device limit, one per family; or a comma list of runs, for calls
#                   shorter than a family: llada_b1, llada_b16, llada_b4_b32, dream_b1, dream_b16,
#                   dream_b4_b32, kernels (e.g. llada_b1 in one call, llada_b16,llada_b4_b32,dream_b4_b32 in the next)
#   FP32_CHECK (environment, default dual): batch 1's caches that bench_gpu.py --fp32-check decodes again in fp32
#   GPU_ALL_S (environment, default 560): the whole script's time budget in seconds (less when the same device
#                 call runs something else first)
# Batch 1 runs the modes plain, compiled, kernels (compiled + the split-KV attention + the few-row GEMMs) and
# tuned (kernels + each projection's GEMM backend chosen by timing, model.tune_gemms);
# LLaDA batches 4 and 32 run plain, kernels and tuned (at 4 x 32 rows the few-row GEMM applies; at 32 nothing beyond
# compiled does), LLaDA batch 16 plain and compiled (512 rows: neither Triton kernel is chosen; the one-launch KV
# write runs in every CUDA mode), Dream batch 16 plain, compiled and tuned (since round 12 its dual steps take the
# packed split-KV attention at every batch), Dream batches 4 and 32 plain and tuned. The runs at batch >= 4
# profile each timed single forward by kernel kind (--forward-profile: the cached forwards that miss 1.3x are
# explained from the result files). The dream part ends with bench_kernels.py (each kernel against what it replaces).
# Writes OUT_DIR/gpu_{llada,dream}_b1.json, gpu_{llada,dream}_b16.json, gpu_{llada,dream}_b4_b32.json, a log (and
# gpu_all.raw.log with the warnings the log filters out: dynamo recompiles, for one). At c21b536 on an H200 the dream
# part with the round-12 additions (Dream b16 tuned, Dream b4/b32, the profiles) ran whole in 457 s (b1 237 s, b16 86 s,
# b4/b32 116 s, bench_kernels 18 s); the llada part, given 430 s, ran b1 in 253 s and b16 in 81 s and was cut in b32's tuned.
# Set FASTDLLM_COMMIT to the commit measured (recorded in every JSON). At 682b5fb on an H100 the five runs
# took 151 and 120 s (both cut by their limits inside --profile, since dropped: profile in a call of its
# own), 104, 56 and 99 s. Each run is capped so that the whole script ends by 560 s. At e468c97 on an H200 (fp32
# check of prefix and dual) the LLaDA batch-1 run was cut at its 270 s limit before dual k=4's kernels and tuned
# modes and the forwards (that setting alone, all four modes, its fp32 check and the forwards, took 43 s), Dream's took 256 s, LLaDA's batch 16 86 s and batches 4 and
# 32 154 s; the fp32 check now covers dual only by default (prefix's fp32 decodes took 26 s of LLaDA's 41 s of fp32
# decodes) and the limits below follow those timings. At 7097070 on an H200 the LLaDA part ran whole under
# them in 483 s (batch 1 241 s, batch 16 85 s, batches 4 and 32 157 s); Dream's batch-1 run, by hand with a fifth
# mode (kernels-unpacked), took 272 s and its batch 16 53 s. Every run samples the GPU's clocks and power
# (--clocks: nvidia-smi, per setting); batch 1 also measures the matmul rate held under load (--sustained-ceiling,
# 6 s) and reports each decode against floors at it too.
set -u
OUT=${1:?usage: gpu_all.sh OUT_DIR [B1_CACHES] [BATCH_CACHES] [PART]}
B1=${2:-none,prefix,dual}
BC=${3:-dual,prefix}
FP32=${FP32_CHECK-dual}  # caches of batch 1 decoded again in fp32 (empty: none); no cache: 256 full-canvas fp32 forwards (not run; ~80 s estimated)
FP32=$(tr ',' '\n' <<<"$FP32" | grep -x -F -f <(tr ',' '\n' <<<"$B1") | paste -sd, -)  # only those batch 1 runs
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
T0=$(date +%s)
BUDGET=${GPU_ALL_S:-560}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
bench() {  # name, time limit (s), arguments...
  local name=$1 limit=$2; shift 2
  local budget; budget=$(left)
  (( limit > budget )) && limit=$budget
  if (( limit < 30 )); then echo "skipped $name: $budget s left" | tee -a "$OUT/gpu_all.log"; return; fi
  echo "== $name (limit ${limit}s, $(left)s left)" | tee -a "$OUT/gpu_all.log"
  timeout "$limit" python "$HERE/bench_gpu.py" --out "$OUT/$name.json" --clocks "$@" 2>&1 \
    | tee -a "$OUT/gpu_all.raw.log" | grep -v -i "warn" | tee -a "$OUT/gpu_all.log"
}
PART=${4:-all}
RUNS=
for run in ${PART//,/ }; do  # the runs PART names, families expanded
  case $run in
    all) RUNS+=" llada_b1 llada_b16 llada_b4_b32 dream_b1 dream_b16 dream_b4_b32 kernels" ;;
    llada) RUNS+=" llada_b1 llada_b16 llada_b4_b32" ;;
    dream) RUNS+=" dream_b1 dream_b16 dream_b4_b32 kernels" ;;
    llada_b1|llada_b16|llada_b4_b32|dream_b1|dream_b16|dream_b4_b32|kernels) RUNS+=" $run" ;;
    *) echo "gpu_all.sh: unknown PART entry '$run'; use all, llada, dream, or a comma list of llada_b1, llada_b16," \
            "llada_b4_b32, dream_b1, dream_b16, dream_b4_b32, kernels" >&2; exit 2 ;;
  esac
done
wants() { [[ " $RUNS " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_all.log"
wants llada_b1 && bench gpu_llada_b1 300 --family llada --batches 1 --ks 1,4 --caches "$B1" --modes plain,compiled,kernels,tuned --repeats 2 \
  --fp32-check "$FP32" --sustained-ceiling 6
wants llada_b16 && bench gpu_llada_b16 100 --family llada --batches 16 --ks 4 --caches "$BC" --modes plain,compiled --repeats 2 --forward-repeats 2 \
  --forward-profile
wants llada_b4_b32 && bench gpu_llada_b4_b32 220 --family llada --batches 4,32 --ks 4 --caches dual --modes plain,kernels,tuned --repeats 2 --forward-repeats 2 \
  --forward-profile
wants dream_b1 && bench gpu_dream_b1 280 --family dream --batches 1 --ks 1,4 --caches "$B1" --modes plain,compiled,kernels,tuned --repeats 2 \
  --fp32-check "$FP32" --sustained-ceiling 6
wants dream_b16 && bench gpu_dream_b16 110 --family dream --batches 16 --ks 4 --caches dual --modes plain,compiled,tuned --repeats 2 --forward-repeats 2 \
  --forward-profile
wants dream_b4_b32 && bench gpu_dream_b4_b32 120 --family dream --batches 4,32 --ks 4 --caches dual --modes plain,tuned --repeats 1 --forward-repeats 2 \
  --forward-profile
if wants kernels; then
  echo "== bench_kernels ($(left)s left)" | tee -a "$OUT/gpu_all.log"
  timeout $(( $(left) > 20 ? $(left) : 20 )) python "$HERE/bench_kernels.py" --out "$OUT/kernels.json" 2>&1 | grep -v -i warn | tee -a "$OUT/gpu_all.log"
fi
echo "total $(( $(date +%s) - T0 )) s" | tee -a "$OUT/gpu_all.log"
