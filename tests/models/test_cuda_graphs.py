"""CUDA-graph replay decodes exactly what the eager forward decodes (runs where a GPU is present; CI has
none, the device run of experiments/bench_gpu.py records the same check at full model shape), and the
graph bookkeeping (index/rows refill before each replay, re-capture on new buffers) tested on the CPU
through a recording backend that replays a capture by re-running it on the graph's own tensors."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import FAMILIES, padded_batch, tiny_model

import fastdllm
from fastdllm.core.kv_store import KVStore, NoStore
from fastdllm.models.cuda_graphs import CudaGraphSteps

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache", ["none", "prefix", "dual", {"name": "refresh-interval", "interval": 3}], ids=str)
@pytest.mark.parametrize("unmask", ["fixed", {"name": "threshold", "threshold": 0.3}], ids=str)
def test_graphed_tokens_equal_eager(family, cache, unmask):
    model = tiny_model(family, seed=5).cuda()
    ids, real = padded_batch([5, 9, 3], seed=6)
    options = dict(cache=cache, unmask=unmask, gen_length=16, block_length=8)
    eager = fastdllm.generate(model, ids.cuda(), attention_mask=real.cuda(), **options)
    model.use_cuda_graphs()
    graphed = fastdllm.generate(model, ids.cuda(), attention_mask=real.cuda(), **options)
    again = fastdllm.generate(model, ids.cuda(), attention_mask=real.cuda(), **options)  # fresh buffers, recapture
    decoder = fastdllm.DiffusionDecoder(model, **options)  # static buffers: graphs replay across its calls
    first = decoder.generate(ids.cuda(), real.cuda())
    captures = model.cuda_graphs.captures
    second = decoder.generate(ids.cuda(), real.cuda())
    model.use_cuda_graphs(False)
    assert torch.equal(graphed.sequences, eager.sequences)
    assert torch.equal(again.sequences, eager.sequences)
    assert torch.equal(first.sequences, eager.sequences) and torch.equal(second.sequences, eager.sequences)
    assert model.cuda_graphs is None and captures > 0
    assert graphed.nfe == eager.nfe


@cuda
def test_a_decoder_reuses_its_graphs():
    model = tiny_model("llada", seed=5).cuda().use_cuda_graphs()
    ids, real = padded_batch([5, 9, 3], seed=6)
    decoder = fastdllm.DiffusionDecoder(model, cache="prefix", unmask="fixed", gen_length=16, block_length=8)
    decoder.generate(ids.cuda(), real.cuda())
    captures = model.cuda_graphs.captures
    decoder.generate(ids.cuda(), real.cuda())
    assert model.cuda_graphs.captures == captures == 3  # refresh + one window per block


def test_cpu_forward_ignores_graphs():
    """On the CPU the switch changes nothing (graphs are CUDA-only)."""
    model = tiny_model("llada", seed=5).use_cuda_graphs()
    ids, real = padded_batch([5, 3], seed=6)
    result = fastdllm.generate(model, ids, attention_mask=real, cache="dual", unmask="fixed", gen_length=8,
                               block_length=4)
    assert result.nfe == 8 and model.cuda_graphs.captures == 0


@cuda
def test_graphs_follow_a_change_of_prompt_length():
    """Buffers of a new shape may reuse freed addresses: graphs must be keyed by shape, not address only."""
    model = tiny_model("llada", seed=5).cuda()
    decoder = fastdllm.DiffusionDecoder(model, cache="dual", unmask="fixed", gen_length=16, block_length=8)
    batches = [padded_batch(lengths, seed=i) for i, lengths in enumerate([[5, 9], [4, 3], [12, 6], [5, 9]])]
    eager = [decoder.generate(ids.cuda(), real.cuda()).sequences for ids, real in batches]
    model.use_cuda_graphs()
    graphed = [decoder.generate(ids.cuda(), real.cuda()).sequences for ids, real in batches]
    model.use_cuda_graphs(False)
    assert all(torch.equal(a, b) for a, b in zip(eager, graphed))


# ---- the bookkeeping on the CPU ----------------------------------------------------------------------
class RecordingGraphs:
    """A capture backend for the CPU. A "graph" is the forward closure itself: replaying it re-runs the
    forward on the tensors bound at capture (the graph's own ``index``/``rows``, the captured canvas and
    store) and copies the result into the captured output buffer, as a CUDA graph replay would."""

    def __init__(self) -> None:
        self.replays = 0

    def supports(self, canvas):
        return True

    def capture(self, forward, device, pool):
        output = forward()

        def replay():
            self.replays += 1
            output.copy_(forward())

        return replay, output, pool


def _record_steps(model, calls):
    """Record ``(index, rows)`` of every ``step_logits`` call (captures and replays alike)."""
    plain = model.step_logits

    def step_logits(canvas, start, index, store, position_ids, key_mask, rows):
        calls.append((index.clone(), rows.clone()))
        return plain(canvas, start, index, store, position_ids, key_mask, rows)

    model.step_logits = step_logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache", ["none", "prefix", "dual", {"name": "refresh-interval", "interval": 3}], ids=str)
def test_replays_refill_index_and_rows(family, cache):
    """Each replay runs on the window and logit rows of its own step, and the tokens are the eager ones."""
    model = tiny_model(family, seed=5)
    ids, real = padded_batch([5, 9, 3], seed=6)
    options = dict(cache=cache, unmask="fixed", gen_length=24, block_length=8)
    eager = fastdllm.generate(model, ids, attention_mask=real, **options)
    backend = RecordingGraphs()
    model.use_cuda_graphs(backend=backend)
    calls, steps = [], []
    _record_steps(model, calls)
    graphed = fastdllm.generate(model, ids, attention_mask=real, callbacks=[lambda e: steps.append((e.plan, e.step))],
                                **options)
    assert torch.equal(graphed.sequences, eager.sequences)
    sizes = {plan.end - plan.start for plan, _ in steps}
    assert model.cuda_graphs.captures == len(sizes) and backend.replays == len(steps)
    expected, seen = [], set()  # step_logits calls: a capture (None) at a size's first use, then one per replay
    for plan, step in steps:
        if plan.end - plan.start not in seen:
            seen.add(plan.end - plan.start)
            expected.append(None)
        expected.append((plan, step))
    assert len(calls) == len(expected)
    for (index, rows), want in zip(calls, expected):
        if want is None:
            continue
        plan, step = want
        assert torch.equal(index, torch.arange(plan.start, plan.end))
        first = step.block_start - model.logit_shift - plan.start
        assert torch.equal(rows, torch.arange(first, first + 8))


def test_a_decoder_reuses_its_graphs_on_cpu():
    model = tiny_model("llada", seed=5).use_cuda_graphs(backend=RecordingGraphs())
    ids, real = padded_batch([5, 9, 3], seed=6)
    decoder = fastdllm.DiffusionDecoder(model, cache="dual", unmask="fixed", gen_length=16, block_length=8)
    decoder.generate(ids, real)
    assert model.cuda_graphs.captures == 2  # the refresh and the block window
    decoder.generate(ids, real)
    assert model.cuda_graphs.captures == 2
    fastdllm.DiffusionDecoder(model, cache="dual", unmask="fixed", gen_length=16, block_length=8).generate(ids, real)
    assert model.cuda_graphs.captures == 4  # another decoder's buffers: captured afresh


def _views(base: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return base[: torch.Size(shape).numel()].view(shape)


@pytest.mark.parametrize("family", FAMILIES)
def test_graphs_recaptured_for_a_new_shape_at_the_same_address(family):
    """Two canvases of different lengths at the same addresses (freed memory reused): the second must not
    replay graphs bound to the first one's shape."""
    model = tiny_model(family, seed=5)
    graphs = CudaGraphSteps(model, RecordingGraphs())
    a = model.arch
    canvas_mem, pos_mem = torch.zeros(64, dtype=torch.long), torch.zeros(64, dtype=torch.long)
    kv_mem = [torch.zeros(a.n_layers * a.n_kv_heads * 32 * a.head_dim) for _ in range(2)]
    store = KVStore(a.n_layers, 1, a.n_kv_heads, 1, a.head_dim, torch.float32, "cpu")
    for length, seed in ((20, 1), (28, 2)):
        gen = torch.Generator().manual_seed(seed)
        canvas = _views(canvas_mem, (1, length))  # [1, L], same data_ptr for both lengths
        canvas.copy_(torch.randint(6, 60, (1, length), generator=gen))
        position_ids = _views(pos_mem, (1, length))
        position_ids.copy_(torch.arange(length)[None])
        store.keys, store.values = (_views(m, (a.n_layers, 1, a.n_kv_heads, length, a.head_dim)) for m in kv_mem)
        with torch.inference_mode():
            model.step_logits(canvas, 0, torch.arange(length), store, position_ids, None, torch.arange(1, 4))
            index, rows = torch.arange(length - 8, length), torch.arange(1, 4)
            expected = model.step_logits(canvas, length - 8, index, store, position_ids, None, rows).clone()
            got = graphs(canvas, length - 8, index, store, position_ids, None, rows)
        torch.testing.assert_close(got, expected)
    assert graphs.captures == 2


