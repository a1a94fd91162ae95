"""``DiffusionLM.use_fp8_weights()`` on the CPU: the fp8 copies serve exactly the few-row products (a cached step)
and nothing else (a refresh's keys and values come from the bf16 weights), they follow projection fusion, and a weight changed in place
after its copy was made is refused rather than silently served stale. On the CPU the copies are used dequantized,
the numbers the GPU kernel computes (``tests/models/test_triton_kernels.py`` checks the kernel against them)."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

import fastdllm
from fastdllm.kernels import fp8_weights

L, P, BLOCK = 40, 8, 8  # a 40-row refresh (more than the 32 rows fp8 serves), then a block step of 8 (+1) rows
# (the refresh's last layer runs its queries, MLP and the LM head on the block's 8 rows only: those use fp8)


@pytest.fixture
def every_width(monkeypatch):
    """Tiny models' weights are narrow: let every projection get an fp8 copy."""
    monkeypatch.setattr(fp8_weights, "MIN_FP8_COLUMNS", 1)


def _tiny(family: str):
    cls = fastdllm.model_adapters.get(family)
    torch.manual_seed(0)
    return cls(cls.tiny_config()).eval()


def _forwards(model, store=None):
    """(refresh logits, store after it, cached-step logits) on a fixed canvas."""
    gen = torch.Generator().manual_seed(1)
    canvas = torch.randint(3, 60, (1, L), generator=gen)
    canvas[:, P:] = model.mask_token_id
    pos = torch.arange(L)[None]
    store = model.new_kv_store(1, L) if store is None else store
    with torch.no_grad():
        refresh = model.forward_step(canvas, 0, L, store, pos, None, P, P + BLOCK)
        kept = copy.deepcopy(store)
        step = model.forward_step(canvas, P - model.logit_shift, P + BLOCK, store, pos, None, P, P + BLOCK)
    return refresh, kept, step


