"""The speed tables and the forward picture of the README from bench_gpu.py's result files
(``experiments/results/speed/``; written by bench_gpu.py and gpu_all.sh). ``report.py speed`` and
``report.py forward-plot`` print and draw them."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SPEED = RESULTS / "speed"
GB = 2**30


def _speed_files(folder: Path = SPEED) -> list[dict]:
    out = []
    for path in sorted(folder.rglob("*.json")):
        d = json.loads(path.read_text())
        if "settings" in d and "modes" in d:  # bench_gpu.py's (decode_timeline.py and step_gaps.py write settings too)
            d["_file"] = str(path.relative_to(RESULTS.parent))
            d["_final"] = path.parent == folder  # results/speed/*.json: the gpu_all.sh run; subfolders: earlier runs
            out.append(d)
    return out


def _agreement(r: dict) -> str:
    if r.get("tokens_equal_plain"):
        return "identical"
    return f"{100 * r['token_agreement_plain']:.0f} % of positions" if "token_agreement_plain" in r else "—"


def _fp32_agreement(r: dict | None) -> str:
    """A decode's generated positions equal to the fp32 decode's (bench_gpu.py --fp32-check)."""
    if r is None or "token_agreement_fp32" not in r:
        return "—"
    return "identical" if r["tokens_equal_fp32"] else f"{100 * r['token_agreement_fp32']:.0f} %"


def _ratio(r: dict) -> str:
    """× the targets' floor sum, and × the work floor sum where recorded (``bench_floors.Work``)."""
    if "floor_ratio" not in r:
        return "no floor: CPU"
    return f"{r['floor_ratio']:.2f}×" + (f"; work {r['floor_ratio_work']:.2f}×" if "floor_ratio_work" in r else "")


def _source(files: list[dict]) -> str:
    """The files' device, versions, commits and dates (each distinct value once, in file order) and the shape."""
    def distinct(values) -> str:
        return ", ".join(dict.fromkeys(values))

    d = files[0]
    dates = sorted(f["date"] for f in files)
    return (f"{distinct(f['env'].get('gpu', f['env']['cpu']) for f in files)}, "
            f"torch {distinct(f['env']['torch'] for f in files)}, CUDA {distinct(str(f['env'].get('cuda')) for f in files)}, "
            f"commit {distinct((f.get('commit') or '?')[:7] for f in files)}, "
            f"{dates[0] if dates[0] == dates[-1] else dates[0] + ' to ' + dates[-1]}; "
            f"prompt {d['prompt_length']}, {d['gen_length']} generated, "
            f"block {d['block_length']}, fixed k tokens per step, random bf16 weights at full shape. Files: "
            + ", ".join(f"`{f['_file']}`" for f in files) + ".")


def speed_table(files: list[dict]) -> str:
    """One row per (family, batch, cache, k): plain eager vs the file's last (most optimised) mode, each against
    the floor sum (a run cut by its time limit: the most optimised mode it reached for that setting, named); with ``--fp32-check`` results, a column of both decodes' agreement with the fp32 decode."""
    fp32 = any("token_agreement_fp32" in r for d in files for r in d["settings"])
    held = any("floor_ratio_sustained" in r or r.get("clocks") for d in files for r in d["settings"])
    commits = len({d.get("commit") for d in files}) > 1  # files of several checks (speed_report's older folders)
    lines = [_source(files), "",
             "| family | batch | cache | k | NFE | plain tok/s (× floor sum; work) | optimised tok/s (× floor sum; work) | "
             "floor-sum tok/s | peak GPU mem | KV store | tokens vs plain |"
             + (" tokens vs fp32: plain / optimised |" if fp32 else "")
             + (" optimised: × floor sum at the sustained matmul rate (work); SM clock, power |" if held else "")
             + (" commit |" if commits else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if fp32 else "") + ("---|" if held else "")
             + ("---|" if commits else "")]
    for d in files:
        rows = {(r["batch"], r["cache"], r["tokens_per_step"], r["mode"]): r for r in d["settings"]}
        for (batch, cache, k, mode), plain in rows.items():
            reached = [m for m in d["modes"][1:] if (batch, cache, k, m) in rows]
            if mode != "plain" or not reached:
                continue
            fast = rows[(batch, cache, k, reached[-1])]
            cut = "" if reached[-1] == d["modes"][-1] else f"; `{reached[-1]}`: the run ended before `{d['modes'][-1]}`"
            floor_tok_s = f"{batch * d['gen_length'] / fast['floor_sum_s']:.0f}" if "floor_sum_s" in fast else "—"
            peak = f"{fast['peak_memory_bytes'] / GB:.1f} GiB" if "peak_memory_bytes" in fast else "—"
            lines.append(f"| {d['family']} | {batch} | {cache} | {k} | {fast['nfe']} | {plain['tokens_per_s']:.1f} "
                         f"({_ratio(plain)}) | **{fast['tokens_per_s']:.1f}** ({_ratio(fast)}{cut}) | {floor_tok_s} | {peak} | "
                         f"{fast['kv_store_bytes'] / GB:.2f} GiB | {_agreement(fast)} |"
                         + (f" {_fp32_agreement(plain)} / {_fp32_agreement(fast)} |" if fp32 else "")
                         + (f" {_held(fast)} |" if held else "")
                         + (f" {(d.get('commit') or '?')[:7]} |" if commits else ""))
    return "\n".join(lines)


