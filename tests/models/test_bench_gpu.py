"""experiments/bench_gpu.py at a tiny shape on the CPU: the plain and optimised paths run, their tokens are
compared in the run itself, and the result file holds what the speed tables read."""

from __future__ import annotations

import json
import re

import pytest
import torch
from checkpoint_helpers import FAMILIES, experiment_script, single_thread  # noqa: F401


def _bench():
    return experiment_script("bench_gpu")


@pytest.mark.parametrize("family", FAMILIES)
def test_small_cpu_run(tmp_path, family):
    out = tmp_path / "r.json"
    _bench().main(["--small", "--device", "cpu", "--family", family, "--repeats", "1", "--forward-repeats", "1",
                   "--batches", "1,2", "--prompt-length", "12", "--gen-length", "8", "--block-length", "4",
                   "--ks", "2", "--caches", "none,dual", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["family"] == family and d["modes"] == ["plain", "eager"]
    rows = {(r["batch"], r["cache"], r["mode"]): r for r in d["settings"]}
    assert set(rows) == {(b, c, m) for b in (1, 2) for c in ("none", "dual") for m in ("plain", "eager")}
    kv_heads = {"llada": 4, "dream": 2}[family]  # bench_gpu's tiny configs: 2 layers, head dim 16, fp32
    for (batch, cache, mode), r in rows.items():
        assert r["nfe"] == 4 and r["tokens_per_s"] > 0
        assert r["tokens_equal_plain"] is True if mode == "eager" else "tokens_equal_plain" not in r
        assert r["kv_store_bytes"] == (0 if cache == "none" else 2 * 2 * batch * kv_heads * 20 * 16 * 4)
    assert {(f["batch"], f["mode"], f["kind"]) for f in d["forwards"]} == {
        (b, m, k) for b in (1, 2) for m in ("plain", "eager") for k in ("refresh", "dual")}
    assert all(f["argmax_agreement_plain"] == 1.0 for f in d["forwards"] if f["mode"] == "eager")


def test_unknown_cache_refused_before_work(capsys):
    with pytest.raises(SystemExit):
        _bench().main(["--small", "--device", "cpu", "--caches", "duel"])
    assert "not a registered cache policy" in capsys.readouterr().err


def test_report_renders_the_speed_tables(tmp_path):
    """experiments/report.py's speed tables from bench_gpu.py's own result files (CPU: no floors)."""
    _bench().main(["--small", "--device", "cpu", "--repeats", "1", "--forward-repeats", "1", "--prompt-length", "12",
                   "--gen-length", "8", "--block-length", "4", "--ks", "4", "--caches", "dual",
                   "--modes", "plain,eager,graphs", "--out", str(tmp_path / "speed" / "r.json")])
    report = experiment_script("report_speed")
    report.RESULTS = tmp_path
    text = report.speed_report(tmp_path / "speed")
    setting = [line for line in text.splitlines() if line.startswith("| llada | 1 | dual | 4 |")]
    assert len(setting) == 1 and setting[0].endswith("| identical |") and "no floor: CPU" in setting[0]
    forwards = {(kind, mode) for kind in ("refresh", "dual") for mode in ("plain", "eager")}
    assert sum(any(line.startswith(f"| llada | 1 | {kind} | {mode} |") for kind, mode in forwards)
               for line in text.splitlines()) == 4  # the forward table: plain and eager, refresh and dual


def test_report_of_a_run_cut_before_its_last_mode(tmp_path):
    """A run cut by its time limit (gpu_all.sh's caps) leaves a batch without the file's last mode: the speed
    table still gives that batch, with the most optimised mode it reached, named; the modes table keeps each
    batch on its own row (a file of batches 1 and 2 once merged them by cache and k)."""
    path = tmp_path / "speed" / "r.json"
    _bench().main(["--small", "--device", "cpu", "--repeats", "1", "--forward-repeats", "1", "--prompt-length", "12",
                   "--gen-length", "8", "--block-length", "4", "--batches", "1,2", "--ks", "4", "--caches", "dual",
                   "--modes", "plain,eager,fused", "--out", str(path)])
    d = json.loads(path.read_text())
    d["settings"] = [r for r in d["settings"] if (r["batch"], r["mode"]) != (2, "fused")]  # cut before it
    path.write_text(json.dumps(d))
    report = experiment_script("report_speed")
    report.RESULTS = tmp_path
    lines = report.speed_report(tmp_path / "speed").splitlines()
    speed = {line.split(" | ")[1]: line for line in lines if line.startswith("| llada | ") and " | dual | 4 | " in line}
    assert set(speed) == {"1", "2"}
    assert "`eager`: the run ended before `fused`" in speed["2"] and "the run ended" not in speed["1"]
    modes = [line for line in lines if line.startswith(("| 1 | dual | 4 |", "| 2 | dual | 4 |"))]
    assert len(modes) == 2 and modes[0].count("(") == 3 and modes[1].endswith("| — |")


def test_report_reads_only_bench_gpu_files(tmp_path):
    """A run folder's subfolders also hold decode_timeline.py's and step_gaps.py's files, which have
    ``settings`` but are no bench_gpu.py result: the report leaves them out (``report.py`` without arguments
    once stopped at one with a KeyError)."""
    _bench().main(["--small", "--device", "cpu", "--repeats", "1", "--forward-repeats", "1", "--prompt-length", "12",
                   "--gen-length", "8", "--block-length", "4", "--ks", "4", "--caches", "dual",
                   "--modes", "plain,eager", "--out", str(tmp_path / "speed" / "r.json")])
    (tmp_path / "speed" / "dev").mkdir()
    (tmp_path / "speed" / "dev" / "timeline.json").write_text(json.dumps({"settings": {"batch": 1}, "mode": "tuned"}))
    report = experiment_script("report_speed")
    report.RESULTS = tmp_path
    lines = report.speed_report(tmp_path / "speed").splitlines()
    assert sum(line.startswith("| llada | 1 | dual | 4 |") for line in lines) == 1
    assert "timeline.json" not in lines[0]


def test_report_fills_a_partial_check_from_an_older_one(tmp_path):
    """``speed_report(newer, older)``: a check that re-ran some of gpu_all.sh's runs is reported with the older
    check's other runs; a file of the same name comes from the newer folder only, and the headline table names
    each row's commit (only when the files' commits differ)."""
    path = tmp_path / "r.json"
    _bench().main(["--small", "--device", "cpu", "--repeats", "1", "--forward-repeats", "1", "--prompt-length", "12",
                   "--gen-length", "8", "--block-length", "4", "--ks", "4", "--caches", "dual",
                   "--modes", "plain,eager", "--out", str(path)])
    d = json.loads(path.read_text())
    for folder, name, commit, batch in (("new", "gpu_llada_b1", "b" * 40, 1), ("old", "gpu_llada_b1", "a" * 40, 1),
                                        ("old", "gpu_llada_b4", "a" * 40, 4)):
        (tmp_path / folder).mkdir(exist_ok=True)
        rows = [{**r, "batch": batch} for r in d["settings"]]
        (tmp_path / folder / f"{name}.json").write_text(json.dumps({**d, "commit": commit, "settings": rows}))
    report = experiment_script("report_speed")
    report.RESULTS = tmp_path
    rows = [line for line in report.speed_report(tmp_path / "new", tmp_path / "old").splitlines()
            if line.startswith("| llada | ")][:2]  # the headline table's (the forward table's follow)
    assert [(r.split(" | ")[1], r.split(" | ")[-1]) for r in rows] == [("1", "bbbbbbb |"), ("4", "aaaaaaa |")]
    alone = report.speed_report(tmp_path / "new").splitlines()
    assert "commit |" not in alone[2] and sum(line.startswith("| llada | 1 | dual | 4 |") for line in alone) == 1


def test_fused_mode_runs_the_fused_projections_on_cpu(tmp_path, monkeypatch):
    """``fused`` (and ``compiled``, on CUDA) run the fused projections; every other mode the separate ones.
    On the CPU the ``fused`` mode runs eagerly, its tokens and logits checked against plain in the run."""
    from fastdllm.models import transformer

    calls = []
    fused = transformer.EAGER.fused_attention_inputs
    monkeypatch.setattr(transformer.EAGER, "fused_attention_inputs", lambda *a: calls.append(1) or fused(*a))
    bench = _bench()
    d = bench.main(["--small", "--device", "cpu", "--family", "dream", "--repeats", "1", "--forward-repeats", "1",
                    "--prompt-length", "12", "--gen-length", "8", "--block-length", "4", "--ks", "2",
                    "--caches", "dual", "--modes", "plain,fused,compiled", "--out", str(tmp_path / "r.json")])
    assert d["modes"] == ["plain", "fused"] and calls  # compiled is CUDA-only
    assert [r["tokens_equal_plain"] for r in d["settings"] if r["mode"] == "fused"] == [True]
    assert all(f["argmax_agreement_plain"] == 1.0 for f in d["forwards"] if f["mode"] == "fused")
    model = bench.build_model("llada", True, "cpu", torch.float32)
    for mode, (compiled, fused_now) in {"compiled": (True, True), "compiled-unfused": (True, False),
                                        "fused": (False, True), "graphs": (False, False), "plain": (False, False)}.items():
        bench.set_mode(model, mode)
        assert (model.net.compiled, model.net.layers[0].attn.qkv_weight is not None) == (compiled, fused_now), mode


def test_a_saved_gemm_plan_must_cover_every_setting_before_work(tmp_path, capsys):
    """--gemm-plan takes the tuned records of an earlier result file; a setting it lacks, a file that is no
    result, or a run without the tuned mode is refused at parse time, naming what the file holds."""
    earlier = {"settings": [{"batch": 1, "cache": "dual", "tokens_per_step": 4, "mode": "tuned",
                             "gemm_plan": [{"group": "8x8", "rows": 4, "N": 8, "K": 8, "choice": "cublas"}]},
                            {"batch": 1, "cache": "prefix", "tokens_per_step": 4, "mode": "kernels"}]}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    bench = _bench()
    base = ["--small", "--device", "cpu", "--ks", "4", "--gemm-plan", str(path)]  # tuned is CUDA-only: parsed, dropped
    args = bench.parse(base + ["--caches", "dual", "--modes", "tuned"])
    assert args.gemm_plan == {(1, "dual", 4): earlier["settings"][0]["gemm_plan"]}
    for extra, message in (
            (["--caches", "dual,prefix", "--modes", "tuned"], r"no tuned plan for \(batch, cache, k\) \[\(1, 'prefix', 4\)\]"),
            (["--caches", "dual", "--modes", "plain,kernels"], "for the tuned mode: --modes plain,kernels lacks it")):
        with pytest.raises(SystemExit):
            bench.parse(base + extra)
        assert re.search(message, capsys.readouterr().err)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(SystemExit):
        bench.parse(["--small", "--device", "cpu", "--gemm-plan", str(tmp_path / "bad.json")])
    assert "not a bench_gpu result file" in capsys.readouterr().err


def test_fp32_check_compares_every_mode_with_a_wider_copy_of_the_same_weights(tmp_path):
    """--fp32-check decodes the named caches' settings once more on a float64 copy of the tiny fp32 model's weights
    (fp32 on the GPU): every mode, plain included, agrees with it token for token and to fp32 rounding in its
    logits; settings of other caches carry no fp32 figures."""
    out = tmp_path / "r.json"
    d = _bench().main(["--small", "--device", "cpu", "--family", "llada", "--repeats", "1", "--forward-repeats", "1",
                       "--prompt-length", "12", "--gen-length", "8", "--block-length", "4", "--ks", "2,4",
                       "--caches", "none,dual", "--fp32-check", "dual", "--modes", "plain,eager", "--out", str(out)])
    assert [(r["cache"], r["tokens_per_step"], r["dtype"]) for r in d["fp32_reference"]] == [
        ("dual", 2, "torch.float64"), ("dual", 4, "torch.float64")]
    for r in d["settings"]:
        if r["cache"] == "dual":
            assert r["tokens_equal_fp32"] is True and r["token_agreement_fp32"] == 1.0
        else:
            assert "token_agreement_fp32" not in r
    assert len(d["forwards"]) == 4
    for f in d["forwards"]:
        assert f["argmax_agreement_fp32"] == 1.0 and 0 < f["logits_max_abs_diff_fp32"] < 1e-5  # fp32 against fp64
    assert json.loads(out.read_text())["fp32_reference"] == d["fp32_reference"]


def test_report_shows_the_fp32_columns(tmp_path):
    """With --fp32-check results the speed table gains the "tokens vs fp32: plain / optimised" column and the
    forward table the logits' distance and argmax agreement to the fp32 forward."""
    _bench().main(["--small", "--device", "cpu", "--repeats", "1", "--forward-repeats", "1", "--prompt-length", "12",
                   "--gen-length", "8", "--block-length", "4", "--ks", "4", "--caches", "none,dual", "--fp32-check", "dual",
                   "--modes", "plain,eager", "--out", str(tmp_path / "speed" / "r.json")])
    report = experiment_script("report_speed")
    report.RESULTS = tmp_path
    lines = report.speed_report(tmp_path / "speed").splitlines()
    assert any(line.endswith("| tokens vs plain | tokens vs fp32: plain / optimised |") for line in lines)
    assert [line.rsplit("|", 2)[1].strip() for line in lines if line.startswith("| llada | 1 |") and " | 4 | " in line] == [
        "— / —", "identical / identical"]  # no cache: not checked; dual: both decodes equal the float64 one
    assert any(line.endswith("| max abs diff vs fp32 | argmax agreement vs fp32 | commit |") for line in lines)
    eager = [line.split(" | ") for line in lines if line.startswith("| llada | 1 | dual | eager |")]
    assert len(eager) == 1 and len(eager[0]) == 12 and eager[0][-2] == "100.0 %" and 0 < float(eager[0][-3]) < 1e-5


def test_fp32_check_of_a_cache_not_run_is_refused(capsys):
    with pytest.raises(SystemExit):
        _bench().main(["--small", "--device", "cpu", "--caches", "dual", "--fp32-check", "prefix"])
    assert "--fp32-check prefix: each must be one of --caches dual" in capsys.readouterr().err


def test_agreement_counts_generated_positions_only():
    bench = _bench()
    reference = torch.tensor([[5, 6, 1, 2, 3, 4], [5, 6, 1, 2, 3, 4]])  # [B=2, P=2 + G=4]
    tokens = torch.tensor([[9, 9, 1, 2, 3, 4], [5, 6, 1, 0, 3, 0]])  # prompts differ in row 0: not counted
    assert bench._agreement(tokens, reference, 2) == (False, 0.75)
    assert bench._agreement(tokens[:1], reference[:1], 2) == (True, 1.0)
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.5]]])  # [B=1, rows=2, V=2]
    assert bench._logit_agreement(logits, torch.tensor([[[0.0, 1.5], [0.0, 0.5]]])) == (2.0, 0.5)


