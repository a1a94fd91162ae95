#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels fastdllm needs beyond torch, transformers, safetensors, tokenizers
# and numpy, for Python 3.12 on x86-64 Linux, so that a GPU machine without network access can install them
# offline (experiments/gpu_train.sh does so when .whl/ exists).
#   bash experiments/download_wheels.sh [EXTRA==VERSION ...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl 'pydantic>=2.7,<3' "$@"
# one version of each distribution: two stop pip's offline install
python3 - <<'PY'
import collections
import os
import re

by_name = collections.defaultdict(list)
for name in sorted(os.listdir(".whl")):
    by_name[re.split(r"-\d", name, maxsplit=1)[0].lower().replace("_", "-")].append(name)
for files in by_name.values():
    for old in files[:-1]:
        os.remove(os.path.join(".whl", old))
print("wheels in .whl:", ", ".join(sorted(os.listdir(".whl"))))
PY
