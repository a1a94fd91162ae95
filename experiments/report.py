"""Markdown tables for the README from the committed result files (so no figure is typed by hand).

    python experiments/report.py    # prints the tiny-model and GPU tables, draws results/gpu_llada8b_b1.png
    python experiments/report.py speed [FOLDER ...]   # only the speed tables of results/speed/ (or the folders given)
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
# the Fast-dLLM reference implementation on the same GPU (docs/benchmarks.md): (cache, k) -> tokens/s
REFERENCE_TOK_S = {("none", 1): 25.1, ("prefix", 1): 25.4, ("dual", 1): 23.0,
                   ("none", 4): 93.0, ("prefix", 4): 115.0, ("dual", 4): 71.9}


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def tiny_accuracies(row: dict) -> tuple:
    """(strict, lenient, chain) of a result row; files written before strict scoring (issue 14) hold only
    ``accuracy``, measured with the GSM8K-style extraction that is now the lenient scorer."""
    if "scorer" not in row:
        return None, row["accuracy"], None
    lenient = row["accuracy"] if row["scorer"] == "lenient" else row.get("accuracy_lenient")
    strict = row["accuracy"] if row["scorer"] == "strict" else None
    return strict, lenient, row.get("accuracy_chain")


def tiny_table(path: Path) -> str:
    """The README's table for one ``bench_tiny.py`` result file: strict, lenient and chain accuracy per setting."""
    d = json.loads(path.read_text())
    env = d["env"]
    scored = "scorer" in d["main"][0]
    command = d["command"].split(" --note ")[0] + (' --note "…"' if " --note " in d["command"] else "")
    lines = [f"`{command}` — {d['n']} held-out {d['task']} problems, {d['family']} tiny model, gen_length "
             f"{d['decode']['gen_length']}, block_length {d['decode']['block_length']}, batch {d['batch_size']}, CPU "
             f"({env['cpu']}, {env['threads']} thread{'s' * (env['threads'] > 1)}), torch {env['torch']}, {d['date']}"
             + (f", commit {d['commit'][:7]}" if d.get("commit") else "") + "."]
    if d.get("note"):
        lines += ["", f"Conditions: {d['note']}"]
    if not scored:
        lines += ["", "Recorded before strict scoring: its accuracy is the GSM8K-style extraction (the lenient "
                      "scorer); strict and chain accuracy were not measured."]
    load = all("cpu_share" in r for r in d["main"])
    if load:  # one thread: the process's CPU time is about the wall time it would take on an idle core
        lines += ["", "Speedup is the baseline's decode wall time over the setting's; with the machine this loaded, "
                      "CPU s (this process's CPU time, wall × CPU share) and its speedup are the better speed "
                      "figures: with one thread they approximate the wall time on an idle core."]
    base_cpu = d["main"][0]["wall_time_s"] * d["main"][0]["cpu_share"] if load else None
    lines += ["", "| setting | strict | lenient | chain | NFE / seq | TPF canvas | TPF answer | tokens/s (canvas) | "
                  "speedup |" + (" load avg · CPU share | CPU s | speedup (CPU s) |" if load else ""),
              "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if load else "")]
    for r in d["main"]:
        strict, lenient, chain = tiny_accuracies(r)
        cells = [r["label"], _pct(strict), _pct(lenient), _pct(chain), f"{r['nfe_mean']:.1f}", f"{r['tpf_canvas']:.2f}",
                 f"{r['tpf_answer']:.2f}", f"{r['tokens_per_s_canvas']:.0f}", f"{r['speedup']:.1f}×"]
        if load:
            cpu = r["wall_time_s"] * r["cpu_share"]
            cells += [f"{max(r['load_avg_1min']):.1f} · {r['cpu_share']:.2f}", f"{cpu:.0f}", f"{base_cpu / cpu:.1f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    if d.get("sweep"):
        lines += ["", "Sweep (no cache; accuracy against answer tokens per forward, the plot below):", "",
                  "| setting | strict | lenient | chain | NFE / seq | TPF answer |", "|---|---|---|---|---|---|"]
        for r in d["sweep"]:
            strict, lenient, chain = tiny_accuracies(r)
            lines.append(f"| {r['label']} | {_pct(strict)} | {_pct(lenient)} | {_pct(chain)} | {r['nfe_mean']:.1f} | "
                         f"{r['tpf_answer']:.2f} |")
    return "\n".join(lines)


def gpu_table(path: Path) -> str:
    d = json.loads(path.read_text())
    env, floors = d["env"], d["floors_ms"]
    lines = [f"`{d['command']}` — {env['gpu']}, torch {env['torch']}, CUDA {env['cuda']}, {d['date']}; "
             f"{d['model']} ({d['params'] / 1e9:.2f} B params, {d['dtype'].removeprefix('torch.')}), batch {d['batch']}, prompt "
             f"{d['prompt_length']}, {d['gen_length']} generated, block {d['block_length']}, fixed k tokens per "
             f"step. Floors measured in the same run: weight read {floors['weight_read']:.1f} ms per forward, "
             f"full-canvas forward {floors['full_canvas_forward']:.1f} ms.", "",
             "| cache | k | NFE | reference tok/s | eager tok/s | CUDA graphs tok/s | graphs: ms / cached forward "
             "(× floor) | tokens equal |", "|---|---|---|---|---|---|---|---|"]
    rows = {(r["cache"], r["tokens_per_step"], r["cuda_graphs"]): r for r in d["rows"]}
    for (cache, k, graphs), r in rows.items():
        if graphs:
            continue
        g = rows[(cache, k, True)]
        cached = g.get("cached_ms_per_forward")
        cell = f"{cached:.1f} ({cached / floors['weight_read']:.1f}×)" if cached else "—"
        reference = REFERENCE_TOK_S[(cache, k)] if d["batch"] == 1 and d.get("family", "llada") == "llada" else "—"
        lines.append(f"| {cache} | {k} | {r['nfe']} | {reference} | {r['tokens_per_s']:.1f} | "
                     f"{g['tokens_per_s']:.1f} | {cell} | {g['tokens_equal_eager']} |")
    return "\n".join(lines)


def plot_gpu(path: Path, out: Path) -> None:
    """Bars of tokens/s per setting: the reference implementation, eager, CUDA graphs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(path.read_text())
    rows = {(r["cache"], r["tokens_per_step"], r["cuda_graphs"]): r for r in d["rows"]}
    settings = [(c, k) for (c, k, g) in rows if not g]
    x = range(len(settings))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.27
    ax.bar([i - width for i in x], [REFERENCE_TOK_S[s] for s in settings], width, label="Fast-dLLM reference")
    ax.bar(list(x), [rows[(*s, False)]["tokens_per_s"] for s in settings], width, label="fastdllm eager")
    ax.bar([i + width for i in x], [rows[(*s, True)]["tokens_per_s"] for s in settings], width,
           label="fastdllm + CUDA graphs")
    ax.set_xticks(list(x), [f"{c}\nk={k}" for c, k in settings])
    ax.set_ylabel("tokens / s (batch 1)")
    ax.set_title(f"LLaDA-8B shape, {d['env']['gpu']}, 256 tokens, block 32")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=130)


# ---- speed tables from experiments/results/speed/*.json (bench_gpu.py, gpu_all.sh) -------------------
SPEED = RESULTS / "speed"
GB = 2**30


def _speed_files(folder: Path = SPEED) -> list[dict]:
    out = []
    for path in sorted(folder.rglob("*.json")):
        d = json.loads(path.read_text())
        if "settings" in d:
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


def reworded_table(path: Path) -> str:
    """What held-out means: the same problems in the training wording, with other nouns, reworded."""
    d = json.loads(path.read_text())
    command = d["command"].split(" --note ")[0] + (' --note "…"' if " --note " in d["command"] else "")
    lines = [f"`{command}` — {d['n']} held-out problems asked three ways, dual cache + threshold 0.9, CPU, "
             f"{d['date']}.", "", "| wording | strict | lenient | example prompt → output |", "|---|---|---|---|"]
    for label, v in d["variants"].items():
        e = v["examples"][0]
        lines.append(f"| {label} | {_pct(v['accuracy_strict'])} | {_pct(v['accuracy_lenient'])} | "
                     f"{e['prompt']} → `{e['output']}` |")
    return "\n".join(lines)


def plot_tiny(path: Path) -> Path | None:
    """Redraw a bench_tiny result's sweep plot (strict and chain accuracy against TPF) beside the file."""
    import sys

    d = json.loads(path.read_text())
    if not d.get("sweep") or "scorer" not in d["sweep"][0]:
        return None
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_tiny import plot_sweep

    plot_sweep(d["sweep"], path.with_suffix(".png"))
    return path.with_suffix(".png")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["forward-plot"]:  # python experiments/report.py forward-plot RUN_FOLDER: a PNG beside its files
        for folder in sys.argv[2:]:
            print(plot_forward_profiles(Path(folder).resolve(), Path(folder).resolve() / "forward_profiles.png"))
        raise SystemExit
    if sys.argv[1:2] == ["speed"]:  # python experiments/report.py speed [RUN_FOLDER ...] [--fill-from OLDER ...]
        args = sys.argv[2:]
        cut = args.index("--fill-from") if "--fill-from" in args else len(args)
        folders, older = args[:cut], [Path(f).resolve() for f in args[cut + 1:]]
        if cut < len(args) and (len(folders) != 1 or not older):
            raise SystemExit("usage: report.py speed NEWER --fill-from OLDER [OLDER ...]: one run folder before "
                             "--fill-from, at least one after")
        for folder in folders or [SPEED]:
            print(speed_report(Path(folder).resolve(), *older), end="\n\n")
        raise SystemExit
    for path in sorted(RESULTS.glob("tiny_*_cpu.json")):
        print(tiny_table(path), end="\n\n")
        plot_tiny(path)
    print(reworded_table(RESULTS / "tiny_llada_reworded.json"), end="\n\n")
    for path in sorted(RESULTS.glob("gpu_*.json")):  # LLaDA-8B batch 1 and 8, Dream-7B
        print(gpu_table(path), end="\n\n")
    plot_gpu(RESULTS / "gpu_llada8b_b1.json", RESULTS / "gpu_llada8b_b1.png")
    if SPEED.exists():
        print(speed_report())
