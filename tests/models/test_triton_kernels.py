"""The Triton kernels of the CUDA hot path, run on the CPU through Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton compiles a kernel definition, i.e. before ``fastdllm`` is
imported; so each check runs in a fresh interpreter (``triton_helpers.interpret``) and reports JSON. The split-KV
attention is compared with ``scaled_dot_product_attention`` in fp32 over the cases where a slip would show:
grouped-query heads, a key mask that empties whole slices, key counts and query rows that are not multiples
of the tiles, one slice and many, a transposed (non-contiguous) query, one launch after another (the arrival
counters of the fused combine must be left zero). ``kv_write`` must equal two
``index_copy_`` bit for bit, through ``KVStore.update`` too. The greedy proposal must give PyTorch's argmax
(ties included) and its probability; the few-row GEMM must equal ``F.linear`` in every candidate
configuration and serve every projection and the LM head of a model that enables it.
"""

from __future__ import annotations

import pytest
import torch
from triton_helpers import HOPPER_SHARED_BYTES, compile_for_hopper, interpret

pytest.importorskip("triton")

ATTENTION_CASES = [
    # batch, query heads, kv heads, query rows, keys, head dim, dtype, masked prefix per batch row, slices
    (2, 4, 4, 5, 200, 32, "float32", None, 3),
    (1, 6, 2, 32, 130, 64, "float32", None, None),  # grouped-query heads, keys not a multiple of 64
    (2, 4, 1, 17, 64, 16, "float16", [10, 0], 1),  # one slice, rows not a multiple of the tile
    (2, 4, 2, 40, 256, 32, "float32", [0, 150], 4),  # row 1: slices 0-1 fully masked
    (1, 2, 2, 64, 300, 32, "float32", [299], 5),  # one visible key (the last)
    (1, 2, 2, 100, 300, 32, "float32", None, None),  # two query tiles of 64, the default slices (a prefix window)
    (2, 14, 2, 33, 150, 32, "float32", [0, 70], 4),  # Dream's group of 7: packed tiles straddle two heads
    (4, 14, 2, 33, 150, 32, "float32", [0, 0, 70, 149], None),  # packed, the grid alone fills the 8 "SMs": one slice
]


@pytest.mark.slow
def test_split_kv_attention_equals_sdpa():
    out = interpret(f"""
        import json, torch, torch.nn.functional as F
        from fastdllm.kernels.split_kv_attention import split_kv_attention
        torch.manual_seed(0)
        diffs = []
        for (B, H, H_kv, m, L, D, dtype, masked, splits), pack in [(case, pack) for case in {ATTENTION_CASES!r}
                                                                 for pack in (False, True)]:
            dt = getattr(torch, dtype)
            q = torch.randn(B, m, H, D).to(dt).transpose(1, 2)  # [B, H, m, D], not contiguous (the model's layout)
            k, v = torch.randn(B, H_kv, L, D).to(dt), torch.randn(B, H_kv, L, D).to(dt)
            keep = None
            if masked is not None:
                keep = torch.ones(B, L, dtype=torch.bool)
                for b, n in enumerate(masked):
                    keep[b, :n] = False
            got = split_kv_attention(q, k, v, keep, splits, pack_gqa=pack)
            want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), enable_gqa=H != H_kv,
                                                  attn_mask=None if keep is None else keep[:, None, None, :])
            diffs.append([list(got.shape), str(got.dtype).removeprefix("torch."), (got.float() - want).abs().max().item(),
                          got.transpose(1, 2).is_contiguous()])
        from fastdllm.kernels import _ARRIVALS
        print(json.dumps({{"diffs": diffs, "counters_left": sum(int(t.count_nonzero()) for t in _ARRIVALS.values()),
                          "buffers": len(_ARRIVALS)}}))
        """)
    # every launch leaves its tiles' arrival counters zero (the next launch, or graph replay, starts from them)
    assert out["counters_left"] == 0 and out["buffers"] == 1
    cases = [case for case in ATTENTION_CASES for _ in (False, True)]  # each unpacked, then packed (``pack_gqa``)
    assert len(out["diffs"]) == len(cases)
    for (B, H, _, m, _, D, dtype, _, _), (shape, got_dtype, diff, layout) in zip(cases, out["diffs"]):
        assert shape == [B, H, m, D] and got_dtype == dtype and layout  # [B, m, H, D] memory, as o_proj reads it
        assert diff < (2e-3 if dtype == "float16" else 1e-5), (B, H, m, diff)


