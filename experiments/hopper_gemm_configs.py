"""The host-side arithmetic of ``hopper_gemm.py``'s Gluon GEMM: configurations, their checks, the launch they
make for a product and the candidates ``experiments/split_k_sweep.py --kernel hopper`` sweeps. Plain Python (no
Triton), so it runs and is tested anywhere; the kernel itself and its launch are in ``hopper_gemm.py``."""

from __future__ import annotations

import itertools

# (BW, BX, BK, SPLIT, STAGES, WS): weight rows and x rows per program, K step, K slices, shared-memory stages,
# warp specialisation (1: one extra warp issues the TMA loads)
DEFAULT_CONFIG = (128, 128, 64, 2, 4, 0)
SHARED_MEMORY_BYTES = 227 * 1024  # an H100/H200 block's shared memory
CONFIG_FIELDS = ("BW", "BX", "BK", "SPLIT", "STAGES", "WS")


def check_config(config) -> tuple[int, ...]:
    """``config`` as a tuple (BW, BX, BK, SPLIT, STAGES, WS), or a ValueError naming what is wrong: BW 64 or 128
    (one or two warpgroups), BX a power of two 16-256 (wgmma's N), BK 32-128, 1-16 slices, 2-8 stages whose
    operand tiles fit shared memory, WS 0 or 1."""
    config = tuple(int(c) for c in config)
    if len(config) != len(CONFIG_FIELDS):
        raise ValueError(f"hopper_linear: config {config} must be {CONFIG_FIELDS}")
    bw, bx, bk, split, stages, ws = config
    if bw not in (64, 128) or bx not in (16, 32, 64, 128, 256) or bk not in (32, 64, 128) \
            or not 1 <= split <= 16 or not 2 <= stages <= 8 or ws not in (0, 1):
        raise ValueError(f"hopper_linear: config {config}: want BW in (64, 128), BX a power of two 16-256, BK in "
                         "(32, 64, 128), SPLIT 1-16, STAGES 2-8, WS 0 or 1")
    if split == 1:
        _check_one_slice_epilogue(config)
    if stage_bytes(config) * stages > SHARED_MEMORY_BYTES - 4096:
        raise ValueError(f"hopper_linear: config {config}: {stages} stages of {stage_bytes(config)} bytes exceed the "
                         f"{SHARED_MEMORY_BYTES} bytes of shared memory; use fewer stages or smaller tiles")
    return config


def _check_one_slice_epilogue(config) -> None:
    """With one slice the fp32 tile (BW × BX × 4 bytes) goes out to y through the x stages (STAGES × BX × BK × 2
    bytes): BW · 2 must be at most STAGES · BK. Several slices store their partials from the registers."""
    bw, bx, bk, split, stages, ws = config
    if bw * 4 > stages * bk * 2:
        raise ValueError(f"hopper_linear: config {config}: with one slice the fp32 tile (BW × BX × 4 bytes) goes "
                         "out through the x stages (STAGES × BX × BK × 2 bytes): BW · 2 must be at most "
                         "STAGES · BK")


def launch_options(config, num_warps: int) -> dict:
    """Compile options beyond num_warps: with the loader warp and two warpgroups, a register cap (168 × 12 warps
    of 32 threads fit the SM's 65 536 registers)."""
    return {"maxnreg": 168} if config[5] and num_warps == 8 else {}


def stage_bytes(config) -> int:
    """Shared memory one pipeline stage holds: a BW × BK weight tile and a BX × BK tile of x, 2-byte elements."""
    bw, bx, bk = config[:3]
    return (bw + bx) * bk * 2


def plan_launch(M: int, N: int, K: int, config) -> dict:
    """The launch of ``config`` for an ``M`` × ``K`` · [``N``, ``K``]ᵀ product: the grid (weight tiles, x tiles,
    slices), K steps per slice (each slice whole ``BK`` steps, so fewer slices run when K is short) and the warps."""
    bw, bx, bk, split, stages, ws = check_config(config)
    k_steps = -(-K // bk)
    per = -(-k_steps // split)
    slices = -(-k_steps // per)
    if slices == 1:  # K too short for the slices asked: the one-slice epilogue runs
        _check_one_slice_epilogue((bw, bx, bk, 1, stages, ws))
    return {"grid": (-(-N // bw), -(-M // bx), slices), "k_steps_per_slice": per, "slices": slices,
            "num_warps": 4 * bw // 64, "worker_warps": ws}


def sweep_configs(rows: int, N: int, K: int, processors: int = 132, ws=(0, 1)) -> list[tuple[int, ...]]:
    """Candidates for a ``rows`` × K · [N, K]ᵀ product (``experiments/split_k_sweep.py --kernel hopper``): BW 64
    or 128, BX 32-256 (not twice the rows or more, nor under an eighth of them), 64- or 128-deep K steps, with and
    without the loader warp (``ws``: the values offered); the largest slice count whose grid fills 0.7-1 wave of
    ``processors`` programs (one program per SM: the spread reduction) and the one whose grid comes nearest two
    waves from 0.7 up (1-8 slices of at least four K steps each), each with the
    deepest stage count (at most 6) shared memory holds and the deepest that leaves room for two programs per
    SM (at most ``SHARED_MEMORY_BYTES`` / 2 each, where the two differ)."""
    out = []
    for bw, bx, bk, ws_ in itertools.product((64, 128), (32, 64, 128, 256), (64, 128), ws):
        if bx >= 2 * rows and bx > 32 or bx * 8 < rows:
            continue
        tiles = -(-N // bw) * -(-rows // bx)
        waves = {s: tiles * s / processors for s in range(1, 9) if K // s >= 4 * bk}
        one_wave = max((s for s in waves if 0.7 <= waves[s] <= 1), default=None)  # fits the SMs: spread reduction
        two_waves = min((s for s in waves if waves[s] >= 0.7), key=lambda s: abs(waves[s] - 2), default=None)
        splits = {one_wave, two_waves} - {None}
        for split in sorted(splits):
            fitting = []
            for stages in range(6, 1, -1):
                try:
                    fitting.append(check_config((bw, bx, bk, split, stages, ws_)))
                except ValueError:
                    continue
            half = [c for c in fitting if stage_bytes(c) * c[4] <= SHARED_MEMORY_BYTES // 2 - 4096]
            out += sorted(set(fitting[:1] + half[:1]), key=fitting.index)
    return out
