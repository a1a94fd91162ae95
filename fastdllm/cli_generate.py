"""``fastdllm generate`` and ``fastdllm bench``: every option is validated before the weights load."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import fastdllm
from fastdllm.cli_args import policy_spec
from fastdllm.runs.config import local_model_folder
from fastdllm.runs.models import model_task, resolve_model, stored_decode_settings


def decode_options(args: argparse.Namespace, path) -> dict[str, Any]:
    """The decode options the command line asks for, over the checkpoint's stored settings, validated now.

    For a Hub id (stored settings unknown until it loads) only the given options are passed (the loaded
    model's own defaults fill the rest); they are validated with stand-in lengths."""
    from fastdllm.core.config import decode_config

    stored = stored_decode_settings(path) if isinstance(path, Path) else {}
    options: dict[str, Any] = dict(stored)
    for key, flag_name, opts in (("cache", args.cache, args.cache_opt), ("unmask", args.unmask, args.unmask_opt)):
        if flag_name is not None or opts:
            base = flag_name or _stored_name(stored.get(key)) or ("dual" if key == "cache" else "threshold")
            options[key] = policy_spec(base, opts)
    explicit = {"gen_length": args.gen_length, "block_length": args.block_length, "seed": args.seed}
    options.update({k: v for k, v in explicit.items() if v is not None})
    if args.temperature:
        options["temperature"] = args.temperature
    if args.stop_at_eos:
        options["stop_at_eos"] = True
    check = dict(options)
    if not isinstance(path, Path):
        length = check.get("gen_length") or check.get("block_length")
        if length:
            check.setdefault("gen_length", length)
            check.setdefault("block_length", check["gen_length"])
    decode_config(**check)  # raises naming the field (an unknown policy: did-you-mean)
    return options


def _stored_name(spec) -> str | None:
    return spec if isinstance(spec, str) else spec.get("name") if isinstance(spec, dict) else None


def read_prompts_file(path: str | None) -> list[str]:
    if path is None:
        return []
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompts file {path!r} does not exist")
    prompts = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: invalid JSON ({err.msg}); each line is {{\"prompt\": \"...\"}} "
                             "or a JSON string") from None
        prompt = item.get("prompt") if isinstance(item, dict) else item
        if not isinstance(prompt, str):
            raise ValueError(f"{path}:{number}: expected {{\"prompt\": \"...\"}} or a JSON string, got {line.strip()!r}")
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"prompts file {path!r} holds no prompts")
    return prompts


def load_for_cli(args: argparse.Namespace, path):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = None if getattr(args, "dtype", "auto") == "auto" else getattr(torch, args.dtype)
    return fastdllm.load_model(path, device=args.device, dtype=dtype)


def cmd_generate(args: argparse.Namespace) -> int:
    prompts = list(args.prompt) + read_prompts_file(args.prompts_file)
    for number, prompt in enumerate(prompts, 1):
        if not prompt.strip():
            raise ValueError(f"prompt {number} is empty; pass the question text (or no prompt at all to decode a "
                             "held-out problem of the model's task)")
    if args.live and args.json:
        raise ValueError("--live draws on the terminal and --json prints JSON: pick one")
    path = resolve_model(args.model)
    options = decode_options(args, path)
    live_view = _live_view_class() if args.live else None
    problem = None
    if not prompts:
        problem, seed = _held_out_problem(path)
        prompts = [problem.prompt]
    model = load_for_cli(args, path)
    ids, mask = model.encode(prompts, chat=not args.raw)
    view = live_view(model) if live_view else None
    result = fastdllm.generate(model, ids, attention_mask=mask, callbacks=[view] if view else (), **options)
    if view is not None:
        view.finish(result)
    texts, s = result.texts, result.summary()
    if args.json:
        for i, (prompt, text) in enumerate(zip(prompts, texts)):
            row = {"prompt": prompt, "output": text, "nfe": int(result.nfe_per_row[i]),
                   "tpf_canvas": float(result.tokens_per_forward[i]), "answer_tokens": int(result.first_end[i])}
            if problem is not None:
                row.update(expected=problem.response, correct=_score(path, problem, text))
            print(json.dumps(row))
    elif problem is not None:
        print(f"held-out {problem.task} problem (test split, draw {seed}):\nprompt:   {problem.prompt}\n"
              f"expected: {problem.response}\nmodel:    {texts[0].strip()}\n"
              f"correct:  {'yes' if _score(path, problem, texts[0]) else 'no'}")
    elif not args.live:
        for prompt, text in zip(prompts, texts):
            print(text if len(prompts) == 1 else f"> {prompt}\n{text}\n")
    print(f"[{result.nfe} forwards ({s['refresh_forwards']} refresh), {s['tpf_canvas']:.2f} tokens/forward, "
          f"{result.wall_time_s:.2f}s]", file=sys.stderr)
    return 0


def _live_view_class():
    try:
        from fastdllm.live import LiveView
    except ImportError as err:
        if err.name and err.name.startswith("fastdllm"):
            raise ImportError("--live needs the module fastdllm.live, which this fastdllm installation lacks; "
                              "update fastdllm") from None
        raise ImportError(f"--live needs {err.name}: pip install 'fastdllm[live]'") from None
    return LiveView


def _held_out_problem(path):
    from fastdllm.tasks import get_task

    folder = local_model_folder(path)
    if folder is None or not ((folder / "fastdllm.json").is_file()):
        raise ValueError(f"no prompt given, and {str(path)!r} stores no task to draw a problem from; pass a prompt")
    seed = random.randrange(1_000_000)
    return get_task(model_task(folder)).generate("test", 1, seed=seed)[0], seed


def _score(path, problem, text: str) -> bool:
    from fastdllm.tasks import get_task

    return bool(get_task(problem.task).score(text, problem))


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed of a few settings on random prompts: tokens/s, forwards, ms per forward (accuracy is meaningless)."""
    import torch

    from fastdllm.core.decoder import DiffusionDecoder

    path = resolve_model(args.model)
    stored = stored_decode_settings(path) if isinstance(path, Path) else {}
    lengths = {"gen_length": args.gen_length or stored.get("gen_length", 128),
               "block_length": args.block_length or stored.get("block_length", 32)}
    settings = []
    for pair in (s.strip() for s in args.settings.split(",") if s.strip()):
        cache, sep, unmask = pair.partition("+")
        if not sep:
            raise ValueError(f"setting {pair!r} is not CACHE+UNMASK (e.g. dual+threshold)")
        fastdllm.DecodeConfig(cache=cache, unmask=unmask, **lengths)  # unknown names fail before loading
        settings.append((pair, {"cache": cache, "unmask": unmask, **lengths}))
    model = load_for_cli(args, path)
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, model.vocab_size, (args.batch_size, args.prompt_length), generator=gen)  # [B, P]
    specials = torch.tensor(sorted({model.mask_token_id, model.pad_token_id, *model.end_token_ids}))
    safe = next(i for i in range(model.vocab_size) if i not in set(specials.tolist()))
    ids[torch.isin(ids, specials)] = safe
    ids = ids.to(model.device)
    print(f"fastdllm bench: {model.name} from {path} on {model.device}, {torch.get_num_threads()} threads; "
          f"{args.batch_size} random prompts of {args.prompt_length} tokens, gen_length {lengths['gen_length']}, "
          f"block_length {lengths['block_length']}; {args.repeats} timed decodes per setting after one warm-up")
    head = f"{'setting':<24} {'tokens/s':>9} {'NFE':>5} {'TPF':>5} {'ms/forward':>10}"
    print(head + "\n" + "-" * len(head))
    for label, options in settings:
        decoder = DiffusionDecoder(model, **options)
        decoder.generate(ids)  # warm-up (allocations, first-call costs)
        wall, forwards = 0.0, 0
        for _ in range(args.repeats):
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            result = decoder.generate(ids)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            wall += time.perf_counter() - started
            forwards += result.nfe
        tokens = args.repeats * args.batch_size * lengths["gen_length"]
        print(f"{label:<24} {tokens / wall:>9.0f} {forwards / args.repeats:>5.1f} "
              f"{lengths['gen_length'] / (forwards / args.repeats):>5.2f} {1000 * wall / forwards:>10.2f}")
    print("NFE = forwards per batch decode; TPF = generated positions per forward; tokens/s counts every generated "
          "position. Random prompts: outputs are meaningless, only speed is measured.")
    return 0
