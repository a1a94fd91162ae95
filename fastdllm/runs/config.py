"""``RunConfig``: one pydantic model for a whole ``fastdllm run`` (model, decoding, task, tracking, output).

It round-trips through YAML (``config.yaml`` in every run folder). The decode section *is* a
:class:`fastdllm.DecodeConfig`; fields it leaves unset take the checkpoint's stored settings
(``fastdllm.json``), filled in when the config is validated so that the resolved config says what runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fastdllm.core.config import DecodeConfig
from fastdllm.runs.models import resolve_model, shipped_model_path, stored_decode_settings, SHIPPED_MODELS

LM_EVAL_PREFIX = "lm-eval:"
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskConfig(_Section):
    """What to decode and how to score it."""

    name: str = Field("arithmetic", description="a built-in task (`fastdllm ls`), a .jsonl file, or "
                      "'lm-eval:TASK[,TASK…]' to hand the run to lm-evaluation-harness")
    limit: int = Field(50, ge=1, description="number of problems (a JSONL file may hold fewer: all are run)")
    batch_size: int = Field(32, ge=1, description="prompts decoded together")
    seed: int = Field(0, description="seed of the synthetic tasks' problem draw")
    split: Literal["train", "test"] = Field("test", description="split of the task to draw from")
    extract: str | None = Field(None, description="JSONL answer extraction (gsm8k, exact; default: the task's)")
    scorer: str | None = Field(None, description="the scorer behind accuracy (default: the task's; e.g. strict, "
                               "lenient)")
    num_fewshot: int | None = Field(None, ge=0, description="lm-eval tasks only: few-shot examples")
    lm_eval_args: list[str] = Field(default_factory=list, description="lm-eval tasks only: more lm-eval CLI "
                                    "arguments, e.g. [--include_path, DIR, --apply_chat_template]")

    @property
    def is_lm_eval(self) -> bool:
        return self.name.startswith(LM_EVAL_PREFIX)

    @property
    def lm_eval_tasks(self) -> list[str]:
        return [t.strip() for t in self.name[len(LM_EVAL_PREFIX):].split(",") if t.strip()]

    @field_validator("name")
    @classmethod
    def _known_task(cls, name: str) -> str:
        if name.startswith(LM_EVAL_PREFIX):
            if not name[len(LM_EVAL_PREFIX):].strip(" ,"):
                raise ValueError(f"{name!r} names no lm-eval task; e.g. 'lm-eval:gsm8k'")
            return name  # lm-eval checks its own task names (its message is passed through)
        from fastdllm.tasks import get_task

        try:
            get_task(name)  # unknown name (did-you-mean), missing file, malformed JSONL line (line number)
        except (FileNotFoundError, KeyError, TypeError) as err:  # reported with the others (ValueError)
            raise ValueError(str(err)) from None
        return name

    @model_validator(mode="after")
    def _fields_fit_the_task(self) -> "TaskConfig":
        if self.extract is not None and not self.name.lower().endswith(".jsonl"):
            raise ValueError(f"extract={self.extract!r} applies to .jsonl tasks only, not {self.name!r}")
        if (self.num_fewshot is not None or self.lm_eval_args) and not self.is_lm_eval:
            raise ValueError("num_fewshot and lm_eval_args apply to lm-eval tasks only ('lm-eval:TASK')")
        if self.is_lm_eval:
            if self.scorer is not None:
                raise ValueError("scorer applies to built-in and JSONL tasks; lm-eval tasks score themselves")
            return self
        if self.extract is not None:
            self.build()  # the task checks its own extraction modes (and refuses ones its answers do not fit)
        if self.scorer is not None:
            task = self.build()
            if not hasattr(task, "resolve_scorer"):
                raise ValueError(f"scorer={self.scorer!r}: this fastdllm version has no named scorers")
            task.resolve_scorer(self.scorer)  # ValueError listing the task's scorers
        return self

    def build(self):
        """The task object (scorer and problem source) of a synthetic or JSONL task."""
        from fastdllm.tasks import get_task

        kwargs = {"extract": self.extract} if self.extract else {}
        try:
            return get_task(self.name, **kwargs)
        except TypeError as err:
            raise ValueError(str(err)) from None


class TrackingConfig(_Section):
    """Weights & Biases: one run per setting."""

    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="default: online when a W&B key is configured, else offline (sync later)")
    project: str = Field("fastdllm", description="W&B project")
    entity: str | None = Field(None, description="W&B entity (team or user)")
    tags: list[str] = Field(default_factory=list, description="W&B tags")
    name: str | None = Field(None, description="run name and run folder name (default: from the setting)")
    group: str | None = Field(None, description="W&B group (a sweep sets it)")


class RunConfig(_Section):
    """One evaluation run: ``fastdllm run CONFIG.yaml key=value …``."""

    model: str = Field("tiny-llada", description="shipped model name (tiny-llada, tiny-dream), checkpoint "
                       "folder, or Hub repo id")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: the checkpoint's torch_dtype, else float32 on CPU, bfloat16 on CUDA")
    device: str | None = Field(None, description="cpu, cuda, cuda:N (default: CUDA when available; under "
                               "torchrun each rank takes cuda:LOCAL_RANK)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="decode settings (fastdllm.DecodeConfig)")
    task: TaskConfig = Field(default_factory=TaskConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    output_dir: str = Field("runs", description="run folders go to OUTPUT_DIR/<run name>/")
    plugins: list[str] = Field(default_factory=list, description="modules imported before validation "
                               "(they register policies or model adapters)")
    dist_timeout_s: int = Field(1800, ge=10, description="torchrun: seconds a rank waits for the others")

    @model_validator(mode="before")
    @classmethod
    def _stored_decode_defaults(cls, data: Any) -> Any:
        return with_stored_decode_defaults(data)

    @field_validator("model")
    @classmethod
    def _model_exists(cls, model: str) -> str:
        try:
            resolve_model(model)
        except FileNotFoundError as err:  # reported with the others (ValueError)
            raise ValueError(str(err)) from None
        return model

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        if device is not None and not _DEVICE.match(device):
            raise ValueError(f"device {device!r} is not cpu, cuda, cuda:N or mps")
        return device

    @model_validator(mode="after")
    def _lm_eval_decodes_greedily(self) -> "RunConfig":
        if self.task.is_lm_eval and self.decode.temperature:
            raise ValueError("lm-eval tasks decode greedily (the fastdllm lm-eval model takes no temperature); "
                             "set decode.temperature=0")
        return self

    def model_path(self):
        return resolve_model(self.model)


def with_stored_decode_defaults(data: Any) -> Any:
    """Unset decode fields take the checkpoint's ``fastdllm.json`` values (local folders only)."""
    if not isinstance(data, dict):
        return data
    try:
        stored = stored_decode_settings(local_model_folder(data.get("model", "tiny-llada")) or "")
    except Exception:  # noqa: BLE001 - the model field's own validator reports a bad reference
        return data
    decode = data.get("decode", {})
    if stored and isinstance(decode, dict):
        data = {**data, "decode": {**stored, **decode}}
    return data


def local_model_folder(model: Any) -> Path | None:
    """The folder of a shipped name or an existing local path; None for a Hub id."""
    text = str(model)
    if text in SHIPPED_MODELS:
        return shipped_model_path(text)
    path = Path(text).expanduser()
    return path if path.is_dir() else None
