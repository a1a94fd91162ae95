"""Which commit's task generator produced a shipped model's training data? Rebuild its tokenizer and compare.

train_tiny.py trains the model's BPE tokenizer on the first 20,000 problems its generator draws (seed
``10_000 + --seed``), so the tokenizer's vocabulary and merges fingerprint the generator: a commit whose
arithmetic or sorting task draws other problems gives another tokenizer.

    python experiments/tokenizer_provenance.py cc8c591 b5fc564        # both shipped models, each commit
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"llada": 0, "dream": 1}  # family -> train_tiny --seed
CHILD = """
import json, random, sys
sys.path.insert(0, sys.argv[1])
from fastdllm.tasks import get_task, sample_mixture
from fastdllm.models.tokenizer_builder import build_tokenizer
seed, shipped = int(sys.argv[2]), json.load(open(sys.argv[3]))["model"]
tasks = [get_task("arithmetic"), get_task("sorting")]
rng = random.Random(f"train/{10_000 + seed}")
corpus = [(p.prompt, p.response) for p in (sample_mixture(rng, tasks, [0.85, 0.15]) for _ in range(20_000))]
mine = json.loads(build_tokenizer((t for pair in corpus for t in pair), vocab_size=384).backend_tokenizer.to_str())["model"]
print(json.dumps(mine["vocab"] == shipped["vocab"] and mine["merges"] == shipped["merges"]))
"""


def matches(commit: str, family: str) -> bool:
    """True iff ``commit``'s generator rebuilds the shipped ``family`` model's tokenizer exactly."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "fastdllm"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        tarfile.open(fileobj=BytesIO(archive)).extractall(tmp, filter="data")
        shipped = ROOT / "fastdllm" / "assets" / f"tiny-{family}" / "tokenizer.json"
        out = subprocess.run([sys.executable, "-c", CHILD, tmp, str(SHIPPED[family]), str(shipped)], check=True,
                             capture_output=True, text=True, env={"RAYON_NUM_THREADS": "1", "PATH": ""}).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    for commit in sys.argv[1:]:
        for family in SHIPPED:
            print(f"{commit} {family}: tokenizer {'reproduced' if matches(commit, family) else 'differs'}", flush=True)
