"""The model ``bench_gpu.py`` measures and the floors it measures against: a registered family at its reference
shape (or a tiny CPU config) with random weights, the device's copy bandwidth and matmul rate measured now,
and each forward's floor, max(weight bytes / copy bandwidth, 2 · params · rows / matmul rate) (the targets'
floor), beside its **work floor** (``Work``): the bytes and flops the forward's own work needs at least."""

from __future__ import annotations

import argparse
import time

import torch

import fastdllm


def model_arguments(p: argparse.ArgumentParser, device: str = "cuda") -> None:
    """``--out`` (the result JSON), ``--family`` (a registered adapter, LLaDA by default), ``--device`` and
    ``--small`` (the family's tiny config: CPU smoke runs and tests)."""
    p.add_argument("--out", default=None, help="result JSON path")
    p.add_argument("--family", default="llada", help=f"a registered model adapter: {fastdllm.model_adapters.names()}")
    p.add_argument("--device", default=device)
    p.add_argument("--small", action="store_true", help="the family's tiny config (CPU smoke runs and tests)")


def canvas_arguments(p: argparse.ArgumentParser) -> None:
    """The decode shape every speed script measures: ``--prompt-length`` 768, ``--gen-length`` 256,
    ``--block-length`` 32 (the paper's setting)."""
    p.add_argument("--prompt-length", type=int, default=768)
    p.add_argument("--gen-length", type=int, default=256)
    p.add_argument("--block-length", type=int, default=32)


# tiny configs for CPU smoke runs, per family (field names are the family's config.json's)
SMALL = {"llada": dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=512,
                       embedding_size=512, mask_token_id=500, eos_token_id=1, pad_token_id=1),  # LLaDA pads its
         # embedding and LM head to embedding_size: without it the tiny model kept the reference's 126464 rows
         "dream": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=128, vocab_size=512, max_position_embeddings=4096, mask_token_id=500,
                       eos_token_id=1, pad_token_id=1)}


def build_model(family: str, small: bool, device: str, dtype: torch.dtype,
                weights_from: fastdllm.DiffusionLM | None = None) -> fastdllm.DiffusionLM:
    """The family's reference config (or a tiny one with ``small``), random weights (matrices N(0, 0.02²),
    norms 1, biases 0), built on ``device``; with ``weights_from``, that model's weights instead (converted to
    ``dtype``: a wider copy of the same weights)."""
    cls = fastdllm.model_adapters.get(family)
    config = cls.reference_config()
    if small:
        if family not in SMALL:
            raise ValueError(f"no tiny config for family {family!r} (known: {', '.join(SMALL)}); drop --small")
        config = {**config, **SMALL[family]}
    if not config:
        raise ValueError(f"model adapter {family!r} has no reference_config(); it cannot be benchmarked at full shape")
    with torch.device("meta"):
        model = cls(config)
    model.to(dtype=dtype).to_empty(device=device)
    model.net.reset_rope()
    if weights_from is not None:
        model.load_state_dict(weights_from.state_dict())  # copy_ converts the dtype
        return model.eval()
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
    return model.eval()


def ceilings(device: str) -> dict[str, float]:
    """Device copy bandwidth (bytes read + written per second) and bf16 matmul rate, measured now (20 calls each,
    a burst: a GPU that idled before runs it at its full clock; ``held_matmul_rate`` gives the rate under load)."""
    if device != "cuda":
        return {}
    x = torch.empty(2**30, dtype=torch.uint8, device=device)  # 1 GiB
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)

    def timed(fn, n: int) -> float:
        fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    copy_s = timed(lambda: y.copy_(x), 20)
    mm_s = timed(lambda: a @ b, 20)
    return {"copy_bytes_per_s": 2 * x.numel() / copy_s, "matmul_flop_per_s": 2 * 8192**3 / mm_s}


def held_matmul_rate(device: str, seconds: float) -> dict[str, float]:
    """The ``ceilings`` matmul back to back for ``seconds``: its rate over the second half, as
    ``matmul_flop_per_s_sustained``. Under seconds of load an H200 holds its power limit by lowering the SM clock
    (``experiments/gpu_clocks.py``): this is the matmul's own rate at that limit, a lower bound on what a forward
    that also streams weights gets (its decodes ran at higher clocks than this matmul's)."""
    if device != "cuda" or seconds <= 0:
        return {}
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)  # [8192, 8192]
    b = torch.randn_like(a)
    a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 2:  # the first half: the clock settles
        a @ b
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        n += 10
    return {"matmul_flop_per_s_sustained": 2 * 8192**3 * n / (time.perf_counter() - start), "sustain_s": seconds}


