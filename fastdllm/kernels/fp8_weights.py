"""Weight-only fp8 (e4m3) for few-row products: half the bytes of a bf16 weight read.

A batch-1 cached step is a weight read (``skinny_matmul``): storing a weight in ``float8_e4m3fn`` with one fp32
scale per output row halves the bytes the step must read, and so its floor. ``quantize_rows`` makes that copy
(scale = row max |w| / 448, e4m3's largest finite value); ``fp8_linear`` multiplies few rows of x (bf16 or fp16)
by it with the few-row Triton kernel, which widens each weight tile to x's dtype in registers, accumulates in
fp32 and applies the row scales in its epilogue: ``x · (w8 · scale)ᵀ``, the product with the dequantized
weight (``dequantize_rows``), up to summation order.

A model uses it through ``DiffusionLM.use_fp8_weights()``: the wide weights (at least ``MIN_COLUMNS`` output
columns: LLaDA's fused q/k/v, the gate/up projections, the LM heads) get an fp8 copy next to their bf16
one, registered here (``register``); ``linear`` sends products of at most ``MAX_ROWS`` rows by a registered
weight to the fp8 kernel (on the CPU, and for dtypes the kernel does not take, to ``F.linear`` with the
dequantized weight: the same numbers, so CPU tests and accuracy runs see what the GPU computes) and every
other product to ``skinny_matmul.linear``. Refreshes and long windows keep the bf16 weights (cuBLAS), so
the cost is +50 % memory for those matrices. Measured: ``experiments/bench_kernels.py --fp8`` (kernels),
``experiments/bench_gpu.py --modes fp8`` (decodes); what the rounding costs a trained model:
``experiments/fp8_weight_accuracy.py``.
"""

from __future__ import annotations

import weakref

import torch

from fastdllm.kernels import gemm_plan, skinny_matmul, triton
from fastdllm.kernels.skinny_matmul import MAX_ROWS, MIN_COLUMNS, ONE_TILE_ROWS, _launch

