"""The contract between the decoder and a model adapter (core imports no model)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from fastdllm.core.kv_store import KVStore


@runtime_checkable
class DiffusionModel(Protocol):
    mask_token_id: int
    pad_token_id: int
    end_token_ids: tuple[int, ...]  # tokens that end an answer (EOS, end of turn)
    logit_shift: int  # 1 if token i is predicted from hidden state i-1 (Dream), else 0
    max_sequence_length: int
    # optional: ``vocab_size: int`` — when present, prompt ids outside [0, vocab_size) are rejected up front

    @property
    def device(self) -> torch.device: ...

    def new_kv_store(self, batch: int, length: int) -> KVStore: ...

    def forward_step(
        self,
        canvas: torch.Tensor,  # [B, L] long
        start: int,
        end: int,  # recompute positions [start, end)
        store: object,  # KVStore, or NoStore for a full forward without cache
        position_ids: torch.Tensor,  # [B, L] long
        key_mask: torch.Tensor | None,  # [B, L] bool, True = real token; None = no padding
        logits_start: int,
        logits_end: int,  # return logits predicting the tokens at canvas positions [logits_start, logits_end)
        # optional keyword ``extra``: a [n] long tensor of positions outside [start, end) to recompute too;
        # the decoder passes it only for plans that have one (Plan.block_and), so a model without it still
        # serves every range plan
    ) -> torch.Tensor: ...  # [B, logits_end - logits_start, V]


def left_pad(prompts, attention_mask, pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids ``[B, P]`` left-padded with ``pad_token_id`` and the bool mask of real tokens ``[B, P]``.

    Accepts a LongTensor ``[B, P]`` or ``[P]`` (with an optional 0/1 ``attention_mask``) or a list of
    token-id lists / 1-D tensors of different lengths.
    """
    if isinstance(prompts, torch.Tensor):
        ids = prompts.unsqueeze(0) if prompts.dim() == 1 else prompts
        if ids.dim() != 2:
            raise ValueError(f"prompt_ids must be [B, P] or [P], got shape {tuple(prompts.shape)}")
        mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if attention_mask is not None and attention_mask.dim() == 1:
            mask = mask.unsqueeze(0)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {tuple(mask.shape)} != prompt_ids shape {tuple(ids.shape)}")
        not_left = (mask[:, :-1] & ~mask[:, 1:]).any(-1).nonzero().flatten().tolist()
        if not_left:
            raise ValueError(f"attention_mask rows {not_left} are not left-padded (a real token before a pad); "
                             "pad on the left (tokenizer.padding_side='left'), or pass a list of id lists")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"prompt_ids must hold integer token ids, got dtype {ids.dtype}; pass a LongTensor "
                             "(e.g. from model.encode)")
        return ids.to(device=device, dtype=torch.long), mask.to(device)
    if attention_mask is not None:
        raise ValueError("attention_mask is only taken with a prompt tensor; lists are padded here")
    text = _first_text(prompts)
    if text is not None:
        raise TypeError(f"prompt_ids holds text ({text!r}), not token ids; encode it first: "
                        "ids, mask = model.encode(prompts), then generate(model, ids, attention_mask=mask)")
    rows = [torch.as_tensor(p).reshape(-1) for p in prompts]
    bad = [i for i, r in enumerate(rows) if r.numel() and (r.is_floating_point() or r.dtype == torch.bool)]
    if bad:
        raise ValueError(f"prompts {bad} hold non-integer values; token ids must be integers (use model.encode)")
    rows = [r.long() for r in rows]
    if not rows:
        raise ValueError("no prompts given: pass at least one prompt")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)  # [B, P]
    mask = torch.zeros((len(rows), width), dtype=torch.bool)  # [B, P]
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r):] = r
            mask[i, width - len(r):] = True
    return ids.to(device), mask.to(device)


def _first_text(prompts) -> str | bytes | None:
    """The first string among prompts given as text (a string, a list of strings, lists holding strings)."""
    if isinstance(prompts, (str, bytes)):
        return prompts
    for p in prompts:
        if isinstance(p, (str, bytes)):
            return p
        if isinstance(p, (list, tuple)):
            for t in p:
                if isinstance(t, (str, bytes)):
                    return t
    return None