def _rounded(model):
    """A copy whose projection and LM-head weights are their fp8 copies, dequantized."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for module in out.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(fp8_weights.dequantize_rows(*fp8_weights.quantize_rows(module.weight), module.weight.dtype))
    return out


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_fp8_copies_serve_the_few_row_products_only(every_width, family):
    model = _tiny(family)
    plain, rounded = copy.deepcopy(model), _rounded(model)
    model.use_fp8_weights()
    try:
        assert len(model.net._fp8_weights) == 7 * model.arch.n_layers + 1  # q, k, v, o, gate, up, down; LM head
        refresh, store, step = _forwards(model)
        plain_refresh, plain_store, plain_step = _forwards(plain)
        # the refresh's keys/values come from 40-row products: the bf16 weights, bit for bit
        assert torch.equal(store.keys, plain_store.keys) and torch.equal(store.values, plain_store.values)
        _, _, rounded_step = _forwards(rounded, None)
        # the cached step on the same store: the fp8 copies, i.e. the rounded weights
        with torch.no_grad():
            pos = torch.arange(L)[None]
            canvas = torch.randint(3, 60, (1, L), generator=torch.Generator().manual_seed(1))
            canvas[:, P:] = model.mask_token_id
            want = rounded.forward_step(canvas, P - model.logit_shift, P + BLOCK, copy.deepcopy(store), pos, None, P, P + BLOCK)
        assert torch.equal(step, want)
        assert not torch.equal(step, plain_step)  # the rounding is there
        assert torch.equal(_forwards(copy.deepcopy(model))[2], step)  # a copy makes its own fp8 copies
        model.use_fp8_weights(False)
        assert not model.net._fp8_weights and not fp8_weights._REGISTRY
        assert torch.equal(_forwards(model)[2], plain_step)
    finally:
        model.use_fp8_weights(False)


def test_fp8_copies_follow_fusion_and_refuse_stale_weights(every_width):
    model = _tiny("llada").use_fp8_weights()
    try:
        model.fuse_projections()
        attn = model.net.layers[0].attn
        assert fp8_weights.lookup(attn.qkv_weight) is not None  # the fused matrix got its copy
        assert fp8_weights.lookup(attn.q_proj.weight) is None  # its row views are not what the layers pass
        assert len(model.net._fp8_weights) == 4 * model.arch.n_layers + 1
        _forwards(model)
        with torch.no_grad():
            model.net.lm_head.weight.mul_(2)  # changed in place after the copy was made
        with pytest.raises(RuntimeError, match="use_fp8_weights"):
            _forwards(model)
        model.use_fp8_weights()  # new copies
        _forwards(model)
    finally:
        model.use_fp8_weights(False)


@pytest.mark.parametrize("fused", [False, True])
def test_only_normed_inputs_go_to_fp16(every_width, fused):
    """The q/k/v and gate/up projections and the LM head read an RMSNorm's output, bounded by √d · max |g|, and
    take their bf16 inputs in fp16; the output and down projections (no bound) never do; a norm weight large enough
    to break fp16's range takes its products off the route when the copies are made again."""
    model = _tiny("llada")
    model.net.fuse_projections(fused)
    model.use_fp8_weights()
    try:
        net = model.net
        weights, bounds = net.wide_weights(), net.input_bounds()
        assert len(weights) == len(bounds) and all(fp8_weights.registered(w) for w in weights)
        d = net.arch.d_model
        for (weight, _), bound in zip(net.products(), bounds):
            normed = bound is not None
            assert fp8_weights.takes_fp16_inputs(weight) == normed
        a, mlp = net.layers[0].attn, net.layers[0].mlp
        assert not fp8_weights.takes_fp16_inputs(a.o_proj.weight) and not fp8_weights.takes_fp16_inputs(mlp.down_proj.weight)
        assert fp8_weights.takes_fp16_inputs(net.lm_head.weight)
        assert bounds[-1] == pytest.approx(1.01 * d ** 0.5 * net.norm.weight.abs().max().item())
        # x_i / rms(x) reaches √d when one entry carries all the energy: the bound is tight, not a guess
        spike = torch.zeros(1, d)
        spike[0, 3] = 5.0
        assert fastdllm.models.layer_functions.rms_norm(spike, torch.ones(d), 0.0).abs().max() == pytest.approx(d ** 0.5)
        with torch.no_grad():
            net.layers[0].mlp_norm.weight[0] = fp8_weights.FP16_INPUT_LIMIT  # √d · this exceeds the limit
        model.sync_fp8()  # what the next forward runs first: a norm weight changed in place, so the bounds are made again
        gate_up = mlp.gate_up_weight if fused else mlp.gate_proj.weight
        assert not fp8_weights.takes_fp16_inputs(gate_up)
        assert fp8_weights.takes_fp16_inputs(net.layers[0].attn.qkv_weight if fused else a.q_proj.weight)
    finally:
        model.use_fp8_weights(False)


@pytest.mark.parametrize("widths", ["every", "normed"])
def test_with_a_tuned_plan_the_products_fp8_does_not_serve_run_by_the_plan(monkeypatch, widths):
    """fp8 copies and a tuned GEMM plan together: the few-row products by registered weights go to the fp8 copies,
    every other product (a refresh's 40 rows; in a cached step the weights too narrow for a copy) to the plan's
    ``linear``; without the plan, none reach it. With copies of the normed products only ("normed": q/k/v, gate/up,
    LM head), every copy takes fp16 inputs and the model converts x before the op (``linear_tuned_fp16x``)."""
    from fastdllm.kernels import gemm_plan

    model = _tiny("llada").use_compile(False)
    model.net.fuse_projections()
    d = model.net.arch.d_model
    monkeypatch.setattr(fp8_weights, "MIN_FP8_COLUMNS", 1 if widths == "every" else d + 1)  # o/down are d wide
    seen = []
    real = gemm_plan.linear
    monkeypatch.setattr(gemm_plan, "linear", lambda x, w, b=None: seen.append((x.shape[-2], w.shape[0])) or real(x, w, b))
    model.use_fp8_weights()
    try:
        assert model.net._fp8_all_fp16 == (widths == "normed")
        for tuned in (False, True):
            model.use_tuned_gemms(tuned)
            assert model.net.linear() is {(False, "every"): fp8_weights.linear, (True, "every"): fp8_weights.linear_tuned,
                                          (False, "normed"): fp8_weights.linear_fp16x,
                                          (True, "normed"): fp8_weights.linear_tuned_fp16x}[(tuned, widths)]
            seen.clear()
            store = _forwards(model)[1]  # a refresh (40 rows: the plan's when tuned), then a cached step
            assert bool(seen) == tuned and any(rows > fp8_weights.MAX_ROWS for rows, _ in seen) == tuned
            seen.clear()
            with torch.no_grad():  # a cached step alone: few-row products; the plan gets the unregistered weights
                model.forward_step(*_step_args(model), store, torch.arange(L)[None], None, P, P + BLOCK)
            assert all(n == d for _, n in seen) and bool(seen) == (tuned and widths == "normed")
    finally:
        model.use_fp8_weights(False)
        model.use_tuned_gemms(False)