def _held(r: dict) -> str:
    """The ratio against floors at the sustained matmul rate, and the clock and power of the timed decodes."""
    ratio = f"{r['floor_ratio_sustained']:.2f}×" if "floor_ratio_sustained" in r else "—"
    if "floor_ratio_work_sustained" in r:
        ratio += f" (work {r['floor_ratio_work_sustained']:.2f}×)"
    c = r.get("clocks") or {}
    if not c.get("samples"):
        return ratio
    return (f"{ratio}; {c['sm_mhz_median']:.0f} MHz, {c['power_w_median']:.0f} W"
            + (f" (power-capped {100 * c['power_capped_share']:.0f} %)" if "power_capped_share" in c else ""))


def forward_table(files: list[dict]) -> str:
    """Single forwards timed directly: ms and × the forward's own floor, logits against the plain path's (and,
    with ``--fp32-check`` results, against the fp32 forward's); where recorded, the dual step's KV-store read at
    the copy rate (the work floor counts it: ``bench_floors.Work``)."""
    fp32 = any("argmax_agreement_fp32" in f for d in files for f in d["forwards"])
    kv = any("kv_read_ms" in f for d in files for f in d["forwards"])
    work = any("floor_work_ms" in f for d in files for f in d["forwards"])
    lines = ["| family | batch | forward | mode | ms | floor ms | × floor |"
             + (" work floor ms | × work floor |" if work else "")
             + (" KV read ms |" if kv else "")
             + " logits max abs diff vs plain | argmax agreement vs plain |"
             + (" max abs diff vs fp32 | argmax agreement vs fp32 |" if fp32 else "")
             + " commit |", "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if work else "") + ("---|" if kv else "")
             + ("---|---|" if fp32 else "")]
    for d in files:
        for f in d["forwards"]:
            diff = f.get("logits_max_abs_diff_plain")
            agree = f.get("argmax_agreement_plain")
            floor = "— | —" if f["floor_ms"] is None else f"{f['floor_ms']:.2f} | {f['floor_ratio']:.2f}×"
            if work:
                floor += (f" | {f['floor_work_ms']:.2f} | {f['floor_ratio_work']:.2f}×" if "floor_work_ms" in f
                          else " | — | —")
            if kv:
                floor += f" | {f['kv_read_ms']:.2f}" if "kv_read_ms" in f else " | —"
            wide = ""
            if fp32:
                wide_diff, wide_agree = f.get("logits_max_abs_diff_fp32"), f.get("argmax_agreement_fp32")
                wide = (f" {'—' if wide_diff is None else f'{wide_diff:.3g}'} | "
                        f"{'—' if wide_agree is None else f'{100 * wide_agree:.1f} %'} |")
            lines.append(f"| {d['family']} | {f['batch']} | {f['kind']} | {f['mode']} | {f['ms']:.2f} | "
                         f"{floor} | {'—' if diff is None else f'{diff:.3f}'} | "
                         f"{'—' if agree is None else f'{100 * agree:.1f} %'} |{wide} {(d.get('commit') or '?')[:7]} |")
    return "\n".join(lines)


PROFILE_KINDS = ("gemm", "attention", "compiled_elementwise", "kv_write", "other")  # bench_profile.KINDS and the rest


def forward_profile_table(files: list[dict]) -> str:
    """The forwards profiled by ``bench_gpu.py --forward-profile`` (one eager forward each, no graphs): GPU kernel
    ms by kind; for a dual step, its attention against the KV-store read at the copy rate. Empty without any."""
    rows = [(d, f) for d in files for f in d["forwards"] if "profile" in f]
    if not rows:
        return ""
    lines = ["| family | batch | forward | mode | kernels ms | " + " | ".join(PROFILE_KINDS) + " | attention ÷ KV read |",
             "|---|---|---|---|---|" + "---|" * len(PROFILE_KINDS) + "---|"]
    for d, f in rows:
        by_kind = f["profile"]["by_kind_us"]
        read = f.get("kv_read_ms")
        attention = by_kind.get("attention", 0.0) / 1000
        lines.append(f"| {d['family']} | {f['batch']} | {f['kind']} | {f['mode']} | {f['profile']['kernel_us'] / 1000:.2f} | "
                     + " | ".join(f"{by_kind.get(k, 0.0) / 1000:.2f}" for k in PROFILE_KINDS)
                     + f" | {f'{attention / read:.2f}×' if read else '—'} |")
    return "\n".join(lines)


