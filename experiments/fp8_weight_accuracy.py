"""Would fp8 (e4m3) weights cost accuracy? The shipped tiny models with their projection weights rounded to fp8.

An fp8 weight path would halve the weight read that bounds a cached step at batch 1 (docs/speed.md). Before
building its kernel, this measures what the rounding alone does to a trained model: every projection matrix
(q/k/v/o, gate/up/down) and the LM head is scaled per output row to e4m3's range (amax / 448), rounded to
``torch.float8_e4m3fn`` and scaled back (the embeddings and norms stay as they are), which is what a
weight-only fp8 GEMM with fp32 accumulation computes up to summation order. Both models then decode the same
held-out arithmetic problems on the CPU in fp32; the script reports strict accuracy of each and the share of
identical answers.

With ``--wired`` it also measures the scheme ``model.use_fp8_weights()`` runs (``fastdllm.kernels.fp8_weights``:
fp8 copies of the weights whose full-size counterparts have at least 12288 output columns — LLaDA's fused
q/k/v, the gate/up projections, the LM heads — used by products of at most 32 rows, bf16/fp32 everywhere else)
on the tiny models at batch 1 (where a cached step's products have at most 32 rows), against the same decode
without the copies. On the CPU the copies are used dequantized: the numbers the GPU kernel computes, up to
summation order. Speed is measured on the GPU (``bench_gpu.py --modes fp8``).

    python experiments/fp8_weight_accuracy.py --out experiments/results/fp8_weight_accuracy.json --n 200 --wired
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


def wire_fp8_like_full_size(model) -> int:
    """Fuse the projections and give fp8 copies to the roles that get them at full size (by the family's reference
    config: fused q/k/v, gate/up and LM head of at least ``MIN_COLUMNS`` columns); returns how many matrices."""
    from fastdllm.kernels import fp8_weights

    full = type(model).arch_from_hf(type(model).reference_config())
    wide = lambda n: n >= fp8_weights.MIN_COLUMNS  # noqa: E731
    model.fuse_projections()
    weights = [w for layer in model.net.layers for w, width in
               ((layer.attn.qkv_weight, (full.n_heads + 2 * full.n_kv_heads) * full.head_dim),
                (layer.mlp.gate_up_weight, 2 * full.mlp_hidden)) if wide(width)]
    weights += [model.net.lm_head.weight] if wide(full.vocab_size) else []
    fp8_weights.MIN_FP8_COLUMNS = 1  # the tiny widths: every <= 32-row product asks the registry
    model.net._fp8_weights = fp8_weights.register(w.detach() for w in weights)
    model.net.fp8 = True
    return len(model.net._fp8_weights)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--wired", action="store_true", help="also the scheme use_fp8_weights() runs, at batch 1")
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
            if args.wired:
                model = fastdllm.load_model(ASSETS / family, dtype="float32", device="cpu")
                plain, acc_plain, _ = decode_all(model, problems, task, 1, setting)
                copies = wire_fp8_like_full_size(model)
                fp8, acc_fp8, _ = decode_all(model, problems, task, 1, setting)
                record(out, {"model": family, "setting": label, "variant": "use_fp8_weights scheme, batch 1",
                             "matrices_with_fp8_copies": copies, "accuracy_fp32": acc_plain,
                             "accuracy_fp8_weights": acc_fp8, **agreement(plain, fp8)})
    return save(out, args.out)


if __name__ == "__main__":
    main()
