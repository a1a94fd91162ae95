"""A bidirectional pre-norm transformer (RMSNorm, RoPE, SwiGLU, GQA) that runs over a KV store.

One network serves every family; the adapters (``llada.py``, ``dream.py``) map their config fields
and checkpoint keys onto it. ``forward_step`` computes hidden states only at the requested canvas
positions, writes their keys/values into the store, attends over every canvas key (padding masked)
and applies the LM head only to the rows whose logits are read (the last layer past its key/value
projection and the final norm, too). The per-layer work around the attention is two pure functions
(``layer_functions.py``), run eagerly or through ``torch.compile`` on CUDA. ``Transformer.fuse_projections`` concatenates the q/k/v
and gate/up weights into one matrix each (one GEMM instead of three / two), keeping one copy in memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastdllm.kernels.split_kv_attention import attend
from fastdllm.models.fused_projections import FusedProjections
from fastdllm.models.layer_functions import EAGER, LayerFunctions, compiled_functions, residual, rms_norm, rope_tables


def skinny_or_cublas():
    """``F.linear`` through the few-row Triton GEMM where it applies (``fastdllm.kernels.skinny_matmul.linear``;
    imported here, not in the traced layer functions)."""
    from fastdllm.kernels.skinny_matmul import linear

    return linear


def fp8_or_bf16(tuned: bool = False, fp16x: bool = False):
    """``F.linear`` through the registered fp8 weight copies where they apply (``fastdllm.kernels.fp8_weights.linear``),
    else as ``skinny_or_cublas``, or with ``tuned`` by the tuned GEMM plan (``fp8_weights.linear_tuned``); with
    ``fp16x`` (every copy takes fp16 inputs) converting x before the op (``linear_fp16x``, ``linear_tuned_fp16x``)."""
    from fastdllm.kernels import fp8_weights as f

    return {(False, False): f.linear, (True, False): f.linear_tuned, (False, True): f.linear_fp16x,
            (True, True): f.linear_tuned_fp16x}[(tuned, fp16x)]


@dataclass(frozen=True)
class ArchConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_hidden: int
    max_sequence_length: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for the half-split RoPE")

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class Attention(FusedProjections):
    """Holds the q/k/v/o projections (the checkpoint's names); the work is in ``attention_inputs``/``Block``."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.register_buffer("qkv_weight", None, persistent=False)  # [(H + 2·H_kv)·D, d] once fused
        self.register_buffer("qkv_bias", None, persistent=False)  # [(H + 2·H_kv)·D] once fused (Dream)

    def fused_groups(self) -> dict[str, list[torch.Tensor]]:
        projections = (self.q_proj, self.k_proj, self.v_proj)
        groups = {"qkv_weight": [p.weight for p in projections]}
        if self.q_proj.bias is not None:
            groups["qkv_bias"] = [p.bias for p in projections]
        return groups


class SwiGLU(FusedProjections):
    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)
        self.register_buffer("gate_up_weight", None, persistent=False)  # [2·F, d] once fused

    def fused_groups(self) -> dict[str, list[torch.Tensor]]:
        return {"gate_up_weight": [self.gate_proj.weight, self.up_proj.weight]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, delta, cos, sin, layer, start, index, store, key_mask, q_rows=None,
                fns: LayerFunctions = EAGER, split_kv: bool = False, linear=F.linear, rope_write: bool = False,
                pack_gqa: bool = True):
        """The residual stream ``x + delta`` (x ``[B, n, d]``, delta ``[B, n, d]`` or None: the previous layer's
        MLP output, see ``residual``) → this layer's (residual stream after the attention, MLP output), each
        ``[B, n, d]``, or ``[B, m, d]`` for the rows ``q_rows`` ``[m]`` only (keys and values of all ``n``
        positions are still computed and stored: other positions attend to them later). Their sum is the
        layer's output. ``rope_write`` (only where the store ``rotates``): RoPE is applied as the keys are
        written (``KVStore.update_rotating``), not by the layer function (one launch fewer, same values). ``pack_gqa``:
        the split-KV kernel's layout for grouped-query heads (``split_kv_attention``)."""
        a, mlp = self.attn, self.mlp
        rope = not rope_write
        if a.qkv_weight is not None:  # fused (``Transformer.fuse_projections``): one GEMM for q, k and v
            q, k, v, x = fns.fused_attention_inputs(x, delta, self.attn_norm.weight, self.attn_norm.eps,
                                                    a.qkv_weight, a.qkv_bias, cos, sin, q_rows, a.n_heads,
                                                    a.n_kv_heads, a.head_dim, linear, rope)
        else:
            q, k, v, x = fns.attention_inputs(x, delta, self.attn_norm.weight, self.attn_norm.eps, a.q_proj.weight,
                                              a.q_proj.bias, a.k_proj.weight, a.k_proj.bias, a.v_proj.weight,
                                              a.v_proj.bias, cos, sin, q_rows, a.n_heads, a.n_kv_heads, a.head_dim,
                                              linear, rope)
        if rope:
            keys, values = store.update(layer, start, index, k, v)  # [B, H_kv, L, D] each
        else:
            cq, sq = (cos, sin) if q_rows is None else (cos.index_select(2, q_rows), sin.index_select(2, q_rows))
            q, keys, values = store.update_rotating(layer, start, index, q, k, v, cos, sin, cq, sq)
        out = attend(q, keys, values, key_mask, split_kv, pack_gqa)  # [B, H, m, D]
        if q_rows is not None:
            x = x.index_select(1, q_rows)  # [B, m, d]
        if mlp.gate_up_weight is not None:
            return fns.fused_attention_output_and_mlp(x, out, a.o_proj.weight, self.mlp_norm.weight,
                                                      self.mlp_norm.eps, mlp.gate_up_weight, mlp.down_proj.weight, linear)
        return fns.attention_output_and_mlp(x, out, a.o_proj.weight, self.mlp_norm.weight, self.mlp_norm.eps,
                                            mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight, linear)