def plot_forward_profiles(folder: Path, out: Path) -> Path | None:
    """Each profiled cached dual forward (``bench_gpu.py --forward-profile``) as a bar of its kernel time by kind,
    in units of its floor, beside its graphed time and its work floor (``bench_floors.Work``; older files without
    it: the floor plus the KV-store read): where the time over the floor goes, batch by batch. None (nothing drawn)
    without profiled dual forwards."""
    rows = [(d, f) for d in _speed_files(folder) for f in d["forwards"]
            if f["kind"] == "dual" and "profile" in f and f.get("floor_ms") and f["mode"] != "plain"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    labels = [f"{d['family']} b{f['batch']} {f['mode']}" for d, f in rows]
    left = [0.0] * len(rows)
    for kind in PROFILE_KINDS:
        widths = [f["profile"]["by_kind_us"].get(kind, 0.0) / 1000 / f["floor_ms"] for _, f in rows]
        ax.barh(labels, widths, left=left, label=kind.replace("_", " "))
        left = [a + b for a, b in zip(left, widths)]
    ax.scatter([f["ms"] / f["floor_ms"] for _, f in rows], labels, marker="|", s=250, color="black", zorder=3,
               label="graphed forward")
    for key, name, marker in (("floor_work_ms", "work floor", "o"), ("kv_read_ms", "floor + KV-store read", "x")):
        points = [(label, (f[key] if key == "floor_work_ms" else f["floor_ms"] + f[key]) / f["floor_ms"])
                  for label, (_, f) in zip(labels, rows) if key in f and (key == "floor_work_ms" or "floor_work_ms" not in f)]
        if points:
            ax.scatter([v for _, v in points], [label for label, _ in points], marker=marker, color="red", zorder=3,
                       facecolors="none" if marker == "o" else None, label=name)
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.axvline(1.3, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("× the forward's floor (max of weight read, matmul); bars: kernels of one eager forward")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    gpus = sorted({d["env"].get("gpu", "?") for d, _ in rows})
    ax.set_title(f"Cached dual forwards, {', '.join(gpus)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def modes_table(d: dict) -> str:
    """Every mode of one file (plain, graphs, compiled ...) per setting: what each step of the work gives."""
    modes = d["modes"]
    lines = [f"`{d['_file']}` ({d['env'].get('gpu')}, commit {(d.get('commit') or '?')[:7]}): tokens/s "
             "(× floor sum; tokens vs plain; — where the run did not reach the mode)", "",
             "| batch | cache | k | " + " | ".join(modes) + " |", "|---|---|---|" + "---|" * len(modes)]
    rows = {(r["batch"], r["cache"], r["tokens_per_step"], r["mode"]): r for r in d["settings"]}
    for batch, cache, k in dict.fromkeys(key[:3] for key in rows):
        cells = []
        for m in modes:
            r = rows.get((batch, cache, k, m))
            cells.append("—" if r is None else f"{r['tokens_per_s']:.1f} ({_ratio(r)}"
                         + ("" if m == "plain" else f"; {_agreement(r)}") + ")")
        lines.append(f"| {batch} | {cache} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_report(folder: Path = SPEED, *older: Path) -> str:
    """The tables of one run folder: its own JSONs are the headline table (``results/speed/`` itself holds
    the 682b5fb run; ``results/speed/final_1068640`` the current one), subfolders give forwards and modes.
    ``older`` run folders fill in the runs ``folder`` lacks: a result file of theirs (its JSONs, not their
    subfolders') joins the tables only where no folder before it holds a file of that name, so a check that
    re-ran some of ``gpu_all.sh``'s runs is reported with the earlier check's other runs, each row naming its
    commit in the source line."""
    files = _speed_files(folder)
    names = {Path(d["_file"]).name for d in files if d["_final"]}
    for earlier in older:
        extra = [d for d in _speed_files(earlier) if d["_final"] and Path(d["_file"]).name not in names]
        names |= {Path(d["_file"]).name for d in extra}
        files += extra
    final = sorted((d for d in files if d["_final"]), key=lambda d: Path(d["_file"]).name)  # families together
    parts = [speed_table(final) if final else "", "", forward_table(files)]
    profiled = forward_profile_table(files)
    parts += ["", "Kernel time of the profiled forwards (one eager forward each, ms):", "", profiled] if profiled else []
    parts += ["", "\n\n".join(modes_table(d) for d in files if len(d["modes"]) > 2)]
    return "\n".join(parts)
