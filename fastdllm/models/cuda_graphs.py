"""CUDA graphs for ``DiffusionLM.forward_step``: one captured graph per forward shape, replayed.

At batch 1 an 8B model's cached forward is launch-bound: ~1,500 kernel launches from Python cost
more than the GPU work (the Fast-dLLM reference's dual-cache step is 12.9 ms of kernels in 43 ms of
wall time, docs/speed.md). A graph replays the same kernels with one launch. The forward reads and
writes canvas positions through index tensors (``Transformer.hidden``), so a graph captured for one
window of ``n`` positions serves every window of that size: before each replay only the graph's own
``index`` and ``rows`` tensors are refilled. Graphs hold the shapes and addresses of the canvas, KV
store and masks they were captured on (``DiffusionDecoder`` keeps those across calls of one shape);
a call with other buffers drops them and captures afresh.

The capture itself is a backend (``TorchCudaGraphs`` by default): tests inject one that runs on the
CPU and records every replay, so this bookkeeping is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch


class TorchCudaGraphs:
    """The real backend: ``torch.cuda.CUDAGraph`` capture after a warm-up on a side stream."""

    def supports(self, canvas: torch.Tensor) -> bool:
        return canvas.is_cuda

    def capture(self, forward: Callable[[], torch.Tensor], device: torch.device, pool: Any
                ) -> tuple[Callable[[], None], torch.Tensor, Any]:
        """Capture ``forward``: (replay, its output buffer, the memory pool to share with later captures)."""
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up outside the graph (cuBLAS handles, workspaces, compilation)
            forward()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            output = forward()
        return graph.replay, output, graph.pool()


@dataclass
class _Graph:
    replay: Callable[[], None]
    index: torch.Tensor  # [n] long: canvas positions recomputed (refilled before each replay)
    rows: torch.Tensor  # [m] long: hidden rows the LM head reads (refilled before each replay)
    logits: torch.Tensor  # [B, m, V]: the graph's output buffer
    window: tuple | None = None  # (start, end, first row, m) that index and rows hold; None: unknown (extra positions)


def buffer_key(canvas, store, position_ids, key_mask) -> tuple:
    """What a set of graphs is bound to: the canvas shape and the addresses of every tensor they read or
    write (a new prompt length may reuse freed memory at the same address, hence the shape)."""
    return (tuple(canvas.shape), canvas.data_ptr(), position_ids.data_ptr(),
            None if key_mask is None else key_mask.data_ptr(), type(store).__name__,
            *(t.data_ptr() for t in (getattr(store, "keys", None), getattr(store, "values", None)) if t is not None))


class CudaGraphSteps:
    """``DiffusionLM.step_logits`` (same signature), replayed from captured graphs."""

    def __init__(self, model, backend=None) -> None:
        self.model = model
        self.backend = TorchCudaGraphs() if backend is None else backend
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.buffers: tuple = ()
        self.pool = None  # one memory pool shared by the graphs of a call
        self.captures = 0

    def supports(self, canvas: torch.Tensor) -> bool:
        return self.backend.supports(canvas)

    def __call__(self, canvas, start, index, store, position_ids, key_mask, rows, window=None):
        """Replay the graph of this shape on ``index``/``rows``; ``window`` (a hashable description of their
        contents, or None) lets a replay on the window of the previous one skip refilling them."""
        buffers = buffer_key(canvas, store, position_ids, key_mask)
        if buffers != self.buffers:  # a new generate call: its tensors live elsewhere
            self.graphs.clear()
            self.buffers, self.pool = buffers, None
        shape = (index.numel(), rows.numel())
        entry = self.graphs.get(shape)
        if entry is None:
            entry = self.graphs[shape] = self._capture(canvas, start, index.clone(), store, position_ids, key_mask,
                                                       rows.clone())
        if window is None or entry.window != window:  # a dual-cache block replays one window ~block_length times
            entry.index.copy_(index)
            entry.rows.copy_(rows)
            entry.window = window
        entry.replay()
        return entry.logits

    def _capture(self, canvas, start, index, store, position_ids, key_mask, rows) -> _Graph:
        """Capture ``step_logits`` on the graph's own ``index`` ``[n]`` and ``rows`` ``[m]`` tensors."""

        def forward():
            return self.model.step_logits(canvas, start, index, store, position_ids, key_mask, rows)

        replay, logits, self.pool = self.backend.capture(forward, canvas.device, self.pool)  # logits [B, m, V]
        self.captures += 1
        return _Graph(replay, index, rows, logits)
