"""What ``generate`` returns: the canvas and the statistics the paper reports, per row and per batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class GenerationResult:
    sequences: torch.Tensor  # [B, P+G] long: prompt (left-padded) then generated tokens
    prompt_length: int  # P
    nfe: int  # forwards of the batch
    refresh_forwards: int  # full-canvas forwards among them
    nfe_per_row: torch.Tensor  # [B] long: forwards while the row still had masks in the current block
    refresh_per_row: torch.Tensor  # [B] long: full-canvas (refresh) forwards among the row's forwards
    first_end: torch.Tensor  # [B] long: index in the generated region of the first end token (G if none)
    answer_nfe: torch.Tensor  # [B] long: forwards until the last token up to the first end token was committed
    commit_forward: torch.Tensor  # [B, G] long: the row's forward (1-based) that committed each position; 0 = filled at stop
    forced_commits: int  # rows the decoder forced to commit one token (a policy that broke progress)
    bound_flushes: int  # rows whose block hit max_steps_per_block and had its remaining masks committed at once
    wall_time_s: float
    blocks_decoded: int
    decode_text: Callable[[torch.Tensor], list[str]] | None = field(default=None, repr=False)
    recomputed_positions: int = 0  # canvas positions recomputed, summed over the batch's forwards (per row)

    @property
    def generated(self) -> torch.Tensor:  # [B, G]
        return self.sequences[:, self.prompt_length:]

    @property
    def gen_length(self) -> int:
        return self.sequences.shape[1] - self.prompt_length

    @property
    def cached_forwards(self) -> int:
        return self.nfe - self.refresh_forwards

    @property
    def cached_per_row(self) -> torch.Tensor:
        """[B] long: the row's forwards that reused the KV store."""
        return self.nfe_per_row - self.refresh_per_row

    @property
    def decoded_positions(self) -> torch.Tensor:
        """[B] long: generated positions committed by a forward (not filled with pad at an early stop)."""
        return (self.commit_forward > 0).sum(-1)

    @property
    def tokens_per_forward(self) -> torch.Tensor:
        """[B] float: positions committed / the row's forwards (TPF over the decoded canvas)."""
        return self.decoded_positions.float() / self.nfe_per_row.clamp_min(1).float()

    @property
    def answer_tokens(self) -> torch.Tensor:
        """[B] long: tokens before the first end token."""
        return self.first_end

    @property
    def answer_tokens_per_forward(self) -> torch.Tensor:
        """[B] float: answer tokens / forwards spent until the answer (and its end token) was committed."""
        return self.first_end.float() / self.answer_nfe.clamp_min(1).float()

    @property
    def tokens_per_second(self) -> float:
        """Canvas tokens/s: generated positions of the whole batch / wall time."""
        return self.sequences.shape[0] * self.gen_length / max(self.wall_time_s, 1e-9)

    @property
    def useful_tokens_per_second(self) -> float:
        """Tokens before the first end token, summed over the batch, / wall time."""
        return float(self.first_end.sum()) / max(self.wall_time_s, 1e-9)

    @property
    def texts(self) -> list[str]:
        if self.decode_text is None:
            raise RuntimeError("this model has no tokenizer; decode result.generated yourself")
        return self.decode_text(self.generated)

    def summary(self) -> dict[str, float]:
        return {
            "nfe": self.nfe,
            "nfe_per_row_mean": float(self.nfe_per_row.float().mean()),
            "refresh_forwards": self.refresh_forwards,
            "cached_forwards": self.cached_forwards,
            "tpf_canvas": float(self.tokens_per_forward.mean()),
            "tpf_answer": float(self.answer_tokens_per_forward.mean()),
            "answer_tokens_mean": float(self.first_end.float().mean()),
            "wall_time_s": self.wall_time_s,
            "tokens_per_s_canvas": self.tokens_per_second,
            "tokens_per_s_useful": self.useful_tokens_per_second,
            "forced_commits": self.forced_commits,
            "bound_flushes": self.bound_flushes,
        }
