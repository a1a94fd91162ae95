"""experiments/step_gaps.py's trace analysis on a hand-made trace: which kernels a graph replay launched,
where each step starts and ends, and how its time splits into graph kernels, eager kernels and idle."""

from __future__ import annotations

from checkpoint_helpers import experiment_script


def _script():
    return experiment_script("step_gaps")


def _kernel(start, end, correlation, name="k"):
    return {"cat": "kernel", "ts": start, "dur": end - start, "name": name, "args": {"correlation": correlation}}


def _runtime(start, end, name, correlation=0):
    return {"cat": "cuda_runtime", "ts": start, "dur": end - start, "name": name, "args": {"correlation": correlation}}


TRACE = {"traceEvents": [
    _runtime(0, 5, "cudaGraphLaunch", 1), _kernel(10, 110, 1), _kernel(111, 200, 1),  # replay 1 ends at 200
    _kernel(210, 220, 2, "argmax"), _kernel(225, 230, 4, "topk"),  # the step's eager kernels
    _runtime(230, 260, "cudaStreamSynchronize"),  # the host sync
    _runtime(300, 306, "cudaGraphLaunch", 3), _kernel(320, 420, 3), _kernel(421, 520, 3),  # replay 2 ends at 520
    _kernel(530, 540, 6, "argmax"), _runtime(540, 560, "cudaStreamSynchronize"),
    _runtime(600, 604, "cudaGraphLaunch", 5), _kernel(610, 700, 5),  # replay 3 ends at 700
]}


def test_steps_split_into_graph_eager_and_idle():
    gaps = _script()
    kernels, ends = gaps.timeline(TRACE)
    assert ends == [200, 520, 700]
    assert [graphed for *_, graphed in kernels] == [True, True, False, False, True, True, False, True]
    steps = gaps.split_steps(kernels, ends)
    assert steps["steps"] == 2
    med = steps["median"]  # of the steps (200, 520] and (520, 700]
    assert med["period_us"] == (320 + 180) / 2
    assert med["graph_us"] == (199 + 90) / 2 and med["eager_us"] == (15 + 10) / 2
    assert med["idle_us"] == (106 + 80) / 2 and med["idle_between_graph_kernels_us"] == (1 + 0) / 2
    assert med["idle_outside_graph_us"] == (105 + 80) / 2 and med["eager_kernels"] == (2 + 1) / 2
    assert steps["eager_kernels_us_per_step"] == {"argmax": 10.0, "topk": 2.5}  # µs per step, by name
    host = gaps.host_prep(TRACE)
    assert host == {"sync_to_launch_us": 40, "graph_launch_call_us": 5}
