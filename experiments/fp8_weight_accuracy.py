"""Would fp8 (e4m3) weights cost accuracy? The shipped tiny models with their projection weights rounded to fp8.

An fp8 weight path would halve the weight read that bounds a cached step at batch 1 (docs/speed.md). Before
building its kernel, this measures what the rounding alone does to a trained model: every projection matrix
(q/k/v/o, gate/up/down) and the LM head is scaled per output row to e4m3's range (amax / 448), rounded to
``torch.float8_e4m3fn`` and scaled back (the embeddings and norms stay as they are), which is what a
weight-only fp8 GEMM with fp32 accumulation computes up to summation order. Both models then decode the same
held-out arithmetic problems on the CPU in fp32; the script reports strict accuracy of each and the share of
identical answers. It measures accuracy only: no fp8 kernel exists here, so nothing about speed.

    python experiments/fp8_weight_accuracy.py --out experiments/results/fp8_weight_accuracy.json --n 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_tiny_agreement import SETTINGS, agreement, decode_all, record, save  # noqa: E402

import fastdllm  # noqa: E402
from fastdllm.assets import ASSETS  # noqa: E402
from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels.fp8_weights import dequantize_rows, quantize_rows  # noqa: E402
from fastdllm.tasks import get_task  # noqa: E402

def round_to_fp8(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``[N, K]`` through e4m3 with one scale per output row (the fp8 kernel's format,
    ``fastdllm.kernels.fp8_weights``), back in its own dtype."""
    return dequantize_rows(*quantize_rows(weight), weight.dtype)


def quantize_projections(model) -> int:
    """Round every projection and the LM head in place; returns how many matrices were rounded."""
    count = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(round_to_fp8(module.weight))
                count += 1
    return count


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50)
    args = p.parse_args(argv)
    task = get_task("arithmetic")
    problems = task.generate("test", args.n, seed=0)
    problems.sort(key=lambda q: len(q.prompt))  # prompts of similar length batch together
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/fp8_weight_accuracy.py "
           + " ".join(sys.argv[1:] if argv is None else argv), "n": args.n, "dtype": "float32", "device": "cpu",
           "rows": []}
    for family in ("tiny-llada", "tiny-dream"):
        for label, setting in SETTINGS.items():
            model = fastdllm.load_model(ASSETS / family, dtype="float32", device="cpu")
            plain, acc_plain, _ = decode_all(model, problems, task, args.batch_size, setting)
            weights_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2}
            rounded = quantize_projections(model)
            rel = max(((p - weights_before[n]).norm() / weights_before[n].norm()).item()
                      for n, p in model.named_parameters() if p.dim() == 2 and not n.endswith("embed.weight"))
            fp8, acc_fp8, _ = decode_all(model, problems, task, args.batch_size, setting)
            record(out, {"model": family, "setting": label, "matrices_rounded": rounded,
                         "max_relative_weight_change": rel, "accuracy_fp32": acc_plain,
                         "accuracy_fp8_weights": acc_fp8, **agreement(plain, fp8)})
    return save(out, args.out)


if __name__ == "__main__":
    main()
