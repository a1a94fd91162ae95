"""The one-launch commit (``fastdllm.kernels.commit_step``) against the PyTorch ops of
``fastdllm.core.commit.commit_step``, on the CPU through Triton's interpreter: the same commit, canvas and tallies,
integer for integer, over the cases where a slip would show: rows that chose nothing (the progress rule), ties
and NaN in the confidence (``torch.argmax``'s choice), rows without masks, a proposal whose mask differs from the
block's, the bound's last step, refresh steps, the unconditional copies under guidance, a block that is not a power
of two, and more rows than one tile holds."""

from __future__ import annotations

import pytest
import torch
from triton_helpers import compile_for_hopper, interpret

pytest.importorskip("triton")

CASES = [  # batch, block, copies, last, refresh, tile (positions per row tile; None: the module's)
    (1, 32, 1, False, False, None),
    (3, 32, 2, False, True, None),
    (5, 7, 1, True, False, None),
    (4, 4, 2, True, True, None),
    (37, 8, 1, False, False, 64),  # five row tiles of 8, the last one partial
    (2, 1, 1, False, False, None),
]


@pytest.mark.slow
def test_fused_commit_equals_pytorch_ops():
    out = interpret(f"""
        import json, torch
        from fastdllm.core import commit as C
        from fastdllm.core.proposal import Proposal
        from fastdllm.kernels import commit_step as K
        results = []
        for case, (B, n, copies, last, refresh, tile) in enumerate({CASES!r}):
            if tile:
                K.TILE = tile
            g = torch.Generator().manual_seed(case)
            masked = torch.rand(B, n, generator=g) < 0.6
            masked[0] = False  # a row with nothing left
            if B > 2:
                masked[2] = True
            pmasked = masked.clone()
            if B > 3:
                pmasked[3, : n // 2] = False  # a proposal that hides part of the block
            chosen = torch.rand(B, n, generator=g) < 0.2
            chosen[-1] = False  # a row that chose nothing: the progress rule picks
            conf = (torch.rand(B, n, generator=g) * 4).floor() / 4  # ties
            if B > 2 and n > 3:
                conf[2, 3] = float("nan")
                conf[1, :] = float("-inf")
            tokens = torch.randint(0, 50, (B, n), generator=g)
            L, P, G = 3 * n + 5, n + 2, 2 * n + 3
            canvas = torch.randint(50, 99, (copies * B, L), generator=g)
            start = P + 1
            states = []
            for fused in (False, True):
                t = C.Tallies(torch.randint(0, 4, (B,), generator=torch.Generator().manual_seed(9)),
                              torch.randint(0, 4, (B,), generator=torch.Generator().manual_seed(8)),
                              torch.randint(0, 4, (B, G), generator=torch.Generator().manual_seed(7)),
                              torch.tensor(2), torch.tensor(1))
                cv = canvas.clone()
                prop = Proposal(tokens=tokens, confidence=conf, masked=pmasked)
                step = K.fused_commit_step if fused else C.commit_step
                got = step(chosen, prop, masked, cv, start, start - P, t, refresh, last)
                states.append([got.tolist(), cv.tolist(), t.nfe_per_row.tolist(), t.refresh_per_row.tolist(),
                               t.commit_forward.tolist(), int(t.forced), int(t.flushes)])
            results.append({{"equal": states[0] == states[1], "differs": [i for i in range(7) if states[0][i] != states[1][i]],
                             "forced": states[0][5], "flushes": states[0][6], "committed": sum(map(sum, states[0][0]))}})
        print(json.dumps(results))
        """)
    for case, row in zip(CASES, out):
        assert row["equal"], (case, row)
    assert any(row["forced"] > 2 for row in out)  # the progress rule fired somewhere (2 were there before)
    assert any(row["flushes"] > 1 for row in out)  # and the bound's flush


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_decoder_commits_through_the_kernel_on_cuda(monkeypatch):
    """On CUDA the decoder commits through the kernel (a unit-stride policy output) and decodes what the PyTorch
    ops decode, tallies included; a strided selection takes the PyTorch ops instead of failing."""
    import fastdllm
    from fastdllm.core import commit
    from fastdllm.core.proposal import Proposal

    cls = fastdllm.model_adapters.get("llada")
    model = cls(cls.tiny_config()).cuda().eval()
    prompt = torch.randint(3, 60, (3, 8), device="cuda")
    calls = []
    fused = commit._fused
    monkeypatch.setattr(commit, "_fused", lambda *a: calls.append(fused(*a)) or calls[-1])
    results = []
    for eager in (False, True):
        if eager:
            monkeypatch.setattr(commit, "_fused", lambda *a: False)
        r = fastdllm.generate(model, prompt, cache="dual", unmask={"name": "threshold", "threshold": 0.3},
                              gen_length=16, block_length=4, max_steps_per_block=3, cfg_scale=0.5)
        results.append([r.sequences, r.nfe_per_row, r.refresh_per_row, r.commit_forward,
                        torch.tensor([r.forced_commits, r.bound_flushes])])
    assert calls and all(calls)
    for a, b in zip(*results):
        assert torch.equal(a.cpu(), b.cpu())
    masked = torch.ones(2, 4, dtype=torch.bool, device="cuda")
    prop = Proposal(torch.zeros(2, 4, dtype=torch.long, device="cuda"), torch.rand(2, 4, device="cuda"), masked)
    tallies = commit.Tallies.zeros(2, 8, "cuda")
    strided = torch.ones(4, 2, dtype=torch.bool, device="cuda").t()  # [2, 4], stride (1, 2)
    assert not fused(strided, prop, masked, torch.zeros(2, 12, dtype=torch.long, device="cuda"), tallies)