def test_fp8_serves_up_to_max_rows_by_wide_weights():
    wide, narrow = torch.empty(fp8_weights.MIN_FP8_COLUMNS, 8), torch.empty(fp8_weights.MIN_FP8_COLUMNS - 1, 8)
    for rows, weight, served in ((fp8_weights.MAX_ROWS, wide, True), (fp8_weights.MAX_ROWS + 1, wide, False),
                                 (1, wide, True), (0, wide, False), (1, narrow, False)):
        assert fp8_weights._serves(torch.empty(1, rows, 8), weight) == served, (rows, weight.shape)


def _step_args(model):
    gen = torch.Generator().manual_seed(1)
    canvas = torch.randint(3, 60, (1, L), generator=gen)
    canvas[:, P:] = model.mask_token_id
    return canvas, P - model.logit_shift, P + BLOCK


@contextlib.contextmanager
def _graphed_fp8_llada():
    """A tiny LLaDA with fp8 copies and CUDA graphs through the recording capture backend (the CPU stands in for
    CUDA), with a canvas, position ids and a store: ``(model, canvas, pos, store)``; fp8 and graphs off after."""
    from test_cuda_graphs import RecordingGraphs

    model = _tiny("llada").use_fp8_weights()
    model.use_cuda_graphs(backend=RecordingGraphs())
    try:
        gen = torch.Generator().manual_seed(1)
        canvas = torch.randint(3, 60, (1, L), generator=gen)
        canvas[:, P:] = model.mask_token_id
        yield model, canvas, torch.arange(L)[None], model.new_kv_store(1, L)
    finally:
        model.use_cuda_graphs(False)
        model.use_fp8_weights(False)


def test_a_norm_changed_in_place_remakes_the_copies_and_the_graphs(every_width):
    """Replays of captured graphs run no Python: ``forward_step`` itself notices a norm weight
    changed in place, makes the copies (and bounds) again and drops the graphs, which hold the old copies'
    addresses."""
    with _graphed_fp8_llada() as (model, canvas, pos, store):
        step = lambda: model.forward_step(canvas, P, P + BLOCK, store, pos, None, P, P + BLOCK)  # noqa: E731
        with torch.no_grad():
            model.forward_step(canvas, 0, L, store, pos, None, P, P + BLOCK)
            step()
            step()
            graphs, head = model.cuda_graphs, model.net.lm_head.weight
            captures = graphs.captures
            assert captures >= 1 and fp8_weights.takes_fp16_inputs(head)
            step()
            assert model.cuda_graphs is graphs and graphs.captures == captures  # nothing changed: replayed
            model.net.norm.weight.mul_(fp8_weights.FP16_INPUT_LIMIT)  # the LM head's bound now exceeds the limit
            step()
        assert not fp8_weights.takes_fp16_inputs(head)  # the copies were made again with the new bound
        assert model.cuda_graphs is not graphs and model.cuda_graphs.captures == 1  # the graphs dropped, one new


def test_a_full_forward_after_a_norm_change_remakes_the_copies_and_drops_the_graphs(every_width):
    """``model(ids)`` of at most 32 positions runs its products from the fp8 copies too: after a norm weight changed
    in place it makes them again (with the new bound) and drops the captured graphs, which read the old copies, so
    the next cached step captures afresh rather than replaying freed memory."""
    with _graphed_fp8_llada() as (model, canvas, pos, store):
        with torch.no_grad():
            model.forward_step(canvas, 0, L, store, pos, None, P, P + BLOCK)
            model.forward_step(canvas, P, P + BLOCK, store, pos, None, P, P + BLOCK)
            graphs, head = model.cuda_graphs, model.net.lm_head.weight
            assert graphs.captures >= 1 and fp8_weights.takes_fp16_inputs(head)
            model.net.norm.weight.mul_(fp8_weights.FP16_INPUT_LIMIT)
            model(canvas[:, :P])  # 8 positions: every product goes to the fp8 op
        assert not fp8_weights.takes_fp16_inputs(head)  # the copies were made again with the new bound
        assert model.cuda_graphs is not graphs  # and the graphs holding the old ones dropped


