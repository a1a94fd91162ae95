"""experiments/gemm_headroom.py: the saving of GEMMs at their floors, on a made-up result file whose answer is
worked out by hand below (no GPU)."""

import pytest

from tests.models.checkpoint_helpers import experiment_script

COPY, BURST, HELD = 2e12, 4e13, 2e13  # bytes/s, flop/s: at the held rate 16 rows are matmul-bound, 4 and 8 read-bound
SHAPES = {"A": (1000, 500), "B": (2000, 500)}  # N, K: bf16 weights of 1 and 2 MB, read in 0.5 and 1.0 µs
# floors in µs (held / burst): A 0.5, 0.5, 0.8 / 0.5, 0.5, 0.5 and B 1.0, 1.0, 1.6 / 1.0, 1.0, 1.0 at 4, 8, 16 rows
CHOSEN_US = {("A", 16): 0.8, ("A", 8): 1.5, ("A", 4): 0.4,  # 0.4: under its floor (timed at another clock), counts 0
             ("B", 16): 2.6, ("B", 8): 1.0, ("B", 4): 3.0}


def _run(family: str = "llada") -> dict:
    """A batch-1 prefix decode (prompt 8, 8 generated, block 4, k=1: the decoder's forwards recompute 16, 8, 8, 8, 16,
    4, 4, 4 rows; Dream's windows one more) whose plan holds ``CHOSEN_US``; B at 4 rows runs a chosen cuBLASLt
    candidate, its default 10x slower."""
    plan = []
    for (shape, rows), us in CHOSEN_US.items():
        n, k = SHAPES[shape]
        times, choice = ({"default": 10 * us, "lt3": us}, "lt3") if (shape, rows) == ("B", 4) else ({"default": us}, None)
        plan.append({"group": shape, "rows": rows, "N": n, "K": k, "bias": False, "us": times, "choice": choice})
    setting = {"batch": 1, "cache": "prefix", "tokens_per_step": 1, "mode": "tuned", "nfe": 8, "wall_s": 1.0,
               "floor_sum_s": 0.5, "gemm_plan": plan}
    return {"family": family, "prompt_length": 8, "gen_length": 8, "block_length": 4,
            "ceilings": {"copy_bytes_per_s": COPY, "matmul_flop_per_s": BURST, "matmul_flop_per_s_sustained": HELD},
            "settings": [setting, {**setting, "cache": "dual"}]}


def test_the_saving_is_the_chosen_backends_time_above_the_floors():
    gh = experiment_script("gemm_headroom")
    (held,) = gh.headroom(_run(), layers=3)  # the dual decode is not a prefix one: skipped
    # µs above the held floors per layer: 16 rows 0 + 1.0, 8 rows 1.0 + 0, 4 rows 0 (clamped) + 2.0;
    # 2 refreshes, 3 windows of 8 rows, 3 of 4: 2 x 1.0 + 3 x 1.0 + 3 x 2.0 = 11 µs, x 3 layers
    assert held["saving_ms"] == pytest.approx(0.033) and held["rate"] == "held"
    assert held["ratio_after"] == pytest.approx((1000 - 0.033) / 500) and held["forwards"] == 8
    (burst,) = gh.headroom(_run(), layers=3, held=False)
    # at the burst floors 16 rows give 0.3 + 1.6: 2 x 1.9 + 3 x 1.0 + 3 x 2.0 = 12.8 µs, x 3 layers
    assert burst["saving_ms"] == pytest.approx(0.0384) and burst["rate"] == "burst"
    with pytest.raises(ValueError, match=r"no entry for \[5, 9\] rows"):
        gh.headroom(_run("dream"), layers=3)  # Dream's windows are a row longer than this plan's
    bad = _run()
    bad["settings"][0]["nfe"] = 9
    with pytest.raises(ValueError, match="8 forwards rebuilt for prefix k=1, the file records 9"):
        gh.headroom(bad, layers=3)