@pytest.mark.slow
def test_decodes_through_the_kernel_equal_the_pytorch_ops():
    """Whole decodes with the kernel forced in (the interpreter runs it on CPU tensors) against the PyTorch ops:
    guidance copies, a step bound below the block (flushes), threshold and fixed policies, both families."""
    out = interpret("""
        import json, torch, fastdllm
        from fastdllm.core import commit
        same, stats = [], []
        for family, unmask in (("llada", {"name": "threshold", "threshold": 0.3}), ("dream", {"name": "fixed", "steps": 8})):
            cls = fastdllm.model_adapters.get(family)
            torch.manual_seed(0)
            model = cls(cls.tiny_config()).eval()
            prompt = torch.randint(3, 60, (3, 8))
            results = []
            for forced in (True, False):
                commit._fused = lambda *a, forced=forced: forced
                r = fastdllm.generate(model, prompt, cache="dual", unmask=unmask, gen_length=16, block_length=4,
                                      max_steps_per_block=3, cfg_scale=0.5 if family == "llada" else 0.0)
                results.append([r.sequences.tolist(), r.nfe_per_row.tolist(), r.refresh_per_row.tolist(),
                                r.commit_forward.tolist(), r.forced_commits, r.bound_flushes])
            same.append(results[0] == results[1])
            stats.append(results[0][4:])
        print(json.dumps({"same": same, "stats": stats}))
        """)
    assert out["same"] == [True, True], out
    assert any(flushes > 0 for _, flushes in out["stats"])  # the bound's flush ran through the kernel


def test_counters_are_written_after_every_thread_read_them():
    """The GPU race the interpreter cannot show: compiled for sm_90 (no GPU needed), the kernel reads the per-row
    NFE counters twice, in two thread layouts (the row vector and its broadcast over the block); a thread that
    wrote its incremented counter before another thread's read would make that thread stamp nfe + 1. Every read of
    the counters must come before a barrier that comes before their writes."""
    from fastdllm.kernels import commit_step as cs

    kernel = cs._commit_kernel
    pointers = {"CHOSEN": "*u8", "MASKED": "*u8", "PMASKED": "*u8", "CONF": "*fp32", "TOKENS": "*i64", "CANVAS": "*i64",
                "NFE": "*i64", "REFRESHES": "*i64", "STAMPS": "*i64", "FORCED": "*i64", "FLUSHES": "*i64", "COMMIT": "*u8"}
    constants = {"REFRESH": True, "LAST": True, "COPIES": 2, "ROWS": 64, "BLOCK": 16}
    compiled = compile_for_hopper(kernel, pointers, constants)
    lines = compiled.asm["ttgir"].splitlines()
    barriers = [i for i, line in enumerate(lines) if "barrier" in line]
    assert len(barriers) >= 2 and compiled.asm["ptx"].count("bar.sync") >= 2
    for name in ("nfe", "refreshes", "FORCED"):  # Triton names values after the source's variables
        loads = [i for i, line in enumerate(lines) if "tt.load %" + name in line]
        stores = [i for i, line in enumerate(lines) if "tt.store %" + name in line]
        assert loads and stores, f"no load/store of {name} found in the TTGIR: the naming changed, adapt the test"
        assert any(max(loads) < b < min(stores) for b in barriers), name


