"""What "held-out" means for the shipped tiny model: new problems in the training wording, not new wording.

Takes ``--n`` held-out arithmetic problems and asks each three ways: as generated (the training
templates), with object nouns the task never uses, and reworded (other verbs and sentence shapes,
same numbers and operations). Decodes all three with the model's stored setting (dual cache +
threshold 0.9 by default) and scores strictly and leniently against the same answers.

    python experiments/reworded_tiny.py --n 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.evaluation import evaluate, torch_info
from fastdllm.tasks import Problem, get_task
from fastdllm.tasks.arithmetic import NAMES
from fastdllm.tasks.arithmetic_chain import parse_problem

RESULTS = Path(__file__).parent / "results"
NEW_OBJECTS = ("pebbles", "tickets", "buttons", "beads", "leaves", "rocks")
PRONOUN = dict(NAMES)


def other_objects(problem: Problem, i: int) -> Problem:
    """The same problem about objects the task never names."""
    obj = problem.prompt.split(" ")[3].rstrip(".")
    return Problem(problem.prompt.replace(obj, NEW_OBJECTS[i % len(NEW_OBJECTS)]), problem.response, problem.answer,
                   problem.task)


def reworded(problem: Problem) -> Problem:
    """The same numbers and operations in other words."""
    start, operations = parse_problem(problem.prompt)
    name, obj = problem.prompt.split(" ")[0], problem.prompt.split(" ")[3].rstrip(".")
    pronoun = PRONOUN[name].lower()
    words = {"+": "Then {p} receives {k} additional ones.", "-": "After that {p} hands {k} of them to a friend.",
             "*": "Next the pile grows to {k} times its size."}
    sentences = [f"At first {name} owns {start} {obj}."]
    sentences += [words[op].format(p=pronoun, k=k) for op, k in operations]
    sentences.append(f"What is the number of {obj} {name} has at the end?")
    return Problem(" ".join(sentences), problem.response, problem.answer, problem.task)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "tiny_llada_reworded.json"))
    args = p.parse_args(argv)
    if args.n < 1 or args.threads < 1:
        p.error(f"--n and --threads must be >= 1, got {args.n}, {args.threads}")
    torch.set_num_threads(args.threads)
    path = tiny_model_path()
    model = fastdllm.load_model(path, device="cpu", dtype=torch.float32)
    decode = default_decode_options(path)
    setting = {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.9}}
    task = get_task("arithmetic")
    original = task.generate("test", args.n, seed=0)
    variants = {"training wording": original, "other object nouns": [other_objects(q, i) for i, q in enumerate(original)],
                "reworded": [reworded(q) for q in original]}
    out = {"command": "python experiments/reworded_tiny.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d"), "env": torch_info(), "load_avg_1min": os.getloadavg()[0],
           "decode": {**decode, **setting}, "n": args.n, "variants": {}}
    for label, problems in variants.items():
        report = evaluate(model, problems, task, batch_size=args.n, keep_rows=True, **decode, **setting)
        out["variants"][label] = {"accuracy_strict": report.accuracy, "accuracy_lenient": report.accuracy_lenient,
                                  "examples": [{"prompt": r["prompt"], "target": r["target"], "output": r["output"]}
                                               for r in report.rows[:3]]}
        print(f"{label:<20} strict {report.accuracy:6.1%}  lenient {report.accuracy_lenient:6.1%}   "
              f"e.g. {report.rows[0]['prompt']!r} -> {report.rows[0]['output']!r}", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