@pytest.mark.slow
def test_kv_write_is_index_copy_and_serves_the_store():
    out = interpret("""
        import json, torch
        from fastdllm.kernels.kv_write import kv_write
        from fastdllm.core.kv_store import KVStore
        torch.manual_seed(0)
        results = []
        # 7 positions (one program per head) and 37 (three row tiles of 16, the last partial), any order
        for dt, index in ((torch.float32, torch.tensor([4, 5, 6, 40, 41, 0, 49])), (torch.bfloat16, torch.tensor([4, 5, 6, 40, 41, 0, 49])),
                          (torch.float32, torch.randperm(50)[:37])):
            n = index.numel()
            store_k, store_v = torch.randn(2, 3, 50, 16).to(dt), torch.randn(2, 3, 50, 16).to(dt)
            k = torch.randn(2, n, 3, 16).to(dt).transpose(1, 2)  # [B, H_kv, n, D] view, as the model makes it
            v = torch.randn(2, n, 3, 16).to(dt).transpose(1, 2)
            want_k, want_v = store_k.clone().index_copy_(2, index, k), store_v.clone().index_copy_(2, index, v)
            kv_write(store_k, store_v, index, k, v)
            results.append(torch.equal(store_k, want_k) and torch.equal(store_v, want_v))
        # through the store: layer 1 written, layers 0 and 2 untouched
        store = KVStore(3, 2, 3, 50, 16, torch.float32, "cpu")
        store.keys.zero_(); store.values.zero_()
        k, v = torch.randn(2, 3, 4, 16), torch.randn(2, 3, 4, 16)
        index = torch.arange(10, 14)
        import fastdllm.core.kv_store as ks
        ks_write = ks.kv_write
        calls = []
        ks.kv_write = lambda *a: (calls.append(1), ks_write(*a))
        torch.Tensor.is_cuda = property(lambda self: True)  # take the CUDA branch on the CPU
        keys, values = store.update(1, 10, index, k, v)
        results.append(bool(calls) and torch.equal(keys[:, :, 10:14], k) and torch.equal(values[:, :, 10:14], v)
                       and keys[:, :, :10].abs().sum().item() == 0 and keys[:, :, 14:].abs().sum().item() == 0
                       and store.keys[0].abs().sum().item() == 0 and store.keys[2].abs().sum().item() == 0)
        print(json.dumps(results))
        """)
    assert out == [True, True, True, True]


def test_attend_falls_back_to_sdpa_off_cuda():
    """On the CPU (and for shapes the kernel does not take) ``attend`` is SDPA itself, bit for bit."""
    from fastdllm.kernels.split_kv_attention import attend, use_split_kv

    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 8, 32), torch.randn(1, 2, 40, 32), torch.randn(1, 2, 40, 32)
    keep = torch.ones(1, 40, dtype=torch.bool)
    keep[0, :7] = False
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], enable_gqa=True)
    assert torch.equal(attend(q, k, v, keep, split_kv=True), want)
    def bf16(*shape):
        return torch.randn(*shape).bfloat16()

    assert use_split_kv(bf16(1, 1, 128, 32), bf16(1, 1, 40, 32))  # 2 query tiles: 2 of 4 "SMs" here
    assert not use_split_kv(bf16(1, 1, 129, 32), bf16(1, 1, 40, 32))  # more rows than it takes
    assert not use_split_kv(bf16(1, 4, 8, 48), bf16(1, 2, 40, 48))  # head dim not a power of two
    assert not use_split_kv(bf16(64, 2, 8, 32), bf16(64, 2, 40, 32))  # batch × heads already fill the GPU
    q16, k16 = torch.randn(64, 4, 33, 32).bfloat16(), torch.randn(64, 2, 40, 32).bfloat16()
    assert use_split_kv(q16, k16)  # grouped heads packed, a dual step's rows: at any batch
    assert not use_split_kv(q16, k16, pack_gqa=False)  # unpacked, the grid rule again
    assert not use_split_kv(q16.float(), k16.float())  # fp32: never (its tiles need more shared memory)
    small16, small_k16 = torch.randn(1, 4, 33, 32).bfloat16(), torch.randn(1, 2, 40, 32).bfloat16()
    assert use_split_kv(small16, small_k16) and use_split_kv(small16, small_k16, pack_gqa=False)  # either rule takes it
    assert not use_split_kv(small16.float(), small_k16.float(), pack_gqa=False)  # but not in fp32: SDPA
    assert not use_split_kv(torch.randn(64, 4, 65, 32).bfloat16(), k16)  # longer windows: the grid rule


