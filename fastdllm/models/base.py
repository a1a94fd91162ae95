"""``DiffusionLM``: the network plus what the decoder needs to know about a family (token ids, logit shift).

A family adapter subclasses it, registers under a short name, and says how to read its HF
``config.json`` (``arch_from_hf``) and how its checkpoint keys map onto the network (``hf_key_map``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from fastdllm.core.kv_store import KVStore, NoStore
from fastdllm.core.registry import Registry
from fastdllm.models.transformer import ArchConfig, Transformer

model_adapters: Registry["DiffusionLM"] = Registry("model")


class DiffusionLM(nn.Module):
    """A masked diffusion LM over a KV store, built from a family's HF config dict."""

    logit_shift: ClassVar[int] = 0
    name: ClassVar[str] = "unregistered"

    def __init__(self, hf_config: dict[str, Any]) -> None:
        super().__init__()
        self.hf_config = dict(hf_config)
        self.arch = self.arch_from_hf(hf_config)
        self.net = Transformer(self.arch)
        self.mask_token_id, self.pad_token_id, self.end_token_ids = self.tokens_from_hf(hf_config)
        self.max_sequence_length = self.arch.max_sequence_length
        self.vocab_size = self.arch.vocab_size
        self.tokenizer = None  # set by the loader when the folder has tokenizer files
        self.cuda_graphs = None  # a CudaGraphSteps after use_cuda_graphs()

    # ---- family hooks -------------------------------------------------------------------
    @classmethod
    def arch_from_hf(cls, hf_config: dict[str, Any]) -> ArchConfig:
        raise NotImplementedError

    @classmethod
    def tokens_from_hf(cls, hf_config: dict[str, Any]) -> tuple[int, int, tuple[int, ...]]:
        """(mask id, pad id, end-token ids) from the config."""
        raise NotImplementedError

    @classmethod
    def reference_config(cls) -> dict[str, Any]:
        """The family's reference ``config.json`` (the full-size public checkpoint's), for ``fastdllm ls``."""
        return {}

    @classmethod
    def hf_key_map(cls, n_layers: int) -> dict[str, str]:
        """Checkpoint key → this module's ``state_dict`` key."""
        raise NotImplementedError

    # ---- the decoder contract (fastdllm.core.model_api.DiffusionModel) ----------------------
    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    def new_kv_store(self, batch: int, length: int) -> KVStore:
        a = self.arch
        return KVStore(a.n_layers, batch, a.n_kv_heads, length, a.head_dim, self.dtype, self.device)

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        """Recompute ``[start, end)`` and return logits ``[B, logits_end - logits_start, V]`` whose row j
        predicts the token at canvas position ``logits_start + j``. Replayed from a CUDA graph after
        ``use_cuda_graphs()`` (same kernels, same tokens, without the per-kernel launch cost)."""
        first = logits_start - self.logit_shift - start
        index = torch.arange(start, end, device=canvas.device)  # [n]
        rows = torch.arange(first, first + logits_end - logits_start, device=canvas.device)  # [m]
        run = self.cuda_graphs if self.cuda_graphs is not None and canvas.is_cuda else self.step_logits
        return run(canvas, start, index, store, position_ids, key_mask, rows)

    def step_logits(self, canvas, start, index, store, position_ids, key_mask, rows):
        """The forward of ``forward_step`` on device index tensors: recompute positions ``index`` ``[n]``
        (= ``start + arange(n)``) and apply the LM head to hidden rows ``rows`` ``[m]``: ``[B, m, V]``."""
        h = self.net.hidden(canvas, start, start + index.numel(), store, position_ids, key_mask, index)  # [B, n, d]
        return self.net.lm_head(h.index_select(1, rows))

    def use_cuda_graphs(self, enabled: bool = True) -> "DiffusionLM":
        """Replay each forward shape from a CUDA graph (gpt-fast's remedy for launch-bound decoding): one
        graph per (recomputed positions, logit rows) shape, captured at its first use in a ``generate``
        call. Tokens are unchanged; CPU forwards are unaffected."""
        from fastdllm.models.cuda_graphs import CudaGraphSteps

        self.cuda_graphs = CudaGraphSteps(self) if enabled else None
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-canvas forward without cache: logits ``[B, L, V]``, row i predicts the token at position i
        (for a shifted family, row 0 repeats row 1's source, as Dream's own code does)."""
        real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)  # [B, L]
        key_mask = None if bool(real.all()) else real
        L = input_ids.shape[1]
        logits = self.net.lm_head(self.net.hidden(input_ids, 0, L, NoStore(), position_ids, key_mask))  # [B, L, V]
        if self.logit_shift:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits

    # ---- text in, text out ----------------------------------------------------------------
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise RuntimeError(
                f"this {self.name} model has no tokenizer: the checkpoint folder lacks tokenizer files "
                "(tokenizer.json / tokenizer_config.json); pass token ids instead, or add the files")
        return self.tokenizer

    def encode(self, prompts: str | list[str], chat: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``[B, P]`` (left-padded) and attention mask ``[B, P]`` for text prompts."""
        tok = self._need_tokenizer()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("no prompts given: pass a prompt text or a list of them")
        not_text = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if not_text:
            raise ValueError(f"prompt rows {not_text} are not text (row {not_text[0]}: {prompts[not_text[0]]!r}); "
                             "encode takes strings; pass token ids to generate directly")
        empty = [i for i, p in enumerate(prompts) if not p.strip()]
        if empty:  # before the chat template, whose own tokens would hide the emptiness
            raise ValueError(f"empty prompt text at rows {empty}: every prompt needs some text to answer")
        if chat:
            if not getattr(tok, "chat_template", None):
                raise RuntimeError("the tokenizer has no chat template; call encode(..., chat=False)")
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                             tokenize=False) for p in prompts]
        else:
            texts = prompts
        rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        from fastdllm.core.model_api import left_pad

        return left_pad(rows, None, self.pad_token_id, self.device)

    def decode(self, generated, prompt_length: int = 0) -> list[str]:
        """Answer texts: each row cut at its first end token, special tokens stripped.

        ``generated``: the generated ids ``[B, G]`` (``result.generated``), a ``GenerationResult``, or whole
        sequences ``[B, P+G]`` with ``prompt_length=P`` (``result.prompt_length``).
        """
        tok = self._need_tokenizer()
        if hasattr(generated, "generated"):  # a GenerationResult
            generated = generated.generated
        generated = generated[:, prompt_length:]
        out = []
        end = set(self.end_token_ids)
        for row in generated.tolist():
            cut = next((i for i, t in enumerate(row) if t in end), len(row))
            out.append(tok.decode(row[:cut], skip_special_tokens=True))
        return out
