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
    """``DiffusionLM.step_logits`` (same signature), replayed from CUDA graphs."""

    def __init__(self, model) -> None:
        self.model = model
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.buffers: tuple = ()
        self.pool = None  # one memory pool shared by the graphs of a call
        self.captures = 0

    def __call__(self, canvas, start, index, store, position_ids, key_mask, rows):
        buffers = (tuple(canvas.shape), canvas.data_ptr(), position_ids.data_ptr(),
                   None if key_mask is None else key_mask.data_ptr(), type(store).__name__,
                   *(t.data_ptr() for t in (getattr(store, "keys", None), getattr(store, "values", None))
                     if t is not None))
        if buffers != self.buffers:  # a new generate call: its tensors live elsewhere
            self.graphs.clear()
            self.buffers, self.pool = buffers, None
        shape = (index.numel(), rows.numel())
        entry = self.graphs.get(shape)
        if entry is None:
            entry = self.graphs[shape] = self._capture(canvas, start, index.clone(), store, position_ids, key_mask,
                                                       rows.clone())
        entry.index.copy_(index)
        entry.rows.copy_(rows)
        entry.graph.replay()
        return entry.logits

    def _capture(self, canvas, start, index, store, position_ids, key_mask, rows) -> _Graph:
        """Capture ``step_logits`` on the graph's own ``index`` ``[n]`` and ``rows`` ``[m]`` tensors."""

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
