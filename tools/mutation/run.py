"""Mutation testing of fastdllm's decoding code: generate operator mutants (``operators.py``), run a mapped
subset of the tests against each, and write a JSON of killed / survived / timeout mutants.

    python tools/mutation/run.py                                  # every target file, every mutant
    python tools/mutation/run.py --files fastdllm/core/decoder.py --max-mutants 30 --jobs 2

Each job owns a private copy of the repository (``fastdllm/``, ``tests/``, ``pyproject.toml``) where one
mutant at a time is written. The heavy third-party imports (torch, transformers, ...) are done once in
this process, and every mutant's pytest runs in a ``fork`` of it (``-x``, one torch thread, a per-mutant
timeout), so a mutant costs its tests' time rather than a fresh interpreter's. Survivors listed in
``equivalent.yaml`` (file, the original line's text, the mutation, the reason) are reported as
``equivalent``. Not part of CI (too slow): see docs/mutation.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operators import Mutant, mutants  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["fastdllm/core", "fastdllm/caches", "fastdllm/samplers", "fastdllm/models/base.py",
           "fastdllm/models/checkpoint.py", "fastdllm/models/cuda_graphs.py"]
DECODING_TESTS = ["tests/core", "tests/caches", "tests/samplers"]
#: file (or folder prefix) → tests, most specific first (pytest stops at the first failure: put the fast,
#: targeted files first). The first matching prefix wins.
TEST_MAP = [
    ("fastdllm/core/proposal.py", ["tests/core/test_sampling_distribution.py", "tests/core/test_theorem1.py",
                                   *DECODING_TESTS]),
    ("fastdllm/core/decoder.py", ["tests/core/test_per_row_statistics.py", "tests/core/test_mask_never_committed.py",
                                  "tests/core/test_position_ids.py", "tests/caches/test_plan_guards.py",
                                  *DECODING_TESTS]),
    ("fastdllm/samplers", ["tests/samplers", "tests/core/test_theorem1.py", *DECODING_TESTS]),
    ("fastdllm/caches", ["tests/caches", *DECODING_TESTS]),
    ("fastdllm/core", DECODING_TESTS),
    ("fastdllm/models/base.py", ["tests/core/test_position_ids.py", "tests/models"]),
    ("fastdllm/models/checkpoint.py", ["tests/models/test_checkpoint_io.py", "tests/models/test_config_precedence.py",
                                       "tests/models/test_first_run_inputs.py", "tests/models"]),
    ("fastdllm/models/cuda_graphs.py", ["tests/models/test_cuda_graphs.py"]),
]
PREIMPORT = ["torch", "numpy", "pydantic", "hypothesis", "pytest", "safetensors", "safetensors.torch", "tokenizers",
             "transformers", "yaml"]


def target_files(selected: list[str] | None) -> list[str]:
    out = []
    for entry in selected or TARGETS:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        out += [str(f.relative_to(ROOT)) for f in files if f.name != "__init__.py" or selected]
    return list(dict.fromkeys(out))


def tests_for(file: str, override: list[str] | None, base: Path = ROOT) -> list[str]:
    """The mapped tests as an ordered list of test files (folders expanded, duplicates dropped), as found
    in ``base`` (the jobs' snapshot of the repository)."""
    entries = override or next((tests for prefix, tests in TEST_MAP if file.startswith(prefix)), DECODING_TESTS)
    out = []
    for entry in entries:
        path = base / entry
        files = sorted(path.rglob("test_*.py")) if path.is_dir() else [path]
        out += [str(f.relative_to(base)) for f in files]
    return list(dict.fromkeys(out))


def tiers(tests: list[str], first: int = 3) -> list[list[str]]:
    """Two pytest runs per mutant: the first few (targeted) files, then the rest only if those pass, so a
    mutant killed early does not pay for collecting every test module."""
    return [tests[:first], tests[first:]] if len(tests) > first else [tests]


def load_equivalent(path: Path) -> list[dict]:
    if not path.exists():
        return []
    import yaml

    entries = yaml.safe_load(path.read_text()) or []
    for e in entries:
        missing = {"file", "line", "mutation", "reason"} - set(e)
        if missing:
            raise SystemExit(f"{path}: entry {e} lacks {sorted(missing)}")
    return entries


def is_equivalent(m: Mutant, entries: list[dict]) -> str | None:
    for e in entries:
        if e["file"] == m.file and e["line"].strip() == m.original and e["mutation"] == m.mutation:
            return e["reason"]
    return None


def make_slot(base: Path, k: int) -> Path:
    slot = base / f"slot{k}"
    slot.mkdir()
    for name in ("fastdllm", "tests", "experiments", "configs", "sweeps"):  # tests also run scripts and configs
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, slot / name,
                            ignore=shutil.ignore_patterns("__pycache__", ".hypothesis", "results"))
    shutil.copy2(ROOT / "pyproject.toml", slot / "pyproject.toml")
    return slot