def test_split_kv_attention_rejects_bad_shapes():
    from fastdllm.kernels.split_kv_attention import split_kv_attention

    with pytest.raises(ValueError, match="H % H_kv"):
        split_kv_attention(torch.randn(1, 3, 4, 32), torch.randn(1, 2, 10, 32), torch.randn(1, 2, 10, 32))
    with pytest.raises(ValueError, match="bool"):
        split_kv_attention(torch.randn(1, 2, 4, 32), torch.randn(1, 2, 10, 32), torch.randn(1, 2, 10, 32),
                           torch.ones(1, 10))


@pytest.mark.slow
def test_greedy_proposal_equals_torch():
    """The fused greedy proposal gives ``argmax`` (first index on ties) and ``softmax[argmax]`` of PyTorch's path:
    several vocabulary chunks, widths that are not multiples of the tiles, ties inside a lane, across lanes
    and across chunks, -inf entries (the mask token), half-precision input, a strided batch view; and
    ``propose`` takes it for greedy ``prob`` proposals (forced onto the CPU here)."""
    out = interpret("""
        import json, torch
        from fastdllm.kernels.greedy_proposal import greedy_proposal
        import fastdllm.core.proposal as proposal
        torch.manual_seed(0)
        results = []
        for V, dtype in ((20000, torch.float32), (8192 + 5, torch.bfloat16), (300, torch.float16), (64, torch.float32)):
            logits = (torch.randn(3, 4, V) * 3).to(dtype)  # [B, block, V]
            logits[0, 0, 7] = logits[0, 0, (7 + 1024) % (V - 2)] = 50  # a tie within one lane (same lane, next iteration)
            logits[0, 1, 3] = logits[0, 1, 5] = 50  # a tie across lanes
            logits[0, 2, V - 1] = logits[0, 2, V // 2] = 50  # a tie across chunks (when there are several)
            logits[..., V - 2] = float("-inf")  # the mask token
            logits[1, 3, :] = float("-inf"); logits[1, 3, 11] = 0.5  # one finite entry: probability 1
            view = logits[::2]  # [2, block, V], a strided batch view
            for x in (logits, view):
                tokens, conf = greedy_proposal(x)
                want_tokens = x.float().argmax(-1)
                want_conf = (x.float().gather(-1, want_tokens[..., None]) - x.float().logsumexp(-1, keepdim=True)).exp()[..., 0]
                results.append([V, torch.equal(tokens, want_tokens), (conf - want_conf).abs().max().item(),
                                (conf / want_conf - 1).abs().max().item(), list(tokens.shape) == list(x.shape[:-1])])
        # propose() takes the kernel for greedy prob proposals on CUDA; force that branch on the CPU
        calls = []
        kernel = proposal.__dict__.get("_fused_greedy")
        proposal._fused_greedy = lambda x: (calls.append(1), True)[1]
        logits = torch.randn(2, 5, 1000)
        masked = torch.ones(2, 5, dtype=torch.bool)
        fused = proposal.propose(logits, masked)
        proposal._fused_greedy = kernel
        plain = proposal.propose(logits, masked)
        results.append([bool(calls), torch.equal(fused.tokens, plain.tokens),
                        torch.allclose(fused.confidence, plain.confidence, rtol=1e-5, atol=0)])
        print(json.dumps(results))
        """)
    for V, same_tokens, abs_diff, rel_diff, shape in out[:-1]:
        assert same_tokens and shape, V
        assert rel_diff < 1e-5 and abs_diff < 1e-6, (V, abs_diff, rel_diff)
    assert out[-1] == [True, True, True]


