"""A per-shape choice of GEMM backend, made by timing the candidates on a model's own weights.

cuBLAS's heuristics pick one kernel per problem shape, and for the products of a cached step or a prefix-cache
window (32-257 rows against an 8B model's weights) that kernel is not always the fastest one on the machine.
Measured with CUDA graphs over rotating weight copies (``experiments/gemm_sweep.py --cublas-only``,
``experiments/results/speed/round6_dev/``): on an H100, LLaDA-8B's down projection (4096 × 12288) takes
44.9 µs at 96 rows through PyTorch's default cuBLAS path and 39.8 through cuBLASLt, Dream-7B's at 129 rows
64.1 against 54.4 — but at 225 rows 65.4 against 85.2; on an H200, LLaDA's q/k/v at 192 rows 41.6 against
31.6. No fixed rule fits every shape and GPU, so ``tune`` times the candidates (``BACKENDS``) for each
weight shape and row count a decode will run, each on a CUDA graph of one product per weight of the model
that has the shape (the 32 layers' down projections: every weight read from DRAM, as in a forward), and
records the fastest in a process-wide plan when it beats the default by more than a margin (3 %; closer
calls keep the default, so noise cannot flip a choice to a slower kernel by more than the margin).

``linear`` (what a model runs after ``DiffusionLM.tune_gemms``) sends every CUDA product through an opaque
op that looks the plan up at run time; products without a plan entry run as ``skinny_matmul.linear``
would (the few-row kernel where it applies, else cuBLAS). Every backend computes ``F.linear`` with fp32
accumulation (a split-K kernel may add its partial sums in the output dtype: ``lt_algos``); their
summation orders differ, so bf16 outputs (and
tokens where two candidates tie) can differ between backends, and between processes whose timings chose
differently. The plan is keyed by device, dtype, row count, weight shape and bias, not by model: two models
of one shape on one GPU share it (``clear`` empties it).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from fastdllm.kernels import lt_algos, skinny_matmul

BACKENDS = ("default", "cublas", "cublaslt", "few_row")  # default: what skinny_matmul.linear runs
LT = "lt"  # "lt3": cuBLASLt's candidate of rank 3 for the product's shape (lt_algos.LtGemm), CUDA bf16/fp16 only
MAX_LT = lt_algos.MAX_ALGOS  # the most ranked cuBLASLt candidates a shape offers
LT_MAX_ROWS = 128  # beyond, the candidates timed alone mislead: on an H200 the ones chosen for LLaDA-8B's 192- and
# 224-row products made those prefix windows' forwards 1.6-4.3 % slower than the plan without them, in two runs,
# while at 32-128 rows they made them 0-2.2 % faster (experiments/results/speed/round7_dev/)
MARGIN = 0.03  # a backend replaces the default only when at least this much faster
_PLAN: dict[tuple, str] = {}
_LT_GEMMS: dict[tuple, object] = {}  # plan_key -> lt_algos.LtGemm (descriptors and candidates, made once)


def plan_key(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple:
    """(device, dtype, rows, N, K, has bias): what a backend's speed depends on."""
    rows = x.numel() // max(x.shape[-1], 1)
    return (str(x.device), x.dtype, rows, weight.shape[0], weight.shape[1], bias is not None)


def plan() -> dict[tuple, str]:
    """A copy of the process-wide plan: ``plan_key`` -> backend."""
    return dict(_PLAN)


def _choose(key: tuple, choice: str) -> None:
    """Plan ``choice`` for ``key``; "default" is the absence of an entry."""
    if choice == "default":
        _PLAN.pop(key, None)
    else:
        _PLAN[key] = choice


def record_shape(record: Mapping) -> tuple:
    """(N, K, has bias) of a ``tune`` record; records saved before the ``bias`` field take it from the group
    name's ``+bias``."""
    bias = record["bias"] if "bias" in record else str(record.get("group", "")).endswith("+bias")
    return record.get("N"), record.get("K"), bool(bias)


def clear() -> None:
    """Forget every choice: products run as ``skinny_matmul.linear`` runs them."""
    _PLAN.clear()


@contextmanager
def _blas(backend: str):
    """PyTorch's BLAS preference set to ``backend`` ("cublas" or "cublaslt") for the block, restored after."""
    before = torch.backends.cuda.preferred_blas_library()
    torch.backends.cuda.preferred_blas_library(backend)
    try:
        yield
    finally:
        torch.backends.cuda.preferred_blas_library(before)


def _few_row_config(N: int, K: int):
    config = skinny_matmul.config_for(N, K)
    return skinny_matmul.CANDIDATES[0] if config == skinny_matmul.CUBLAS else config


def _lt_rank(backend: str) -> int | None:
    """3 for "lt3"; None for a name that is not a cuBLASLt candidate."""
    rank = backend[len(LT):] if isinstance(backend, str) and backend.startswith(LT) else ""
    return int(rank) if rank.isdigit() and int(rank) < MAX_LT and str(int(rank)) == rank else None


