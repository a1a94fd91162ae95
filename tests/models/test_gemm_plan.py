"""``fastdllm.kernels.gemm_plan`` and ``DiffusionLM.tune_gemms`` on the CPU, with a fake timer: the fastest backend
is planned only beyond the margin, per (rows, shape, bias), the planned op runs what was planned (and computes
``F.linear``), and a model times each of its projection shapes over all its layers' weights. The timings
themselves need CUDA (``experiments/bench_gpu.py --modes tuned`` on the GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastdllm
from fastdllm.kernels import gemm_plan


@pytest.fixture(autouse=True)
def _fresh_plan(empty_plan):  # conftest's fixture, for every test here
    yield


def fake_timer(times: dict[str, float], ran: list[str], seen: list | None = None):
    """A timer that runs each backend's call once per weight (checking the output's shape and that the call ran
    that backend) and reports ``times``."""
    def timer(calls, weights):
        for backend, call in calls.items():
            for w in weights:
                ran.clear()
                y = call(w)
                assert ran == [backend] and y.shape[-1] == w.shape[0]
                if seen is not None:
                    seen.append((backend, tuple(w.shape), w.data_ptr()))
        return {backend: times[backend] for backend in calls}
    return timer


def _weights(n=3, N=24, K=16):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(N, K, generator=gen) for _ in range(n)]


def test_the_fastest_backend_is_planned_only_beyond_the_margin(ran):
    ws = _weights()
    times = {"default": 10.0, "cublas": 10.0, "cublaslt": 8.0, "few_row": 9.0}
    records = gemm_plan.tune({"w": ws}, [4, 4], timer=fake_timer(times, ran))
    assert [r["rows"] for r in records] == [4] and records[0]["choice"] == "cublaslt"
    assert records[0]["us"] == times and (records[0]["N"], records[0]["K"]) == (24, 16) and records[0]["tune_s"] >= 0
    x = torch.randn(4, 16)
    assert gemm_plan.plan() == {gemm_plan.plan_key(x, ws[0], None): "cublaslt"}
    # 2 % faster is within the 3 % margin: the default stays, and the earlier choice is withdrawn
    records = gemm_plan.tune({"w": ws}, [4], timer=fake_timer({**times, "cublaslt": 9.8, "few_row": 9.9}, ran))
    assert records[0]["choice"] == "default" and gemm_plan.plan() == {}
    records = gemm_plan.tune({"w": ws}, [4], margin=0.0, timer=fake_timer({**times, "cublaslt": 9.8, "few_row": 9.9}, ran))
    assert records[0]["choice"] == "cublaslt"


def test_the_few_row_kernel_is_a_candidate_only_for_one_row_tile(ran):
    times = {"default": 5.0, "cublas": 5.0, "cublaslt": 5.0, "few_row": 1.0}
    records = gemm_plan.tune({"w": _weights()}, [70, 8], timer=fake_timer(times, ran))
    by_rows = {r["rows"]: r for r in records}
    assert "few_row" not in by_rows[70]["us"] and by_rows[70]["choice"] == "default"
    assert by_rows[8]["choice"] == "few_row"


def test_the_planned_op_runs_the_plan_of_its_own_key(ran):
    ws, bias = _weights(), torch.randn(24)
    times = {"default": 10.0, "cublas": 5.0, "cublaslt": 8.0, "few_row": 9.0}
    gemm_plan.tune({"w+b": ws}, [6], biases={"w+b": [bias] * 3}, timer=fake_timer(times, ran))
    x = torch.randn(2, 3, 16)  # 6 rows
    ran.clear()
    y = gemm_plan._planned_linear(x, ws[1], bias)
    assert ran == ["cublas"]
    torch.testing.assert_close(y, F.linear(x, ws[1], bias))
    for other in ((torch.randn(2, 2, 16), bias), (x, None)):  # 4 rows; no bias: not what was timed
        ran.clear()
        gemm_plan._planned_linear(other[0], ws[1], other[1])
        assert ran == ["default"]
    gemm_plan.clear()
    ran.clear()
    gemm_plan._planned_linear(x, ws[1], bias)
    assert ran == ["default"]


def test_bad_input_is_refused_before_any_timing(ran):
    timer = fake_timer({}, ran)
    with pytest.raises(ValueError, match="positive"):
        gemm_plan.tune({"w": _weights()}, [0, 4], timer=timer)
    with pytest.raises(ValueError, match="one shape"):
        gemm_plan.tune({"w": _weights(N=24) + _weights(N=32)}, [4], timer=timer)
    with pytest.raises(ValueError, match="margin"):
        gemm_plan.tune({"w": _weights()}, [4], margin=1.5, timer=timer)
    assert ran == []  # nothing was run
    with pytest.raises(ValueError, match="unknown GEMM backend 'cublass'"):
        gemm_plan.run("cublass", torch.randn(2, 16), _weights()[0])


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_a_model_times_each_projection_shape_over_all_its_layers(family, ran):
    cls = fastdllm.model_adapters.get(family)
    torch.manual_seed(0)
    model = cls(cls.tiny_config()).eval()
    model.fuse_projections()
    with pytest.raises(RuntimeError, match="CUDA kernels"):
        model.tune_gemms([8])
    seen: list = []
    times = {"default": 10.0, "cublas": 10.0, "cublaslt": 5.0, "few_row": 10.0}
    records = model.tune_gemms([8, 16], timer=fake_timer(times, ran, seen))
    products = model.net.products()[:-1]  # the LM head is not timed
    shapes = {(w.shape[0], w.shape[1], b is not None) for w, b in products}
    assert {(r["N"], r["K"], r["group"].endswith("+bias")) for r in records} == shapes
    assert len(records) == 2 * len(shapes) and all(r["choice"] == "cublaslt" for r in records)
    n_layers = len(model.net.layers)
    for N, K, _ in shapes:  # every layer's weight of the shape was timed, for each backend and row count
        assert sum(1 for _, s, _ in seen if s == (N, K)) == n_layers * 2 * len(times)
    timed = {p for _, _, p in seen}
    assert model.net.lm_head.weight.data_ptr() not in timed
    assert timed == {w.data_ptr() for w, _ in products}
    assert model.net.tuned and model.net.linear() is gemm_plan.linear
    model.use_tuned_gemms(False)
    assert model.net.linear() is F.linear


def test_a_tuned_model_decodes_as_before_on_the_cpu():
    """On the CPU ``gemm_plan.linear`` is ``skinny_matmul.linear`` (cuBLAS choices apply to CUDA products only)."""
    cls = fastdllm.model_adapters.get("llada")
    torch.manual_seed(0)
    model = cls(cls.tiny_config()).eval()
    decoder = fastdllm.DiffusionDecoder(model, cache="dual", unmask={"name": "fixed", "steps": 8}, gen_length=16,
                                        block_length=8)
    prompt = torch.randint(3, 60, (2, 6), generator=torch.Generator().manual_seed(2))
    before = decoder.generate(prompt).sequences
    model.tune_gemms([2], timer=lambda calls, weights: {b: 1.0 for b in calls})
    assert torch.equal(decoder.generate(prompt).sequences, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="times CUDA kernels")
def test_on_the_gpu_every_backend_computes_the_product_and_the_plan_is_followed():
    gen = torch.Generator(device="cuda").manual_seed(0)
    ws = [torch.randn(12288, 512, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(4)]
    x = torch.randn(32, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    ref = F.linear(x.float(), ws[0].float())
    for backend in gemm_plan.BACKENDS:
        torch.testing.assert_close(gemm_plan.run(backend, x, ws[0]).float(), ref, atol=0.1, rtol=0.02)
    records = gemm_plan.tune({"w": ws}, [32], margin=0.0)
    offered = set(gemm_plan.BACKENDS) | set(gemm_plan.lt_candidates(x, ws[0]))  # cuBLASLt's ranked ones too
    assert len(offered) > len(gemm_plan.BACKENDS) and set(records[0]["us"]) == offered
    assert all(t > 0 for t in records[0]["us"].values())
    assert gemm_plan.plan().get(gemm_plan.plan_key(x, ws[0], None), "default") == records[0]["choice"]
    torch.testing.assert_close(gemm_plan.linear(x, ws[1]).float(), F.linear(x.float(), ws[1].float()), atol=0.1, rtol=0.02)


@pytest.mark.parametrize("family, cfg_scale, want", [
    ("dream", 0.0, [8, 10, 28]),  # blocks (2 x 4: the last layer's MLP), cached steps (2 x 5: logit shift), refreshes
    ("llada", 1.0, [16, 56]),  # classifier-free guidance: 4 forward rows; blocks = cached steps (4 x 4), refreshes (4 x 14)
])
def test_tune_gemms_for_times_every_row_count_a_decode_runs(family, cfg_scale, want):
    """``tune_gemms_for`` must time every product a decode runs: with Dream's logit shift a dual step recomputes
    block + 1 positions but its last layer's MLP runs on the block's rows alone; under guidance the forward
    batch is twice the prompt batch."""
    cls = fastdllm.model_adapters.get(family)
    torch.manual_seed(0)
    model = cls(cls.tiny_config()).eval()
    decoder = fastdllm.DiffusionDecoder(model, cache="dual", unmask={"name": "fixed", "steps": 4}, gen_length=8,
                                        block_length=4, cfg_scale=cfg_scale)
    timer = lambda calls, weights: {b: 1.0 for b in calls}  # noqa: E731
    events = []
    records = model.tune_gemms_for(decoder, torch.randint(3, 60, (2, 6)), callbacks=[events.append], timer=timer)
    rows = sorted({r["rows"] for r in records})
    assert rows == want
    assert len(events) == 4  # the caller's callbacks saw the warm-up decode's steps (8 tokens, 2 per step)
    other = cls(cls.tiny_config()).eval()
    with pytest.raises(ValueError, match="another model"):
        other.tune_gemms_for(decoder, torch.randint(3, 60, (2, 6)), timer=timer)


def test_a_saved_plan_is_installed_without_timing_and_refused_for_another_model(tmp_path, ran):
    """``use_gemm_plan`` must rebuild exactly the plan ``tune_gemms`` made (keys and choices, biases included)
    from its records after a JSON round trip, time nothing, and refuse records that fit no projection of the
    model or name an unknown backend before installing any."""
    import json

    cls = fastdllm.model_adapters.get("dream")  # q/k/v carry biases: the key's bias flag is exercised
    torch.manual_seed(0)
    model = cls(cls.tiny_config()).eval()
    model.fuse_projections()
    times = iter([{"default": 10.0, "cublas": 5.0, "cublaslt": 8.0, "few_row": 9.0},
                  {"default": 10.0, "cublas": 9.0, "cublaslt": 6.0, "few_row": 9.0},
                  {"default": 1.0, "cublas": 9.0, "cublaslt": 9.0, "few_row": 9.0}] * 20)
    records = model.tune_gemms([4, 8], timer=lambda calls, weights: {b: t for b, t in next(times).items() if b in calls})
    tuned = gemm_plan.plan()
    assert {r["choice"] for r in records} == {"cublas", "cublaslt", "default"} and any(k[-1] for k in tuned)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(records))
    gemm_plan.clear()
    model.use_tuned_gemms(False)
    ran.clear()
    assert model.use_gemm_plan(path) is model
    assert gemm_plan.plan() == tuned and model.net.tuned and ran == []
    # records saved before the bias field existed: the group name tells
    old = [{k: v for k, v in r.items() if k != "bias"} for r in records]
    gemm_plan.clear()
    model.use_gemm_plan(old)
    assert gemm_plan.plan() == tuned

    llada = fastdllm.model_adapters.get("llada")
    other = llada(llada.tiny_config()).eval()
    gemm_plan.clear()
    with pytest.raises(ValueError, match="no projection of this model"):
        other.use_gemm_plan(records)
    bad = records[:-1] + [dict(records[-1], choice="cublass")]  # last: the others must not be installed first
    with pytest.raises(ValueError, match="unknown GEMM backend 'cublass'"):
        model.use_gemm_plan(bad)
    with pytest.raises(ValueError, match="lacks \\['choice'\\]"):
        gemm_plan.install([{"rows": 4, "N": 8, "K": 8}], "cpu", torch.float32)
    assert gemm_plan.plan() == {}  # nothing of a refused plan was installed
