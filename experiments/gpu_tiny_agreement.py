"""Do the compiled GPU kernels change the tokens of a *trained* model? (the question random weights cannot answer)

Random-weight logits are nearly flat, so the rounding differences of ``torch.compile``'s fused kernels flip
argmaxes there (docs/speed.md). This script decodes the shipped tiny models (trained weights, peaked logits) in
bf16 on the GPU with the plain eager path and with ``use_compile()`` + ``use_cuda_graphs()``, on the same held-out
arithmetic problems, and reports the share of identical sequences and positions and the strict accuracy of both.

    python experiments/gpu_tiny_agreement.py --out results/gpu_tiny_agreement.json --n 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import fastdllm
from fastdllm.assets import ASSETS
from fastdllm.evaluation import torch_info
from fastdllm.tasks import get_task

SETTINGS = {
    "dual+threshold0.9": {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.9}},
    "none+fixed": {"cache": "none", "unmask": "fixed"},
}


def decode_all(model, problems, task, batch_size: int, options: dict) -> tuple[torch.Tensor, float, float]:
    """Generated ids of every problem ``[N, G]`` (batches of ``batch_size``), strict accuracy and wall time."""
    decoder = fastdllm.DiffusionDecoder(model, **options)
    outputs, correct, wall = [], 0, 0.0
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        ids, mask = model.encode([p.prompt for p in chunk], chat=True)
        result = decoder.generate(ids, mask)
        wall += result.wall_time_s
        outputs.append(result.generated.cpu())
        correct += sum(bool(task.score(text, p)) for text, p in zip(result.texts, chunk))
    return torch.cat(outputs), correct / len(problems), wall


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--dtype", default="bfloat16")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_tiny_agreement.py needs a CUDA GPU (the compiled kernels are CUDA only)")
    task = get_task("arithmetic")
    problems = task.generate("test", args.n, seed=0)  # prompts of similar length batch together below
    problems.sort(key=lambda q: len(q.prompt))
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/gpu_tiny_agreement.py "
           + " ".join(sys.argv[1:] if argv is None else argv), "n": args.n, "dtype": args.dtype, "rows": []}
    for family in ("tiny-llada", "tiny-dream"):
        for label, setting in SETTINGS.items():
            model = fastdllm.load_model(ASSETS / family, dtype=args.dtype, device="cuda")
            plain, acc_plain, wall_plain = decode_all(model, problems, task, args.batch_size, setting)
            model.use_compile().use_cuda_graphs()
            decode_all(model, problems[:args.batch_size], task, args.batch_size, setting)  # compile + capture
            fast, acc_fast, wall_fast = decode_all(model, problems, task, args.batch_size, setting)
            record(out, {"model": family, "setting": label, "accuracy_plain": acc_plain, "accuracy_compiled": acc_fast,
                         **agreement(plain, fast), "wall_s_plain": wall_plain, "wall_s_compiled_graphs": wall_fast})
    return save(out, args.out)


def agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Shares of identical sequences and of identical positions of two ``[N, G]`` decodes."""
    return {"sequences_identical": float((a == b).all(-1).float().mean()),
            "positions_identical": float((a == b).float().mean())}


def record(out: dict, row: dict) -> None:
    out["rows"].append(row)
    print(json.dumps(row), flush=True)


def save(out: dict, path: str) -> dict:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
