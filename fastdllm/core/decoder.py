"""The decoding loop: blocks left to right; inside a block, forward → propose → select → commit.

Fast-dLLM (arXiv 2505.22618), Algorithm 1: a cache policy picks which positions each forward
recomputes (the rest come from the KV store), an unmask policy picks which still-masked
positions of the current block to commit. Every block finishes within ``steps_bound`` forwards:
each forward commits at least one token in every row that still has masks, and the last allowed
forward commits all of them (a bound below ``block_length`` is then a hard cap, counted in
``bound_flushes``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from fastdllm.core.commit import Tallies, commit_step
from fastdllm.core.config import DecodeConfig, decode_config
from fastdllm.core.kv_store import NoStore
from fastdllm.core.model_api import DiffusionModel, left_pad
from fastdllm.core.policy import CachePolicy, UnmaskPolicy
from fastdllm.core.proposal import Proposal
from fastdllm.core.result import GenerationResult
from fastdllm.core.step import Layout, Observation, Plan, Step


class StepEvent:
    """What a per-step callback sees (after the commit). Tensors are live views: copy to keep them."""

    __slots__ = ("step", "plan", "canvas", "commit", "proposal")

    def __init__(self, step: Step, plan: Plan, canvas: torch.Tensor, commit: torch.Tensor, proposal: Proposal):
        self.step, self.plan, self.canvas, self.commit, self.proposal = step, plan, canvas, commit, proposal


Callback = Callable[[StepEvent], Any]


class DiffusionDecoder:
    """Decodes batches of prompts with one model, one cache policy and one unmask policy.

    ``DiffusionDecoder(model, cache="dual", unmask="threshold", gen_length=256, block_length=32)``;
    ``cache``/``unmask`` take a registered name, a ``{"name": ..., **fields}`` dict, a config or an instance.
    """

    def __init__(self, model: DiffusionModel, config: DecodeConfig | None = None, **options: Any) -> None:
        _check_model(model)
        if config is None:  # the checkpoint's stored settings (fastdllm.json) are the defaults; arguments win
            config = decode_config(**{**dict(getattr(model, "decode_defaults", None) or {}), **options})
        elif options:
            config = decode_config(**{**config.model_dump(), **options})
        self.model = model
        self.config = config
        self.cache, self.unmask = self._policies(options)
        self._buffers: tuple = ()  # (shape key, canvas, real, position_ids, store), kept across calls

    def _policies(self, options: dict[str, Any]) -> tuple[CachePolicy, UnmaskPolicy]:
        # keep instances the user passed (they may carry state, overridden methods, or no registered name)
        cache, unmask = options.get("cache"), options.get("unmask")
        return (cache if isinstance(cache, CachePolicy) else self.config.cache_policy(),
                unmask if isinstance(unmask, UnmaskPolicy) else self.config.unmask_policy())

    @torch.inference_mode()
    def generate(self, prompt_ids, attention_mask: torch.Tensor | None = None,
                 callbacks: Sequence[Callback] = ()) -> GenerationResult:
        model, cfg = self.model, self.config
        prompt, prompt_mask = left_pad(prompt_ids, attention_mask, model.pad_token_id, model.device)
        if cfg.pad_prompt_to_multiple and prompt.shape[1] % cfg.pad_prompt_to_multiple:
            extra = cfg.pad_prompt_to_multiple - prompt.shape[1] % cfg.pad_prompt_to_multiple
            prompt = torch.nn.functional.pad(prompt, (extra, 0), value=model.pad_token_id)  # [B, P + extra]
            prompt_mask = torch.nn.functional.pad(prompt_mask, (extra, 0), value=False)
        layout = Layout(prompt.shape[1], cfg.gen_length, cfg.block_length, model.logit_shift)
        self._check_inputs(prompt, prompt_mask, layout)
        batch, P, G, L = prompt.shape[0], layout.prompt_length, layout.gen_length, layout.canvas_length
        device = prompt.device

        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        guided = cfg.cfg_scale > 0  # classifier-free guidance: rows [B, 2B) are the unconditional copies
        copies = 2 if guided else 1
        canvas, real, position_ids, store = self._static_buffers(batch * copies, L, device)
        canvas[:batch, :P].copy_(prompt)
        if guided:  # LLaDA's unconditional input: the prompt's real tokens replaced by the mask token
            canvas[batch:, :P].copy_(prompt.masked_fill(prompt_mask, model.mask_token_id))
        canvas[:, P:].fill_(model.mask_token_id)
        real[:, :P].copy_(prompt_mask.repeat(copies, 1))
        real[:, P:].fill_(True)
        torch.sub(real.long().cumsum(-1), 1, out=position_ids).clamp_min_(0)
        key_mask = None if bool(prompt_mask.all()) else real
        rows = canvas[:batch]  # [B, L] view: the conditional rows, the ones returned

        tallies = Tallies.zeros(batch, G, device)  # per-row forwards, refreshes, commit stamps; forced, flushes
        nfe = refreshes = recomputed = blocks_done = 0
        end_ids = torch.tensor(model.end_token_ids, device=device)  # [E]
        self.cache.begin(layout)

        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for block in range(layout.num_blocks):
            start, end = layout.block_bounds(block)
            for index in range(cfg.steps_bound):
                masked = rows[:, start:end] == model.mask_token_id  # [B, block]
                if index > 0 and not bool(masked.any()):  # the one host sync per step
                    break
                step = Step(layout, block, index, cfg.temperature, generator, cfg.top_k, cfg.top_p)
                plan = self.cache.plan(step)
                _check_plan(plan, step, self.cache, first_forward=nfe == 0)
                extra = {} if plan.extra is None else {"extra": plan.extra}
                logits = model.forward_step(canvas, plan.start, plan.end, store, position_ids, key_mask,
                                            start, end, **extra)  # [B * copies, block, V]
                if guided:
                    cond, uncond = logits[:batch], logits[batch:]
                    logits = uncond + (cfg.cfg_scale + 1) * (cond - uncond)  # [B, block, V]
                logits[..., model.mask_token_id] = float("-inf")  # the mask token is never a candidate
                proposal = self.unmask.propose(logits, masked, step)
                chosen = _checked_selection(self.unmask.select(proposal, step), masked, self.unmask)
                commit = commit_step(chosen, proposal, masked, canvas, start, start - P, tallies, plan.refresh,
                                     last=index == cfg.steps_bound - 1)  # [B, block]
                drift = nfe > 0 and self.cache.wants_drift  # the first forward overwrote an empty store
                self.cache.observe(Observation(step, plan, proposal, commit, store.key_drift if drift else None,
                                               store.value_drift if drift else None))
                nfe += 1
                refreshes += plan.refresh
                recomputed += plan.size
                for callback in callbacks:
                    callback(StepEvent(step, plan, rows, commit, proposal))
            blocks_done += 1
            if cfg.stop_at_eos and bool(torch.isin(rows[:, P:end], end_ids).any(-1).all()):
                break
        rows[:, P:].masked_fill_(rows[:, P:] == model.mask_token_id, model.pad_token_id)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - started

        first_end, answer_nfe = _answer_stats(rows[:, P:], end_ids, tallies.commit_forward)
        decode = getattr(model, "decode", None)
        return GenerationResult(
            sequences=rows.clone(), prompt_length=P, nfe=nfe, refresh_forwards=refreshes,
            nfe_per_row=tallies.nfe_per_row, refresh_per_row=tallies.refresh_per_row, first_end=first_end,
            answer_nfe=answer_nfe, commit_forward=tallies.commit_forward, forced_commits=int(tallies.forced),
            bound_flushes=int(tallies.flushes),
            wall_time_s=wall, blocks_decoded=blocks_done, recomputed_positions=recomputed,
            decode_text=decode if getattr(model, "tokenizer", None) is not None else None,
        )

    def _static_buffers(self, batch: int, length: int, device: torch.device) -> tuple:
        """Canvas ``[B, L]`` long, real-token mask ``[B, L]`` bool, position ids ``[B, L]`` long and the KV
        store, reused by calls of the same shape (as gpt-fast's static caches): their addresses stay put,
        so CUDA graphs captured in one call replay in the next. Every call overwrites them in full;
        ``release()`` frees them."""
        key = (batch, length, device)
        if not self._buffers or self._buffers[0] != key:
            self._buffers = ()  # free the old ones first
            self._buffers = (
                key,
                torch.empty((batch, length), dtype=torch.long, device=device),  # canvas [B, L]
                torch.empty((batch, length), dtype=torch.bool, device=device),  # real [B, L]
                torch.empty((batch, length), dtype=torch.long, device=device),  # position ids [B, L]
                self._new_store(batch, length),
            )
        return self._buffers[1:]

    def _new_store(self, batch: int, length: int):
        if not self.cache.uses_store:
            return NoStore()
        store = self.model.new_kv_store(batch, length)
        if self.cache.wants_drift:
            if not hasattr(store, "track_drift"):
                raise RuntimeError(f"cache policy {self.cache.name!r} sets wants_drift, but the model's store "
                                   f"{type(store).__name__} cannot measure drift; use fastdllm.core.kv_store.KVStore")
            store.track_drift()
        return store

    def release(self) -> None:
        """Free the buffers kept between calls (the KV store: 2 · layers · B · L · H_kv · D elements)."""
        self._buffers = ()

    def _check_inputs(self, prompt: torch.Tensor, prompt_mask: torch.Tensor, layout: Layout) -> None:
        model = self.model
        vocab = getattr(model, "vocab_size", None)
        if vocab is not None:
            bad = (prompt_mask & ((prompt < 0) | (prompt >= vocab))).any(-1).nonzero().flatten().tolist()
            if bad:
                ids = prompt[bad[0]][prompt_mask[bad[0]]]
                value = int(ids[(ids < 0) | (ids >= vocab)][0])
                raise ValueError(f"prompt rows {bad} hold token ids outside the vocabulary [0, {vocab}) (row "
                                 f"{bad[0]}: {value}); encode the prompts with this model's tokenizer (model.encode)")
        empty = (~prompt_mask.any(-1)).nonzero().flatten().tolist()
        if prompt.shape[1] == 0 or empty:
            raise ValueError(f"empty prompt at batch rows {empty or 'all'}: every prompt needs at least one token")
        has_mask = ((prompt == model.mask_token_id) & prompt_mask).any(-1).nonzero().flatten().tolist()
        if has_mask:
            raise ValueError(f"prompt rows {has_mask} contain the mask token id {model.mask_token_id}; "
                             "remove it from the prompts (it marks positions still to be generated)")
        if layout.canvas_length > model.max_sequence_length:
            raise ValueError(
                f"prompt length {layout.prompt_length} + gen_length {layout.gen_length} = {layout.canvas_length} "
                f"exceeds the model's max_sequence_length {model.max_sequence_length}; shorten the prompt or gen_length")
        first = Step(layout, 0, 0)
        self.cache.check(first)
        self.unmask.check(first)


def _check_plan(plan: Plan, step: Step, cache: CachePolicy, first_forward: bool) -> None:
    """A plan must recompute (in its range) the hidden states the block's logits come from, say ``refresh``
    exactly when it covers the whole canvas, refresh an empty store, and cover the whole canvas when there
    is no store; extra positions must be a 1-D integer tensor. Host arithmetic only, no sync."""
    L = step.layout.canvas_length
    need_start, need_end = step.block_start - step.layout.logit_shift, step.block_end - step.layout.logit_shift
    def where() -> str:  # formatted only into an error message (a Plan repr per step costs)
        return f"cache policy {cache.name!r} planned {plan} at block {step.block}, step {step.index}"

    if not (0 <= plan.start <= need_start and need_end <= plan.end <= L):
        raise RuntimeError(f"{where()}: its range does not cover positions [{need_start}, {need_end}) that the "
                           "block's logits come from (build plans with Plan.block / Plan.from_block_to_end / "
                           "Plan.range, which add the logit shift)")
    whole = plan.start == 0 and plan.end == L and plan.extra is None
    if plan.refresh != whole:
        raise RuntimeError(f"{where()}: refresh must be True exactly for the whole canvas [0, {L}) without extra "
                           "positions (use Plan.full; a partial refresh such as Plan.generated has refresh=False)")
    if plan.extra is not None and (not isinstance(plan.extra, torch.Tensor) or plan.extra.dim() != 1
                                   or plan.extra.is_floating_point() or plan.extra.dtype == torch.bool):
        raise RuntimeError(f"{where()}: extra must be a 1-D integer tensor of canvas positions, got "
                           f"{getattr(plan.extra, 'dtype', type(plan.extra).__name__)} "
                           f"{tuple(getattr(plan.extra, 'shape', ()))}")
    if not plan.refresh and (first_forward or not cache.uses_store):
        raise RuntimeError(f"{where()}: " + ("the first forward must be a refresh (the KV store is empty)"
                                           if cache.uses_store else "a policy with uses_store = False must "
                                           "recompute the whole canvas; set uses_store = True to reuse a store"))


def _checked_selection(chosen: Any, masked: torch.Tensor, policy: UnmaskPolicy) -> torch.Tensor:
    """``select``'s result, checked from metadata only (no sync): a bool tensor of the block's shape."""
    if not isinstance(chosen, torch.Tensor) or chosen.dtype != torch.bool or chosen.shape != masked.shape:
        got = (f"a {chosen.dtype} tensor of shape {list(chosen.shape)}" if isinstance(chosen, torch.Tensor)
               else f"a {type(chosen).__name__}")
        raise TypeError(f"unmask policy {policy.name!r} ({type(policy).__qualname__}.select) returned {got}; it must "
                        f"return a bool tensor [B, block] = {list(masked.shape)} marking the positions to commit "
                        "(e.g. `proposal.confidence >= tau`, or `.bool()` on a 0/1 tensor)")
    return chosen


def _check_model(model: Any) -> None:
    """A model object, not a path or a name (a common first call: ``fastdllm.generate("path", ids)``)."""
    import os

    if isinstance(model, (str, os.PathLike)):
        raise TypeError(f"got {str(model)!r} ({type(model).__name__}) where a model is expected; load it first: "
                        f"model = fastdllm.load_model({str(model)!r}), then fastdllm.generate(model, ids)")
    missing = [a for a in ("mask_token_id", "pad_token_id", "forward_step") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"{type(model).__qualname__} is not a diffusion model (it lacks {', '.join(missing)}); pass a "
                        "model from fastdllm.load_model(...) or one implementing fastdllm.core.model_api.DiffusionModel")


def _answer_stats(generated: torch.Tensor, end_ids: torch.Tensor, commit_forward: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """First end-token index per row ([B], G if none) and the forwards until the answer was complete ([B])."""
    G = generated.shape[1]
    is_end = torch.isin(generated, end_ids)  # [B, G]
    first_end = torch.where(is_end.any(-1), is_end.long().argmax(-1), torch.full_like(is_end[:, 0], G, dtype=torch.long))
    upto = torch.arange(G, device=generated.device)[None, :] <= first_end[:, None]  # [B, G]
    answer_nfe = (commit_forward * upto).amax(-1)
    return first_end, answer_nfe


def generate(model: DiffusionModel, prompt_ids, *, attention_mask: torch.Tensor | None = None,
             callbacks: Sequence[Callback] = (), **options: Any) -> GenerationResult:
    """One-call decoding: ``fastdllm.generate(model, ids, cache="dual", unmask="threshold",
    gen_length=256, block_length=32)``. Options are ``DecodeConfig`` fields; those not given come from
    the checkpoint's stored settings (``model.decode_defaults``), then the ``DecodeConfig`` defaults."""
    return DiffusionDecoder(model, **options).generate(prompt_ids, attention_mask, callbacks)
