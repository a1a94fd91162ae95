"""The ``fastdllm`` command: ``run | sweep | validate | plot | generate | demo | ls | bench | lm-eval``.

Every option is checked before any weights load; expected errors print one ``fastdllm: error:`` line
(or the list of a config's problems) and exit with status 2. ``torchrun --nproc_per_node=N -m
fastdllm.cli run CONFIG.yaml`` shards a run over N processes.
"""

from __future__ import annotations

import argparse
import sys

import fastdllm
from fastdllm.cli_args import (RUN_CONFIG_KEYS, add_decode_args, add_model_args, generate_epilog, policy_spec,
                               positive_int)

__all__ = ["build_parser", "main", "policy_spec"]

COMMANDS = ("run", "sweep", "validate", "plot", "generate", "demo", "ls", "bench", "lm-eval")


def _cmd(name: str):
    """A subcommand's function, imported when it runs (keeps ``fastdllm --help`` fast)."""

    def run(args: argparse.Namespace) -> int:
        from fastdllm import cli_commands

        return getattr(cli_commands, f"cmd_{name.replace('-', '_')}")(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdllm", description="Fast inference for masked diffusion LMs (Fast-dLLM).")
    parser.add_argument("--version", action="version", version=f"fastdllm {fastdllm.__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it registers policies, measures, tasks or models); repeatable")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one config: decode + score a task, write runs/<name>/, log to W&B",
                         description="Run CONFIG.yaml (a RunConfig; `fastdllm validate` checks it) with dotted "
                         "overrides, e.g. `fastdllm run cfg.yaml decode.unmask.threshold=0.8 task.limit=100`. "
                         "W&B agents' --key=value arguments are accepted too. Under torchrun the problems "
                         "are sharded over the ranks and gathered on rank 0.")
    run.add_argument("items", nargs="*", metavar="CONFIG.yaml | KEY=VALUE",
                     help="the config file (optional: defaults apply) and KEY=VALUE overrides")
    run.set_defaults(func=_cmd("run"))

    val = sub.add_parser("validate", help="print the resolved config, or every problem in it",
                         description="Validate CONFIG.yaml + overrides without loading weights.")
    val.add_argument("items", nargs="*", metavar="CONFIG.yaml | KEY=VALUE", help="the config file and overrides")
    val.set_defaults(func=_cmd("validate"))

    sweep = sub.add_parser("sweep", help="run a W&B sweep file's grid locally (no W&B server)",
                           description="Run every point of SWEEP.yaml's grid (W&B sweep format) as its own run: "
                           "one run folder and one offline-capable W&B run per point.")
    sweep.add_argument("sweep_file", metavar="SWEEP.yaml", help="W&B sweep file (method: grid)")
    sweep.add_argument("items", nargs="*", metavar="KEY=VALUE", help="overrides applied to every point")
    sweep.add_argument("--config", default=None, metavar="BASE.yaml",
                       help="base run config (default: the .yaml after `run` in the sweep's command)")
    sweep.add_argument("--dry-run", action="store_true", help="validate and list the points, run nothing")
    sweep.set_defaults(func=_cmd("sweep"))

    plot = sub.add_parser("plot", help="PNG plots from run folders (accuracy vs TPF and tokens/s, TPF vs "
                          "threshold, decoding order)")
    plot.add_argument("runs", nargs="+", metavar="RUN_FOLDER", help="folders written by `fastdllm run`")
    plot.add_argument("--out", default="plots", help="folder for the PNGs (default: plots)")
    plot.set_defaults(func=_cmd("plot"))

    gen = sub.add_parser("generate", help="decode text prompts (no prompt: a held-out problem of the model's task)",
                         epilog=generate_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("prompt", nargs="*", help="prompt texts (none: decode a held-out problem and show the "
                     "expected answer beside the model's)")
    gen.add_argument("--prompts-file", default=None, metavar="FILE.jsonl",
                     help='prompts from a JSONL file: one {"prompt": ...} object (or JSON string) per line')
    gen.add_argument("--json", action="store_true", help="print one JSON object per prompt (output and statistics)")
    gen.add_argument("--live", action="store_true", help="redraw the canvas in the terminal as masks fill in")
    gen.add_argument("--raw", action="store_true", help="no chat template")
    add_model_args(gen)
    add_decode_args(gen)
    gen.set_defaults(func=_cmd("generate"))

    demo = sub.add_parser("demo", help="baseline vs Fast-dLLM settings on held-out problems (the main job)")
    add_model_args(demo, dtype=False)
    demo.add_argument("--n", type=positive_int, default=None,
                      help="held-out problems (>= 1; default 12: the one-token-per-step baseline costs about a "
                      "CPU-second per problem)")
    demo.add_argument("--batch-size", type=positive_int, default=None,
                      help="prompts per batch (>= 1; default: all problems in one batch)")
    demo.set_defaults(func=_cmd("demo"))

    ls = sub.add_parser("ls", help="list policies, model families, tasks and shipped models")
    ls.set_defaults(func=_cmd("ls"))

    bench = sub.add_parser("bench", help="quick speed table (tokens/s, NFE, ms/forward) on random prompts")
    add_model_args(bench)
    bench.add_argument("--settings", default="none+fixed,prefix+threshold,dual+threshold,dual+factor",
                       help="comma-separated CACHE+UNMASK pairs (policy defaults; see `fastdllm ls`)")
    bench.add_argument("--batch-size", type=positive_int, default=4, help="random prompts per batch (>= 1)")
    bench.add_argument("--prompt-length", type=positive_int, default=32, help="tokens per random prompt (>= 1)")
    bench.add_argument("--gen-length", type=positive_int, default=None, help="default: the model's stored setting")
    bench.add_argument("--block-length", type=positive_int, default=None, help="default: the model's stored setting")
    bench.add_argument("--repeats", type=positive_int, default=2, help="timed decodes per setting, after a warm-up")
    bench.add_argument("--seed", type=int, default=0, help="seed of the random prompts")
    bench.set_defaults(func=_cmd("bench"))

    lm = sub.add_parser("lm-eval", help="lm-evaluation-harness with the fastdllm model registered (ARGS go to "
                        "lm-eval's CLI)", add_help=False)
    lm.add_argument("args", nargs="*", help="lm-eval's own arguments, e.g. --model fastdllm --model_args "
                    "pretrained=PATH,cache=dual,unmask=threshold --tasks gsm8k")
    lm.set_defaults(func=_cmd("lm-eval"))
    return parser


def _split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(what argparse parses, what it must not): lm-eval's arguments pass through untouched, and W&B
    agents' ``--decode.unmask.threshold=0.8`` become ``decode.unmask.threshold=0.8`` overrides."""
    index = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if index is None:
        return argv, []
    if argv[index] == "lm-eval":
        return argv[:index + 1], argv[index + 1:]
    if argv[index] in ("run", "validate", "sweep"):
        rest = [_as_override(a) for a in argv[index + 1:]]
        argv = argv[:index + 1] + _options_first(rest)
    return argv, []


def _options_first(rest: list[str]) -> list[str]:
    """``sweep S.yaml k=v --config B.yaml k2=v2`` → options before positionals (argparse cannot take
    positionals on both sides of an option)."""
    options, positionals, i = [], [], 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--config" and i + 1 < len(rest):
            options += rest[i:i + 2]
            i += 2
            continue
        (options if arg.startswith("-") else positionals).append(arg)
        i += 1
    return options + positionals


def _as_override(arg: str) -> str:
    key, sep, _ = arg[2:].partition("=")
    if arg.startswith("--") and sep and (key.split(".")[0] in RUN_CONFIG_KEYS):
        return arg[2:]
    return arg


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parse, passthrough = _split_argv(argv)
    args = build_parser().parse_args(parse)
    if args.command == "lm-eval":
        args.args = passthrough
    try:
        fastdllm.load_plugins(args.plugin)  # --plugin modules and installed "fastdllm.plugins" entry points
        return args.func(args)
    except (ValueError, KeyError, OSError, RuntimeError, ImportError) as err:
        print(f"fastdllm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
