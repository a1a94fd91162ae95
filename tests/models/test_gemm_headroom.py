"""experiments/gemm_headroom.py: the saving of GEMMs at their floors, on a made-up result file whose answer is
known by construction (no GPU)."""

import pytest

from tests.models.checkpoint_helpers import experiment_script

COPY, BURST, HELD = 1e12, 1e14, 5e13  # bytes/s, flop/s


def _run(family: str, slowdown: dict[int, float], choice_rows=()) -> dict:
    """A batch-1 prefix decode (prompt 8, 8 generated, block 4, k=1) whose plan has one 64 x 32 shape; each row
    count's chosen backend takes ``slowdown[rows]`` times its floor at the held rate (``default`` 10x slower where
    another backend is chosen, so reading the wrong one shows)."""
    gh = experiment_script("gemm_headroom")
    plan = []
    for rows, factor in slowdown.items():
        rec = {"group": "64x32", "rows": rows, "N": 64, "K": 32, "bias": False}
        t = factor * gh.floor_us(rec, COPY, HELD)
        if rows in choice_rows:
            rec.update(us={"default": 10 * t, "lt3": t}, choice="lt3")
        else:
            rec.update(us={"default": t, "cublas": 10 * t}, choice=None)
        plan.append(rec)
    setting = {"batch": 1, "cache": "prefix", "tokens_per_step": 1, "mode": "tuned", "wall_s": 1.0, "floor_sum_s": 0.5,
               "gemm_plan": plan}
    return {"family": family, "prompt_length": 8, "gen_length": 8, "block_length": 4,
            "ceilings": {"copy_bytes_per_s": COPY, "matmul_flop_per_s": BURST, "matmul_flop_per_s_sustained": HELD},
            "settings": [setting, {**setting, "cache": "dual"}]}


def test_forward_rows_are_the_refresh_then_block_and_suffix():
    gh = experiment_script("gemm_headroom")
    llada, dream = _run("llada", {}), _run("dream", {})
    assert gh.forward_rows(llada["settings"][0], llada) == [16, 8, 8, 8, 16, 4, 4, 4]
    assert gh.forward_rows(dream["settings"][0], dream) == [16, 9, 9, 9, 16, 5, 5, 5]  # the shifted position
    assert gh.forward_rows({**llada["settings"][0], "tokens_per_step": 2}, llada) == [16, 8, 16, 4]


def test_the_saving_is_the_chosen_backends_time_above_the_floors():
    gh = experiment_script("gemm_headroom")
    at_floor = gh.headroom(_run("llada", {16: 1.0, 8: 1.0, 4: 1.0}), layers=3)
    assert len(at_floor) == 1 and at_floor[0]["saving_ms"] == pytest.approx(0.0, abs=1e-12)  # the dual decode is skipped
    run = _run("llada", {16: 1.0, 8: 2.0, 4: 3.0}, choice_rows=(8,))
    floor = {r: gh.floor_us({"N": 64, "K": 32, "rows": r}, COPY, HELD) for r in (8, 4)}
    expected_ms = 3 * (3 * floor[8] + 3 * 2 * floor[4]) / 1e3  # layers x (3 windows of 8 rows, 3 of 4; excess 1x, 2x)
    (record,) = gh.headroom(run, layers=3)
    assert record["saving_ms"] == pytest.approx(expected_ms)
    assert record["ratio_after"] == pytest.approx((1000 - expected_ms) / 500) and record["rate"] == "held"
    burst = gh.headroom(run, layers=3, held=False)[0]
    assert burst["rate"] == "burst" and burst["saving_ms"] >= record["saving_ms"]  # lower floors, more to save
    with pytest.raises(ValueError, match=r"no entry for \[5, 9\] rows"):
        gh.headroom(_run("dream", {16: 1.0, 8: 1.0, 4: 1.0}), layers=3)  # Dream's windows are a row longer