def test_graphs_recaptured_for_a_new_store():
    model = tiny_model("llada", seed=5)
    graphs = CudaGraphSteps(model, RecordingGraphs())
    canvas = torch.randint(6, 60, (1, 12))
    position_ids = torch.arange(12)[None]
    index, rows = torch.arange(12), torch.arange(4, 8)
    with torch.inference_mode():
        first = graphs(canvas, 0, index, NoStore(), position_ids, None, rows).clone()
        graphs(canvas, 0, index, model.new_kv_store(1, 12), position_ids, None, rows)
        assert graphs.captures == 2
        other = model.new_kv_store(1, 12)  # same shapes, other memory: the replay must write this one
        other.keys.zero_(), other.values.zero_()
        graphs(canvas, 0, index, other, position_ids, None, rows)
        assert graphs.captures == 3 and other.keys.abs().sum() > 0 and other.values.abs().sum() > 0
        graphs(canvas, 0, index, NoStore(), position_ids, None, rows)
        assert graphs.captures == 4
        canvas[0, 5] = 7 if canvas[0, 5] != 7 else 8  # the graph reads the canvas in place
        changed = graphs(canvas, 0, index, NoStore(), position_ids, None, rows)
    assert graphs.captures == 4 and not torch.equal(changed, first)


@pytest.mark.parametrize("switch", ["use_compile", "use_split_kv_attention", "use_skinny_matmul", "use_fp8_weights"])
def test_kernel_switches_drop_captured_graphs(switch):
    """A captured graph holds the kernels it was captured with: turning compile, the split-KV attention or the
    few-row GEMM on or off drops the graphs (captured again at their next use); a switch to the current
    state keeps them."""
    model = tiny_model("llada", seed=5).use_cuda_graphs(backend=RecordingGraphs())
    ids, real = padded_batch([5, 9], seed=6)
    options = dict(cache="dual", unmask="fixed", gen_length=16, block_length=8)
    fastdllm.generate(model, ids, attention_mask=real, **options)
    graphs = dict(model.cuda_graphs.graphs)
    assert graphs
    toggle = getattr(model, switch)
    toggle(False)  # already off: nothing to recapture
    assert model.cuda_graphs.graphs == graphs
    toggle()
    assert not model.cuda_graphs.graphs
    fastdllm.generate(model, ids, attention_mask=real, **options)
    assert model.cuda_graphs.graphs
    toggle(False)
    assert not model.cuda_graphs.graphs