E4M3_MAX = 448.0  # the largest finite float8_e4m3fn
FP8_CONFIG = (64, 256, 3, 4)  # (BLOCK_N, BLOCK_K, num_stages, num_warps): a tile of 64 × 256 fp8 = 16 KB, as bf16's 64 × 128


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` ``[N, K]`` as (``float8_e4m3fn`` ``[N, K]``, fp32 scale ``[N]``): each row divided by its max |w| / 448
    (rows of zeros get scale 1e-12 / 448: they stay zero) and rounded to nearest e4m3."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_rows takes a matrix [N, K], got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / E4M3_MAX  # [N]
    return (w / scale[:, None]).to(torch.float8_e4m3fn), scale


def dequantize_rows(w8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``w8 · scale`` back in ``dtype``: ``[N, K]``."""
    return (w8.float() * scale[:, None]).to(dtype)


def fp8_linear(x: torch.Tensor, w8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
               config=FP8_CONFIG, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``F.linear(x, dequantize_rows(w8, scale), bias)`` for x ``[..., K]`` (bf16/fp16, at most ``ONE_TILE_ROWS``
    rows, or any number with a BLOCK_M in ``config``) through the few-row Triton kernel: ``[..., N]`` in
    ``out_dtype`` (x's dtype by default), rounded once from the fp32 accumulator."""
    if triton is None:
        raise RuntimeError("fp8_linear needs Triton (pip install triton)")
    K, N = x.shape[-1], w8.shape[0]
    if w8.dtype != torch.float8_e4m3fn or w8.shape != (N, K) or scale.shape != (N,) or scale.dtype != torch.float32:
        raise ValueError(f"fp8_linear: x {tuple(x.shape)}, w8 {w8.dtype} {tuple(w8.shape)}, scale {scale.dtype} "
                         f"{tuple(scale.shape)}: want w8 float8_e4m3fn [N, K] and scale float32 [N] (quantize_rows)")
    if x.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"fp8_linear: x is {x.dtype}; want bfloat16 or float16")
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if x2.shape[0] > ONE_TILE_ROWS and len(config) < 5:
        raise ValueError(f"fp8_linear takes at most {ONE_TILE_ROWS} rows without a BLOCK_M in its config, got "
                         f"{x2.shape[0]}")
    return _launch(x2, w8, bias, config, scale, out_dtype).view(*x.shape[:-1], N)


MIN_FP8_COLUMNS = MIN_COLUMNS  # weights with fewer output columns keep bf16 only: at 32 rows LLaDA's output and
# down projections ran no faster in fp8 (15.3 / 39.2 µs against 14.7 / 40.9, round5_dev/kernels_fp8_*.json)

FP16_INPUT_LIMIT = 32768.0  # a proven bound on |x| at most this (half of fp16's largest finite 65504) lets a
# product's bf16 activations go to the kernel in fp16: e4m3 widens to fp16 in one conversion where bf16 takes two, and
# the products are the same wherever x's entries are normal fp16 numbers (|x| >= 2^-14; smaller ones round to
# fp16's subnormal step, 2^-24), as the weight is exact in fp16 and the accumulation is fp32. On an H200 that took LLaDA-8B's
# gate/up product at 32 rows from 42.3 to 32.2 µs and its LM head from 182.5 to 150.3 (results/speed/round17_dev/)

# ---- the registry of fp8 copies: weight (address, shape, strides, dtype, device) -> (token, w8, scale, version,
# fp16_inputs) ----
# An entry lives as long as the tensor it was registered for (a finaliser drops it, so a discarded model frees its
# copies and its address cannot be mistaken for a later tensor's); the model keeps that tensor (``_fp8_weights``).
_REGISTRY: dict[tuple, tuple[object, torch.Tensor, torch.Tensor, int | None, bool]] = {}


def _key(weight: torch.Tensor) -> tuple:
    return weight.data_ptr(), tuple(weight.shape), weight.stride(), weight.dtype, weight.device


def _version(weight: torch.Tensor) -> int | None:
    try:
        return weight._version
    except RuntimeError:  # an inference-mode tensor keeps no version counter
        return None


def _drop(key: tuple, token: object) -> None:
    """Remove ``key``'s entry if it is still the one registered with ``token`` (not a later registration's)."""
    if key in _REGISTRY and _REGISTRY[key][0] is token:
        del _REGISTRY[key]


def register(weights, input_bounds=None) -> list[torch.Tensor]:
    """Make and register the fp8 copy of every weight ``[N, K]`` with ``N >= MIN_FP8_COLUMNS``; returns those weights.
    ``input_bounds`` (parallel to ``weights``; None for none): a proven bound on |x| of each weight's inputs, or
    None where there is none; a weight whose bound is at most ``FP16_INPUT_LIMIT`` takes its bf16 inputs in fp16
    (``takes_fp16_inputs``). Each entry lasts while its weight tensor object does: keep the returned tensors."""
    done = []
    weights = list(weights)
    bounds = [None] * len(weights) if input_bounds is None else list(input_bounds)
    if len(bounds) != len(weights):
        raise ValueError(f"register: {len(bounds)} input bounds for {len(weights)} weights; give one per weight")
    for weight, bound in zip(weights, bounds):
        if weight.dim() == 2 and weight.shape[0] >= MIN_FP8_COLUMNS and weight.device.type != "meta":
            w8, scale = quantize_rows(weight)
            key, token = _key(weight), object()
            _REGISTRY[key] = (token, w8, scale, _version(weight), bound is not None and bound <= FP16_INPUT_LIMIT)
            weakref.finalize(weight, _drop, key, token)
            done.append(weight)
    return done


def registered(weight: torch.Tensor) -> bool:
    return _key(weight) in _REGISTRY


def unregister(weights) -> None:
    for weight in weights:
        _REGISTRY.pop(_key(weight), None)


def lookup(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fp8 copy (w8, scale) registered for ``weight``, or None. Raises if the weight changed in place since."""
    entry = _REGISTRY.get(_key(weight))
    if entry is None:
        return None
    _, w8, scale, version, _ = entry
    if version is not None and _version(weight) not in (None, version):
        raise RuntimeError(f"a weight {tuple(weight.shape)} changed in place after its fp8 copy was made; call "
                           "model.use_fp8_weights() again after changing weights")
    return w8, scale


def takes_fp16_inputs(weight: torch.Tensor) -> bool:
    """Whether ``weight``'s registered copy takes bf16 inputs in fp16 (its inputs' bound, ``register``)."""
    entry = _REGISTRY.get(_key(weight))
    return entry is not None and entry[4]


@torch.library.custom_op("fastdllm::fp8_or_bf16_linear", mutates_args=())
def _fp8_or_bf16_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The product by ``weight``'s fp8 copy, in ``weight``'s dtype. ``x`` comes in the weight's dtype, or in fp16
    from a caller that converted it (``linear_fp16x``: every copy's inputs are bounded)."""
    hit = lookup(weight)
    if hit is None:  # a wide weight of a model without fp8 copies
        return skinny_matmul.linear(x.to(weight.dtype), weight, bias).clone()  # fresh (an op's output may not alias)
    w8, scale = hit
    if x.is_cuda and triton is not None and x.dtype in (torch.bfloat16, torch.float16):
        # bf16 x is exact in fp16 from 2^-14 up to the proven bound, far below fp16's largest; smaller values keep
        # fp16's subnormal step, 2^-24
        if x.dtype == torch.bfloat16 and takes_fp16_inputs(weight):
            x = x.to(torch.float16)
        return fp8_linear(x, w8, scale, bias, out_dtype=weight.dtype)
    x = x.to(weight.dtype)  # the CPU: the dequantized copy in the model's dtype (bf16 from fp16 is exact here)
    return torch.nn.functional.linear(x, dequantize_rows(w8, scale, x.dtype), bias)


@_fp8_or_bf16_linear.register_fake
def _(x, weight, bias):
    return x.new_empty(*x.shape[:-1], weight.shape[0], dtype=weight.dtype)


def _serves(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a product goes to the fp8 op: at most ``MAX_ROWS`` rows by a weight of ``MIN_FP8_COLUMNS`` or more."""
    rows = x.numel() // max(x.shape[-1], 1)
    return 0 < rows <= MAX_ROWS and weight.shape[0] >= MIN_FP8_COLUMNS


def _fp16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16) if x.is_cuda and x.dtype == torch.bfloat16 else x


def _linear_for(tuned: bool, fp16x: bool):
    """``F.linear`` for a model with fp8 copies: products of at most ``MAX_ROWS`` rows by a weight of at least
    ``MIN_FP8_COLUMNS`` output columns go through an opaque op that finds the weight's fp8 copy at run time (by
    address); every other product through ``skinny_matmul.linear``, or with ``tuned`` by the tuned plan
    (``gemm_plan.linear``). With ``fp16x`` (every copy of the model takes fp16 inputs, ``all_take_fp16_inputs``)
    bf16 x is converted before the op, in the caller's code, where ``torch.compile`` fuses the conversion into the
    kernel that makes x (the RMSNorm's); without it the op converts x for the copies that take fp16."""

    def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if _serves(x, weight):
            return _fp8_or_bf16_linear(_fp16(x) if fp16x else x, weight, bias)
        if tuned:
            return gemm_plan.linear(x, weight, bias)
        return skinny_matmul.linear(x, weight, bias)

    return linear


# one function per choice, made once (``torch.compile``'d callers are compiled per function object)
linear, linear_tuned = _linear_for(False, False), _linear_for(True, False)
linear_fp16x, linear_tuned_fp16x = _linear_for(False, True), _linear_for(True, True)


def all_take_fp16_inputs(weights) -> bool:
    """Whether every registered copy among ``weights`` takes fp16 inputs (and there is one): a model's fp8
    products can then convert x before the op (``linear_fp16x``)."""
    registered_weights = [w for w in weights if registered(w)]
    return bool(registered_weights) and all(takes_fp16_inputs(w) for w in registered_weights)
