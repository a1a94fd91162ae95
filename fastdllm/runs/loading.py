"""Reading a run config: YAML file + ``key=value`` overrides → a validated :class:`RunConfig`, or the
list of EVERY problem in it (unknown keys with did-you-mean, bad values, unknown policies or tasks)."""

from __future__ import annotations

import difflib
import importlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fastdllm.runs.config import RunConfig, with_stored_decode_defaults


class ConfigProblems(ValueError):
    """A run config with problems; ``problems`` lists each as 'where: what (fix)'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__(f"{source}: {len(problems)} problem{'s' * (len(problems) != 1)}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def parse_value(text: str) -> Any:
    """``0.8`` → 0.8, ``true`` → True, ``[a, b]`` → list, ``dual`` → 'dual' (JSON first, then YAML)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text  # "lm-eval:" is a name, not a one-key mapping (mappings on the command line use braces)
    return value


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``decode.unmask.threshold=0.8`` (also ``--decode.unmask.threshold=0.8``, as W&B agents pass)."""
    key, sep, value = item.lstrip("-").partition("=")
    if not sep or not key.strip():
        raise ConfigProblems("overrides", [f"{item!r} is not KEY=VALUE (e.g. decode.unmask.threshold=0.8)"])
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str):  # decode.unmask: threshold → {name: threshold, ...}
            child = {"name": child}
        elif not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = parse_value(value)


def read_raw(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"run config {str(path)!r} does not exist (relative paths start at {Path.cwd()})")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigProblems(str(path), [f"not valid YAML: {err}"]) from None
        if not isinstance(data, dict):
            raise ConfigProblems(str(path), [f"the top level must be a mapping of keys, got {type(data).__name__}"])
    for item in overrides:
        apply_override(data, item)
    return data


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules (``fastdllm.plugins.load_plugins`` when this build has it)."""
    try:
        from fastdllm.plugins import load_plugins as load
    except ImportError:
        for module in modules:
            importlib.import_module(module)
        return
    load(modules)


def load_run_config(path: str | Path | None, overrides: list[str] = (), source: str | None = None) -> RunConfig:
    """Validate ``path`` + ``overrides``; raise :class:`ConfigProblems` listing every problem."""
    data = read_raw(path, overrides)
    return validate_data(data, source or str(path or "config"))


def validate_data(data: dict[str, Any], source: str) -> RunConfig:
    plugins = data.get("plugins") or []
    if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
        try:
            load_plugins(plugins)
        except ImportError as err:
            raise ConfigProblems(source, [f"plugins: cannot import {err.name or err}: {err}"]) from None
    data, problems = _check_policies(with_stored_decode_defaults(data))
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        problems += [_describe(e) for e in err.errors()]
        config = None
    if problems:
        raise ConfigProblems(source, problems)
    return config


def _check_policies(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Policy specs checked here (an unknown policy name is a KeyError pydantic would not collect).

    Bad specs are reported and removed so the rest of the config is still validated."""
    import fastdllm
    from fastdllm.core.config import DecodeConfig
    from fastdllm.core.policy import CachePolicy, UnmaskPolicy, resolve_policy

    decode = data.get("decode")
    if not isinstance(decode, dict):
        return data, []
    problems, decode = [], dict(decode)
    for key, registry, base in (("cache", fastdllm.cache_policies, CachePolicy),
                                ("unmask", fastdllm.unmask_policies, UnmaskPolicy)):
        if key not in decode:
            continue
        spec = decode[key]
        if isinstance(spec, dict) and "name" not in spec:  # decode.unmask.threshold=0.8 on the default policy
            spec = decode[key] = {"name": DecodeConfig.model_fields[key].default_factory()["name"], **spec}
        try:
            if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"] in registry:
                fields = registry.get(spec["name"]).Config.model_fields
                for field in spec:
                    if field != "name" and field not in fields:
                        raise ValueError(f"unknown field {field!r} of {key} policy {spec['name']!r}"
                                         f"{_did_you_mean(field, fields)}; valid fields: {', '.join(fields)}")
            resolve_policy(registry, base, spec)
        except (ValueError, KeyError) as err:
            problems.append(f"decode.{key}: {err}")
            del decode[key]
    return {**data, "decode": decode}, problems


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _section_fields(loc: tuple) -> list[str]:
    """Field names of the config section at ``loc`` (for did-you-mean on an unknown key)."""
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        info = model.model_fields.get(str(part)) if model else None
        ann = getattr(info, "annotation", None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model else []


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "config"
    if error["type"] == "extra_forbidden":
        fields = _section_fields(loc)
        return f"{where}: unknown key{_did_you_mean(str(loc[-1]), fields)} (valid here: {', '.join(fields)})"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("missing",):
        return f"{where}: required"
    value = error.get("input")
    shown = "" if isinstance(value, dict) or repr(value) in message else f" (got {value!r})"
    return f"{where}: {message}{shown}"


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
