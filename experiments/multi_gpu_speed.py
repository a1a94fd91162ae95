"""Data-parallel decoding speed: aggregate tokens/s of N processes (one GPU each) against one.

Each rank builds the same random-weight model at full LLaDA-8B shape (fixed-k decoding: the work does not
depend on the weights), takes its shard of the same ``--prompts`` random prompts (rank r gets prompts r,
r + N, ...), decodes them in batches after a warm-up that captures the CUDA graphs, and the ranks agree
(all-reduce) on the slowest rank's wall time. Aggregate tokens/s = prompts × gen_length / that wall time.
Run it once with ``--nproc_per_node=1`` and once with N, and compare.

    torchrun --nproc_per_node=2 experiments/multi_gpu_speed.py --out results/multi_gpu_n2.json
    torchrun --nproc_per_node=2 experiments/multi_gpu_speed.py --small --device cpu --out /tmp/x.json   # gloo smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu import build_model  # noqa: E402

import fastdllm  # noqa: E402
from fastdllm.evaluation import torch_info  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="a tiny model (CPU smoke runs)")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--prompt-length", type=int, default=768)
    p.add_argument("--gen-length", type=int, default=256)
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--k", type=int, default=4, help="tokens per step (fixed)")
    p.add_argument("--cache", default="dual")
    args = p.parse_args(argv)
    world, rank, local = (int(os.environ.get(v, d)) for v, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    device = f"cuda:{local}" if cuda else "cpu"
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=300))
    model = build_model("llada", args.small, device, torch.bfloat16 if cuda else torch.float32)
    if cuda:
        model.use_cuda_graphs()
    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, model.mask_token_id, (args.prompts, args.prompt_length), generator=gen)  # [N, P]
    mine = prompts[rank::world]  # this rank's shard
    decoder = fastdllm.DiffusionDecoder(model, cache=args.cache, unmask={"name": "fixed", "steps": args.gen_length // args.k},
                                        gen_length=args.gen_length, block_length=args.block_length)
    decoder.generate(mine[:args.batch])  # warm-up: captures the graphs of this batch shape
    if world > 1:
        dist.barrier()
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(0, len(mine), args.batch):
        decoder.generate(mine[i:i + args.batch])
    if cuda:
        torch.cuda.synchronize()
    wall = torch.tensor([time.perf_counter() - started], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(wall, op=dist.ReduceOp.MAX)  # the run ends with its slowest rank
    out = {"env": torch_info(), "gpus_visible": torch.cuda.device_count() if cuda else 0, "world_size": world,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "torchrun --nproc_per_node=%d experiments/multi_gpu_speed.py " % world
           + " ".join(sys.argv[1:] if argv is None else argv), "settings": vars(args),
           "wall_s": float(wall), "tokens_per_s": args.prompts * args.gen_length / float(wall)}
    if rank == 0:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(json.dumps({k: out[k] for k in ("world_size", "wall_s", "tokens_per_s")}), flush=True)
    if world > 1:
        dist.destroy_process_group()
    return out


if __name__ == "__main__":
    main()