def test_floors_at_the_sustained_rate_and_the_clock_column():
    """--sustained-ceiling: each forward's floor at the matmul rate the GPU holds under load (the weight read
    unchanged), and the speed table's column with it and the clocks of the timed decodes."""
    Floors = experiment_script("bench_floors").Floors
    ceil = {"copy_bytes_per_s": 10.0, "matmul_flop_per_s": 100.0}
    floors = Floors(10, 20, {**ceil, "matmul_flop_per_s_sustained": 50.0})
    assert floors.forward_s(1) == floors.forward_s(1, sustained=True) == 2.0  # the weight read: 20 / 10
    assert floors.forward_s(20) == 4.0 and floors.forward_s(20, sustained=True) == 8.0  # 2 · 10 · 20 / rate
    assert Floors(10, 20, ceil).forward_s(20, sustained=True) is None  # not measured: no such floor
    report = experiment_script("report_speed")
    row = {"floor_ratio_sustained": 1.234, "clocks": {"samples": 9, "sm_mhz_median": 1652.5, "power_w_median": 688.4,
                                                       "power_capped_share": 1.0}}
    assert report._held(row) == "1.23×; 1652 MHz, 688 W (power-capped 100 %)"
    assert report._held({"clocks": {"samples": 0}}) == "—"


