"""``bench_gpu.py``'s single forwards: a refresh and a dual-cache step timed directly in each mode, their logits
against the plain path's (and an fp32 copy's), the dual step's KV-store read, and with ``--forward-profile`` each
forward's kernel time by kind."""

from __future__ import annotations

import time

import torch

from bench_floors import Floors
from bench_modes import set_mode
from bench_profile import profile_forward


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def store_bytes(store) -> int:
    """Bytes of a KV store's keys and values (0 for none): what attention over the whole canvas reads per forward."""
    keys = getattr(store, "keys", None)
    return 0 if keys is None else 2 * keys.numel() * keys.element_size()


def _logit_agreement(logits: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max |difference|, argmax agreement over rows) of two forwards' logits [B, rows, V]."""
    reference = reference.to(logits.device)
    return ((logits.double() - reference.double()).abs().max().item(),
            (logits.argmax(-1) == reference.argmax(-1)).float().mean().item())


def time_forwards(model, batch: int, args, mode: str, floors: Floors, device) -> list[dict]:
    """Single forwards timed directly: a refresh (whole canvas) and a dual-cache block step, and the
    refresh's logits against the plain path's (max |difference|, argmax agreement). The dual step's attention
    reads the whole KV store, which the floor (weights and matmul only) leaves out: its bytes are recorded
    (``kv_read_bytes``) with their time at the copy rate (``kv_read_ms``). ``--forward-profile``: each forward once
    more without graphs under ``torch.profiler``, kernel time by kind (``profile``)."""
    set_mode(model, mode)
    L, P, blk, shift = args.prompt_length + args.gen_length, args.prompt_length, args.block_length, model.logit_shift
    gen = torch.Generator().manual_seed(2)
    canvas = torch.randint(0, model.mask_token_id, (batch, L), generator=gen).to(device)  # [B, L]
    canvas[:, P:] = model.mask_token_id
    position_ids = torch.arange(L, device=device).expand(batch, L).contiguous()  # [B, L]
    store = model.new_kv_store(batch, L)
    bandwidth = floors.ceil.get("copy_bytes_per_s") if floors.ceil else None
    out = []
    with torch.inference_mode():
        for kind, (start, end) in (("refresh", (0, L)), ("dual", (P - shift, P + blk))):
            step = lambda: model.forward_step(canvas, start, end, store, position_ids, None, P, P + blk)  # noqa: E731
            if kind == "dual":
                model.forward_step(canvas, 0, L, store, position_ids, None, P, P + blk)
            logits = step().clone()  # warm-up (capture, compile)
            for _ in range(2):
                step()
            _sync(device)
            t0 = time.perf_counter()
            n = args.forward_repeats
            for _ in range(n):
                step()
            _sync(device)
            ms = 1000 * (time.perf_counter() - t0) / n
            floor = floors.forward_s(batch * (end - start))
            row = {"batch": batch, "mode": mode, "kind": kind, "rows": batch * (end - start), "ms": ms,
                   "floor_ms": None if floor is None else 1000 * floor,
                   "floor_ratio": None if floor is None else ms / (1000 * floor), "logits": logits}
            row.update(floors.work_fields(batch, end - start, ms))  # bench_floors.Work: the KV read counted
            if kind == "dual":
                row["kv_read_bytes"] = store_bytes(store)
                if bandwidth and floor is not None:
                    row["kv_read_ms"] = 1000 * row["kv_read_bytes"] / bandwidth
                    row["floor_ratio_with_kv_read"] = ms / (row["floor_ms"] + row["kv_read_ms"])
            if args.forward_profile and device == "cuda":
                graphs, model.cuda_graphs = model.cuda_graphs, None
                try:
                    row["profile"] = profile_forward(step)
                finally:
                    model.cuda_graphs = graphs
            out.append(row)
    set_mode(model, "plain")
    return out


def forward_records(model, batch: int, args, floors: Floors, wide: dict | None, errors: list[str]) -> list[dict]:
    """``time_forwards`` in every mode of ``args.modes`` (plain first), each forward's logits compared with plain's
    and, with ``wide`` (``--fp32-check``), with the fp32 copy's, printed as it goes; a mode that fails is recorded
    in ``errors`` and the others still run."""
    records, plain_logits = [], {}
    for mode in args.modes:
        try:
            timed = time_forwards(model, batch, args, mode, floors, args.device)
        except Exception as err:  # noqa: BLE001
            set_mode(model, "plain")
            errors.append(f"b{batch} forwards {mode}: {type(err).__name__}: {err}")
            continue
        for f in timed:
            logits = f.pop("logits")
            if mode == "plain":
                plain_logits[f["kind"]] = logits
            elif f["kind"] in plain_logits:
                f["logits_max_abs_diff_plain"], f["argmax_agreement_plain"] = _logit_agreement(
                    logits, plain_logits[f["kind"]])
            if wide:
                f["logits_max_abs_diff_fp32"], f["argmax_agreement_fp32"] = _logit_agreement(
                    logits, wide["logits"][f["kind"]])
            records.append(f)
            print(f"b{batch} {f['kind']:>7} forward {mode:>8}: {f['ms']:7.2f} ms"
                  + (f" ({f['floor_ratio']:.2f}x floor {f['floor_ms']:.2f} ms)" if f["floor_ms"] else "")
                  + (f" ({f['floor_ratio_work']:.2f}x work floor {f['floor_work_ms']:.2f} ms)" if "floor_work_ms" in f else "")
                  + (f" ({f['floor_ratio_with_kv_read']:.2f}x with the KV read's {f['kv_read_ms']:.2f} ms)"
                     if "floor_ratio_with_kv_read" in f else "")
                  + (" kernels " + ", ".join(f"{k} {v / 1000:.2f}" for k, v in sorted(f["profile"]["by_kind_us"].items()))
                     + " ms" if "profile" in f else ""), flush=True)
    return records