@pytest.mark.slow
def test_skinny_matmul_equals_linear_and_serves_the_model():
    """The few-row GEMM is ``F.linear`` (fp32 reference) for every candidate configuration: rows from 1 to 64,
    widths and reductions that are not multiples of the tiles, with and without bias, and 100 rows in row tiles
    of 32 (a configuration naming BLOCK_M). With
    ``use_skinny_matmul()`` every projection of a few-row forward and the LM head go through it (forced onto
    the CPU here: the step logits agree with the plain model's, and the kernel ran 7 times per layer's worth)."""
    out = interpret("""
        import json, torch
        import fastdllm
        from fastdllm.kernels import skinny_matmul as sm
        torch.manual_seed(0)
        results = []
        for (M, N, K, bias), config in zip(((32, 200, 512, True), (1, 64, 300, False), (33, 130, 256, True),
                                            (64, 96, 1024, False), (5, 40, 70, True), (17, 33, 129, False),
                                            (100, 70, 200, True)),
                                           sm.CANDIDATES + ((64, 64, 3, 4, 32),)):
            x = torch.randn(M, K).half(); w = torch.randn(N, K).half(); b = torch.randn(N).half() if bias else None
            y = sm.skinny_linear(x.view(1, M, K), w, b, config)
            want = torch.nn.functional.linear(x.float(), w.float(), None if b is None else b.float())
            results.append([list(y.shape) == [1, M, N], ((y[0].float() - want).abs().max() / want.abs().max()).item()])
        # the model's wiring: force the kernel onto the CPU (fp32) and count its launches
        calls = []
        launch = sm._launch
        sm._launch = lambda *a: (calls.append(a[1].shape), launch(*a))[1]
        sm.use_skinny_matmul = lambda x, w: x.numel() // x.shape[-1] <= sm.MAX_ROWS  # tiny widths and the CPU too
        sm.config_for = lambda N, K: sm.CANDIDATES[0]
        cfg = fastdllm.model_adapters.get("dream").tiny_config()
        model = fastdllm.model_adapters.get("dream")(cfg).eval()
        L, P = 24, 8
        canvas = torch.randint(0, 60, (1, L)); canvas[:, P:] = model.mask_token_id
        pos = torch.arange(L)[None]
        store = model.new_kv_store(1, L)
        with torch.no_grad():
            model.forward_step(canvas, 0, L, store, pos, None, P, P + 8)  # fill the store (24 rows: 24 <= 32 too)
            plain = model.forward_step(canvas, P - 1, P + 8, store, pos, None, P, P + 8)
            calls.clear()
            model.use_skinny_matmul()
            fast = model.forward_step(canvas, P - 1, P + 8, store, pos, None, P, P + 8)
            unfused_calls = len(calls)
            model.fuse_projections()
            fused = model.forward_step(canvas, P - 1, P + 8, store, pos, None, P, P + 8)
        results.append([model.arch.n_layers, unfused_calls, len(calls) - unfused_calls,
                        (fast - plain).abs().max().item(), (fused - plain).abs().max().item()])
        print(json.dumps(results))
        """)
    for ok_shape, rel in out[:-1]:
        assert ok_shape and rel < 2e-3, (ok_shape, rel)
    layers, unfused_calls, fused_calls, diff, fused_diff = out[-1]
    assert unfused_calls == 7 * layers + 1  # q, k, v, o, gate, up, down per layer, then the LM head
    assert fused_calls == 4 * layers + 1 + 1  # qkv, o, gate_up, down (the last layer: q and kv apart), LM head
    assert diff < 1e-4 and fused_diff < 1e-4, (diff, fused_diff)


def test_skinny_matmul_rule():
    """The kernel serves few-row products by wide weights on CUDA only; cuBLAS keeps the narrow ones."""
    from fastdllm.kernels import skinny_matmul as sm

    assert sm.config_for(4096, 4096) == sm.CUBLAS  # LLaDA's output projection
    assert sm.config_for(3 * 4096, 4096) == sm.CANDIDATES[0]  # LLaDA's q/k/v
    assert sm.config_for(126464, 4096) == sm.config_for(2 * 18944, 3584) == sm.CANDIDATES[1]  # LM head, gate/up
    x, w = torch.randn(32, 64, dtype=torch.bfloat16), torch.randn(sm.MIN_COLUMNS, 64, dtype=torch.bfloat16)
    assert not sm.use_skinny_matmul(x, w)  # the CPU: F.linear, bit for bit
    assert torch.equal(sm.linear(x, w), torch.nn.functional.linear(x, w))