def test_the_dual_forward_records_its_kv_store_read():
    """The dual step's attention reads the whole KV store, which the floor (weights, matmul) leaves out:
    ``time_forwards`` records its bytes (the store's keys and values), their time at the run's copy rate, and
    the forward's ratio to the floor plus that time; the refresh, which reads no stored keys, records none."""
    import argparse

    bench = _bench()
    model = experiment_script("bench_floors").build_model("llada", True, "cpu", torch.float32)
    ceil = {"copy_bytes_per_s": 1e9, "matmul_flop_per_s": 1e12}
    floors = experiment_script("bench_floors").Floors(10**6, 4 * 10**6, ceil)  # a 4 ms weight read
    args = argparse.Namespace(prompt_length=12, gen_length=8, block_length=4, forward_repeats=1, forward_profile=False)
    rows = {r["kind"]: r for r in bench.time_forwards(model, 2, args, "eager", floors, "cpu")}
    assert "kv_read_bytes" not in rows["refresh"]
    dual = rows["dual"]
    expected = 2 * 2 * 2 * 4 * 20 * 16 * 4  # K and V × batch 2 × 2 layers × 4 heads × 20 positions × dim 16 × fp32
    assert dual["kv_read_bytes"] == expected
    assert dual["kv_read_ms"] == pytest.approx(1000 * expected / 1e9)
    assert dual["floor_ms"] == pytest.approx(4.0)
    assert dual["floor_ratio_with_kv_read"] == pytest.approx(dual["ms"] / (4.0 + dual["kv_read_ms"]))