def _check_name(backend: str) -> None:
    if backend not in BACKENDS and _lt_rank(backend) is None:
        raise ValueError(f"unknown GEMM backend {backend!r}; choose one of {', '.join(BACKENDS)} or "
                         f"{LT}0..{LT}{MAX_LT - 1} (cuBLASLt's ranked candidates)")


def available(backend: str, rows: int) -> bool:
    """Whether ``backend`` can run a product of ``rows`` rows (the few-row kernel holds one row tile; cuBLASLt's
    candidates are offered up to ``LT_MAX_ROWS`` rows, and how many a shape has is ``lt_candidates``' answer)."""
    _check_name(backend)
    if _lt_rank(backend) is not None:
        return rows <= LT_MAX_ROWS
    return backend != "few_row" or (skinny_matmul.triton is not None and rows <= skinny_matmul.ONE_TILE_ROWS)


def _lt_gemm_for(key: tuple):
    """The ``LtGemm`` of a ``plan_key`` (made at the first call), or None where cuBLASLt's candidates do not
    apply: not CUDA, not bf16/fp16, a ROCm build, or a cuBLASLt that fails to rank (warned once per key)."""
    device, dtype, rows, N, K, bias = key
    if not device.startswith("cuda") or dtype not in (torch.bfloat16, torch.float16) or torch.version.hip:
        return None
    if key not in _LT_GEMMS:
        try:
            _LT_GEMMS[key] = lt_algos.LtGemm(rows, N, K, dtype, bias, device=torch.device(device).index)
        except (RuntimeError, OSError) as err:
            warnings.warn(f"gemm_plan: no cuBLASLt candidates for {key}: {err}", stacklevel=2)
            _LT_GEMMS[key] = None
    return _LT_GEMMS[key]


def _lt_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    return _lt_gemm_for(plan_key(x, weight, bias)) if x.is_cuda else None


