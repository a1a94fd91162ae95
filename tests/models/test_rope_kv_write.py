"""RoPE fused into the KV-store write (``fastdllm.kernels.rope_kv_write``, ``use_rope_write``), on the CPU
through Triton's interpreter (each check in a fresh process: ``triton_helpers.interpret``).

The kernel must equal ``apply_rope`` on the queries plus ``index_copy_`` of the rotated keys and the values, bit
for bit in fp32 and fp16, for grouped-query heads, row counts that are not multiples of its row tile, query rows
with their own tables (the last layer's narrow rows), the strided views the model passes, and store positions
in any order; and a model with ``use_rope_write()`` must give the same logits and store as without it, through
forwards that refresh, recompute a block, recompute a prefix window, and through whole decodes, while a store
that tracks drift keeps the unfused path. In bf16 the interpreter's own fp32 → bf16 conversion rounds half away
from zero (not to even), so there the check is one bf16 step; the GPU test checks bf16 bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llada

from triton_helpers import compile_for_hopper, interpret

pytest.importorskip("triton")

KERNEL_CASES = [
    # batch, query heads, kv heads, positions n, query rows m (None: the n positions), head dim, store length, dtype
    (2, 6, 2, 37, None, 16, 60, "float32"),  # three row tiles, the last partial; grouped-query heads
    (1, 4, 4, 5, None, 32, 9, "float16"),
    (2, 4, 2, 20, 3, 16, 30, "float32"),  # the last layer: queries for 3 rows with their own tables
    (1, 2, 1, 16, 16, 24, 40, "float16"),  # head dim 24: half 12, padded to a 16-wide tile
    (2, 6, 2, 37, None, 16, 60, "bfloat16"),
]


@pytest.mark.slow
def test_rope_kv_write_equals_rope_then_index_copy():
    out = interpret(f"""
        import json, torch
        from fastdllm.kernels.rope_kv_write import rope_kv_write
        from fastdllm.models.layer_functions import apply_rope, rope_tables
        torch.manual_seed(0)
        results = []
        for B, H, H_kv, n, m, D, L, dtype in {KERNEL_CASES!r}:
            dt = getattr(torch, dtype)
            # q, k, v as the model makes them: views of one projection output [B, n, (H + 2·H_kv)·D]
            qkv = (torch.randn(B, n, (H + 2 * H_kv) * D) * 4).to(dt)
            q, k, v = qkv.split([H * D, H_kv * D, H_kv * D], dim=-1)
            q = q.unflatten(-1, (H, D)).transpose(1, 2)
            k = k.unflatten(-1, (H_kv, D)).transpose(1, 2)
            v = v.unflatten(-1, (H_kv, D)).transpose(1, 2)
            cos_t, sin_t = rope_tables(D, 200, 10000.0)
            pos = torch.randint(0, 200, (B, n))  # [B, n]: any positions (padded rows count real tokens only)
            cos, sin = cos_t[pos].unsqueeze(1), sin_t[pos].unsqueeze(1)
            q_cos, q_sin = cos, sin
            if m is not None:
                rows = torch.randperm(n)[:m]
                q, q_cos, q_sin = q.index_select(2, rows), cos.index_select(2, rows), sin.index_select(2, rows)
            index = torch.randperm(L)[:n]
            store_k, store_v = torch.randn(B, H_kv, L, D).to(dt), torch.randn(B, H_kv, L, D).to(dt)
            want_k = store_k.clone().index_copy_(2, index, apply_rope(k, cos, sin))
            want_v = store_v.clone().index_copy_(2, index, v)
            want_q = apply_rope(q, q_cos, q_sin)
            step = lambda a, b: ((a.float() - b.float()).abs() / b.float().abs().clamp_min(1e-30)).max().item()
            runs = []
            for same_halves, rows_per_program in ((False, 16), (True, 8)):  # rope_tables' halves are equal
                sk, sv = store_k.clone(), store_v.clone()
                got_q = rope_kv_write(q, k, v, cos, sin, q_cos, q_sin, sk, sv, index, same_halves, rows_per_program)
                runs.append([list(got_q.shape), torch.equal(got_q, want_q), torch.equal(sk, want_k),
                             torch.equal(sv, want_v), step(got_q, want_q), step(sk, want_k)])
            results.append(runs)
        print(json.dumps(results))
        """)
    for (B, H, _, n, m, D, _, dtype), runs in zip(KERNEL_CASES, out):
        for shape, q_equal, k_equal, v_equal, q_step, k_step in runs:
            assert shape == [B, H, n if m is None else m, D]
            assert v_equal  # values are copied, never converted
            if dtype == "bfloat16":  # the interpreter's conversion: at most one bf16 step (2^-7 relative) off
                assert q_step <= 2 ** -7 and k_step <= 2 ** -7, (q_step, k_step)
            else:
                assert q_equal and k_equal, (dtype, q_step, k_step)


@pytest.mark.slow
def test_rope_write_leaves_logits_and_store_unchanged():
    """Both families (Dream: grouped-query heads, q/k/v biases, the logit shift's extra row), forced onto the CPU:
    a refresh, a dual-cache block step and a prefix-cache window with ``use_rope_write()`` give the logits and
    KV store of the unfused path exactly, with one launch per layer; whole decodes give the same tokens; a store
    that tracks drift takes the unfused path (no launch) and measures the same drift."""
    out = interpret("""
        import json, torch
        import fastdllm
        import fastdllm.core.kv_store as ks
        ks.use_rope_kv_write = lambda store, like: store.dtype == like.dtype  # the CPU too
        launches = []
        fused_write = ks.rope_kv_write
        ks.rope_kv_write = lambda *a, **kw: (launches.append(1), fused_write(*a, **kw))[1]
        results = {}
        for family in ("llada", "dream"):
            torch.manual_seed(0)
            adapter = fastdllm.model_adapters.get(family)
            model = adapter(adapter.tiny_config()).eval()
            L, P = 24, 8
            canvas = torch.randint(3, 60, (1, L)); canvas[:, P:] = model.mask_token_id
            pos = torch.arange(L)[None]
            steps = ((0, L, P, L), (P - 1, P + 8, P, P + 8), (P - 1, L, P, P + 8))  # refresh, dual, prefix

            def run(drift=False):
                store = model.new_kv_store(1, L)
                if drift:
                    store.track_drift()
                with torch.no_grad():
                    logits = [model.forward_step(canvas, *s, store, pos, None, *r) for *s, r in
                              ((a, b, (c, d)) for a, b, c, d in steps)]
                drift_now = None if store.key_drift is None else store.key_drift.clone()
                return logits, store.keys.clone(), store.values.clone(), drift_now

            model.use_rope_write(False)
            base = run()
            base_drift = run(drift=True)
            model.use_rope_write()
            launches.clear()
            fast = run()
            fused_launches = len(launches)
            launches.clear()
            drifting = run(drift=True)
            drift_launches = len(launches)
            same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a[0], b[0])) and torch.equal(a[1], b[1]) \\
                and torch.equal(a[2], b[2])
            model.use_rope_write(False)
            prompts = [torch.randint(3, 60, (6,)).tolist(), torch.randint(3, 60, (9,)).tolist()]
            decodes = []
            for on in (False, True):
                model.use_rope_write(on)
                decodes.append({cache: fastdllm.generate(model, prompts, gen_length=8, block_length=4, cache=cache,
                                                         unmask="fixed").sequences.tolist() for cache in ("dual", "prefix")})
            results[family] = {"layers": model.arch.n_layers, "same": same(fast, base), "launches": fused_launches,
                               "drift_same": same(drifting, base_drift) and torch.equal(drifting[3], base_drift[3]),
                               "drift_launches": drift_launches, "decodes_same": decodes[0] == decodes[1]}
        print(json.dumps(results))
        """)
    for family, r in out.items():
        assert r["same"] and r["decodes_same"], (family, r)
        assert r["launches"] == 3 * r["layers"], (family, r)  # every layer of the three forwards
        assert r["drift_same"] and r["drift_launches"] == 0, (family, r)


def test_update_rotating_refuses_without_the_kernel():
    """On the CPU (and with drift tracking) the store does not rotate, ``update_rotating`` says why, and a model
    with ``use_rope_write()`` runs the layer function's RoPE: the same logits, no error."""
    from fastdllm.core.kv_store import KVStore, NoStore

    store = KVStore(1, 1, 2, 8, 4, torch.float32, "cpu")
    x = torch.zeros(1, 3, 8)
    assert not store.rotates(x) and not NoStore().rotates(x)
    with pytest.raises(RuntimeError, match="check rotates"):
        store.update_rotating(0, 0, torch.arange(3), *([torch.zeros(1, 2, 3, 4)] * 3), *([torch.ones(1, 1, 3, 4)] * 4))
    model = tiny_llada()
    canvas = torch.randint(3, 60, (1, 12))
    pos = torch.arange(12)[None]
    with torch.no_grad():
        want = model.forward_step(canvas, 0, 12, model.new_kv_store(1, 12), pos, None, 4, 12)
        model.use_rope_write()
        got = model.forward_step(canvas, 0, 12, model.new_kv_store(1, 12), pos, None, 4, 12)
    assert torch.equal(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rope_kv_write_is_bit_exact_in_bf16_on_the_gpu():
    """On the GPU the conversion rounds to nearest even, as PyTorch's: bf16 results equal the eager RoPE."""
    from fastdllm.kernels.rope_kv_write import rope_kv_write
    from fastdllm.models.layer_functions import apply_rope, rope_tables

    torch.manual_seed(0)
    B, H, H_kv, n, D, L = 1, 28, 4, 33, 128, 1024
    qkv = (torch.randn(B, n, (H + 2 * H_kv) * D, device="cuda") * 4).bfloat16()
    q, k, v = qkv.split([H * D, H_kv * D, H_kv * D], dim=-1)
    q, k, v = (t.unflatten(-1, (-1, D)).transpose(1, 2) for t in (q, k, v))
    cos_t, sin_t = (t.cuda() for t in rope_tables(D, L, 1e6))
    pos = torch.arange(700, 700 + n, device="cuda")[None]
    cos, sin = cos_t[pos].unsqueeze(1), sin_t[pos].unsqueeze(1)
    index = pos[0]
    store_k, store_v = (torch.randn(B, H_kv, L, D, device="cuda").bfloat16() for _ in range(2))
    want_k = store_k.clone().index_copy_(2, index, apply_rope(k, cos, sin))
    want_v = store_v.clone().index_copy_(2, index, v)
    for same_halves in (False, True):  # KVStore.update_rotating reads one half of rope_tables' tables
        sk, sv = store_k.clone(), store_v.clone()
        got_q = rope_kv_write(q, k, v, cos, sin, cos, sin, sk, sv, index, same_halves=same_halves)
        assert torch.equal(got_q, apply_rope(q, cos, sin))
        assert torch.equal(sk, want_k) and torch.equal(sv, want_v)


def test_rope_kv_write_compiles_for_hopper_without_fused_multiply_adds():
    """The interpreter runs the kernel as Python, so it misses what only the compiler checks (a name bound to a
    pointer in one branch and an offset in the other once broke the GPU build): compile it for sm_90 here, as
    the launch does (no GPU needed), and check the PTX rounds each product (no ``fma``), as PyTorch's RoPE."""
    from fastdllm.kernels import rope_kv_write as rk

    if rk.triton is None:
        pytest.skip("needs Triton")
    pointers = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "STORE_K": "*bf16", "STORE_V": "*bf16", "Q_OUT": "*bf16",
                "COS": "*fp32", "SIN": "*fp32", "Q_COS": "*fp32", "Q_SIN": "*fp32", "INDEX": "*i64"}
    constants = {"HALF": 64, "BLOCK_H": 64, "ROWS": rk.ROWS, "SAME_HALVES": False}
    kernel = rk._rope_kv_write_kernel
    compiled = {fusion: compile_for_hopper(kernel, pointers, constants, enable_fp_fusion=fusion) for fusion in (False, True)}
    assert "fma.rn.f32" not in compiled[False].asm["ptx"]
    assert "fma.rn.f32" in compiled[True].asm["ptx"]  # the check can see a contraction where one is allowed
