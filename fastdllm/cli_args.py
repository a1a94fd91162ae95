"""Argument helpers of the ``fastdllm`` command (option groups, value types, the generate help text)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fastdllm.runs.config import RunConfig

RUN_CONFIG_KEYS = frozenset(RunConfig.model_fields)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (use 1 or more)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: use 1 or more")
    return value


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def policy_spec(name: str, options: list[str]) -> dict[str, Any] | str:
    """``--unmask threshold --unmask-opt threshold=0.8`` → ``{"name": "threshold", "threshold": 0.8}``."""
    if name.lstrip().startswith("{"):
        try:
            return json.loads(name)
        except json.JSONDecodeError as err:
            raise ValueError(f"policy spec {name!r} is not valid JSON ({err}); e.g. "
                             '\'{"name": "threshold", "threshold": 0.8}\'') from None
    spec: dict[str, Any] = {"name": name}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"option {item!r} is not KEY=VALUE (e.g. threshold=0.8)")
        spec[key.strip()] = _value(value)
    return spec


def add_model_args(p: argparse.ArgumentParser, dtype: bool = True) -> None:
    p.add_argument("--model", default=None, help="shipped model name (tiny-llada, tiny-dream), checkpoint folder, "
                   "or Hub repo id (default: tiny-llada)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available, else CPU)")
    if dtype:
        p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="weights dtype (auto: the checkpoint's, else float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (>= 1; default: torch's)")


def add_decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default="dual", help="cache policy name or JSON spec (see `fastdllm ls`)")
    p.add_argument("--cache-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the cache policy's config (repeatable)")
    p.add_argument("--unmask", default="threshold", help="unmask policy name or JSON spec (see `fastdllm ls`)")
    p.add_argument("--unmask-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the unmask policy's config, e.g. threshold=0.8 (repeatable)")
    p.add_argument("--gen-length", type=int, default=None, help="generated positions (default: the model's stored "
                   "setting, else 128)")
    p.add_argument("--block-length", type=int, default=None, help="positions per block (default: the model's "
                   "stored setting, else 32)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = argmax; > 0 = sampling")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (temperature > 0)")
    p.add_argument("--stop-at-eos", action="store_true", help="stop after a block once every row has ended")


def generate_epilog() -> str:
    from fastdllm.tasks import get_task

    examples = [p.prompt for p in get_task("arithmetic").generate("test", 2, seed=0)]
    lines = [
        "The shipped models (tiny-llada, tiny-dream) are ~1M-parameter models trained on one synthetic",
        "task: they answer only problems in its exact format (other wording or object nouns drop them",
        "to a few percent). Prompts they can answer:",
        *(f'  fastdllm generate "{e}"' for e in examples),
        "With no prompt, `fastdllm generate` decodes a held-out problem and prints the expected answer",
        "beside the model's. For real use pass --model with a LLaDA or Dream checkpoint.",
    ]
    return "\n".join(lines)