def test_quantize_rows_round_trip():
    """Per-row e4m3: each row's largest |w| lands on ±448 exactly, every element within e4m3's rounding (3
    mantissa bits: 1/16 relative above the subnormals), zero rows stay zero."""
    from fastdllm.kernels.fp8_weights import E4M3_MAX, dequantize_rows, quantize_rows

    torch.manual_seed(0)
    w = torch.randn(40, 70, dtype=torch.bfloat16) * torch.logspace(-3, 1, 40)[:, None].bfloat16()  # rows of any scale
    w[5] = 0
    w8, scale = quantize_rows(w)
    assert w8.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32 and scale.shape == (40,)
    assert torch.equal(w8.float().abs().amax(1)[torch.arange(40) != 5], torch.full((39,), E4M3_MAX))
    back = dequantize_rows(w8, scale, torch.float32)
    assert back.dtype == torch.float32 and back[5].abs().sum() == 0
    big = w.float().abs() >= 2 ** -6 * scale[:, None] * 8  # above e4m3's subnormal range
    rel = ((back - w.float()).abs() / w.float().abs())[big]
    assert rel.max() <= 1 / 16 + 1e-6


@pytest.mark.slow
def test_fp8_linear_equals_linear_with_dequantized_weights():
    """The few-row kernel over fp8 weights is ``F.linear`` with the dequantized weight (fp32 reference): row
    scales applied per output column, bias after them, widths and reductions off the tiles, row tiles too."""
    out = interpret("""
        import json, torch
        from fastdllm.kernels.fp8_weights import fp8_linear, quantize_rows, dequantize_rows, FP8_CONFIG
        torch.manual_seed(0)
        results = []
        for M, N, K, bias, config, out in ((32, 200, 512, True, FP8_CONFIG, None), (1, 64, 300, False, FP8_CONFIG, None),
                                           (17, 70, 129, True, (32, 64, 2, 4), None),
                                           (100, 70, 200, False, (64, 64, 2, 4, 32), None),
                                           (32, 96, 256, True, FP8_CONFIG, torch.bfloat16)):  # fp16 in, bf16 out
            x = torch.randn(M, K).half()
            w = torch.randn(N, K) * torch.rand(N, 1)  # rows of different scales
            w8, scale = quantize_rows(w)
            b = torch.randn(N).half() if bias else None
            y = fp8_linear(x.view(1, M, K), w8, scale, b, config, out_dtype=out)
            want = torch.nn.functional.linear(x.float(), dequantize_rows(w8, scale, torch.float32),
                                              None if b is None else b.float())
            results.append([list(y.shape) == [1, M, N], y.dtype == (out or torch.float16),
                            ((y[0].float() - want).abs().max() / want.abs().max()).item(),
                            2 ** -7 if out == torch.bfloat16 else 2e-3])  # bf16 out: one rounding of 8 bits
        print(json.dumps(results))
        """)
    for ok_shape, ok_dtype, rel, tolerance in out:
        assert ok_shape and ok_dtype and rel < tolerance, (ok_shape, ok_dtype, rel)


def test_fp8_linear_rejects_bad_inputs():
    from fastdllm.kernels.fp8_weights import fp8_linear, quantize_rows

    w8, scale = quantize_rows(torch.randn(8, 16))
    with pytest.raises(ValueError, match="float8_e4m3fn"):
        fp8_linear(torch.randn(2, 16).half(), w8.float(), scale)  # not fp8
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        fp8_linear(torch.randn(2, 16), w8, scale)  # fp32 activations
    with pytest.raises(ValueError, match="at most 64 rows"):
        fp8_linear(torch.randn(65, 16).half(), w8, scale)


