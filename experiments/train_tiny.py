"""Train the tiny LLaDA-architecture model that fastdllm ships, with LLaDA's masked-diffusion SFT.

Objective (LLaDA §2.3, SFT): for each example draw t ~ U(eps, 1), mask each response position
with probability t (the prompt stays clean), and minimise the cross-entropy on the masked
positions weighted by 1/t, normalised by the response length. Responses end with
``<|eot_id|>`` and are padded with ``<|endoftext|>`` to a fixed length, as LLaDA's SFT does, so the
model learns to fill the rest of the canvas with end tokens.

Writes an HF-format folder (LLaDA-8B's key names and config fields, safetensors, tokenizer,
chat template) loadable by ``fastdllm.load_model``, and tracks the run with W&B (offline
without a key).

    python experiments/train_tiny.py --out runs/tiny --minutes 8          # one H100
    python experiments/train_tiny.py --out /tmp/smoke --max-steps 3 --examples 512 --device cpu
    python experiments/train_tiny.py --out /tmp/h --hash-data-only --workers 1   # the data's sha256, no training

The summary (``training_summary.json``) records the commit of the code that generated the data
(``FASTDLLM_COMMIT`` if set, else ``git rev-parse HEAD``, with ``commit_dirty`` when the work tree
had changes) and ``data_sha256``, a hash of the tokenised training data itself (the canvas rows and
prompt lengths), so a record can be checked against the generator that claims to produce it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import multiprocessing as mp
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import fastdllm
from fastdllm.core.kv_store import NoStore
from fastdllm.evaluation import evaluate, torch_info
from fastdllm.models.tokenizer_builder import SPECIAL_TOKENS, build_tokenizer
from fastdllm.tasks import get_task, sample_mixture
from fastdllm.tracking import start_run

BOS, EOS, EOT, MASK = (SPECIAL_TOKENS[t] for t in ("<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder for the checkpoint")
    p.add_argument("--family", choices=["llada", "dream"], default="llada")
    p.add_argument("--tasks", default="arithmetic:0.85,sorting:0.15", help="name:weight,...")
    p.add_argument("--minutes", type=float, default=8.0, help="training wall-clock budget")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--examples", type=int, default=1_200_000, help="training examples generated up front")
    p.add_argument("--workers", type=int, default=max(1, (mp.cpu_count() or 2) - 1))
    p.add_argument("--vocab-size", type=int, default=384)
    p.add_argument("--gen-length", type=int, default=64, help="response canvas (response + eot + eos padding)")
    p.add_argument("--max-prompt", type=int, default=64)
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--mlp", type=int, default=512)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--eval-every", type=float, default=90.0, help="seconds between quick evaluations")
    p.add_argument("--eval-problems", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wandb-mode", default=None, help="online/offline/disabled (default: offline without a key)")
    p.add_argument("--hash-data-only", action="store_true",
                   help="build the tokenizer and the training data, write their hashes, and stop")
    return p.parse_args(argv)


def code_commit() -> dict:
    """The commit of the code generating the data: ``FASTDLLM_COMMIT`` (for copies without .git), else git."""
    if os.environ.get("FASTDLLM_COMMIT"):
        return {"commit": os.environ["FASTDLLM_COMMIT"], "commit_source": "FASTDLLM_COMMIT"}
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastdllm", "experiments"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "commit_source": "unknown: no git and no FASTDLLM_COMMIT"}
    return {"commit": head.stdout.strip(), "commit_source": "git rev-parse HEAD",
            "commit_dirty": bool(dirty.stdout.strip())}


def data_sha256(canvas: torch.Tensor, prompt_len: torch.Tensor) -> str:
    """sha256 of the tokenised training data: canvas rows ``[N, P+G]`` int16 then prompt lengths ``[N]`` int16."""
    digest = hashlib.sha256()
    digest.update(canvas.contiguous().numpy().tobytes())
    digest.update(prompt_len.contiguous().numpy().tobytes())
    return digest.hexdigest()


def parse_tasks(spec: str) -> tuple[list[str], list[float]]:
    names, weights = [], []
    for part in spec.split(","):
        name, _, weight = part.partition(":")
        names.append(name.strip())
        weights.append(float(weight or 1))
    return names, weights


def _draw(job: tuple[str, int, int]) -> list[tuple[str, str]]:
    spec, seed, n = job
    names, weights = parse_tasks(spec)
    tasks = [get_task(name) for name in names]
    rng = random.Random(f"train/{seed}")
    return [(p.prompt, p.response) for p in (sample_mixture(rng, tasks, weights) for _ in range(n))]


def chat_affixes(tokenizer) -> tuple[str, str]:
    """The chat template's text before and after the user content (rendered once, reused)."""
    marker = "\x00CONTENT\x00"
    text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], add_generation_prompt=True,
                                         tokenize=False)
    before, _, after = text.partition(marker)
    return before, after


