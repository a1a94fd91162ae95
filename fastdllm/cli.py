"""The ``fastdllm`` command: ``ls``, ``generate``, ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

import fastdllm
from fastdllm.core.registry import describe_fields


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


def cmd_ls(args: argparse.Namespace) -> int:
    sections = [("cache policies", fastdllm.cache_policies), ("unmask policies", fastdllm.unmask_policies)]
    for title, registry in sections:
        print(f"{title}:")
        for name, cls in registry:
            print(f"  {name:<18} {_summary(cls)}")
            for field, kind, default in describe_fields(cls.Config):
                print(f"  {'':<18}   {field}: {kind} = {default!r}")
    print("models (config.json fields read, with the full-size checkpoint's values):")
    for name, cls in fastdllm.model_adapters:
        print(f"  {name:<18} {_summary(cls)}")
        fields = [f"{k}={v!r}" for k, v in cls.reference_config().items()]
        for line in textwrap.wrap(", ".join(fields), width=96):
            print(f"  {'':<18}   {line}")
    return 0


def _summary(cls: type) -> str:
    """A class docstring's first paragraph, on one line."""
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())


def add_decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default="dual", help="cache policy name or JSON spec (see `fastdllm ls`)")
    p.add_argument("--cache-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--unmask", default="threshold", help="unmask policy name or JSON spec")
    p.add_argument("--unmask-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--gen-length", type=int, default=None)
    p.add_argument("--block-length", type=int, default=None)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop-at-eos", action="store_true")


def load(args: argparse.Namespace):
    from fastdllm.assets import default_decode_options, tiny_model_path

    path = args.model or tiny_model_path()
    model = fastdllm.load_model(path, device=args.device, dtype=None)
    defaults = default_decode_options(path)
    return model, defaults


def cmd_generate(args: argparse.Namespace) -> int:
    model, defaults = load(args)
    options = {
        "cache": policy_spec(args.cache, args.cache_opt), "unmask": policy_spec(args.unmask, args.unmask_opt),
        "gen_length": defaults["gen_length"] if args.gen_length is None else args.gen_length,
        "block_length": defaults["block_length"] if args.block_length is None else args.block_length,
        "temperature": args.temperature, "seed": args.seed, "stop_at_eos": args.stop_at_eos,
    }
    ids, mask = model.encode(args.prompt, chat=not args.raw)
    result = fastdllm.generate(model, ids, attention_mask=mask, **options)
    for prompt, text in zip(args.prompt, result.texts):
        print(text if len(args.prompt) == 1 else f"> {prompt}\n{text}\n")
    s = result.summary()
    print(f"[{result.nfe} forwards ({s['refresh_forwards']} refresh), {s['tpf_canvas']:.2f} tokens/forward, "
          f"{result.wall_time_s:.2f}s]", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fastdllm.demo import run_demo

    run_demo(model_path=args.model, n=args.n, device=args.device, batch_size=args.batch_size)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdllm", description="Fast inference for masked diffusion LMs (Fast-dLLM).")
    parser.add_argument("--version", action="version", version=f"fastdllm {fastdllm.__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it registers policies, measures, tasks or models); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="list registered cache policies, unmask policies and models").set_defaults(func=cmd_ls)

    gen = sub.add_parser("generate", help="decode text prompts")
    gen.add_argument("prompt", nargs="+")
    gen.add_argument("--model", default=None, help="HF-format folder or repo id (default: the shipped tiny model)")
    gen.add_argument("--device", default=None)
    gen.add_argument("--raw", action="store_true", help="no chat template")
    add_decode_args(gen)
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="baseline vs Fast-dLLM settings on held-out problems (the main job)")
    demo.add_argument("--model", default=None)
    demo.add_argument("--n", type=int, default=50)
    demo.add_argument("--batch-size", type=int, default=50)
    demo.add_argument("--device", default=None)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fastdllm.load_plugins(args.plugin)  # --plugin modules and installed "fastdllm.plugins" entry points
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f"fastdllm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
