"""Helpers shared by the CLI tests (``main(argv)`` as the console script runs it, tiny models, ls parsing)."""

from __future__ import annotations

import re
import sys

import pytest

import fastdllm
from fastdllm.assets import ASSETS
from fastdllm.cli import main

LLADA_DIR = ASSETS / "tiny-llada"
DREAM_DIR = ASSETS / "tiny-dream"
SHORT = ["--gen-length", "16", "--block-length", "8"]
STATS = re.compile(r"^\[(\d+) forwards \((\d+) refresh\), (\d+\.\d\d) tokens/forward, (\d+\.\d\d)s\]$")


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` as the console script runs it: (exit status, stdout, stderr).

    A ``SystemExit`` is turned into the status the process would exit with (``None`` → 0, an int as is,
    a message → printed to stderr and 1), as ``sys.exit`` does.
    """
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    out, err = capsys.readouterr()
    return code, out, err


def stats_line(err: str) -> re.Match:
    lines = [line for line in err.strip().splitlines() if line.startswith("[")]
    assert lines, f"no stats line on stderr: {err!r}"
    match = STATS.match(lines[-1])
    assert match, f"stats line has an unexpected shape: {lines[-1]!r}"
    return match


@pytest.fixture(scope="module")
def tiny_models():
    return {path: fastdllm.load_model(path, device="cpu") for path in (LLADA_DIR, DREAM_DIR)}


def library_result(model, prompt: str, **options):
    ids, mask = model.encode([prompt], chat=True)
    return fastdllm.generate(model, ids, attention_mask=mask, **options)


def sections(text: str) -> dict[str, str]:
    """``ls`` output split at its unindented section headers."""
    parts: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.split(":")[0].split(" (")[0]
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


def entry_names(section: str) -> list[str]:
    """Names of a section's entries: lines indented by exactly two spaces."""
    return [line.split()[0] for line in section.splitlines() if re.match(r"^  \S", line)]
