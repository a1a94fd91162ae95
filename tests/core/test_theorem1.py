"""Theorem 1 of Fast-dLLM (arXiv 2505.22618): if each of n positions has a token whose marginal probability
exceeds 1 - eps and (n + 1) eps <= 1, the argmax of the joint is the tuple of marginal argmaxes.

(a) on explicit joint distributions (and its tightness: a counterexample for every eps past the bound);
(b) at the decoder level, with an oracle model returning the exact conditional marginals of a known
joint: threshold decoding at tau = 1 - eps yields what one-token-per-step greedy decoding yields.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import fastdllm
from fastdllm.core.kv_store import NoStore

pytestmark = pytest.mark.usefixtures("single_thread")

Joint = dict[tuple[int, ...], float]


# ---- distributions ---------------------------------------------------------------------------------------


def conditional(joint: Joint, fixed: dict[int, int]) -> Joint:
    """The joint conditioned on ``x[i] = t`` for every ``(i, t)`` in ``fixed`` (normalised)."""
    kept = {x: p for x, p in joint.items() if all(x[i] == t for i, t in fixed.items())}
    total = sum(kept.values())
    assert total > 0, f"conditioning on a zero-probability event {fixed}"
    return {x: p / total for x, p in kept.items()}


def marginals(joint: Joint, n: int, vocab: int) -> list[list[float]]:
    out = [[0.0] * vocab for _ in range(n)]
    for x, p in joint.items():
        for i, t in enumerate(x):
            out[i][t] += p
    return out


def marginal_argmax(joint: Joint, n: int, vocab: int) -> tuple[int, ...]:
    return tuple(max(range(vocab), key=m.__getitem__) for m in marginals(joint, n, vocab))


def min_top_marginal(joint: Joint, n: int, vocab: int) -> float:
    return min(max(m) for m in marginals(joint, n, vocab))


@st.composite
def concentrated_joints(draw, ns=(2, 3), vocabs=(2, 3, 4), eps=None):
    """A joint over ``n`` positions whose marginals concentrate on one tuple ``star``.

    Mass ``budget[i] < eps`` is moved off ``star`` for each position: a fraction of it onto tuples that
    differ from ``star`` only at ``i`` (so the marginal condition holds however small ``star``'s own mass
    gets: down to 1 - n eps), the rest spread at random over every other tuple. Strictly positive.
    Returns ``(joint, n, vocab, eps)``; the caller checks the marginal condition (``assume``).
    """
    n = draw(st.sampled_from(ns))
    vocab = draw(st.sampled_from(vocabs))
    if eps is None:
        eps = 1.0 / (n + 1)
    else:
        eps = draw(eps(n))
    star = tuple(draw(st.integers(0, vocab - 1)) for _ in range(n))
    budgets = [draw(st.floats(0.0, 0.999 * eps)) for _ in range(n)]
    structured = draw(st.floats(0.0, 1.0))
    tuples = list(itertools.product(range(vocab), repeat=n))
    others = [x for x in tuples if x != star]
    noise = draw(st.lists(st.floats(0.01, 1.0), min_size=len(others), max_size=len(others)))
    floor = 1e-6
    joint: Joint = {x: floor for x in tuples}
    joint[star] += 1.0 - sum(budgets) - floor * len(tuples)
    spread = sum(budgets) * (1 - structured)
    for x, w in zip(others, noise):
        joint[x] += spread * w / sum(noise)
    for i, b in enumerate(budgets):
        single = [x for x in others if sum(a != s for a, s in zip(x, star)) == 1 and x[i] != star[i]]
        weights = [noise[others.index(x)] for x in single]
        for x, w in zip(single, weights):
            joint[x] += b * structured * w / sum(weights)
    assert abs(sum(joint.values()) - 1.0) < 1e-9 and min(joint.values()) > 0
    return joint, n, vocab, eps


@settings(max_examples=150, deadline=None)
@given(concentrated_joints())
def test_joint_argmax_is_the_marginal_argmaxes_under_the_bound(case):
    joint, n, vocab, eps = case
    assert (n + 1) * eps <= 1 + 1e-12
    assume(min_top_marginal(joint, n, vocab) > 1 - eps)  # the theorem's condition, checked not assumed
    greedy = marginal_argmax(joint, n, vocab)
    best = max(joint, key=joint.get)
    assert best == greedy
    # strict: the proof gives p(x*) > 1 - n eps >= eps > p(y) for every other tuple y
    assert all(joint[greedy] > p for x, p in joint.items() if x != greedy)


def test_theorem_holds_when_no_tuple_has_most_of_the_mass():
    """n = 3, eps = 1/4: every marginal is 0.76 on token 0, yet the joint argmax holds only 0.28."""
    joint: Joint = {x: 0.0 for x in itertools.product(range(2), repeat=3)}
    joint[(0, 0, 0)] = 0.28
    for i in range(3):
        x = [0, 0, 0]
        x[i] = 1
        joint[tuple(x)] = 0.24
    assert min_top_marginal(joint, 3, 2) == pytest.approx(0.76) and 0.76 > 1 - 0.25 and 4 * 0.25 <= 1
    assert max(joint, key=joint.get) == marginal_argmax(joint, 3, 2) == (0, 0, 0)


def test_counterexample_past_the_bound():
    """Two positions, marginals 0.7 and 0.6 (so eps > 0.4 and (n+1) eps > 1): the product of the marginal
    argmaxes (0, 0) is not the joint argmax (0, 1)."""
    joint: Joint = {(0, 0): 0.3, (0, 1): 0.4, (1, 0): 0.3, (1, 1): 0.0}
    m = marginals(joint, 2, 2)
    assert m[0] == pytest.approx([0.7, 0.3]) and m[1] == pytest.approx([0.6, 0.4])
    eps = 1 - min_top_marginal(joint, 2, 2)  # the smallest eps the condition could use (0.4)
    assert (2 + 1) * eps > 1
    assert marginal_argmax(joint, 2, 2) == (0, 0)
    assert max(joint, key=joint.get) == (0, 1)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([2, 3]), st.sampled_from([2, 3, 4]), st.floats(0.0, 1.0), st.data())
def test_bound_is_tight(n, vocab, where, data):
    """For every eps with (n+1) eps > 1 (and eps < 1/2) some joint meets 'every marginal > 1 - eps' while its
    argmax is not the marginal argmaxes: star keeps 1 - n (eps - eta), each one-position deviation eps - eta."""
    low = 1.0 / (n + 1)
    eps = low + (0.5 - low) * (0.02 + 0.96 * where)
    eta = (eps - low) / 2
    star = tuple(data.draw(st.integers(0, vocab - 1)) for _ in range(n))
    other = [(s + 1) % vocab for s in star]
    joint: Joint = {x: 0.0 for x in itertools.product(range(vocab), repeat=n)}
    joint[star] = 1 - n * (eps - eta)
    for i in range(n):
        x = list(star)
        x[i] = other[i]
        joint[tuple(x)] = eps - eta
    assert (n + 1) * eps > 1
    assert min_top_marginal(joint, n, vocab) > 1 - eps
    assert marginal_argmax(joint, n, vocab) == star
    assert max(joint.values()) > joint[star]  # a deviation beats star: the theorem fails past the bound


# ---- the decoder with an oracle ---------------------------------------------------------------------------


class JointOracle:
    """A model (the decoder's contract) over a known joint of the generated positions: for each block
    position, the log of its exact marginal given the tokens already committed. Tokens ``0..vocab-1``;
    ``vocab`` is the mask, ``vocab + 1`` pad/end. One block; ignores the store (use ``cache="none"``)."""

    logit_shift = 0
    max_sequence_length = 64
    device = torch.device("cpu")

    def __init__(self, joint: Joint, n: int, vocab: int) -> None:
        self.joint, self.n, self.vocab = joint, n, vocab
        self.mask_token_id, self.pad_token_id = vocab, vocab + 1
        self.end_token_ids = (vocab + 1,)
        self.forwards = 0
        self.min_top = 1.0  # the smallest top conditional marginal over masked positions seen

    def new_kv_store(self, batch, length):
        raise AssertionError("the oracle runs with cache='none'")

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        assert isinstance(store, NoStore) and (start, end) == (0, canvas.shape[1])
        assert logits_end - logits_start == self.n
        self.forwards += 1
        out = torch.full((canvas.shape[0], self.n, self.vocab + 2), float("-inf"), dtype=torch.float64)
        for b, row in enumerate(canvas[:, logits_start:logits_end].tolist()):
            fixed = {i: t for i, t in enumerate(row) if t != self.mask_token_id}
            m = marginals(conditional(self.joint, fixed), self.n, self.vocab)
            for i in range(self.n):
                if i not in fixed:
                    self.min_top = min(self.min_top, max(m[i]))
                out[b, i, :self.vocab] = torch.tensor([math.log(p) if p > 0 else float("-inf") for p in m[i]])
        return out.float()


def decode(joint: Joint, n: int, vocab: int, unmask) -> tuple[tuple[int, ...], int, JointOracle]:
    oracle = JointOracle(joint, n, vocab)
    result = fastdllm.generate(oracle, [[0]], gen_length=n, block_length=n, cache="none", unmask=unmask)
    assert result.nfe == oracle.forwards
    return tuple(result.generated[0].tolist()), result.nfe, oracle


def condition_holds_everywhere(joint: Joint, n: int, vocab: int, star: tuple[int, ...], eps: float) -> bool:
    """Every conditional of the joint given any subset of positions fixed to ``star`` has each free
    position's top marginal > 1 - eps (the states greedy and threshold decoding can reach)."""
    for k in range(n):
        for subset in itertools.combinations(range(n), k):
            cond = conditional(joint, {i: star[i] for i in subset})
            m = marginals(cond, n, vocab)
            if any(max(m[i]) <= 1 - eps for i in range(n) if i not in subset):
                return False
    return True


def small_eps(n):
    return st.floats(0.02, 1.0 / (n + 1))


@settings(max_examples=60, deadline=None)
@given(concentrated_joints(ns=(2, 3, 4), vocabs=(2, 3), eps=small_eps), st.floats(0.0, 0.999))
def test_threshold_decoding_matches_greedy_under_the_condition(case, where):
    joint, n, vocab, eps = case
    star = marginal_argmax(joint, n, vocab)
    assume(condition_holds_everywhere(joint, n, vocab, star, eps))
    tau = (1 - eps) + eps * where  # any tau in [1 - eps, 1): multi-step threshold decoding too

    greedy, greedy_nfe, _ = decode(joint, n, vocab, {"name": "fixed", "steps": n})
    parallel, parallel_nfe, oracle = decode(joint, n, vocab, {"name": "threshold", "threshold": tau})

    assert greedy_nfe == n  # one token per forward
    assert greedy == max(joint, key=joint.get) == star  # sequential greedy finds the joint argmax here
    assert parallel == greedy
    assert oracle.min_top > 1 - eps  # the run stayed inside the theorem's condition
    assert 1 <= parallel_nfe <= n
    event(f"threshold decoding took {'one forward' if parallel_nfe == 1 else 'several forwards'}")


@settings(max_examples=40, deadline=None)
@given(concentrated_joints(ns=(2, 3, 4), vocabs=(2, 3), eps=small_eps))
def test_threshold_at_one_minus_eps_decodes_in_one_forward(case):
    """Under the condition every marginal clears tau = 1 - eps, so the whole block commits at once."""
    joint, n, vocab, eps = case
    star = marginal_argmax(joint, n, vocab)
    assume(min_top_marginal(joint, n, vocab) > 1 - eps + 1e-4)  # clear of float32 rounding at tau
    assume(condition_holds_everywhere(joint, n, vocab, star, eps))

    greedy, greedy_nfe, _ = decode(joint, n, vocab, {"name": "fixed", "steps": n})
    parallel, parallel_nfe, _ = decode(joint, n, vocab, {"name": "threshold", "threshold": 1 - eps})
    assert parallel == greedy == star
    assert parallel_nfe == 1 < greedy_nfe == n


def test_threshold_decoding_departs_from_greedy_past_the_bound():
    """The counterexample joint at tau = 0.55 (eps = 0.45, (n+1) eps = 1.35 > 1): both positions clear tau and
    commit together as (0, 0), while greedy commits position 0 first and then takes (0, 1), the joint argmax."""
    joint: Joint = {(0, 0): 0.3, (0, 1): 0.4, (1, 0): 0.3, (1, 1): 0.0}
    greedy, greedy_nfe, _ = decode(joint, 2, 2, {"name": "fixed", "steps": 2})
    parallel, parallel_nfe, _ = decode(joint, 2, 2, {"name": "threshold", "threshold": 0.55})
    assert greedy == (0, 1) and greedy_nfe == 2
    assert parallel == (0, 0) and parallel_nfe == 1