def test_split_kv_layout_switch_drops_captured_graphs():
    """The split-KV kernel's layout (``pack_gqa``) is captured in a graph too: changing it alone recaptures."""
    model = tiny_model("dream", seed=5).use_cuda_graphs(backend=RecordingGraphs()).use_split_kv_attention()
    ids, real = padded_batch([5, 9], seed=6)
    options = dict(cache="dual", unmask="fixed", gen_length=16, block_length=8)
    fastdllm.generate(model, ids, attention_mask=real, **options)
    assert model.cuda_graphs.graphs and model.net.pack_gqa
    model.use_split_kv_attention(pack_gqa=True)  # unchanged
    assert model.cuda_graphs.graphs
    model.use_split_kv_attention(pack_gqa=False)
    assert not model.cuda_graphs.graphs and model.net.split_kv and not model.net.pack_gqa


def test_moving_or_casting_the_model_drops_captured_graphs():
    """Graphs read the weights they were captured with: ``to()`` (a cast or a move) makes new weight tensors,
    so the graphs are dropped and captured again, and the next decode equals a fresh model's."""
    model = tiny_model("llada", seed=5).use_cuda_graphs(backend=RecordingGraphs())
    ids, real = padded_batch([5, 9], seed=6)
    options = dict(cache="dual", unmask="fixed", gen_length=16, block_length=8)
    fastdllm.generate(model, ids, attention_mask=real, **options)
    assert model.cuda_graphs.graphs
    model.to(torch.float64)
    assert not model.cuda_graphs.graphs
    again = fastdllm.generate(model, ids, attention_mask=real, **options)
    fresh = tiny_model("llada", seed=5).to(torch.float64)
    assert torch.equal(again.sequences, fastdllm.generate(fresh, ids, attention_mask=real, **options).sequences)
