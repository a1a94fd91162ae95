"""Candidate tokens and their confidence for the positions of one block (shared by all unmask policies).

Candidate sampling (temperature, top-k, top-p) lives here and only here; confidence measures are
registered classes (``confidence_measures``), so a new measure is one file with no edit to core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from fastdllm.core.registry import Registry


@dataclass(frozen=True)
class Proposal:
    tokens: torch.Tensor  # [B, block] long: candidate token at each block position
    confidence: torch.Tensor  # [B, block] float32: higher = more certain
    masked: torch.Tensor  # [B, block] bool: still masked (the only positions that may be committed)

    def masked_confidence(self) -> torch.Tensor:
        """Confidence with committed positions at -inf, ``[B, block]``."""
        return self.confidence.masked_fill(~self.masked, float("-inf"))


class ConfidenceMeasure:
    """How certain the model is of a candidate: ``score(logits [B, block, V] float32, tokens [B, block])``
    → ``[B, block]`` float32, higher = more certain; thresholds assume values in [0, 1].

    Register a subclass with ``@confidence_measures.register("name")``; the ``confidence`` field of every
    unmask policy then accepts that name. Scores come from the untempered, unfiltered distribution
    ``softmax(logits)``, as in LLaDA and Fast-dLLM.
    """

    name: ClassVar[str] = "unregistered"

    @staticmethod
    def score(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


confidence_measures: Registry[ConfidenceMeasure] = Registry("confidence", base=ConfidenceMeasure)


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise in float64 (LLaDA notes low-precision Gumbel noise hurts quality)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp_min(1e-300)))


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits with everything outside the top-k tokens, then outside the top-p nucleus, at -inf.

    As Dream's ``top_k_logits``/``top_p_logits``: a token leaves the nucleus when the tokens more likely
    than it already hold more than ``top_p`` of the probability (the most likely token always stays).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # [B, block, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, block, V]
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)  # mass strictly before each
        drop_sorted = before > top_p  # the first token has mass 0 before it: always kept
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_candidates(logits: torch.Tensor, *, temperature: float = 0.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Candidate tokens ``[B, block]``: the argmax at temperature 0, else an exact Gumbel-max draw from
    ``softmax(filter_logits(logits / T))`` (the nucleus taken on the tempered distribution, as Dream does)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)  # [B, block]; top-k / top-p never change the argmax
    tempered = filter_logits(logits.double() / temperature, top_k, top_p)  # [B, block, V] float64
    return (tempered + gumbel_noise(logits.shape, generator, logits.device)).argmax(dim=-1)


def propose(
    logits: torch.Tensor,
    masked: torch.Tensor,
    *,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    confidence: str = "prob",
    top_k: int | None = None,
    top_p: float | None = None,
) -> Proposal:
    """Candidate tokens (``sample_candidates``) and their confidence (the registered measure ``confidence``:
    ``prob`` = p[token], ``margin`` = p[top1] - p[top2], ``neg_entropy`` = exp(-H(p)), ...).

    On CUDA with Triton, the greedy ``prob`` case (temperature 0, Fast-dLLM's default) runs one fused kernel
    (``fastdllm.kernels.greedy_proposal``): the same tokens, a confidence within float32 rounding."""
    if temperature <= 0 and confidence == "prob" and _fused_greedy(logits):
        from fastdllm.kernels.greedy_proposal import greedy_proposal

        tokens, score = greedy_proposal(logits)  # [B, block] each: one pass over the logits, no float32 copy
        return Proposal(tokens=tokens, confidence=score, masked=masked)
    logits = logits.float()  # [B, block, V]
    tokens = sample_candidates(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    score = confidence_measures.get(confidence).score(logits, tokens)  # [B, block]
    return Proposal(tokens=tokens, confidence=score, masked=masked)


def _fused_greedy(logits: torch.Tensor) -> bool:
    if not logits.is_cuda:  # the CPU (and CI) never imports the kernels
        return False
    from fastdllm.kernels.greedy_proposal import use_greedy_proposal

    return use_greedy_proposal(logits)