@pytest.mark.parametrize("packed, splits", [(1, 4), (7, 4), (7, 1)])
def test_split_kv_kernel_compiles_for_hopper(packed, splits):
    """The interpreter runs the kernel as Python and misses what only the compiler checks: compile it for sm_90
    here (no GPU needed), unpacked and with Dream's seven query heads per key/value head stacked, with key slices
    combined through the arrival counter and with one slice written directly (no atomics left)."""
    from fastdllm.kernels import split_kv_attention as skv

    pointers = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "KEEP": "*i1", "O_PART": "*fp32", "LSE_PART": "*fp32",
                "ARRIVED": "*i32", "OUT": "*bf16", "scale_log2": "fp32"}
    constants = {"PACKED": packed, "N_SPLITS": splits, "KEYS_PER_SPLIT": 1024 // splits, "HAS_MASK": True, "BLOCK_M": 32,
                 "BLOCK_N": 64, "D": 128, "PRECISION": "tf32"}
    compiled = compile_for_hopper(skv._split_kv_kernel, pointers, constants)
    ptx = compiled.asm["ptx"]
    assert ("atom" in ptx) == (splits > 1) and ("mma" in ptx or "wgmma" in ptx)  # the arrival counter, the dots


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("B, H, H_kv, m, D", [(1, 28, 4, 33, 128), (1, 28, 4, 97, 128), (16, 28, 4, 33, 128),
                                              (1, 32, 32, 128, 128), (1, 8, 2, 33, 256)])
def test_default_split_kv_tiles_fit_hopper_and_fp32_multiplies_in_fp32(dtype, B, H, H_kv, m, D):
    """The tiles ``split_kv_attention`` picks by default, compiled for sm_90, need at most the shared memory an
    H100 has (fp32 with bf16's tiles needed 295 KB at Dream's dual step and failed at launch); in fp32 the dots
    multiply in fp32, not TF32 (Triton's default, which the interpreter does not emulate)."""
    from fastdllm.kernels import split_kv_attention as skv

    q = torch.empty(B, H, m, D, dtype={"bf16": torch.bfloat16, "fp32": torch.float32}[dtype], device="meta")
    on_gpu = type("OnGPU", (), {"dtype": q.dtype, "is_cuda": True, "shape": q.shape})()  # the device decides the tiles
    packed, block_m, _, splits, block_n = skv._layout(B, H, H_kv, m, True, None, None, skv._fp32_block_n(on_gpu), 132)
    pointers = {"Q": f"*{dtype}", "K": f"*{dtype}", "V": f"*{dtype}", "KEEP": "*i1", "O_PART": "*fp32",
                "LSE_PART": "*fp32", "ARRIVED": "*i32", "OUT": f"*{dtype}", "scale_log2": "fp32"}
    constants = {"PACKED": packed, "N_SPLITS": splits, "KEYS_PER_SPLIT": 1024 // splits, "HAS_MASK": True,
                 "BLOCK_M": block_m, "BLOCK_N": block_n, "D": D, "PRECISION": skv.dot_precision(q.dtype)}
    compiled = compile_for_hopper(skv._split_kv_kernel, pointers, constants)
    assert compiled.metadata.shared <= HOPPER_SHARED_BYTES, (packed, block_m, splits, block_n)
    assert ("tf32" in compiled.asm["ptx"]) is False


def test_split_kv_attention_launches_with_the_fp32_tiles_and_precision(monkeypatch):
    """``split_kv_attention`` takes its keys per iteration from ``_fp32_block_n`` when none is given (a GPU's fp32
    tiles) and passes the dots' precision for the operands' dtype: the launch's arguments, recorded."""
    from fastdllm.kernels import split_kv_attention as skv

    launches = []

    class Recorder:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append(kwargs)

    monkeypatch.setattr(skv, "_split_kv_kernel", Recorder())
    monkeypatch.setattr(skv, "_fp32_block_n", lambda q: 16 if q.dtype == torch.float32 else None)
    q, k = torch.randn(1, 4, 8, 32), torch.randn(1, 2, 40, 32)
    skv.split_kv_attention(q, k, k)
    skv.split_kv_attention(q.bfloat16(), k.bfloat16(), k.bfloat16())
    skv.split_kv_attention(q, k, k, block_n=64)  # given: kept
    assert [(kw["BLOCK_N"], kw["PRECISION"]) for kw in launches] == [(16, "ieee"), (128, "tf32"), (64, "ieee")]


