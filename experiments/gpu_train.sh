#!/usr/bin/env bash
# One device call: train the shipped tiny model (LLaDA format) and its Dream-format twin side by side
# on one GPU (each is small enough to be launch-bound, so they share the GPU well), then pack the
# checkpoints, logs and offline W&B runs into $OUT.
#   device run:  bash experiments/gpu_train.sh   (with .whl carried; see ../shared/tools/device-wheels.sh)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export WANDB_MODE=offline WANDB_SILENT=true PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
MINUTES=${MINUTES:-6.8}
EXAMPLES=${EXAMPLES:-1200000}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__)" | tee -a $OUT/gpu.txt
git log -1 --format='commit %H' | tee -a $OUT/gpu.txt
mkdir -p /tmp/work
python3 experiments/train_tiny.py --out /tmp/work/tiny-llada --family llada --minutes $MINUTES --examples $EXAMPLES --workers 7 \
  > $OUT/train-llada.log 2>&1 &
pid_llada=$!
python3 experiments/train_tiny.py --out /tmp/work/tiny-dream --family dream --minutes $MINUTES --examples $EXAMPLES --workers 7 --seed 1 \
  > $OUT/train-dream.log 2>&1 &
pid_dream=$!
wait $pid_llada; echo "llada exit $?" | tee -a $OUT/gpu.txt
wait $pid_dream; echo "dream exit $?" | tee -a $OUT/gpu.txt
for f in $OUT/train-*.log; do tail -n 3 $f; done
tar -C /tmp/work -czf $OUT/tiny-models.tgz .
ls -la $OUT
