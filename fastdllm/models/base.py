"""``DiffusionLM``: the network plus what the decoder needs to know about a family (token ids, logit shift).

A family adapter subclasses it, registers under a short name (``@model_adapters.register("name")``),
declares the ``config.json`` it reads (``architectures``, ``model_types``: the loader finds the family
through them), says how to read that config (``arch_from_hf``, ``tokens_from_hf``), how its checkpoint
keys map onto the network (``hf_key_map``), and gives a tiny config for tests and benchmarks
(``tiny_config``). A third family is one such file.
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
    architectures: ClassVar[tuple[str, ...]] = ()  # HF config.json ``architectures`` entries of this family
    model_types: ClassVar[tuple[str, ...]] = ()  # ``model_type`` values (case-insensitive) besides the name

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
        self.decode_defaults: dict[str, Any] = {}  # stored decode settings (fastdllm.json), set by the loader

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

    @classmethod
    def tiny_config(cls, **overrides: Any) -> dict[str, Any]:
        """A tiny ``config.json`` of the family for tests and benchmarks: vocabulary 64, width 32, 2 layers,
        4 heads, mask id 63, EOS (= pad) 1, end of turn 2."""
        raise NotImplementedError

    @classmethod
    def matches(cls, hf_config: dict[str, Any]) -> bool:
        """Whether a ``config.json`` belongs to this family (its ``model_type`` or an ``architectures`` entry)."""
        model_type = str(hf_config.get("model_type") or "").lower()
        if model_type and model_type in {cls.name.lower(), *(t.lower() for t in cls.model_types)}:
            return True
        return any(arch in cls.architectures for arch in hf_config.get("architectures") or [])

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

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end, extra=None):
        """Recompute canvas positions ``[start, end)`` (plus ``extra``, an ``[n]`` long index tensor of positions
        outside that range, when given) and return logits ``[B, logits_end - logits_start, V]`` whose row j
        predicts the token at canvas position ``logits_start + j`` (its hidden state lies in ``[start, end)``).
        Replayed from a CUDA graph after ``use_cuda_graphs()`` (same kernels, same tokens, without the
        per-kernel launch cost)."""
        first, m = logits_start - self.logit_shift - start, logits_end - logits_start
        index = self._positions(start, end, canvas.device)  # [n]
        if extra is not None:
            index = torch.cat([index, extra.to(device=canvas.device, dtype=torch.long)])  # [n + n_extra]
        rows = self._positions(first, first + m, canvas.device)  # [m]
        self.sync_fp8()
        if self.cuda_graphs is not None and self.cuda_graphs.supports(canvas):
            window = None if extra is not None else (start, end, first, m)  # what index and rows hold
            return self.cuda_graphs(canvas, start, index, store, position_ids, key_mask, rows, window)
        return self.step_logits(canvas, start, index, store, position_ids, key_mask, rows)

    def _positions(self, lo: int, hi: int, device: torch.device) -> torch.Tensor:
        """``arange(lo, hi)`` on ``device``, made once per range (a decode asks for the same few windows at
        every step; read-only by every caller). At most 256 ranges are kept."""
        cache = self.__dict__.setdefault("_position_ranges", {})
        key = (lo, hi, device)
        if key not in cache:
            if len(cache) >= 256:
                cache.clear()
            cache[key] = torch.arange(lo, hi, device=device)  # [hi - lo]
        return cache[key]

    def step_logits(self, canvas, start, index, store, position_ids, key_mask, rows):
        """The forward of ``forward_step`` on device index tensors: recompute positions ``index`` ``[n]``
        (``start + arange(end - start)``, then any extra positions) and apply the LM head to hidden rows ``rows`` ``[m]``: ``[B, m, V]``."""
        h = self.net.hidden(canvas, start, start + index.numel(), store, position_ids, key_mask, index, rows)  # [B, m, d]
        if self.net.skinny or self.net.fp8:
            return self.net.linear()(h, self.net.lm_head.weight)  # [B, m, V]
        return self.net.lm_head(h)

    def use_cuda_graphs(self, enabled: bool = True, backend=None) -> "DiffusionLM":
        """Replay each forward shape from a CUDA graph (gpt-fast's remedy for launch-bound decoding): one
        graph per (recomputed positions, logit rows) shape, captured at its first use in a ``generate``
        call. Tokens are unchanged; CPU forwards are unaffected. ``backend`` replaces the capture (tests
        pass a recording fake that runs on the CPU; see ``fastdllm.models.cuda_graphs``)."""
        from fastdllm.models.cuda_graphs import CudaGraphSteps

        self.cuda_graphs = CudaGraphSteps(self, backend) if enabled else None
        return self

    def use_compile(self, enabled: bool = True, fuse: bool = True) -> "DiffusionLM":
        """Run the per-layer work around the attention (norms, RoPE, SiLU-gate, residuals, projections)
        through ``torch.compile`` on CUDA, fusing its elementwise kernels; combine with ``use_cuda_graphs``.
        With ``fuse`` (the default) enabling also calls ``fuse_projections()``; disabling leaves the
        projections as they are. The first forward of each new shape compiles (seconds). CPU forwards stay
        eager. Fused kernels round differently from the eager ones (bf16), so tokens can differ where two
        candidates tie within rounding; ``experiments/bench_gpu.py`` measures the agreement."""
        if self.net.compiled != enabled:
            self.net.compiled = enabled
            self._recapture()
        if enabled and fuse:
            self.fuse_projections()
        return self

    def use_split_kv_attention(self, enabled: bool = True, pack_gqa: bool = True) -> "DiffusionLM":
        """Attend with the split-KV Triton kernel (``fastdllm.kernels.split_kv_attention``) on CUDA wherever a
        forward recomputes at most 128 positions per row (dual-cache steps, the later prefix-cache windows) at
        small batch, and for grouped-query heads packed (``pack_gqa``) in dual-cache steps at any batch: the key
        range is cut into slices so that every SM has work, then the slices are combined exactly (one slice where
        the grid alone fills the GPU). Rounds differently
        from SDPA's kernels (bf16), so tokens can differ where two candidates tie within rounding, as with
        ``use_compile``. Needs Triton; without it (or on the CPU) SDPA runs, as it does for longer windows.
        ``pack_gqa`` (grouped-query families: Dream): each program takes the query heads that share a
        key/value head, stacked as rows; False: one head per program (the layout before round 9, the same
        mathematics), which takes the kernel only where the grid rule allows (batch 1 and 2 for Dream) and SDPA
        beyond."""
        if self.net.split_kv != enabled or self.net.pack_gqa != pack_gqa:
            self.net.split_kv, self.net.pack_gqa = enabled, pack_gqa
            self._recapture()
        return self

    def use_skinny_matmul(self, enabled: bool = True) -> "DiffusionLM":
        """Run the wide projections (at least 12288 output columns: LLaDA's q/k/v, the gate/up projections)
        and the LM head of products with at most 32 rows (LLaDA's dual-cache steps at batch 1; every family's
        LM head on a 32-token block) through the few-row Triton
        GEMM (``fastdllm.kernels.skinny_matmul``) on CUDA. Rounds differently from cuBLAS (bf16), so tokens can
        differ where two candidates tie within rounding, as with ``use_compile``. Needs Triton; without it,
        on the CPU, for narrower weights and for more rows, cuBLAS runs."""
        if self.net.skinny != enabled:
            self.net.skinny = enabled
            self._recapture()
        return self

    def use_rope_write(self, enabled: bool = True) -> "DiffusionLM":
        """Apply RoPE to each layer's queries and keys in the same Triton launch that writes the keys and values
        into the KV store (``fastdllm.kernels.rope_kv_write``), on CUDA, for forwards over a store that does not
        track drift; elsewhere (no cache, drift-tracking caches, the CPU, no Triton) the layer function rotates
        as before. Equal to the eager RoPE bit for bit: tokens are unchanged against the eager layer
        functions (compiled ones may round their RoPE differently)."""
        if self.net.rope_write != enabled:
            self.net.rope_write = enabled
            self._recapture()
        return self

    def use_fp8_weights(self, enabled: bool = True, fp16_inputs: bool = True) -> "DiffusionLM":
        """Give the wide weights (at least 12288 output columns: LLaDA's fused q/k/v, the gate/up projections, the LM
        head) an fp8 (e4m3) copy with one scale per output row, and run products of at most 32 rows by them
        (cached steps at batch 1) from the copy: half the bytes to read (``fastdllm.kernels.fp8_weights``).
        Refreshes and longer windows keep the bf16 weights, which stay in memory (+50 % for those matrices).
        On the CPU the same products use the dequantized copy (the same numbers, no kernel). Not exact: each such
        product differs from bf16 by the weight rounding (~3 % of its largest output), so tokens can differ;
        ``experiments/fp8_weight_accuracy.py`` measures what that costs. The copies follow ``to()``/``cuda()``
        and ``fuse_projections()``; after changing projection weights in place, call this again (a stale copy
        raises); a norm weight changed in place makes the copies again at the next forward.
        ``fp16_inputs`` (the default): where a product's bf16 inputs are an RMSNorm's output, bounded far inside
        fp16's range (``Transformer.input_bounds``), the kernel takes them in fp16, which widens the fp8 weight in one
        conversion instead of two (the same products wherever x's entries are at least 2^-14, fp16's smallest normal;
        faster on an H200); False keeps every input in bf16."""
        if self.net.fp8 != enabled or enabled:
            self.net.use_fp8(enabled, fp16_inputs)
            self._recapture()
        return self

    def tune_gemms(self, rows, margin: float = 0.03, timer=None, backends=None) -> list[dict]:
        """Time the GEMM backends (``fastdllm.kernels.gemm_plan``: cuBLAS, cuBLASLt, the few-row kernel, cuBLASLt's
        ranked candidates for each shape, and the default that ``use_skinny_matmul`` runs; ``backends`` names a
        subset) for every projection shape of this model at each row count in
        ``rows`` (batch × the positions a forward recomputes, and batch × the block's rows, on which alone the
        last layer's MLP runs: ``tune_gemms_for`` finds them from a decode), on a CUDA graph over the layers' own
        weights; plan the fastest where it beats the default by more than
        ``margin``, and run the projections by the plan from now on (the LM head, one matrix, keeps its rule;
        ``use_tuned_gemms(False)`` goes back). Returns one record per (shape, rows): µs per backend and the
        choice. Call it after ``use_compile``/``fuse_projections`` (the shapes a forward runs); captured CUDA
        graphs are dropped. On the CPU nothing is timed (an error) unless ``timer`` is given (tests)."""
        from fastdllm.kernels import gemm_plan

        if timer is None and self.device.type != "cuda":
            raise RuntimeError(f"tune_gemms times CUDA kernels; this model is on {self.device} (move it with .cuda())")
        groups: dict[str, list] = {}
        biases: dict[str, list] = {}
        for weight, bias in self.net.products()[:-1]:  # the LM head (one matrix) is not timed
            name = f"{weight.shape[0]}x{weight.shape[1]}" + ("+bias" if bias is not None else "")
            groups.setdefault(name, []).append(weight.detach())
            biases.setdefault(name, []).append(None if bias is None else bias.detach())
        kwargs = {} if timer is None else {"timer": timer}
        records = gemm_plan.tune(groups, rows, margin=margin, biases=biases, backends=backends, **kwargs)
        self.net.tuned = True
        self._recapture()  # graphs captured before hold the kernels of the old plan
        return records

    def tune_gemms_for(self, decoder, prompt_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                       callbacks=(), **options) -> list[dict]:
        """``tune_gemms`` at the row counts ``decoder`` runs for this prompt batch: one decode (a warm-up: graphs
        captured, kernels compiled) records each forward's recomputed positions and the block's rows (where the
        last layer's MLP and the LM head run; with a logit shift one fewer than a cached step recomputes), times
        the backends at those counts × the forward's batch (doubled under classifier-free guidance), and returns
        ``tune_gemms``' records. ``callbacks`` also see that decode's ``StepEvent``s; ``options`` go to
        ``tune_gemms`` (``margin``, ``timer``, ``backends``)."""
        if decoder.model is not self:
            raise ValueError("tune_gemms_for: the decoder runs another model; build it with this one")
        sizes: set[int] = set()
        decoder.generate(prompt_ids, attention_mask, callbacks=[
            lambda e: sizes.update((e.plan.size, e.step.block_end - e.step.block_start)), *callbacks])
        batch = prompt_ids.shape[0] * (2 if decoder.config.cfg_scale > 0 else 1)
        return self.tune_gemms(sorted(batch * n for n in sizes), **options)

    def use_gemm_plan(self, records) -> "DiffusionLM":
        """Run the projections by a plan ``tune_gemms`` made before, in this process or another: ``records`` are
        its returned records (or the path of a JSON file holding them, e.g. a ``gemm_plan`` list that
        ``experiments/bench_gpu.py`` saved). Nothing is timed, so a re-run makes the same backend choices (a
        fresh ``tune_gemms`` can flip near-tied ones, and bf16 tokens with them); what cuBLAS and Inductor pick
        below the plan is not pinned, so bf16 tokens can still differ between processes. Every
        record must name a projection shape of this model (a plan tuned for another model is refused)."""
        import json
        from pathlib import Path

        from fastdllm.kernels import gemm_plan

        if isinstance(records, (str, Path)):
            records = json.loads(Path(records).read_text())
        records = list(records)
        shapes = {(w.shape[0], w.shape[1], b is not None) for w, b in self.net.products()[:-1]}
        for record in records:
            shape = gemm_plan.record_shape(record)
            if shape not in shapes:
                raise ValueError(f"use_gemm_plan: record {record.get('group', shape)!r} at {record.get('rows')} rows "
                                 f"is no projection of this model (N, K, bias: {sorted(shapes)}); was the plan tuned "
                                 "for another model, or before use_compile/fuse_projections?")
        gemm_plan.install(records, self.device, self.dtype)
        self.net.tuned = True
        self._recapture()
        return self

    def use_tuned_gemms(self, enabled: bool = True) -> "DiffusionLM":
        """Run the products by the plan ``tune_gemms`` made (on CUDA; products it did not time run as with
        ``use_skinny_matmul``); False: as before tuning."""
        if self.net.tuned != enabled:
            self.net.tuned = enabled
            self._recapture()
        return self

    def _apply(self, fn, recurse=True):
        """``to``/``half``/``cuda``/...: the weights are new tensors, so captured CUDA graphs (which read the old
        ones) are dropped and captured again at their next use."""
        super()._apply(fn, recurse)
        if getattr(self, "cuda_graphs", None) is not None:
            self._recapture()
        return self

    def sync_fp8(self) -> None:
        """Before a forward with fp8 copies: make the copies again where they are out of date
        (``Transformer.sync_fp8``: a deep copy, or a norm weight changed in place) and then drop the captured CUDA
        graphs, which hold the old copies' addresses. Every entry point that runs the layers calls it, once."""
        if self.net.fp8 and self.net.sync_fp8():
            self._recapture()

    def _recapture(self) -> None:
        """Drop the captured CUDA graphs (they hold the old kernels); each is captured again at its next use."""
        if self.cuda_graphs is not None:
            self.use_cuda_graphs(backend=self.cuda_graphs.backend)

    def fuse_projections(self, enabled: bool = True) -> "DiffusionLM":
        """Compute each layer's q/k/v projections as one GEMM and its gate/up projections as one GEMM, over
        fused weights that replace the separate ones in memory (the parameters become views into them:
        one copy of the weights; ``state_dict``, ``load_state_dict`` and ``save_checkpoint`` keep the
        checkpoint's key names). Idempotent; ``enabled=False`` splits them again. For inference only:
        a fused forward does not propagate gradients to the parameters (train unfused, as
        ``experiments/train_tiny.py`` does). CUDA graphs captured before a change are dropped (they read
        the old weight addresses) and are captured again at their next use."""
        if self.net.fuse_projections(enabled):
            self._recapture()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-canvas forward without cache: logits ``[B, L, V]``, row i predicts the token at position i
        (for a shifted family, row 0 repeats row 1's source, as Dream's own code does)."""
        real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)  # [B, L]
        key_mask = None if bool(real.all()) else real
        L = input_ids.shape[1]
        self.sync_fp8()  # a forward of at most 32 positions runs its products from the fp8 copies
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


model_adapters.base = DiffusionLM  # registered families must subclass it
