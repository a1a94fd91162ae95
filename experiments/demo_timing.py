"""How long ``fastdllm demo`` takes here: wall time, this process's CPU time and the machine's load.

With one torch thread, the process's CPU time is close to the wall time the demo would take on an idle
core; the wall time is what it took under whatever else ran. ``--busy`` starts one extra process
spinning on a core for the whole run (and stops it afterwards), the issue's "one core busy" condition.

    python experiments/demo_timing.py --n 20 --busy --out experiments/results/demo_timing_busy.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from fastdllm.demo import run_demo
from fastdllm.evaluation import torch_info


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="problems (default: run_demo's default)")
    p.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process meanwhile")
    p.add_argument("--note", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the spinner is stopped when this is
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        load_before = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rows = run_demo(**({} if args.n is None else {"n": args.n}))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        load_after = os.getloadavg()[0]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    out = {"command": "python experiments/demo_timing.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "env": {**torch_info(), "cores": os.cpu_count()},
           "busy_core": args.busy, "note": args.note, "n": rows[0][1].n, "wall_s": wall, "cpu_s": cpu,
           "load_avg_1min": [load_before, load_after],
           "settings": {label: {"wall_time_s": r.wall_time_s, "accuracy": r.accuracy, "accuracy_lenient": r.accuracy_lenient,
                                "accuracy_chain": r.accuracy_chain, "nfe_mean": r.nfe_mean} for label, r in rows},
           "printed": buf.getvalue()}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"n {out['n']}: wall {wall:.1f}s, CPU {cpu:.1f}s, load {load_before:.1f}->{load_after:.1f}, busy core {args.busy}")
    return out


if __name__ == "__main__":
    main()