RANDOM_CASES = """
    import json, torch
    from fastdllm.core import commit as C
    from fastdllm.core.proposal import Proposal
    from fastdllm.kernels import commit_step as K
    device = DEVICE
    bad = []
    for case in range(CASES):
        g = torch.Generator().manual_seed(100 + case)
        B, n = int(torch.randint(1, MAX_B, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))
        copies, last, refresh = 1 + case % 2, case % 3 == 0, case % 4 == 1
        masked = torch.rand(B, n, generator=g) < float(torch.rand(1, generator=g))
        flip = torch.rand(B, n, generator=g) < 0.15  # the proposal's mask differs both ways from the block's
        pmasked = masked ^ flip
        chosen = torch.rand(B, n, generator=g) < float(torch.rand(1, generator=g)) * 0.5
        conf = (torch.rand(B, n, generator=g) * 3).floor() / 3
        special = torch.rand(B, n, generator=g)
        conf[special < 0.03] = float("nan")
        conf[(special > 0.03) & (special < 0.06)] = float("-inf")
        conf = conf.to([torch.float32, torch.bfloat16, torch.float16][case % 3])
        tokens = torch.randint(0, 50, (B, n), generator=g)
        P, G = 5, n + 7
        canvas = torch.randint(50, 99, (copies * B, P + G), generator=g)
        states = []
        for fused in (False, True):
            t = C.Tallies(torch.randint(0, 9, (B,), generator=torch.Generator().manual_seed(case)),
                          torch.randint(0, 9, (B,), generator=torch.Generator().manual_seed(case + 1)),
                          torch.randint(0, 9, (B, G), generator=torch.Generator().manual_seed(case + 2)),
                          torch.tensor(3), torch.tensor(4))
            t = C.Tallies(*(x.to(device) for x in (t.nfe_per_row, t.refresh_per_row, t.commit_forward, t.forced, t.flushes)))
            cv = canvas.clone().to(device)
            prop = Proposal(tokens=tokens.to(device), confidence=conf.to(device), masked=pmasked.to(device))
            step = K.fused_commit_step if fused else C.commit_step
            got = step(chosen.to(device), prop, masked.to(device), cv, P + 3, 3, t, refresh, last)
            states.append([got.tolist(), cv.tolist(), t.nfe_per_row.tolist(), t.refresh_per_row.tolist(),
                           t.commit_forward.tolist(), int(t.forced), int(t.flushes)])
        if states[0] != states[1]:
            bad.append([case, B, n, [i for i in range(7) if states[0][i] != states[1][i]]])
    print(json.dumps({"bad": bad}))
"""


@pytest.mark.slow
def test_random_commits_equal_the_pytorch_ops():
    """Random steps (a proposal mask that drops and adds positions, NaN and -inf confidence in three dtypes, any
    block width, several row tiles) through the interpreter: the kernel equals the PyTorch ops on every one."""
    out = interpret(RANDOM_CASES.replace("DEVICE", "'cpu'").replace("MAX_B", "40").replace("CASES", "30"))
    assert out["bad"] == [], out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_random_commits_equal_the_pytorch_ops_on_cuda():
    """The same on a GPU, compiled (where a race between threads would show), batches up to 300 rows."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(RANDOM_CASES).replace("DEVICE", "'cuda'").replace("MAX_B", "300").replace("CASES", "200")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    assert json.loads(done.stdout.strip().splitlines()[-1])["bad"] == []
