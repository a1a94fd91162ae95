"""The one-launch commit (``fastdllm.kernels.commit_step``) against the PyTorch ops of
``fastdllm.core.commit.commit_step``, on the CPU through Triton's interpreter: the same commit, canvas and tallies,
integer for integer, over the cases where a slip would show: rows that chose nothing (the progress rule), ties
and NaN in the confidence (``torch.argmax``'s choice), rows without masks, a proposal whose mask differs from the
block's, the bound's last step, refresh steps, the unconditional copies under guidance, a block that is not a power
of two, and more rows than one tile holds."""

from __future__ import annotations

import pytest
from triton_helpers import interpret

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
