"""Read and write run folders: ``config.yaml``, ``summary.json``, ``samples.jsonl`` (one run = one setting).

``fastdllm run`` writes them for real runs; ``write_run_folder`` makes one straight from
``fastdllm.evaluation.evaluate`` (examples, tests). ``load_run`` reads one for the plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence



@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    samples_path: Path | None
    _samples: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.path.name)

    @property
    def samples(self) -> list[dict[str, Any]]:
        """The per-sample rows (read at first use; [] when the folder has no samples.jsonl)."""
        if self._samples is None:
            self._samples = []
            if self.samples_path is not None:
                for line_no, line in enumerate(self.samples_path.read_text().splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        self._samples.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{self.samples_path}:{line_no}: invalid JSON ({err.msg})") from None
        return self._samples

    def setting(self, key: str, default: Any = None) -> Any:
        return self.summary.get("setting", {}).get(key, default)


def load_run(folder: str | Path) -> Run:
    """One run folder; a clear error when it is not one."""
    path = Path(folder)
    summary_path = path / "summary.json"
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {str(path)!r} does not exist (expected runs/<run-name>/ written by "
                                "`fastdllm run`)")
    if not summary_path.is_file():
        raise FileNotFoundError(f"{str(path)!r} has no summary.json: not a run folder (written by `fastdllm run`)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{summary_path}: invalid JSON ({err.msg})") from None
    samples = path / "samples.jsonl"
    return Run(path, summary, samples if samples.is_file() else None)


def write_run_folder(folder: str | Path, model, problems: Sequence, task, *, name: str | None = None,
                     batch_size: int = 64, **options: Any) -> Path:
    """Evaluate one setting with ``fastdllm.evaluation.evaluate`` and write its run folder."""
    import yaml

    from fastdllm.evaluation import evaluate, torch_info
    from fastdllm.runs.folder import write_run_folder as write_files

    path = Path(folder)
    report = evaluate(model, problems, task, batch_size=batch_size, keep_rows=True, **options)
    summary = {"name": name or path.name, **report.to_dict(), "task": getattr(task, "name", str(task)),
               "env": torch_info(), "world_size": 1}
    config = {"model": str(getattr(model, "name", "model")), "decode": report.setting, "task": summary["task"],
              "n": len(problems), "batch_size": batch_size}
    # evaluate's rows already carry index, target, the scores and commit_forward
    write_files(path, yaml.safe_dump(config, sort_keys=False), summary, report.rows)
    return path