def test_report_shows_the_kv_read_and_the_profiled_kernels():
    """The forward table gains the work floor and the KV read where a file records them, and the profiled
    forwards get a table of kernel ms by kind with the attention against the KV read."""
    report = experiment_script("report_speed")
    profile = {"kernel_us": 9000.0, "by_kind_us": {"gemm": 6000.0, "attention": 2500.0, "other": 500.0}}
    files = [{"family": "llada", "commit": "abcdef0", "forwards": [
        {"batch": 16, "mode": "tuned", "kind": "refresh", "ms": 30.0, "floor_ms": 25.0, "floor_ratio": 1.2},
        {"batch": 16, "mode": "tuned", "kind": "dual", "ms": 14.0, "floor_ms": 10.0, "floor_ratio": 1.4,
         "floor_work_ms": 11.2, "floor_ratio_work": 1.25, "kv_read_ms": 2.0, "profile": profile}]}]
    lines = report.forward_table(files).splitlines()
    assert "| × floor | work floor ms | × work floor | KV read ms |" in lines[0]
    assert len(lines[0].split("|")) == len(lines[1].split("|"))
    assert lines[2].startswith("| llada | 16 | refresh | tuned | 30.00 | 25.00 | 1.20× | — | — | — |")
    assert lines[3].startswith("| llada | 16 | dual | tuned | 14.00 | 10.00 | 1.40× | 11.20 | 1.25× | 2.00 |")
    table = report.forward_profile_table(files).splitlines()
    assert table[2] == "| llada | 16 | dual | tuned | 9.00 | 6.00 | 2.50 | 0.00 | 0.00 | 0.50 | 1.25× |"
    assert len(table) == 3 and report.forward_profile_table([{"forwards": files[0]["forwards"][:1]}]) == ""


