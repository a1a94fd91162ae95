"""CUDA graphs for ``DiffusionLM.forward_step``: one captured graph per forward shape, replayed.

At batch 1 an 8B model's cached forward is launch-bound: ~1,500 kernel launches from Python cost
more than the GPU work (BENCHMARKS.md: the reference's dual-cache step is 12.9 ms of kernels in
43 ms of wall time). A graph replays the same kernels with one launch. The forward reads and writes
canvas positions through index tensors (``Transformer.hidden``), so a graph captured for one window
of ``n`` positions serves every window of that size: before each replay only the graph's own
``index`` and ``rows`` tensors are refilled. Graphs hold the shapes and addresses of the canvas, KV
store and masks they were captured on (``DiffusionDecoder`` keeps those across calls of one shape);
a call with other buffers drops them and captures afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    index: torch.Tensor  # [n] long: canvas positions recomputed (refilled before each replay)
    rows: torch.Tensor  # [m] long: hidden rows the LM head reads (refilled before each replay)
    logits: torch.Tensor  # [B, m, V]: the graph's output buffer


class CudaGraphSteps:
    """``forward_step`` with the signature of ``DiffusionLM.forward_step``, replayed from CUDA graphs."""

    def __init__(self, model) -> None:
        self.model = model
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.buffers: tuple = ()
        self.pool = None  # one memory pool shared by the graphs of a call
        self.captures = 0

    def __call__(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        first = logits_start - self.model.logit_shift - start
        n, m = end - start, logits_end - logits_start
        buffers = (tuple(canvas.shape), canvas.data_ptr(), position_ids.data_ptr(),
                   None if key_mask is None else key_mask.data_ptr(), type(store).__name__,
                   *(t.data_ptr() for t in (getattr(store, "keys", None), getattr(store, "values", None))
                     if t is not None))
        if buffers != self.buffers:  # a new generate call: its tensors live elsewhere
            self.graphs.clear()
            self.buffers, self.pool = buffers, None
        entry = self.graphs.get((n, m))
        if entry is None:
            entry = self.graphs[(n, m)] = self._capture(canvas, start, end, store, position_ids, key_mask, first, m)
        torch.arange(start, end, device=canvas.device, out=entry.index)
        torch.arange(first, first + m, device=canvas.device, out=entry.rows)
        entry.graph.replay()
        return entry.logits

    def _capture(self, canvas, start, end, store, position_ids, key_mask, first, m) -> _Graph:
        index = torch.arange(start, end, device=canvas.device)  # [n]
        rows = torch.arange(first, first + m, device=canvas.device)  # [m]

        def forward():
            return self.model.step_logits(canvas, start, index, store, position_ids, key_mask, rows)

        side = torch.cuda.Stream(canvas.device)
        side.wait_stream(torch.cuda.current_stream(canvas.device))
        with torch.cuda.stream(side):  # warm-up outside the graph (cuBLAS handles, workspaces)
            forward()
        torch.cuda.current_stream(canvas.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = forward()  # [B, m, V]
        self.pool = graph.pool()
        self.captures += 1
        return _Graph(graph, index, rows, logits)
