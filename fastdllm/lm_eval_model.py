"""lm-evaluation-harness integration: the ``fastdllm`` model and ``fastdllm lm-eval``.

lm-eval 0.4.13 discovers model classes only through its own registry (it reads no entry points
for models), so ``fastdllm lm-eval ARGS…`` (or ``python -m fastdllm.lm_eval_model ARGS…``)
registers the class under the name ``"fastdllm"`` and hands ``ARGS`` to lm-eval's own CLI::

    fastdllm lm-eval --model fastdllm \\
        --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,cache=dual,unmask=threshold,threshold=0.9,gen_length=256,block_length=32 \\
        --tasks gsm8k --num_fewshot 5 --batch_size 8

From Python, ``register()`` returns the class (``lm_eval.simple_evaluate(model="fastdllm", ...)``
works after it). The class itself lives in ``fastdllm.integrations.lm_eval_lm``; lm-eval is
imported only here, lazily.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

MODEL_NAME = "fastdllm"
STATS_FILE = "fastdllm_decode_stats.json"


def _require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError as err:
        raise ImportError("the lm-eval integration needs lm-evaluation-harness: pip install 'fastdllm[lmeval]'"
                          f" ({err})") from None


def register() -> type:
    """Register the ``fastdllm`` model with lm-eval's model registry (idempotent); return the class."""
    _require_lm_eval()
    import lm_eval.models  # noqa: F401  (lm-eval fills its registry with its own models only when it is empty)
    from lm_eval.api.registry import model_registry

    from fastdllm.integrations.lm_eval_lm import FastDLLMEvalModel

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME)(FastDLLMEvalModel)
    return FastDLLMEvalModel


def _output_path(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("--output_path", "-o") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--output_path="):
            return arg.split("=", 1)[1]
    return None


def _write_stats(output_path: str | None, first: int) -> Path | None:
    """The decode statistics of this run's model(s) (instances from index ``first`` on) as JSON beside
    lm-eval's results (a folder path, or the folder of a ``.json`` path); rank 0 only."""
    from fastdllm.integrations.lm_eval_lm import FastDLLMEvalModel

    models = FastDLLMEvalModel.runs[first:]
    if output_path is None or not models or any(m.rank != 0 for m in models):
        return None
    folder = Path(output_path)
    if folder.suffix == ".json":
        folder = folder.parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATS_FILE
    path.write_text(json.dumps([m.decode_stats() for m in models], indent=2) + "\n")
    print(f"fastdllm: decode statistics written to {path}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI with ``argv`` (its own options, e.g. ``--model fastdllm --tasks gsm8k``) after
    registering the ``fastdllm`` model. lm-eval's own errors (an unknown task, a bad option) pass
    through unchanged. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    model_class = register()
    first = len(model_class.runs)  # an earlier lm-eval run in this process has its own statistics
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *argv]  # lm-eval's parser reads sys.argv (it inserts "run" when no subcommand)
    try:
        cli_evaluate()
    except SystemExit as stop:  # argparse and lm-eval exit this way; keep the status
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except (ValueError, KeyError, FileNotFoundError, NotImplementedError) as err:
        # lm-eval's own message (e.g. "Tasks not found: gsm8kk"), without the traceback
        print(f"lm-eval: error: {err}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
    _write_stats(_output_path(argv), first)
    return 0


if __name__ == "__main__":
    sys.exit(main())