def test_forward_profile_plot_from_a_run_folder(tmp_path):
    """``report.py forward-plot``: a PNG of the profiled dual forwards of a run folder's files; nothing without one."""
    report = experiment_script("report_speed")
    report.RESULTS = tmp_path
    folder = tmp_path / "speed" / "run"
    folder.mkdir(parents=True)
    dual = {"batch": 16, "mode": "tuned", "kind": "dual", "ms": 14.0, "floor_ms": 10.0, "floor_ratio": 1.4,
            "kv_read_ms": 2.0, "profile": {"kernel_us": 13000.0, "by_kind_us": {"gemm": 10000.0, "attention": 3000.0}}}
    run = {"family": "llada", "env": {"gpu": "test"}, "modes": ["plain", "tuned"], "settings": [], "forwards": [dual]}
    (folder / "a.json").write_text(json.dumps(run))
    assert report.plot_forward_profiles(folder, folder / "p.png") == folder / "p.png"
    assert (folder / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (folder / "a.json").write_text(json.dumps({**run, "forwards": [{k: v for k, v in dual.items() if k != "profile"}]}))
    assert report.plot_forward_profiles(folder, folder / "q.png") is None and not (folder / "q.png").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_work_floor_counts_what_a_forward_multiplies_and_reads(family, monkeypatch):
    """``Work.flops`` equals the matmul flops torch's flop counter sees in the model's own forwards (a refresh, a
    dual-cache window, a prefix-cache window; attention counted through an explicit softmax(q kᵀ) v), with the
    last layer's narrow rows; ``Work.bytes``' weights are the model's parameters less the embedding table."""
    from torch.utils.flop_counter import FlopCounterMode

    bench_floors = experiment_script("bench_floors")

    def explicit_attention(q, k, v, attn_mask=None, enable_gqa=False, **_):
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))  # [B, H, L, D]
        scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5  # [B, H, m, L]
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        return scores.softmax(-1) @ v

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", explicit_attention)
    model = bench_floors.build_model(family, True, "cpu", torch.float32)
    L, B, block = 48, 2, 8
    work = bench_floors.Work.of(model, L, block, 4)
    canvas = torch.randint(0, 400, (B, L))
    positions = torch.arange(L).expand(B, L)
    store = model.new_kv_store(B, L)
    shift = model.logit_shift
    with torch.no_grad():
        for start, end in ((0, L), (16 - shift, 24), (16 - shift, L)):
            with FlopCounterMode(display=False) as counter:
                model.forward_step(canvas, start, end, store, positions, None, 16, 16 + block)
            assert work.flops(B, end - start) == counter.get_total_flops(), (start, end)
    embedding = model.net.embed.weight.numel()
    kv = model.arch.n_layers * 2 * B * model.arch.n_kv_heads * L * model.arch.head_dim
    assert work.bytes(B, 5) == 4 * (sum(t.numel() for t in model.parameters()) - embedding + B * 5 * model.arch.d_model + kv)
    # the floor: bytes at the copy rate against flops at the matmul rate (burst or held), the larger
    floors = bench_floors.Floors(0, 0, {"copy_bytes_per_s": 1e15, "matmul_flop_per_s": 1e9,
                                        "matmul_flop_per_s_sustained": 5e8}, work)
    assert floors.work_s(B, 5) == work.flops(B, 5) / 1e9 and floors.work_s(B, 5, sustained=True) == work.flops(B, 5) / 5e8
    floors.ceil["copy_bytes_per_s"] = 1.0
    assert floors.work_s(B, 5) == work.bytes(B, 5) and bench_floors.Floors(0, 0, {}, work).work_s(B, 5) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_work_floors_added_later_equal_the_ones_measured_live(tmp_path, monkeypatch, family):
    """``experiments/work_floors.py`` rebuilds a file's forwards from its settings (a tiny decode on the CPU) and
    adds the work floors that ``bench_gpu.py`` records live: the same figures, to the last digit, for every
    decode and forward of a run with ceilings (fixed here: the CPU measures none)."""
    bench = _bench()
    monkeypatch.setattr(bench, "ceilings", lambda device: {"copy_bytes_per_s": 1e9, "matmul_flop_per_s": 1e11})
    path = tmp_path / "r.json"
    bench.main(["--small", "--device", "cpu", "--family", family, "--repeats", "1", "--forward-repeats", "1",
                "--batches", "1,2", "--prompt-length", "12", "--gen-length", "8", "--block-length", "4", "--ks", "2,4",
                "--caches", "none,prefix,dual", "--modes", "plain,eager", "--out", str(path)])
    live = json.loads(path.read_text())
    assert all("floor_ratio_work" in r for r in live["settings"] + live["forwards"])
    stripped = json.loads(path.read_text())
    for r in stripped["settings"] + stripped["forwards"]:
        for key in ("floor_sum_work_s", "floor_ratio_work", "floor_work_ms"):
            r.pop(key, None)
    path.write_text(json.dumps(stripped))
    (tmp_path / "not_a_result.json").write_text('{"x": 1}')
    no_ceilings = {**stripped, "ceilings": {}}  # a CPU run: no floors to add
    (tmp_path / "cpu.json").write_text(json.dumps(no_ceilings))
    assert experiment_script("work_floors").main([str(tmp_path)]) == [path]
    assert json.loads((tmp_path / "cpu.json").read_text()) == no_ceilings
    later = json.loads(path.read_text())
    assert later["work_floors_added"]["by"] == "experiments/work_floors.py"
    for a, b in zip(live["settings"] + live["forwards"], later["settings"] + later["forwards"]):
        assert {k: a.get(k) for k in ("floor_sum_work_s", "floor_ratio_work", "floor_work_ms")} == \
            {k: b.get(k) for k in ("floor_sum_work_s", "floor_ratio_work", "floor_work_ms")}