def fork_pytest(slot: Path, tests: list[str], log: Path) -> int:
    """Fork a child that runs pytest on ``tests`` inside ``slot``; returns its pid (its own process group)."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(slot)
        sys.path.insert(0, str(slot))
        import fastdllm
        import pytest

        if not fastdllm.__file__.startswith(str(slot)):  # the editable install must not shadow the mutant
            raise RuntimeError(f"fastdllm imported from {fastdllm.__file__}, not from {slot}")

        code = pytest.main(["-o", "addopts=", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests])
        sys.stdout.flush()
        os._exit(int(code))
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        os._exit(99)


def first_failure(log: Path) -> str | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    return None


def run(args: argparse.Namespace) -> dict:
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline",
                      TOKENIZERS_PARALLELISM="false")
    for name in PREIMPORT:
        try:
            __import__(name)
        except ImportError:
            pass
    import torch

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    equivalent = load_equivalent(Path(args.equivalent))
    work = Path(tempfile.mkdtemp(prefix="fastdllm-mutation-"))
    slots = [make_slot(work, k) for k in range(args.jobs)]
    files_report, queue = {}, []
    for file in target_files(args.files):
        if args.only is not None and not any(key.startswith(file + ":") for key in args.only):
            continue
        source = (slots[0] / file).read_bytes()  # the snapshot: edits made while this runs do not leak in
        found = mutants(file, source)
        chosen = found
        if args.only is not None:  # --rerun: exactly these mutants (keys resolved by rerun())
            chosen = [m for m in found if m.key in args.only]
        elif args.max_mutants and len(found) > args.max_mutants:
            chosen = sorted(rng.sample(found, args.max_mutants), key=lambda m: (m.line, m.col, m.mutation))
        tests = tests_for(file, args.tests, slots[0])
        files_report[file] = {"tests": tests, "generated": len(found), "run": len(chosen)}
        queue += [(m, source, tests) for m in chosen]
    if args.list:
        for m, _, _ in queue:
            print(f"{m.file}:{m.line}: {m.mutation}  [{m.original}]")
        shutil.rmtree(work, ignore_errors=True)
        return {}

    # baseline: every test set must pass unmutated (its time sets the per-mutant timeout); run in parallel
    baselines: dict[tuple, float] = {}
    pending = list(dict.fromkeys(tuple(info["tests"]) for info in files_report.values() if info["run"]))
    while pending:
        batch, pending = pending[:args.jobs], pending[args.jobs:]
        started, procs = time.monotonic(), {}
        for k, tests in enumerate(batch):
            procs[fork_pytest(slots[k], list(tests), work / f"baseline{k}.log")] = (k, tests)
        for pid in list(procs):
            _, status = os.waitpid(pid, 0)
            k, tests = procs[pid]
            baselines[tests] = round(time.monotonic() - started, 1)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"these tests fail before any mutation: {list(tests)}; see {work}/baseline{k}.log")
    for file, info in files_report.items():
        if info["run"]:
            info["baseline_s"] = baselines[tuple(info["tests"])]
            print(f"baseline {file}: {info['baseline_s']} s, {info['run']} of {info['generated']} mutants", flush=True)

    results, running, free = [], {}, list(range(args.jobs))
    total, done = len(queue), 0
    progress = open(work / "progress.jsonl", "a")
    try:
        while queue or running:
            while queue and free:
                m, source, tests = queue.pop(0)
                k = free.pop()
                (slots[k] / m.file).write_bytes(m.apply(source))
                log = work / f"slot{k}.log"
                limit = max(args.min_timeout, args.timeout_factor * files_report[m.file]["baseline_s"])
                stages = tiers(tests)
                running[fork_pytest(slots[k], stages[0], log)] = (m, source, k, log, time.monotonic(), limit, stages[1:])
            time.sleep(0.1)
            for pid, (m, source, k, log, started, limit, later) in list(running.items()):
                finished, status = os.waitpid(pid, os.WNOHANG)
                elapsed = time.monotonic() - started
                if not finished and elapsed < limit:
                    continue
                if not finished:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    state, killer = "timeout", None
                else:
                    code = os.waitstatus_to_exitcode(status)
                    if code == 0 and later:  # passed the targeted tests: run the rest
                        del running[pid]
                        running[fork_pytest(slots[k], later[0], log)] = (m, source, k, log, started, limit, later[1:])
                        continue
                    state = "survived" if code == 0 else "no-tests" if code == 5 else "killed"
                    text = log.read_text(errors="replace")
                    if state == "survived" and " passed" not in text and " skipped" in text:
                        state = "all-skipped"  # every mapped test skipped here (the CUDA-only tests on CPU)
                    killer = first_failure(log) if code != 0 else None
                reason = is_equivalent(m, equivalent) if state == "survived" else None
                if reason:
                    state = "equivalent"
                (slots[k] / m.file).write_bytes(source)
                del running[pid]
                free.append(k)
                done += 1
                entry = {"file": m.file, "line": m.line, "col": m.col, "operator": m.operator, "mutation": m.mutation,
                         "original": m.original, "status": state, "seconds": round(elapsed, 1)}
                if killer:
                    entry["killed_by"] = killer
                if reason:
                    entry["reason"] = reason
                results.append(entry)
                progress.write(json.dumps(entry) + "\n")
                progress.flush()
                print(f"[{done}/{total}] {state:<10} {m.file}:{m.line} {m.mutation}  ({elapsed:.0f}s)", flush=True)
    except KeyboardInterrupt:  # SIGINT / SIGTERM: stop, and report what ran (the rest as not-run)
        for pid in list(running):
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for m, *_ in [running[pid][:1] for pid in running] + [(q[0],) for q in queue]:
            results.append({"file": m.file, "line": m.line, "col": m.col, "operator": m.operator,
                            "mutation": m.mutation, "original": m.original, "status": "not-run"})
        print(f"interrupted after {done} of {total} mutants", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    results.sort(key=lambda e: (e["file"], e["line"], e["col"], e["mutation"]))
    counts = {s: sum(e["status"] == s for e in results)
              for s in ("killed", "timeout", "survived", "equivalent", "all-skipped", "no-tests", "not-run")}
    return {"results": results, "counts": counts, "files": files_report}


def environment() -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "fastdllm", "tests"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"git_commit": commit, "worktree_dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
            "device": "cpu"}


def rerun(args: argparse.Namespace) -> int:
    """Re-run an earlier result's survivors (matched by file, original line and mutation, so moved lines still
    match) against the current tests, re-apply equivalent.yaml, and rewrite the result with the new statuses."""
    path = Path(args.rerun)
    report = json.loads(path.read_text())
    equivalent = load_equivalent(Path(args.equivalent))
    def explained(e: dict) -> str | None:
        return is_equivalent(Mutant(e["file"], e["line"], e["col"], e["operator"], e["mutation"], e["original"],
                                    0, 0, ""), equivalent)

    # survivors that equivalent.yaml does not explain (the explained ones are only re-labelled)
    todo = [e for e in report["results"] if e["status"] in ("survived", "all-skipped") and not explained(e)]
    # each survivor's mutant in today's code: same line text, mutation and column, the nearest line if the
    # same text occurs more than once (three `@dataclass(frozen=True)` lines, say)
    wanted: dict[int, str] = {}
    for i, e in enumerate(todo):
        found = [m for m in mutants(e["file"], (ROOT / e["file"]).read_bytes())
                 if (m.original, m.mutation, m.col) == (e["original"], e["mutation"], e["col"])]
        if found:
            wanted[i] = min(found, key=lambda m: abs(m.line - e["line"])).key
    args.only = set(wanted.values())
    args.files = sorted({e["file"] for e in todo})
    fresh = {f"{r['file']}:{r['line']}:{r['col']}:{r['mutation']}": r for r in run(args)["results"]} if todo else {}
    updates = {id(todo[i]): fresh.get(key) for i, key in wanted.items()}
    for e in report["results"]:
        new = updates.get(id(e))
        if new is not None:
            e.update(new)
        if e["status"] in ("survived", "equivalent") and explained(e):
            e["status"], e["reason"] = "equivalent", explained(e)
    states = ("killed", "timeout", "survived", "equivalent", "all-skipped", "no-tests", "not-run")
    report["counts"] = {s: sum(e["status"] == s for e in report["results"]) for s in states}
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report.setdefault("reruns", []).append({"date": stamp, "env": environment(), "mutants": len(todo),
                                            "command": "python tools/mutation/run.py --rerun " + str(args.rerun)})
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{path}: {report['counts']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", nargs="+", help="target files or folders (default: the decoding code)")
    p.add_argument("--tests", nargs="+", help="tests to run for every mutant (default: the mapping in TEST_MAP)")
    p.add_argument("--max-mutants", type=int, default=0, help="per file: a seeded random sample of this many")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout-factor", type=float, default=4.0, help="per-mutant timeout = factor x baseline")
    p.add_argument("--min-timeout", type=float, default=60.0, help="seconds, the per-mutant timeout's floor")
    p.add_argument("--equivalent", default=str(Path(__file__).resolve().parent / "equivalent.yaml"))
    p.add_argument("--out", default=None, help="result JSON (default experiments/results/mutation_<date>.json)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--rerun", metavar="RESULT.json", help="run again the survivors of an earlier result (after new "
                   "tests) and update that file in place; equivalent.yaml is re-applied to every entry")
    args = p.parse_args(argv)
    args.only = None
    if args.rerun:
        return rerun(args)
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: use 1 or more")
    started = time.time()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    env = environment()  # at the start: the commit the snapshot was taken from
    report = run(args)
    if args.list:
        return 0
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out or ROOT / "experiments" / "results" / f"mutation_{stamp:%Y%m%d_%H%M}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": "python tools/mutation/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": stamp.isoformat(timespec="seconds"), "wall_time_s": round(time.time() - started),
              "settings": {k: v for k, v in vars(args).items() if k not in ("list", "out")}, "env": env,
              **report}
    out.write_text(json.dumps(report, indent=1) + "\n")
    c = report["counts"]
    print(f"{out}: killed {c['killed']}, timeout {c['timeout']}, survived {c['survived']}, "
          f"equivalent {c['equivalent']}, all tests skipped {c['all-skipped']}, no-tests {c['no-tests']}, "
          f"not run {c['not-run']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