class Floors:
    """Per-forward floors: max(weight bytes / copy bandwidth, 2 · params · rows / matmul rate) (the targets'),
    and with ``work`` each forward's work floor (``Work``) at the same ceilings."""

    def __init__(self, params: int, weight_bytes: int, ceil: dict[str, float], work: "Work | None" = None) -> None:
        self.params, self.weight_bytes, self.ceil, self.work = params, weight_bytes, ceil, work

    def work_s(self, batch: int, positions: int, sustained: bool = False) -> float | None:
        """The work floor of a forward recomputing ``positions`` per sequence (None without ceilings or ``work``)."""
        if self.work is None or not self.ceil:
            return None
        return self.work.floor_s(batch, positions, self.ceil, sustained)

    def work_fields(self, batch: int, positions: int, ms: float) -> dict[str, float]:
        """A single forward's ``floor_work_ms`` and ``floor_ratio_work`` (its ``ms`` against the work floor); empty
        without a work floor."""
        floor = self.work_s(batch, positions)
        return {} if floor is None else {"floor_work_ms": 1000 * floor, "floor_ratio_work": ms / (1000 * floor)}

    def forward_s(self, rows: int, bytes_saved: int = 0, sustained: bool = False) -> float | None:
        """``bytes_saved``: weight bytes the forward does not read (fp8 copies read instead of bf16 weights);
        ``sustained``: at the matmul rate the GPU sustains under load (None when it was not measured)."""
        rate = self.ceil.get("matmul_flop_per_s_sustained" if sustained else "matmul_flop_per_s")
        if rate is None:
            return None
        return max((self.weight_bytes - bytes_saved) / self.ceil["copy_bytes_per_s"], 2 * self.params * rows / rate)


class Work:
    """What one forward must move and multiply at least, from the model's shape: its **work floor** is
    max(bytes / copy bandwidth, flops / matmul rate) with

    - bytes: every weight but the embedding table (a forward gathers only its rows' embeddings, counted), and the
      keys and values of the whole canvas, which every layer's attention reads (written by this forward or read
      from the store);
    - flops: the projections and MLP of every recomputed row, except in the last layer, where only the rows whose
      logits are read (``logit_rows``: the block) need queries, output projection, MLP, final norm and LM head
      (every other row needs its keys and values for the store); and the attention, 4 · heads · head dim · keys
      per query row and layer.

    The targets' floor (``Floors.forward_s``) counts ``2 · params · rows``: the embedding table and the LM head
    multiplied on every recomputed row, the table read in full, the keys and values not at all. It is the
    higher of the two for every forward the decoder runs (8-21 % on the benchmarked decodes), so ratios against
    it flatter; the work floor is what "1.0 = a perfect implementation of the same forwards" means."""

    def __init__(self, arch, weights: int, canvas: int, logit_rows: int, itemsize: int) -> None:
        self.n_layers, self.d_model, self.n_heads = arch.n_layers, arch.d_model, arch.n_heads
        self.n_kv_heads, self.head_dim, self.mlp_hidden, self.vocab_size = (arch.n_kv_heads, arch.head_dim,
                                                                            arch.mlp_hidden, arch.vocab_size)
        self.weights = weights  # elements of every parameter but the embedding table
        self.canvas = canvas  # keys each query attends to
        self.logit_rows = logit_rows  # rows per sequence whose logits are read (the block)
        self.itemsize = itemsize

    @classmethod
    def of(cls, model, canvas: int, logit_rows: int, itemsize: int) -> "Work":
        """The work of ``model``'s forwards over a canvas of ``canvas`` positions, logits read on ``logit_rows``."""
        weights = sum(t.numel() for name, t in model.net.named_parameters() if not name.startswith("embed."))
        return cls(model.net.arch, weights, canvas, logit_rows, itemsize)

    def bytes(self, batch: int, positions: int) -> int:
        """Weights (no embedding table), the embeddings gathered, every layer's keys and values of the canvas."""
        kv = self.n_layers * 2 * batch * self.n_kv_heads * self.canvas * self.head_dim
        return (self.weights + batch * positions * self.d_model + kv) * self.itemsize

    def flops(self, batch: int, positions: int) -> int:
        """Matmul flops of a forward recomputing ``positions`` per sequence (at least the logit rows)."""
        m = min(self.logit_rows, positions)
        q = o = self.d_model * self.n_heads * self.head_dim
        kv = 2 * self.d_model * self.n_kv_heads * self.head_dim
        mlp = 3 * self.d_model * self.mlp_hidden
        macs = ((self.n_layers - 1) * (q + kv + o + mlp) * positions + kv * positions + (q + o + mlp) * m
                + self.vocab_size * self.d_model * m)
        attention_rows = (self.n_layers - 1) * positions + m
        return 2 * batch * macs + 4 * batch * self.n_heads * self.head_dim * self.canvas * attention_rows

    def floor_s(self, batch: int, positions: int, ceil: dict[str, float], sustained: bool) -> float | None:
        """max(bytes / copy rate, flops / matmul rate) at ``ceil``'s burst (or ``sustained``: held) matmul rate."""
        rate = ceil.get("matmul_flop_per_s_sustained" if sustained else "matmul_flop_per_s")
        if rate is None:
            return None
        return max(self.bytes(batch, positions) / ceil["copy_bytes_per_s"], self.flops(batch, positions) / rate)