def lt_candidates(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> list[str]:
    """The cuBLASLt candidates (``lt0``, ``lt1``, …) for ``F.linear(x, weight, bias)``'s shape; none off CUDA."""
    gemm = _lt_gemm(x, weight, bias)
    return [f"{LT}{rank}" for rank in range(min(len(gemm), MAX_LT))] if gemm is not None else []


LT_CONFIG = ("id", "tile_id", "splitk_num", "stages_id", "reduction_scheme")  # what names a candidate across processes


def _lt_config(gemm, rank: int) -> dict:
    info = gemm.describe(rank)
    return {k: info.get(k) for k in LT_CONFIG}


def run(backend: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` through ``backend`` (one of ``BACKENDS``, or ``lt<rank>``); on the CPU every
    backend is ``F.linear`` (the choices are among CUDA kernels). A cuBLASLt candidate needs contiguous,
    256-byte aligned operands (``LtGemm.fits``); a product that is not runs the default."""
    _check_name(backend)
    if not x.is_cuda:
        return F.linear(x, weight, bias)
    rank = _lt_rank(backend)
    if rank is not None:
        gemm = _lt_gemm(x, weight, bias)
        if gemm is not None and rank < len(gemm) and gemm.fits(x, weight, bias):
            return gemm(rank, x, weight, bias, fitted=True)
        backend = "default"
    if backend == "default":
        if skinny_matmul.use_skinny_matmul(x, weight):
            return skinny_matmul.skinny_linear(x, weight, bias)
        return F.linear(x, weight, bias)
    if backend == "few_row":
        return skinny_matmul.skinny_linear(x, weight, bias, config=_few_row_config(*weight.shape))
    with _blas(backend):
        return F.linear(x, weight, bias)


@torch.library.custom_op("fastdllm::planned_linear", mutates_args=())
def _planned_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return run(_PLAN.get(plan_key(x, weight, bias), "default"), x, weight, bias)


@_planned_linear.register_fake
def _(x, weight, bias):
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` by the plan: CUDA products through the opaque op (the plan is read when the op runs, so a
    compiled caller need not be recompiled when it changes; captured CUDA graphs keep the kernels they
    captured), every other product as ``skinny_matmul.linear``."""
    if x.is_cuda:
        return _planned_linear(x, weight, bias)
    return skinny_matmul.linear(x, weight, bias)


def _capture(call: Callable[[torch.Tensor], object], weights: Sequence[torch.Tensor]) -> torch.cuda.CUDAGraph:
    """A CUDA graph of ``call(w)`` for every weight, back to back (warmed up outside the capture: Triton compiles,
    cuBLAS picks its algorithm)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for w in weights[:2]:
            call(w)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for w in weights:
            call(w)
    graph.replay()
    return graph


def graph_times_us(calls: Mapping[str, Callable[[torch.Tensor], object]], weights: Sequence[torch.Tensor],
                   rounds: int = 7) -> dict[str, float]:
    """µs per product of each call: one CUDA graph per call (one product per weight), replayed in ``rounds``
    interleaved rounds (so clock and temperature drift reach every candidate alike); the median round."""
    graphs = {name: _capture(call, weights) for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    torch.cuda.synchronize()
    for _ in range(rounds):
        for name, graph in graphs.items():
            start = time.perf_counter()
            graph.replay()
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] / len(weights) * 1e6 for name, t in times.items()}


def tune(groups: Mapping[str, Sequence[torch.Tensor]], rows: Iterable[int], *, margin: float = MARGIN,
         biases: Mapping[str, Sequence[torch.Tensor | None]] | None = None, backends: Sequence[str] | None = None,
         timer: Callable[[Mapping[str, Callable], Sequence[torch.Tensor]], dict[str, float]] = graph_times_us
         ) -> list[dict]:
    """Time every available backend for each group of same-shape weights (name -> weights ``[N, K]``, e.g. the
    layers' down projections) at each row count, record the fastest in the plan when it beats ``default``
    by more than ``margin`` (else record nothing: the default runs), and return one record per (group, rows):
    ``{"group", "rows", "N", "K", "bias", "us": {backend: µs}, "tune_s": seconds it took, "choice"}``.
    ``backends``: the candidates besides ``default`` (by default ``BACKENDS`` and, up to ``LT_MAX_ROWS`` rows,
    every cuBLASLt candidate of the shape, ``lt_candidates``). ``timer(calls, weights)`` gives µs per product of each backend's call (CUDA graphs over the weights,
    interleaved, by default; tests pass a fake)."""
    rows = sorted(set(int(r) for r in rows))
    if any(r <= 0 for r in rows):
        raise ValueError(f"tune: row counts must be positive, got {rows}")
    for backend in backends or ():
        _check_name(backend)
    if not 0 <= margin < 1:
        raise ValueError(f"tune: margin is a fraction in [0, 1), got {margin}")
    records = []
    for name, weights in groups.items():
        weights = list(weights)
        shapes = {(tuple(w.shape), w.dtype, w.device) for w in weights}
        if len(shapes) != 1 or weights[0].dim() != 2:
            raise ValueError(f"tune: group {name!r} must hold matrices of one shape, dtype and device, got {shapes}")
        bias_list = list(biases[name]) if biases and name in biases else [None] * len(weights)
        N, K = weights[0].shape
        for m in rows:
            x = torch.randn(m, K, dtype=weights[0].dtype, device=weights[0].device)  # [m, K]
            pairs = dict(zip((id(w) for w in weights), bias_list))
            started = time.perf_counter()  # the candidates' set-up (cuBLASLt's heuristic) and timing
            wants_lt = m <= LT_MAX_ROWS and (backends is None or any(_lt_rank(b) is not None for b in backends))
            names = [b for b in BACKENDS if available(b, m)] + (lt_candidates(x, weights[0], bias_list[0]) if wants_lt else [])
            if backends is not None:
                names = [b for b in names if b == "default" or b in backends]
            calls = {b: (lambda w, b=b: run(b, x, w, pairs[id(w)])) for b in names}
            us = timer(calls, weights)
            seconds = time.perf_counter() - started
            best = min(us, key=us.get)
            choice = best if us[best] < (1 - margin) * us["default"] else "default"
            key = plan_key(x, weights[0], bias_list[0])
            _choose(key, choice)
            records.append({"group": name, "rows": m, "N": N, "K": K, "bias": bias_list[0] is not None, "us": us,
                            "tune_s": seconds, "choice": choice})
            gemm = _lt_gemm_for(key) if _lt_rank(choice) is not None else None
            if gemm is not None:  # the candidate's configuration, which install() checks
                records[-1]["lt_config"] = _lt_config(gemm, _lt_rank(choice))
    return records


def install(records: Iterable[Mapping], device: torch.device | str, dtype: torch.dtype) -> None:
    """Put the choices of ``tune``'s records (from this process or a saved run: JSON round-trips them) into the
    plan for products on ``device`` in ``dtype``, without timing anything: a second process then makes the
    backend choices the first one made. Every record is checked before any is installed."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    entries = {}
    for i, record in enumerate(records):
        missing = [k for k in ("rows", "N", "K", "choice") if k not in record]
        if missing:
            raise ValueError(f"gemm plan record {i} lacks {missing}: want tune()'s records "
                             f"({{'rows', 'N', 'K', 'bias', 'choice', ...}}), got {dict(record)}")
        rows, choice = int(record["rows"]), record["choice"]
        if rows <= 0 or not available(choice, rows):  # an unknown backend raises in available()
            raise ValueError(f"gemm plan record {i}: backend {choice!r} cannot run {rows} rows")
        N, K, bias = record_shape(record)
        key = (str(device), dtype, rows, int(N), int(K), bias)
        rank = _lt_rank(choice)
        gemm = _lt_gemm_for(key) if rank is not None else None
        if gemm is not None:  # on CUDA: the same candidate must exist here (ranks move between cuBLAS versions, GPUs)
            here = _lt_config(gemm, rank) if rank < len(gemm) else None
            if here is None or ("lt_config" in record and dict(record["lt_config"]) != here):
                raise ValueError(f"gemm plan record {i}: {choice!r} {record.get('lt_config', '')} at {rows} × {K} · "
                                 f"[{N}, {K}] is not cuBLASLt's candidate of that rank here ({here}; {len(gemm)} "
                                 "offered): another cuBLAS version or GPU made this plan; tune again")
        entries[key] = choice
    for key, choice in entries.items():
        _choose(key, choice)
