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


HOPPER_SHARED_BYTES = 232448  # an H100's / H200's shared memory per block (opt-in), what a launch may use


def compile_for_hopper(kernel, pointers: dict[str, str], constants: dict, divisible: tuple[str, ...] = (), **options):
    """``kernel`` compiled for sm_90 without a GPU (Triton's compiler, not the interpreter): ``pointers`` names the
    pointer (and float) arguments' types, ``constants`` the constexprs; every other argument is an i32.
    Like a launch, the compile knows the pointers (torch's allocations) and the integer arguments named in
    ``divisible`` to be multiples of 16: without it loads are not vectorised and not pipelined (no cp.async), and
    the shared memory a launch would need is understated (a 64 × 128 × 128 GEMM tile in 4 stages: 48 KB instead of
    192). ``options``: compile options (num_warps, num_stages, enable_fp_fusion, ...)."""
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {name: pointers.get(name, "constexpr" if name in constants else "i32") for name in kernel.arg_names}
    aligned = [name for name, kind in signature.items() if kind.startswith("*") or name in divisible]
    attrs = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    return triton_compile(ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs),
                          target=GPUTarget("cuda", 90, 32), options=options or None)
