"""Reading an arithmetic problem back from its prompt, and checking a response's chain of steps.

The chain metric asks more than the final number: every step ``a op b = c.`` of the response must
be correct arithmetic and must follow from the problem: the operation and operand the prompt's
sentence names, applied to the previous step's result (the problem's start value for the first
step), in either operand order for ``+`` and ``*``. Parallel decoding can commit a step's tokens
independently of each other and still land on the right final number (issue 14 measured 20-26 of
300 correct answers with wrong intermediate arithmetic at factor 1.0 or threshold 0.7).
"""

from __future__ import annotations

import re
from functools import lru_cache

from fastdllm.tasks.arithmetic import ADD_TEMPLATES, MUL_GENERIC, MUL_TEMPLATES, NAMES, OBJECTS, QUESTION, SUB_TEMPLATES

# one step of a response: "168-67=101." (spaces around the symbols tolerated)
STEP = re.compile(r"(\d+)\s*([-+*])\s*(\d+)\s*=\s*(\d+)\s*\.")
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

Operation = tuple[str, int]  # (op, operand the prompt names)


def _template_regex(template: str) -> str:
    """``"{p} finds {k} more."`` -> a regex with the pronoun alternatives and a ``(\\d+)`` group for ``{k}``."""
    pronouns = "|".join(re.escape(p) for p in dict.fromkeys(p for _, p in NAMES))
    parts = re.split(r"(\{p\}|\{k\})", template)
    pieces = {"{p}": f"(?:{pronouns})", "{k}": r"(\d+)"}
    return "".join(pieces.get(part, re.escape(part)) for part in parts)


@lru_cache(maxsize=1)
def _sentence_patterns() -> list[tuple[re.Pattern, str, int | None]]:
    """(pattern, op, fixed operand or None when the sentence names it) for every operation sentence."""
    patterns = [(t, "+", None) for t in ADD_TEMPLATES] + [(t, "-", None) for t in SUB_TEMPLATES]
    patterns += [(t, "*", k) for k, ts in MUL_TEMPLATES.items() for t in ts] + [(t, "*", None) for t in MUL_GENERIC]
    return [(re.compile(_template_regex(t) + "$"), op, k) for t, op, k in patterns]


def parse_problem(prompt: str) -> tuple[int, list[Operation]] | None:
    """The start value and the operations of an arithmetic prompt, or ``None`` if the prompt is not
    in the task's wording (other phrasing, other names or objects)."""
    names = "|".join(re.escape(n) for n, _ in NAMES)
    objects = "|".join(re.escape(o) for o in OBJECTS)
    head = re.match(rf"(?:{names}) has (\d+) ({objects})\. ", prompt)
    if head is None:
        return None
    question = " " + QUESTION.format(obj=head.group(2))
    if not prompt.endswith(question):
        return None
    body = prompt[head.end():len(prompt) - len(question)]
    sentences = re.split(r"(?<=\.) ", body) if body else []
    operations: list[Operation] = []
    for sentence in sentences:
        for pattern, op, fixed in _sentence_patterns():
            match = pattern.match(sentence)
            if match:
                operations.append((op, fixed if fixed is not None else int(match.group(1))))
                break
        else:
            return None
    return int(head.group(1)), operations


def response_steps(response: str) -> list[tuple[int, str, int, int]] | None:
    """The steps ``(a, op, b, c)`` written before the response's first letter (where the answer
    sentence starts), or ``None`` when that part holds anything but well-formed steps."""
    letter = re.search(r"[A-Za-z]", response)
    body = response[:letter.start()] if letter else response
    if STEP.sub("", body).strip():
        return None
    return [(int(a), op, int(b), int(c)) for a, op, b, c in STEP.findall(body)]


def chain_is_correct(response: str, start: int, operations: list[Operation]) -> bool:
    """True iff the response has one step per operation, each correct arithmetic on the previous result
    and the prompt's operand (either order for ``+`` and ``*``)."""
    steps = response_steps(response)
    if steps is None or len(steps) != len(operations):
        return False
    value = start
    for (a, op, b, c), (want_op, k) in zip(steps, operations):
        if op != want_op or APPLY[op](a, b) != c:
            return False
        operands_ok = (a, b) == (value, k) if op == "-" else sorted((a, b)) == sorted((value, k))
        if not operands_ok:
            return False
        value = c
    return True
