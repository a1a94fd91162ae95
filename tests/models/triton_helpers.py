"""Run a check through Triton's interpreter in a fresh Python process (the Triton kernel tests' helper).

``TRITON_INTERPRET=1`` must be set before Triton compiles a kernel definition, i.e. before ``fastdllm`` is
imported, so each check is a script run in its own interpreter that prints one JSON line last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def interpret(code: str) -> dict:
    """Run ``code`` (dedented) with ``TRITON_INTERPRET=1`` and the repository on the path; its last stdout line
    parsed as JSON."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
