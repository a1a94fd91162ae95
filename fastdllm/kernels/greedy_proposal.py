"""The greedy candidate and its probability in one pass over the logits (a Triton kernel, CUDA).

At temperature 0 with the ``prob`` confidence (Fast-dLLM's and LLaDA's default), a proposal needs, per
block position, the argmax token and ``softmax(logits)[argmax] = 1 / Σ_v exp(logit_v − max)``. In PyTorch
that is a float32 copy of the ``[B, block, V]`` logits, an argmax, a log-sum-exp (several reductions) and a
gather: about five passes over a 126k-wide vocabulary per row (at batch 16, ~1 GB of traffic per step).
Here each program reads one vocabulary chunk of one row once, in the logits' own dtype, and keeps per
lane a running max, its first index and a running sum of exponentials; a second kernel merges the chunks.

Same mathematics as ``fastdllm.core.proposal.propose`` (argmax with the first index on ties, as
``torch.argmax``); the confidence rounds differently (a different summation order, ``1 / S`` instead of
``exp(max − logsumexp)``): within a few float32 ulps, tested on the CPU through Triton's interpreter.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import tl, triton

CHUNK = 8192  # vocabulary entries per program (126k-wide LLaDA rows: 16 programs per row)
BLOCK = 1024  # entries per inner iteration


def use_greedy_proposal(logits: torch.Tensor) -> bool:
    """Whether ``greedy_proposal`` serves these logits: Triton present, a CUDA floating tensor with unit
    stride over the vocabulary (on the CPU the PyTorch ops run)."""
    return (triton is not None and logits.is_cuda and logits.is_floating_point() and logits.dim() >= 2
            and logits.stride(-1) == 1 and logits.shape[-1] > 0
            and logits.numel() < 2 ** 31)  # the kernel's offsets are 32-bit


if triton is not None:

    @triton.jit
    def _chunk_kernel(LOGITS, PART_MAX, PART_ARG, PART_SUM, s_row, V, n_chunks,
                      CHUNK: tl.constexpr, BLOCK: tl.constexpr):
        """Program (chunk, row): max, its first index and Σ exp(logit − max) over the chunk's entries."""
        chunk, row = tl.program_id(0), tl.program_id(1)
        lanes = tl.arange(0, BLOCK)  # [BLOCK]
        best = tl.full([BLOCK], -float("inf"), tl.float32)  # per-lane running max
        arg = tl.zeros([BLOCK], tl.int32)  # per-lane index of its first max
        total = tl.zeros([BLOCK], tl.float32)  # per-lane Σ exp(x − best)
        for offset in range(0, CHUNK, BLOCK):
            cols = chunk * CHUNK + offset + lanes  # [BLOCK]; a lane sees increasing columns
            x = tl.load(LOGITS + row * s_row + cols, mask=cols < V, other=-float("inf")).to(tl.float32)
            new = tl.maximum(best, x)
            finite = new != -float("inf")  # a lane that has seen only -inf keeps a zero sum (no inf - inf)
            total = tl.where(finite, total * tl.exp(best - new) + tl.exp(x - new), 0.0)
            arg = tl.where(x > best, cols, arg)  # strict: an equal later value keeps the earlier index
            best = new
        top = tl.max(best, 0)
        first = tl.min(tl.where(best == top, arg, 2147483647), 0)  # the lowest index among the lanes at the max
        lane_sum = tl.where(best != -float("inf"), total * tl.exp(best - top), 0.0)
        slot = row * n_chunks + chunk
        tl.store(PART_MAX + slot, top)
        tl.store(PART_ARG + slot, first)
        tl.store(PART_SUM + slot, tl.sum(lane_sum, 0))

    @triton.jit
    def _merge_kernel(PART_MAX, PART_ARG, PART_SUM, TOKENS, CONFIDENCE, n_chunks, CHUNKS: tl.constexpr):
        """Program (row): the row's argmax (first index) and 1 / Σ_v exp(logit_v − max) from its chunks."""
        row = tl.program_id(0)
        chunks = tl.arange(0, CHUNKS)
        inside = chunks < n_chunks
        slot = row * n_chunks + chunks
        top = tl.load(PART_MAX + slot, mask=inside, other=-float("inf"))  # [CHUNKS]
        best = tl.max(top, 0)
        arg = tl.load(PART_ARG + slot, mask=inside, other=2147483647)
        first = tl.min(tl.where(top == best, arg, 2147483647), 0)  # chunks hold increasing columns
        part = tl.load(PART_SUM + slot, mask=inside, other=0.0)
        total = tl.sum(tl.where(top != -float("inf"), part * tl.exp(top - best), 0.0), 0)
        tl.store(TOKENS + row, first.to(tl.int64))
        tl.store(CONFIDENCE + row, 1.0 / total)


def greedy_proposal(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits.argmax(-1), softmax(logits.float(), -1).gather(argmax))`` for logits ``[..., V]`` (unit stride
    over V): tokens ``[...]`` int64 and confidence ``[...]`` float32, without a float32 copy of the logits."""
    if triton is None:
        raise RuntimeError("greedy_proposal needs Triton (pip install triton); propose() falls back to PyTorch")
    V = logits.shape[-1]
    if logits.stride(-1) != 1 or V == 0:
        raise ValueError(f"greedy_proposal: logits {tuple(logits.shape)} with strides {logits.stride()}: want "
                         "a non-empty last dimension of unit stride")
    flat = logits.reshape(-1, V)  # [R, V] (a view for the decoder's block logits)
    R = flat.shape[0]
    n_chunks = triton.cdiv(V, CHUNK)
    part_max = torch.empty(R, n_chunks, dtype=torch.float32, device=logits.device)  # [R, chunks]
    part_arg = torch.empty(R, n_chunks, dtype=torch.int32, device=logits.device)  # [R, chunks]
    part_sum = torch.empty(R, n_chunks, dtype=torch.float32, device=logits.device)  # [R, chunks]
    tokens = torch.empty(R, dtype=torch.long, device=logits.device)  # [R]
    confidence = torch.empty(R, dtype=torch.float32, device=logits.device)  # [R]
    if R:
        block = min(BLOCK, triton.next_power_of_2(V))
        _chunk_kernel[(n_chunks, R)](flat, part_max, part_arg, part_sum, flat.stride(0), V, n_chunks,
                                     CHUNK=min(CHUNK, triton.cdiv(V, block) * block), BLOCK=block)
        _merge_kernel[(R,)](part_max, part_arg, part_sum, tokens, confidence, n_chunks,
                            CHUNKS=triton.next_power_of_2(n_chunks))
    return tokens.view(logits.shape[:-1]), confidence.view(logits.shape[:-1])