def test_few_row_gemm_multiplies_fp32_in_fp32(monkeypatch):
    """The few-row GEMM's dots take "ieee" precision for fp32 operands (Triton's default would round them to TF32
    on the GPU, which the interpreter tests cannot see) and the default for half precision: the launch recorded."""
    from fastdllm.kernels import skinny_matmul

    launches = []

    class Recorder:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append(kwargs["PRECISION"])

    monkeypatch.setattr(skinny_matmul, "_skinny_kernel", Recorder())
    w = torch.randn(64, 32)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        skinny_matmul._launch(torch.randn(4, 32, dtype=dtype), w.to(dtype), None, skinny_matmul.CANDIDATES[0])
    assert launches == ["ieee", "tf32", "tf32"]


def test_split_kv_default_layouts_are_the_measured_ones():
    """The defaults ``split_kv_attention`` picks on a 132-SM GPU at batch 1 are the configurations the H200 sweep
    found fastest (results/speed/round9_dev/split_kv_sweep_dream.json): Dream's packed heads in one wave of
    programs, LLaDA's unpacked layout as before. (query heads per program, row tile, row tiles, slices, keys per
    iteration)"""
    from fastdllm.kernels.split_kv_attention import _layout

    def default(H, H_kv, m, pack=True):
        return _layout(1, H, H_kv, m, pack, None, None, None, 132)

    assert default(28, 4, 33) == (7, 32, 8, 4, 128)  # 128 programs
    assert default(28, 4, 65) == (7, 32, 15, 2, 128)  # 120
    assert default(28, 4, 97) == (7, 64, 11, 2, 128)  # 88: 32-row tiles would need two waves
    assert default(28, 4, 33, pack=False) == (1, 64, 1, 4, 64)
    assert default(32, 32, 32) == (1, 32, 1, 4, 64)  # no grouped heads: nothing to pack
    assert default(32, 32, 128) == (1, 64, 2, 2, 64)


def test_split_kv_packed_layouts_at_larger_batches_are_the_measured_ones():
    """Dream's packed dual step at batch 4, 16 and 32 on a 132-SM GPU: the configurations the H200 sweep found
    fastest (results/speed/round12_dev/split_kv_ea728ca/): 2 slices of 128-key iterations while a slice's grid
    fits twice in one wave, else one slice of 64-key iterations (the grid alone fills the GPU)."""
    from fastdllm.kernels.split_kv_attention import _layout

    assert _layout(4, 28, 4, 33, True, None, None, None, 132) == (7, 64, 4, 2, 128)  # 64 programs a slice
    assert _layout(16, 28, 4, 33, True, None, None, None, 132) == (7, 64, 4, 1, 64)  # 256 programs
    assert _layout(32, 28, 4, 33, True, None, None, None, 132) == (7, 64, 4, 1, 64)
    assert _layout(1, 28, 4, 33, True, None, 3, 32, 132)[3:] == (3, 32)  # what the caller gives is kept


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 4, 16])
def test_packed_split_kv_on_cuda_is_as_near_fp32_as_sdpa(batch):
    """On a GPU, Dream-shaped grouped heads (28 over 4) at batch 1, 4 and 16 (on a 132-SM GPU 4, 2 and one key
    slice, the last written directly): ``attend`` takes the packed kernel and lands as near an fp32 SDPA as SDPA's own bf16 kernel."""
    import torch.nn.functional as F

    from fastdllm.kernels.split_kv_attention import attend, use_split_kv

    gen = torch.Generator(device="cuda").manual_seed(batch)
    q = torch.randn(batch, 33, 28, 128, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2)
    k = torch.randn(batch, 4, 1024, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(batch, 4, 1024, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    keep = torch.ones(batch, 1024, dtype=torch.bool, device="cuda")
    keep[0, :300] = False  # one row's first 300 keys padded
    mask = keep[:, None, None, :]
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert use_split_kv(q, k)
    got = attend(q, k, v, keep, split_kv=True)
    assert (got.float() - want).abs().max().item() <= 1.5 * (sdpa.float() - want).abs().max().item() + 1e-4