class Transformer(nn.Module):
    """The network: embeddings, ``n_layers`` blocks, final norm, LM head."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.arch = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_sequence_length, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # [max_len, D] fp32
        self.register_buffer("rope_sin", sin, persistent=False)  # [max_len, D] fp32
        self.fast = True  # last layer and final norm only on the rows read (see ``hidden``); False: every row
        self.compiled = False  # per-layer functions through torch.compile on CUDA (``DiffusionLM.use_compile``)
        self.split_kv = False  # split-KV Triton attention for few query rows on CUDA (``use_split_kv_attention``)
        self.pack_gqa = True  # its programs stack the query heads of one key/value head (``use_split_kv_attention``)
        self.skinny = False  # few-row Triton GEMMs on CUDA, where faster than cuBLAS (``use_skinny_matmul``)
        self.fp8 = False  # few-row products by the wide weights through their fp8 copies (``use_fp8_weights``)
        self._fp8_weights: list[torch.Tensor] = []  # the weights registered in fastdllm.kernels.fp8_weights
        self.fp8_fp16_inputs = True  # normed bf16 inputs go to the fp8 kernel in fp16 (``use_fp8_weights``)
        self._fp8_all_fp16 = False  # every fp8 copy takes fp16 inputs: the traced code converts x (``use_fp8``)
        self._fp8_norm_weights: list[torch.Tensor] = []  # the norm weights the copies' input bounds come from
        self._fp8_norm_versions: tuple = ()  # their in-place versions when the copies were made (``sync_fp8``)
        self.tuned = False  # products through the timed GEMM plan on CUDA (``DiffusionLM.tune_gemms``)
        self.rope_write = False  # RoPE fused into the KV-store write on CUDA (``DiffusionLM.use_rope_write``)
        self.defer_residual = True  # each layer's MLP output added by the next layer's function (``residual``);
        # False adds it right after the layer, one launch more per layer (benchmarks compare the two)

    def linear(self):
        """The ``F.linear`` the layers and the LM head use: fp8 copies, the tuned GEMM plan, the few-row GEMM, or
        plain."""
        if self.fp8:  # the copies are brought up to date by the callers (``DiffusionLM.sync_fp8``)
            return fp8_or_bf16(self.tuned, self._fp8_all_fp16)
        if self.tuned:
            from fastdllm.kernels.gemm_plan import linear

            return linear
        return skinny_or_cublas() if self.skinny else F.linear

    def products(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(weight, bias) of every projection as the layer functions pass them (fused tensors where fused), then
        the LM head's."""
        out = []
        for layer in self.layers:
            a, mlp = layer.attn, layer.mlp
            if a.qkv_weight is not None:
                out.append((a.qkv_weight, a.qkv_bias))
            else:
                out += [(p.weight, p.bias) for p in (a.q_proj, a.k_proj, a.v_proj)]
            out.append((a.o_proj.weight, None))
            if mlp.gate_up_weight is not None:
                out.append((mlp.gate_up_weight, None))
            else:
                out += [(mlp.gate_proj.weight, None), (mlp.up_proj.weight, None)]
            out.append((mlp.down_proj.weight, None))
        return out + [(self.lm_head.weight, None)]

    def wide_weights(self) -> list[torch.Tensor]:
        """Every projection weight as the layer functions pass it (fused tensors where fused) and the LM head's."""
        return [w for w, _ in self.products()]

    def input_bounds(self) -> list[float | None]:
        """Parallel to ``products()``: a bound on |x| of each product's inputs where one is proven, else None. The
        q/k/v and gate/up projections and the LM head read an RMSNorm's output, x / rms(x) · g, whose entries are
        at most √d · max |g| (x_i² ≤ Σ x² = d · rms²); ×1.01 covers its two bf16 roundings. The output and down
        projections read the attention's output and the gated MLP's: no bound."""
        def normed(norm: RMSNorm) -> float | None:
            if norm.weight.device.type == "meta":  # no values yet: nothing proven
                return None
            return 1.01 * math.sqrt(self.arch.d_model) * norm.weight.detach().abs().max().item()

        bounds = []
        for layer in self.layers:
            a, mlp = layer.attn, layer.mlp
            bounds += [normed(layer.attn_norm)] * (1 if a.qkv_weight is not None else 3) + [None]
            bounds += [normed(layer.mlp_norm)] * (1 if mlp.gate_up_weight is not None else 2) + [None]
        return bounds + [normed(self.norm)]

    def use_fp8(self, enabled: bool = True, fp16_inputs: bool | None = None) -> None:
        """Make (or drop) the fp8 copies of the wide weights (``fastdllm.kernels.fp8_weights.register``); with
        ``fp16_inputs`` each with its inputs' bound (``input_bounds``: where it is small, bf16 inputs go to the fp8
        kernel in fp16). None keeps the last choice (copies made again after ``to()`` or fusion)."""
        from fastdllm.kernels import fp8_weights

        if fp16_inputs is not None:
            self.fp8_fp16_inputs = fp16_inputs
        fp8_weights.unregister(self._fp8_weights)
        weights = [w.detach() for w in self.wide_weights()]
        bounds = self.input_bounds() if enabled and self.fp8_fp16_inputs else None
        # the registry's entries last as long as these tensor objects: the model keeps them
        self._fp8_weights = fp8_weights.register(weights, bounds) if enabled else []
        self._fp8_all_fp16 = fp8_weights.all_take_fp16_inputs(self._fp8_weights)  # convert x before the op
        # the norm weights the bounds were computed from (listed again here after ``to()``, which may replace them)
        self._fp8_norm_weights = [m.weight for m in self.modules() if isinstance(m, RMSNorm)]
        self._fp8_norm_versions = self._norm_versions()
        self.fp8 = enabled

    def sync_fp8(self) -> bool:
        """Make the fp8 copies again where they are out of date: a deep copy (or unpickled) model, whose copies are
        not registered yet, or a norm weight changed in place (its products' input bounds, on which the fp16 route
        rests, are made again). Returns whether it did: captured CUDA graphs then read freed copies and must be
        captured again (``DiffusionLM.sync_fp8`` does, before every forward). Norm weights made under inference
        mode keep no version counter: a change to those is not seen."""
        from fastdllm.kernels import fp8_weights

        if not self.fp8 or not self._fp8_weights:
            return False
        if fp8_weights.registered(self._fp8_weights[0]) and self._norm_versions() == self._fp8_norm_versions:
            return False
        self.use_fp8()
        return True

    def _norm_versions(self) -> tuple:
        """The in-place version of every RMSNorm weight (None where a tensor keeps none, as inference-mode ones),
        read from the weights ``use_fp8`` listed (module attribute lookups would cost ~70 µs a step, this ~4)."""
        from fastdllm.kernels.fp8_weights import _version

        try:
            return tuple([w._version for w in self._fp8_norm_weights])
        except RuntimeError:  # an inference-mode tensor among them
            return tuple(_version(w) for w in self._fp8_norm_weights)

    def fuse_projections(self, enabled: bool = True) -> bool:
        """Fuse each layer's q/k/v weights (and Dream's q/k/v biases) into one ``[(H + 2·H_kv)·D, d]`` matrix
        and its gate/up weights into one ``[2·F, d]`` matrix: one GEMM instead of three, and one instead of two,
        per layer. The weights stay in memory once (the checkpoint's parameters become row views of the fused
        tensors, see ``FusedProjections``); ``enabled=False`` gives every parameter its own storage again.
        Idempotent; returns whether anything changed. For inference: a fused model's forward does not
        propagate gradients to the parameters (``experiments/train_tiny.py`` trains the unfused modules)."""
        changed = False
        for layer in self.layers:
            changed |= layer.attn.fuse(enabled)
            changed |= layer.mlp.fuse(enabled)
        if changed and self.fp8:
            self.use_fp8()  # the fused weights are new tensors: copies for them, the old ones dropped
        return changed

    def reset_rope(self) -> None:
        """Recompute the RoPE tables in fp32 on the module's device (after ``to_empty`` or a dtype cast)."""
        cfg, device = self.arch, self.rope_cos.device
        cos, sin = rope_tables(cfg.head_dim, cfg.max_sequence_length, cfg.rope_theta)
        self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.rope_cos.dtype != torch.float32 and self.rope_cos.device.type != "meta":
            self.reset_rope()  # ``model.to(torch.bfloat16)`` must not round the rotation angles
        if getattr(self, "fp8", False):
            self.use_fp8()  # moved or cast weights are new tensors: fp8 copies of the new ones
        return self

    def hidden(self, canvas: torch.Tensor, start: int, end: int, store, position_ids: torch.Tensor,
               key_mask: torch.Tensor | None, index: torch.Tensor | None = None,
               rows: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states of canvas positions ``[start, end)``: ``[B, end-start, d_model]``, or with
        ``rows`` (``[m]``, offsets into the window) only those rows ``[B, m, d_model]``.

        The positions are read and written through ``index`` (``arange(start, end)`` on the device, made
        here when not given), never through slices at ``start``: a CUDA graph captured for one window
        then serves every window of the same size, the caller refilling ``index`` before each replay.
        With ``rows`` and ``fast`` (the default), the last layer computes queries, attention output and
        MLP, and the final norm runs, only on those rows (their values are the same: every op after the
        last layer's key/value projection is row-wise); ``fast = False`` runs every row (the plain path).
        """
        if index is None:
            index = torch.arange(start, end, device=canvas.device)  # [n]
        fns = compiled_functions() if self.compiled and canvas.is_cuda else EAGER
        x = self.embed(canvas.index_select(1, index))  # [B, n, d]
        pos = position_ids.index_select(1, index)  # [B, n]
        cos, sin = self.rope_cos[pos].unsqueeze(1), self.rope_sin[pos].unsqueeze(1)  # [B, 1, n, D]
        last = len(self.layers) - 1
        narrow = rows is not None and self.fast
        linear = self.linear()  # each runs cuBLAS (F.linear) where its kernel does not apply
        rope_write = self.rope_write and store.rotates(x)  # the same answer for every layer of this forward
        delta = None  # [B, n, d]: the MLP output each layer leaves for the next to add (``residual``)
        for i, layer in enumerate(self.layers):
            x, delta = layer(x, delta, cos, sin, i, start, index, store, key_mask, rows if narrow and i == last
                             else None, fns, self.split_kv, linear, rope_write, self.pack_gqa)
            if not self.defer_residual:
                x, delta = residual(x, delta), None
        x = residual(x, delta)  # [B, n, d] or [B, m, d]: the last layer's output
        if rows is not None and not narrow:
            x = x.index_select(1, rows)  # [B, m, d]
        return self.norm(x)