def _tensorise_job(job) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` examples and lay them out as canvas rows ``[n, P+G]`` (prompt left-padded with EOS to P,
    response + eot + eos fill) with prompt lengths ``[n]``; rows that do not fit are dropped."""
    spec, seed, n, tokenizer_json, before, after, P, G = job
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer_json)
    examples = _draw((spec, seed, n))
    prompts = backend.encode_batch([before + p + after for p, _ in examples], add_special_tokens=False)
    responses = backend.encode_batch([r for _, r in examples], add_special_tokens=False)
    canvas = np.full((n, P + G), EOS, dtype=np.int16)  # [n, P+G]
    prompt_len = np.zeros(n, dtype=np.int16)  # [n]
    for row, (p, r) in enumerate(zip(prompts, responses)):
        p, r = p.ids, r.ids
        if len(p) > P or len(r) >= G:
            continue
        canvas[row, P - len(p):P] = p
        canvas[row, P:P + len(r)] = r
        canvas[row, P + len(r)] = EOT
        prompt_len[row] = len(p)
    kept = prompt_len > 0
    return canvas[kept], prompt_len[kept]


def build_dataset(spec: str, n: int, tokenizer, P: int, G: int, workers: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training rows drawn and tokenised in ``workers`` processes: canvas ``[N, P+G]`` int16, lengths ``[N]``."""
    before, after = chat_affixes(tokenizer)
    js = tokenizer.backend_tokenizer.to_str()
    chunk = 20_000
    jobs = [(spec, seed * 1_000_003 + i, min(chunk, n - i * chunk), js, before, after, P, G)
            for i in range(math.ceil(n / chunk))]
    if workers <= 1 or len(jobs) == 1:
        parts = [_tensorise_job(job) for job in jobs]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_tensorise_job, jobs)
    canvas = torch.from_numpy(np.concatenate([c for c, _ in parts]))
    prompt_len = torch.from_numpy(np.concatenate([p for _, p in parts]))
    if len(canvas) < n:
        print(f"dropped {n - len(canvas)} of {n} examples longer than the canvas")
    return canvas, prompt_len


def prompt_width(corpus, tokenizer, cap: int) -> int:
    """Prompt length P of the canvas: the longest templated prompt in a sample, plus slack, at most ``cap``."""
    before, after = chat_affixes(tokenizer)
    lengths = [len(e.ids) for e in tokenizer.backend_tokenizer.encode_batch(
        [before + p + after for p, _ in corpus], add_special_tokens=False)]
    return min(cap, max(lengths) + 4)


def model_config(args, vocab_size: int) -> dict:
    if args.family == "llada":
        return fastdllm.llada_config(
            d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, mlp_hidden_size=args.mlp,
            vocab_size=vocab_size, max_sequence_length=512, rope_theta=10000.0, mask_token_id=MASK,
            eos_token_id=EOS, pad_token_id=EOS, bos_token_id=BOS, eot_token_id=EOT)
    from fastdllm.models.dream import dream_config

    return dream_config(
        hidden_size=args.d_model, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=max(1, args.heads // 2), intermediate_size=args.mlp, vocab_size=vocab_size,
        max_position_embeddings=512, rope_theta=10000.0, mask_token_id=MASK, eos_token_id=EOS, pad_token_id=EOS,
        bos_token_id=BOS, im_end_token_id=EOT)


def diffusion_loss(net, x0: torch.Tensor, prompt_len: torch.Tensor, P: int, shift: int, eps: float = 1e-3):
    """LLaDA SFT loss on a batch: x0 ``[B, L]`` long, prompt lengths ``[B]``."""
    B, L = x0.shape
    G = L - P
    t = torch.rand(B, 1, device=x0.device) * (1 - eps) + eps  # [B, 1]
    masked = torch.rand(B, G, device=x0.device) < t  # [B, G]
    xt = x0.clone()
    xt[:, P:] = torch.where(masked, MASK, x0[:, P:])
    real = torch.arange(L, device=x0.device)[None, :] >= (P - prompt_len)[:, None]  # [B, L]
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)
    h = net.hidden(xt, 0, L, NoStore(), position_ids, real)  # [B, L, d]
    logits = net.lm_head(h[:, P - shift:L - shift]).float()  # [B, G, V]: row j predicts position P + j
    ce = F.cross_entropy(logits.transpose(1, 2), x0[:, P:], reduction="none")  # [B, G]
    return (ce * masked / t).sum() / (B * G)


def quick_eval(model, problems, gen_length: int) -> dict:
    model.eval()
    report = evaluate(model, problems, batch_size=256, cache="none", unmask="fixed", gen_length=gen_length,
                      block_length=gen_length // 4)
    model.train()
    return {"eval/accuracy": report.accuracy, "eval/scorer": report.scorer, "eval/accuracy_lenient": report.accuracy_lenient,
            "eval/accuracy_chain": report.accuracy_chain, "eval/answer_tokens": report.answer_tokens_mean}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    names, weights = parse_tasks(args.tasks)
    corpus = _draw((args.tasks, 10_000 + args.seed, 20_000))
    tokenizer = build_tokenizer((text for pair in corpus for text in pair), vocab_size=args.vocab_size)
    P = prompt_width(corpus, tokenizer, args.max_prompt)
    canvas, prompt_len = build_dataset(args.tasks, args.examples, tokenizer, P, args.gen_length, args.workers, args.seed)
    prep_s = time.perf_counter() - t0
    provenance = {**code_commit(), "data_sha256": data_sha256(canvas, prompt_len),
                  "tokenizer_sha256": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()}
    print(f"data: {len(canvas)} examples, canvas {canvas.shape[1]} (prompt {P}), prepared in {prep_s:.1f}s; {provenance}")
    if args.hash_data_only:
        (out / "data_hash.json").write_text(json.dumps({**provenance, "examples": len(canvas), "prompt_len": P,
                                                        "args": vars(args)}, indent=2))
        return provenance

    hf_config = model_config(args, len(tokenizer))
    model = fastdllm.model_adapters.get(args.family)(hf_config)
    model.tokenizer = tokenizer
    model.to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    run = start_run(project="fastdllm", name=f"train-tiny-{args.family}", job_type="train", directory=out.parent / "wandb",
                    mode=args.wandb_mode, config={**vars(args), "params": n_params, "prompt_len": P, **torch_info()})
    print(f"model: {n_params / 1e6:.2f} M parameters on {device}")

    canvas, prompt_len = canvas.to(device), prompt_len.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.1, fused=device.type == "cuda")
    loss_fn = diffusion_loss
    use_compile = args.compile if args.compile is not None else device.type == "cuda"
    if use_compile:
        loss_fn = torch.compile(diffusion_loss, dynamic=False)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    test_problems = get_task(names[0]).generate("test", args.eval_problems, seed=args.seed)
    budget = args.minutes * 60
    started = last_eval = time.perf_counter()
    step, history = 0, []
    gen = torch.Generator(device=device).manual_seed(args.seed)
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= budget or (args.max_steps is not None and step >= args.max_steps):
            break
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(canvas), (args.batch,), device=device, generator=gen)
        with autocast:
            try:
                loss = loss_fn(model.net, canvas[idx].long(), prompt_len[idx].long(), P, model.logit_shift)
            except Exception as err:  # a compiler failure must not cost the run
                if loss_fn is diffusion_loss:
                    raise
                print(f"torch.compile failed ({type(err).__name__}: {err}); continuing eagerly")
                loss_fn = diffusion_loss
                continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == 1:
            run.log({"train/loss": loss.item(), "train/lr": lr, "train/elapsed_s": elapsed}, step=step)
        if time.perf_counter() - last_eval > args.eval_every:
            metrics = quick_eval(model, test_problems, args.gen_length)
            history.append({"step": step, "elapsed_s": elapsed, **metrics})
            run.log(metrics, step=step)
            print(f"step {step} ({elapsed:.0f}s) loss {loss.item():.4f} {metrics}", flush=True)
            last_eval = time.perf_counter()
    train_s = time.perf_counter() - started
    model.eval()
    final = quick_eval(model, test_problems, args.gen_length)
    run.log(final, step=step)
    print(f"done: {step} steps in {train_s:.0f}s; {final}")

    from fastdllm.models.checkpoint import save_checkpoint

    save_checkpoint(model, out, tokenizer=tokenizer, dtype=torch.float32)  # fp32: CPU runs see the trained weights
    summary = {**provenance, "steps": step, "train_seconds": train_s, "prep_seconds": prep_s, "params": n_params,
               "examples": len(canvas), "prompt_len": P, "final": final, "history": history,
               "args": vars(args), "env": torch_info()}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    run.summary.update({"steps": step, "train_seconds": train_s, **final})
    run.finish()
    return summary


if __name__ == "__main__":
    main()