def test_register_wants_one_bound_per_weight(every_width):
    w = torch.randn(8, 4)
    with pytest.raises(ValueError, match="2 input bounds for 1 weights"):
        fp8_weights.register([w], [1.0, 2.0])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available() or fp8_weights.triton is None,
                                reason="the fp8 kernel runs on CUDA with Triton")


@needs_cuda
def test_fp16_inputs_give_the_kernel_the_same_products_on_cuda():
    """On the GPU, normed bf16 inputs handed to the fp8 kernel in fp16 (bf16 out) give what bf16 inputs give, bit
    for bit: x and the e4m3 weight are exact in either type and the tensor cores accumulate in fp32 alike."""
    torch.manual_seed(0)
    M, N, K = 32, 2048, 1024
    x = (torch.randn(M, K, device="cuda") * 3).bfloat16()  # [M, K]: normal fp16 numbers
    w8, scale = fp8_weights.quantize_rows(torch.randn(N, K, device="cuda") / K ** 0.5)
    via_bf16 = fp8_weights.fp8_linear(x, w8, scale)  # [M, N] bf16
    via_fp16 = fp8_weights.fp8_linear(x.half(), w8, scale, out_dtype=torch.bfloat16)  # [M, N] bf16
    want = x.float() @ fp8_weights.dequantize_rows(w8, scale, torch.float32).T
    assert via_fp16.dtype == torch.bfloat16
    top = want.abs().max()
    assert (via_fp16.float() - want).abs().max() <= (via_bf16.float() - want).abs().max() + 1e-6 * top
    assert torch.equal(via_fp16, via_bf16)  # on an H200 at 45a0b5d (round17_dev)


@needs_cuda
@pytest.mark.parametrize("widths", ["every", "normed"])
def test_a_cached_step_with_fp16_inputs_matches_bf16_inputs_on_cuda(monkeypatch, widths):
    """A tiny model's cached step on the GPU with the fp16 route and without it: the same logits, bit for bit (the
    route is taken: the registry says so for the normed products). "every": the op converts x for the copies
    that take fp16 (o/down have copies and no bound); "normed": only bounded products have copies, and the eager
    caller converts x before the op (``linear_fp16x``)."""
    model = _tiny("llada").to(device="cuda", dtype=torch.bfloat16)
    model.net.fuse_projections()
    monkeypatch.setattr(fp8_weights, "MIN_FP8_COLUMNS", 1 if widths == "every" else model.net.arch.d_model + 1)
    gen = torch.Generator().manual_seed(1)
    canvas = torch.randint(3, 60, (1, L), generator=gen).cuda()
    canvas[:, P:] = model.mask_token_id
    pos = torch.arange(L, device="cuda")[None]
    out, dtypes = {}, set()
    real = fp8_weights.fp8_linear
    monkeypatch.setattr(fp8_weights, "fp8_linear", lambda x, *a, **k: dtypes.add(x.dtype) or real(x, *a, **k))
    try:
        for fp16 in (False, True):
            dtypes.clear()
            model.use_fp8_weights(fp16_inputs=fp16)
            assert fp8_weights.takes_fp16_inputs(model.net.lm_head.weight) == fp16
            assert model.net._fp8_all_fp16 == (fp16 and widths == "normed")
            store = model.new_kv_store(1, L)
            with torch.no_grad():
                model.forward_step(canvas, 0, L, store, pos, None, P, P + BLOCK)
                out[fp16] = model.forward_step(canvas, P, P + BLOCK, store, pos, None, P, P + BLOCK).float()
            # the kernel got fp16 where the route is on ("every": o/down have copies and keep bf16)
            assert dtypes == ({torch.float16} if fp16 and widths == "normed" else
                              {torch.float16, torch.bfloat16} if fp16 else {torch.bfloat16}), (fp16, widths, dtypes)
    finally:
        model.use_fp8_weights(False)
    assert torch.equal(out[True], out[False])
