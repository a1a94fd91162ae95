"""cuBLASLt's ranked candidates as GEMM-plan backends (``lt0``, ``lt1``, …): names checked, ``tune``'s ``backends``
honoured, saved ``lt`` choices installed and followed, ``LtGemm``'s input checks and the enum check against a header.
Running the candidates needs CUDA (the last test; ``experiments/lt_algo_sweep.py`` times them on the GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastdllm.kernels import gemm_plan, lt_algos
from tests.models.test_gemm_plan import _weights, fake_timer


@pytest.fixture(autouse=True)
def _fresh_plan(empty_plan):  # conftest's fixture, for every test here
    yield


def test_candidate_names_are_checked():
    for name in ("lt0", "lt7", f"lt{gemm_plan.MAX_LT - 1}"):
        assert gemm_plan.available(name, gemm_plan.LT_MAX_ROWS) and not gemm_plan.available(name, gemm_plan.LT_MAX_ROWS + 1)
    for name in ("lt", "lt01", "ltx", f"lt{gemm_plan.MAX_LT}", "lt-1", "LT0"):
        with pytest.raises(ValueError, match=f"unknown GEMM backend '{name}'"):
            gemm_plan.available(name, 200)
        with pytest.raises(ValueError, match="unknown GEMM backend"):
            gemm_plan.run(name, torch.randn(2, 16), _weights()[0])


def test_tune_times_only_the_backends_asked_for(ran):
    times = {"default": 10.0, "cublas": 9.0, "cublaslt": 5.0, "few_row": 4.0}
    records = gemm_plan.tune({"w": _weights()}, [4], backends=("cublas",), timer=fake_timer(times, ran))
    assert set(records[0]["us"]) == {"default", "cublas"} and records[0]["choice"] == "cublas"
    records = gemm_plan.tune({"w": _weights()}, [4], timer=fake_timer(times, ran))  # all (no lt on the CPU)
    assert set(records[0]["us"]) == set(gemm_plan.BACKENDS) and records[0]["choice"] == "few_row"
    ran.clear()
    with pytest.raises(ValueError, match="unknown GEMM backend 'cuBLAS'"):
        gemm_plan.tune({"w": _weights()}, [4], backends=("cuBLAS",), timer=fake_timer(times, ran))
    assert ran == []


def test_a_saved_lt_choice_is_installed_and_followed(ran):
    ws = _weights()
    record = {"group": "24x16", "rows": 6, "N": 24, "K": 16, "bias": False, "choice": "lt3"}
    gemm_plan.install([record], "cpu", torch.float32)
    x = torch.randn(2, 3, 16)  # 6 rows
    assert gemm_plan.plan() == {gemm_plan.plan_key(x, ws[0], None): "lt3"}
    ran.clear()
    y = gemm_plan._planned_linear(x, ws[0], None)
    assert ran == ["lt3"]
    torch.testing.assert_close(y, F.linear(x, ws[0]))
    for bad in ("lt99", "lt"):
        with pytest.raises(ValueError, match="unknown GEMM backend"):
            gemm_plan.install([{**record, "choice": bad}, {**record, "rows": 4, "choice": "cublas"}], "cpu", torch.float32)
    with pytest.raises(ValueError, match=f"'lt3' cannot run {gemm_plan.LT_MAX_ROWS + 1} rows"):
        gemm_plan.install([{**record, "rows": gemm_plan.LT_MAX_ROWS + 1}], "cpu", torch.float32)
    assert gemm_plan.plan() == {gemm_plan.plan_key(x, ws[0], None): "lt3"}  # nothing of the refused plan went in


def test_lt_gemm_refuses_bad_shapes_before_touching_cuda():
    with pytest.raises(ValueError, match="dtype torch.float32"):
        lt_algos.LtGemm(32, 64, 64, torch.float32, False)
    with pytest.raises(ValueError, match="must be positive and max_algos in 1..16, got 0"):
        lt_algos.LtGemm(0, 64, 64, torch.bfloat16, False)


def test_the_enum_values_are_checked_against_the_headers(tmp_path):
    names = list(lt_algos.ENUMS)
    half = len(names) // 2
    for part, file in ((names[:half], "cublasLt.h"), (names[half:], "library_types.h")):  # spread over two headers
        (tmp_path / file).write_text("typedef enum {\n" + "\n".join(f"  {n} = {lt_algos.ENUMS[n]},  /* c */" for n in part)
                                     + "\n} x;\n")
    both = [str(tmp_path / "cublasLt.h"), str(tmp_path / "library_types.h")]
    assert lt_algos.check_header(both) == {}
    assert lt_algos.check_header(both[0]) == {n: (lt_algos.ENUMS[n], None) for n in names[half:]}  # not found: None
    header = tmp_path / "cublasLt.h"
    header.write_text(header.read_text().replace("CUBLASLT_MATMUL_DESC_TRANSA = 3", "CUBLASLT_MATMUL_DESC_TRANSA = 0"))
    assert lt_algos.check_header(both) == {"CUBLASLT_MATMUL_DESC_TRANSA": (3, 0)}


def test_a_saved_lt_choice_must_name_the_same_candidate_here(monkeypatch):
    class FakeGemm:  # what LtGemm answers on a GPU: two candidates, each with its configuration
        def __len__(self):
            return 2

        def describe(self, rank):
            if not 0 <= rank < 2:
                raise IndexError(rank)
            return {"id": 66, "tile_id": 10 + rank, "splitk_num": 1, "stages_id": 35, "reduction_scheme": 0, "waves": 0.5}

    monkeypatch.setattr(gemm_plan, "_lt_gemm_for", lambda key: FakeGemm())
    config = {"id": 66, "tile_id": 11, "splitk_num": 1, "stages_id": 35, "reduction_scheme": 0}
    record = {"rows": 32, "N": 24, "K": 16, "bias": False, "choice": "lt1", "lt_config": config}
    gemm_plan.install([record], "cuda:0", torch.bfloat16)
    assert gemm_plan.plan() == {("cuda:0", torch.bfloat16, 32, 24, 16, False): "lt1"}
    gemm_plan.clear()
    no_config = {k: v for k, v in record.items() if k != "lt_config"}  # records saved before lt_config: rank checked
    for bad in ({**record, "lt_config": {**config, "tile_id": 99}}, {**no_config, "choice": "lt2"}):
        with pytest.raises(ValueError, match="is not cuBLASLt's candidate of that rank here"):
            gemm_plan.install([bad], "cuda:0", torch.bfloat16)
    assert gemm_plan.plan() == {}
    records = gemm_plan.tune({"w": _weights()}, [8], timer=lambda calls, ws: {b: 1.0 for b in calls})
    assert "lt_config" not in records[0]  # a CPU plan names no cuBLASLt candidate


def _cuda_product(rows: int, N: int, K: int, bias: bool, gen: torch.Generator):
    """bf16 operands on the GPU — weight [N, K], bias [N] or None, x [rows, K] — and their product in fp32."""
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen)  # [N, K]
    b = torch.randn(N, device="cuda", dtype=torch.bfloat16, generator=gen) if bias else None  # [N]
    x = torch.randn(rows, K, device="cuda", dtype=torch.bfloat16, generator=gen)  # [rows, K]
    return w, b, x, F.linear(x.float(), w.float(), None if b is None else b.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs cuBLASLt")
def test_on_the_gpu_every_candidate_computes_the_product_and_unfit_operands_fall_back():
    gen = torch.Generator(device="cuda").manual_seed(0)
    for bias in (False, True):
        w, b, x, ref = _cuda_product(48, 512, 256, bias, gen)
        names = gemm_plan.lt_candidates(x, w, b)
        assert names and names[0] == "lt0"
        for name in names:
            torch.testing.assert_close(gemm_plan.run(name, x, w, b).float(), ref, atol=0.3, rtol=0.02)
        gemm = gemm_plan._lt_gemm(x, w, b)
        assert gemm.fits(x, w, b)
        shifted = torch.empty(48 * 256 + 8, device="cuda", dtype=torch.bfloat16)[8:].view(48, 256).copy_(x)
        strided = torch.empty(256, 48, device="cuda", dtype=torch.bfloat16).t().copy_(x)  # [48, K], not contiguous
        unfit = [(shifted, w, b), (strided, w, b), (x, w.float(), b), (x, w.cpu(), b)]
        if bias:
            unfit += [(x, w, b.float()), (x, w, b[:1])]
        for operands in unfit:
            assert not gemm.fits(*operands)
        for operands in unfit[:2]:
            assert torch.equal(gemm_plan.run("lt0", *operands), gemm_plan.run("default", *operands))
        record = {"rows": 48, "N": 512, "K": 256, "bias": bias, "choice": f"lt{len(names)}"}
        with pytest.raises(ValueError, match="is not cuBLASLt's candidate of that rank here"):
            gemm_plan.install([record], "cuda", torch.bfloat16)
        gemm_plan.install([{**record, "choice": "lt0", "lt_config": gemm_plan._lt_config(gemm, 0)}], "cuda", torch.bfloat16)
        torch.testing.assert_close(gemm_plan.linear(x, w, b).float(), ref, atol=0.3, rtol=0.02)


def test_cublaslt_candidates_are_timed_up_to_their_row_limit(ran, monkeypatch):
    monkeypatch.setattr(gemm_plan, "lt_candidates", lambda x, w, b=None: ["lt0", "lt1"])  # as a CUDA shape offers
    times = {"default": 10.0, "cublas": 10.0, "cublaslt": 10.0, "few_row": 10.0, "lt0": 9.0, "lt1": 5.0}
    limit = gemm_plan.LT_MAX_ROWS
    records = gemm_plan.tune({"w": _weights()}, [8, limit, limit + 1], timer=fake_timer(times, ran))
    by_rows = {r["rows"]: r for r in records}
    assert by_rows[8]["choice"] == by_rows[limit]["choice"] == "lt1" and {"lt0", "lt1"} <= set(by_rows[8]["us"])
    assert by_rows[limit + 1]["choice"] == "default" and not any(b.startswith("lt") for b in by_rows[limit + 1]["us"])
    records = gemm_plan.tune({"w": _weights()}, [8], backends=("cublas", "lt0"), timer=fake_timer(times, ran))
    assert set(records[0]["us"]) == {"default", "cublas", "lt0"} and records[0]["choice"] == "lt0"


def test_the_headers_next_to_the_library_are_found(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "include").mkdir()
    for name in ("cublasLt.h", "library_types.h"):
        (tmp_path / "include" / name).write_text("CUBLAS_OP_T = 1,")
    assert lt_algos.header_paths(str(tmp_path / "lib" / "libcublasLt.so.13")) == [
        str(tmp_path / "include" / "cublasLt.h"), str(tmp_path / "include" / "library_types.h")]


def test_add_configurations_refuses_bad_arguments_before_touching_cuda():
    gemm = lt_algos.LtGemm.__new__(lt_algos.LtGemm)  # no descriptors: the check must come first
    with pytest.raises(ValueError, match=r"split-K counts must be >= 1 and max_checks positive, got \(1, 0\), 10"):
        gemm.add_configurations(splits=(1, 0), max_checks=10)
    with pytest.raises(ValueError, match="got .*, 0"):
        gemm.add_configurations(max_checks=0)
    for kwargs, name in (({"clusters": (0, 70000)}, "clusters"), ({"stages": (-1,)}, "stages"), ({"ids": (2**31,)}, "ids")):
        with pytest.raises(ValueError, match=f"{name} must lie in 0.."):  # ctypes would wrap 70000 to 4464
            gemm.add_configurations(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs cuBLASLt")
def test_on_the_gpu_the_enumerated_configurations_compute_the_product():
    gen = torch.Generator(device="cuda").manual_seed(0)
    for bias in (False, True):
        w, b, x, ref = _cuda_product(96, 512, 1024, bias, gen)
        gemm = lt_algos.LtGemm(96, 512, 1024, torch.bfloat16, bias)
        heuristic = len(gemm)
        ranked = [gemm.describe(r) for r in range(heuristic)]
        ids = sorted({c["id"] for c in ranked})
        info = gemm.add_configurations(splits=(1, 4), ids=ids, clusters=(0, 2), max_checks=20_000)
        assert info["added"] == len(gemm) - heuristic > 0 and info["checked"] <= 20_000
        configs = [gemm.describe(r) for r in range(len(gemm))]
        keys = [tuple((k, v) for k, v in c.items() if k not in ("workspace_bytes", "waves")) for c in configs]
        assert len(set(keys)) == len(keys)  # no configuration twice, the heuristic's included
        added = configs[heuristic:]
        assert {c["id"] for c in added} <= set(ids) and {c["cluster_shape_id"] for c in added} <= {0, 2}
        assert {c["splitk_num"] for c in added} == {1, 4}  # both split counts asked were accepted, no other
        for rank in range(heuristic, len(gemm), max(1, (len(gemm) - heuristic) // 40)):  # a spread of up to ~40
            torch.testing.assert_close(gemm(rank, x, w, b).float(), ref, atol=0.5, rtol=0.02)
