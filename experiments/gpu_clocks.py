"""The GPU's clocks, power and throttle reasons sampled by ``nvidia-smi`` while a benchmark runs, by phase.

Under a long decode an H200 sits at its power limit and lowers its SM clock; the floors' matmul rate is measured
in a burst at the full clock. ``ClockSampler`` lets ``bench_gpu.py --clocks`` and ``decode_timeline.py`` say, per
phase (a setting's timed decodes, a sustained matmul, ...), at what clock and power the figures were taken.

    sampler = ClockSampler().start()
    with sampler.phase("timed decode"):
        ...
    summary = sampler.stop()   # {"available", "by_phase": {name: {sm_mhz_median, power_w_median, ...}}}
"""

from __future__ import annotations

import contextlib
import datetime
import os
import statistics
import subprocess
import tempfile
import time

SMI_FIELDS = ("timestamp", "clocks.sm", "clocks.mem", "power.draw", "temperature.gpu", "clocks_event_reasons.active")
POWER_CAP_BITS = 0x4 | 0x80  # clock-event reasons: software power cap (0x4), hardware power brake (0x80)


class ClockSampler:
    """``nvidia-smi`` sampling ``SMI_FIELDS`` every ``period_ms`` into a temporary file while running; absent
    (``available`` False, ``why`` set) where there is no ``nvidia-smi`` or it refuses a field."""

    def __init__(self, period_ms: int = 100) -> None:
        self.period_ms, self.proc, self.samples, self.why = period_ms, None, [], "not started"
        self.phases: list[tuple[str, float, float]] = []  # (name, start, end) in time.time() seconds

    def start(self) -> "ClockSampler":
        for reasons in ("clocks_event_reasons.active", "clocks_throttle_reasons.active"):  # newer, older drivers
            fields = (*SMI_FIELDS[:-1], reasons)
            query = ["nvidia-smi", "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits", "-i", gpu_index()]
            try:
                probe = subprocess.run(query, capture_output=True, text=True, timeout=20)
            except (OSError, subprocess.TimeoutExpired) as err:
                self.why = f"nvidia-smi: {err}"
                return self
            if probe.returncode == 0:
                break
            self.why = f"nvidia-smi refused the query: {probe.stdout.strip()[:200]} {probe.stderr.strip()[:200]}"
        else:
            return self
        self.why, self.fields = None, fields
        self.file = tempfile.NamedTemporaryFile("w+", suffix=".csv", delete=False)
        self.proc = subprocess.Popen([*query, f"-lms={self.period_ms}"], stdout=self.file, stderr=subprocess.DEVNULL)
        return self

    @property
    def available(self) -> bool:
        return self.proc is not None

    @contextlib.contextmanager
    def phase(self, name: str):
        """Samples taken inside the block belong to phase ``name`` (one use per call)."""
        t0 = time.time()
        try:
            yield
        finally:
            self.phases.append((name, t0, time.time()))

    def stop(self) -> dict:
        if not self.available:
            return {"available": False, "why": self.why}
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.file.seek(0)
        rows = [line.split(", ") for line in self.file.read().splitlines() if line.strip()]
        os.unlink(self.file.name)
        return {"available": True, "period_ms": self.period_ms, "fields": list(self.fields),
                "by_phase": summarise_samples(rows, self.phases)}


def gpu_index() -> str:
    """The GPU this process computes on, as ``nvidia-smi -i`` names it: nvidia-smi ignores CUDA_VISIBLE_DEVICES,
    so its first entry (an index or a UUID) when set, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible or "0"


def smi_time(stamp: str) -> float:
    """``nvidia-smi``'s local timestamp ("2026/12/03 12:34:56.789") as time.time() seconds."""
    return datetime.datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()


def summarise_samples(rows: list[list[str]], phases: list[tuple[str, float, float]]) -> dict:
    """Per phase: sample count, median / min SM clock (MHz), median memory clock, median / max power (W), max
    temperature (°C), the share of samples held by the power limit, and each clock-event reasons mask seen with its
    count."""
    out = {}
    for name, t0, t1 in phases:
        inside = []
        for row in rows:
            try:
                when = smi_time(row[0])
                sm, mem, power, temp = (float(v) for v in row[1:5])
            except (ValueError, IndexError):
                continue
            if t0 <= when <= t1:
                inside.append((sm, mem, power, temp, row[5].strip() if len(row) > 5 else ""))
        if not inside:
            out[name] = {"samples": 0}
            continue
        sm, mem, power, temp, reasons = zip(*inside)
        out[name] = {"samples": len(inside), "sm_mhz_median": statistics.median(sm), "sm_mhz_min": min(sm),
                     "mem_mhz_median": statistics.median(mem), "power_w_median": statistics.median(power),
                     "power_w_max": max(power), "temperature_c_max": max(temp),
                     "power_capped_share": sum(_capped(r) for r in reasons) / len(reasons),
                     "event_reasons": {r: reasons.count(r) for r in sorted(set(reasons))}}
    return out


def _capped(reasons: str) -> bool:
    """Whether an ``nvidia-smi`` clock-event reasons mask ("0x0000000000000004") includes a power cap."""
    try:
        return bool(int(reasons, 16) & POWER_CAP_BITS)
    except ValueError:
        return False