def test_a_run_cut_by_sigterm_keeps_its_settings_and_their_clocks(tmp_path, monkeypatch):
    """gpu_all.sh cuts a run with ``timeout`` (SIGTERM): the settings measured so far are saved with their clock
    samples (a cut file once had none), and the run ends with SystemExit."""
    import contextlib
    import os
    import signal

    bench = _bench()

    class Clocks:  # nvidia-smi's samples, one per phase
        def __init__(self):
            self.phases = []

        def start(self):
            return self

        @contextlib.contextmanager
        def phase(self, name):
            self.phases.append(name)
            yield

        def stop(self):
            return {"available": True, "by_phase": {name: {"sm_mhz_median": 1500.0} for name in self.phases}}

    real = bench.run_setting
    calls = []

    def run_then_terminate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "ClockSampler", Clocks)
    monkeypatch.setattr(bench, "run_setting", run_then_terminate)
    path = tmp_path / "r.json"
    with pytest.raises(SystemExit, match="SIGTERM"):
        bench.main(["--small", "--device", "cpu", "--repeats", "1", "--prompt-length", "12", "--gen-length", "8",
                    "--block-length", "4", "--ks", "4", "--caches", "dual", "--modes", "plain,eager", "--clocks",
                    "--out", str(path)])
    d = json.loads(path.read_text())
    assert [r["mode"] for r in d["settings"]] == ["plain"] and d["settings"][0]["clocks"] == {"sm_mhz_median": 1500.0}
    assert signal.getsignal(signal.SIGTERM) is not bench._stop_on_sigterm  # restored
