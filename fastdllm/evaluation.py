"""Accuracy and speed of one decoding setting on a list of problems (the numbers the paper reports).

NFE and tokens-per-forward are counted per sequence (the row's own forwards, not the batch's
slowest row). TPF is reported over the canvas (generated positions / forwards) and over the
answer (tokens before the first end token / forwards until that answer was complete).

Accuracy is reported three ways, so what parallel decoding breaks stays visible:
``accuracy`` under the named scorer (default: the task's strict one, the answer sentence well
formed), ``accuracy_lenient`` under GSM8K-style extraction, and ``accuracy_chain`` (tasks with
intermediate steps, e.g. arithmetic): the share of rows correct under the scorer whose every step
is also right (:meth:`fastdllm.tasks.Task.check_chain`); ``None`` when no problem has a chain.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from fastdllm.core.decoder import DiffusionDecoder
from fastdllm.tasks import Problem, Task, get_task


@dataclass
class EvalReport:
    setting: dict[str, Any]
    n: int
    accuracy: float  # under ``scorer``
    nfe_mean: float  # forwards per sequence
    tpf_canvas: float  # mean over sequences of decoded positions / NFE
    tpf_answer: float  # mean over sequences of answer tokens / forwards to finish the answer
    answer_tokens_mean: float
    refresh_share: float  # refresh forwards / all forwards (batch level)
    wall_time_s: float
    tokens_per_s_canvas: float
    tokens_per_s_useful: float
    scorer: str = "strict"  # the scorer behind ``accuracy`` ("strict", "lenient", ... or "task:name,..." if mixed)
    accuracy_lenient: float | None = None  # GSM8K-style extraction
    accuracy_chain: float | None = None  # correct and every intermediate step right; None: no task has a chain
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self, with_rows: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_rows:
            d.pop("rows")
        return d


def evaluate(model, problems: Sequence[Problem], task: Task | str | None = None, *, batch_size: int = 64,
             progress: bool = False, keep_rows: bool = False, scorer: str | None = None,
             **decode_options: Any) -> EvalReport:
    """Decode every problem's prompt (chat template) and score the answers with ``task``.

    ``scorer`` names the scorer behind ``accuracy`` and each row's ``"correct"`` (default: the
    task's default, ``"strict"`` for the built-in tasks; ``"lenient"``/``"gsm8k"`` for GSM8K-style
    extraction). Rows (``keep_rows=True``) hold ``index``, ``prompt``, ``target`` (the reference
    answer), ``output``, ``correct``, ``correct_lenient``, ``chain_ok`` (None without a chain),
    the row's statistics and ``commit_forward`` (per generated position, the row's 1-based forward
    that committed it, 0 = filled at stop).
    """
    if not problems:
        raise ValueError("evaluate() needs at least one problem")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    scorers = _scorers(problems, task)  # before any decoding: a task that cannot be built fails now
    names = {key: t.resolve_scorer(scorer) for key, t in scorers.items()}  # an unknown scorer fails now too
    decoder = DiffusionDecoder(model, **decode_options)
    order = sorted(range(len(problems)), key=lambda i: len(problems[i].prompt))  # less padding per batch
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"{decoder.cache.name}+{decoder.unmask.name}", leave=False)
    rows: list[dict[str, Any]] = [{} for _ in problems]
    wall = 0.0
    nfe_total = refresh_total = 0
    for idx in batches:
        ids, mask = model.encode([problems[i].prompt for i in idx], chat=True)
        started = time.perf_counter()
        result = decoder.generate(ids, mask)
        wall += time.perf_counter() - started
        nfe_total += result.nfe
        refresh_total += result.refresh_forwards
        texts = result.texts
        stats = zip(result.nfe_per_row.tolist(), result.tokens_per_forward.tolist(),
                    result.answer_tokens_per_forward.tolist(), result.first_end.tolist(),
                    result.commit_forward.tolist())
        for j, (i, (nfe, tpf, tpf_answer, answer_tokens, commits)) in enumerate(zip(idx, stats)):
            problem, judge = problems[i], scorers[problems[i].task]
            rows[i] = {
                "index": i, "prompt": problem.prompt, "target": problem.answer,
                "output": texts[j], "correct": judge.score(texts[j], problem, names[problem.task]),
                "correct_lenient": judge.score(texts[j], problem, "lenient"),
                "chain_ok": judge.check_chain(texts[j], problem),
                "nfe": nfe, "tpf_canvas": tpf, "tpf_answer": tpf_answer, "answer_tokens": answer_tokens,
                "commit_forward": commits,
            }
    n, gen = len(problems), decoder.config.gen_length

    def mean(key: str) -> float:
        return float(sum(r[key] for r in rows) / n)

    chained = [r for r in rows if r["chain_ok"] is not None]
    used = sorted(set(names.values()))
    return EvalReport(
        setting={"cache": decoder.cache.spec(), "unmask": decoder.unmask.spec(),
                 **decoder.config.model_dump(exclude={"cache", "unmask"})},
        n=n, accuracy=mean("correct"), nfe_mean=mean("nfe"), tpf_canvas=mean("tpf_canvas"),
        tpf_answer=mean("tpf_answer"), answer_tokens_mean=mean("answer_tokens"),
        refresh_share=refresh_total / max(nfe_total, 1), wall_time_s=wall,
        tokens_per_s_canvas=n * gen / max(wall, 1e-9),
        tokens_per_s_useful=sum(r["answer_tokens"] for r in rows) / max(wall, 1e-9),
        scorer=used[0] if len(used) == 1 else ",".join(f"{key}:{name}" for key, name in names.items()),
        accuracy_lenient=mean("correct_lenient"),
        accuracy_chain=sum(r["correct"] and r["chain_ok"] for r in chained) / len(chained) if chained else None,
        rows=rows if keep_rows else [],
    )


def _scorers(problems: Sequence[Problem], task: Task | str | None) -> dict[str, Task]:
    """The scoring task for each problem's ``task`` name: ``task`` for all when given, else by name."""
    if task is not None:
        scorer = get_task(task)
        return {p.task: scorer for p in problems}
    scorers = {}
    for name in dict.fromkeys(p.task for p in problems):
        try:
            scorers[name] = get_task(name)
        except Exception as err:
            raise ValueError(f"problems of task {name!r} name no registered task ({err}); pass task= the Task "
                             "or the .jsonl path they came from") from None
    return scorers


def torch_info() -> dict[str, Any]:
    """Device and versions, recorded with every result file."""
    import platform

    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    from fastdllm.kernels import triton

    if triton is not None:  # the kernels of fastdllm.kernels run on CUDA only with it
        info["triton"] = triton.__version__
    return info
