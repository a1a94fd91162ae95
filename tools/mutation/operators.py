"""Operator mutants of a Python file, generated from its ``ast`` (so the list follows the code as it changes).

Each mutant replaces one source span (the span of one AST node, located by its line/column offsets) with
new text; everything else in the file stays byte for byte. Operators:

- comparisons ``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``is``↔``is not``, ``in``↔``not in``;
- arithmetic ``+``↔``-``, ``*``↔``/``, bitwise ``&``↔``|``, boolean ``and``↔``or``; ``not x``/``~x``/``-x`` → ``x``;
- integer constants ``n`` → ``n + 1`` and ``n - 1``; ``True``↔``False``; non-constant slice bounds ``e`` → ``e ± 1``;
- dropped statements: a bare call (``x.copy_(...)``), an augmented assignment (``n += k``), a write into a
  subscript (``canvas[...] = ...``); dropped calls inside expressions: ``x.clamp_min_(0)`` → ``x``;
- swapped arguments: the first two positional arguments of a call.

Docstrings, f-strings, annotations and ``__all__`` are left alone.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

COMPARE_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.BitAnd: ast.BitOr,
              ast.BitOr: ast.BitAnd}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
          ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
          ast.Div: "/", ast.BitAnd: "&", ast.BitOr: "|", ast.And: "and", ast.Or: "or", ast.Not: "not",
          ast.Invert: "~", ast.USub: "-"}
#: calls that return (a transformed) ``self``: dropping them leaves the receiver
DROPPABLE_METHODS = {"clamp_min", "clamp_min_", "clamp", "clamp_", "clone", "float", "double", "long", "bool",
                     "contiguous", "masked_fill_", "fill_", "copy_", "add_", "sub_", "exp", "log", "squeeze",
                     "flatten", "abs"}


@dataclass(frozen=True)
class Mutant:
    file: str
    line: int  # 1-based line of the mutated node
    col: int  # 0-based byte column
    operator: str  # comparison, arithmetic, boolean, constant, slice, drop-statement, drop-call, swap-args
    mutation: str  # human-readable: "`>=` → `>`"
    original: str  # the original source line, stripped (the fingerprint equivalent.yaml matches)
    start: int  # byte offsets of the replaced span in the file
    end: int
    replacement: str

    @property
    def key(self) -> str:
        return f"{self.file}:{self.line}:{self.col}:{self.mutation}"

    def apply(self, source: bytes) -> bytes:
        return source[:self.start] + self.replacement.encode() + source[self.end:]


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, f-strings, annotations, ``__all__`` and everything under them."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                roots.append(body[0])
        if isinstance(node, ast.JoinedStr):
            roots.append(node)
        if isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.extend(a.annotation for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]
                         if a.annotation is not None)
            if node.returns is not None:
                roots.append(node.returns)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            roots.append(node)
    return {id(n) for root in roots for n in ast.walk(root)}


def _paren(text: str) -> str:
    return f"({text})"


def mutants(path: str, source: bytes) -> list[Mutant]:
    tree = ast.parse(source)
    lines = source.split(b"\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    skip = _skipped_nodes(tree)
    statement_calls = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # dropped whole instead
    out: list[Mutant] = []

    def add(node: ast.AST, operator: str, mutation: str, replacement: str) -> None:
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        original = lines[node.lineno - 1].decode(errors="replace").strip()
        out.append(Mutant(path, node.lineno, node.col_offset, operator, mutation, original, start, end, replacement))

    def sym(op: ast.AST) -> str:
        return SYMBOL[type(op)]

    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno"):
            continue
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in COMPARE_SWAP:
                    new = COMPARE_SWAP[type(op)]()
                    ops = list(node.ops)
                    ops[k] = new
                    text = ast.unparse(ast.Compare(node.left, ops, node.comparators))
                    add(node, "comparison", f"`{sym(op)}` → `{sym(new)}`", _paren(text))
        elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
            new = BINOP_SWAP[type(node.op)]()
            add(node, "arithmetic", f"`{sym(node.op)}` → `{sym(new)}`",
                _paren(ast.unparse(ast.BinOp(node.left, new, node.right))))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            add(node, "boolean", f"`{sym(node.op)}` → `{sym(new)}`", _paren(ast.unparse(ast.BoolOp(new, node.values))))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert, ast.USub)):
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                continue  # a negative literal: the constant operator covers it
            add(node, "boolean" if isinstance(node.op, ast.Not) else "arithmetic",
                f"drop `{sym(node.op)}`", _paren(ast.unparse(node.operand)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            add(node, "constant", f"`{node.value}` → `{not node.value}`", str(not node.value))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            for delta in (1, -1):
                add(node, "constant", f"`{node.value}` → `{node.value + delta}`", _paren(str(node.value + delta)))
        elif isinstance(node, ast.Slice):
            for bound in (node.lower, node.upper):
                if bound is not None and not isinstance(bound, ast.Constant) and id(bound) not in skip:
                    text = ast.unparse(bound)
                    add(bound, "slice", "slice bound `+ 1`", f"({text} + 1)")
                    add(bound, "slice", "slice bound `- 1`", f"({text} - 1)")
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            add(node, "drop-statement", "drop the call statement", "pass")
        elif isinstance(node, ast.AugAssign):
            add(node, "drop-statement", f"drop `{sym(node.op)}=`" if type(node.op) in SYMBOL else "drop the update",
                "pass")
            if type(node.op) in BINOP_SWAP:
                new = BINOP_SWAP[type(node.op)]()
                add(node, "arithmetic", f"`{sym(node.op)}=` → `{sym(new)}=`",
                    ast.unparse(ast.AugAssign(node.target, new, node.value)))
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Subscript) for t in node.targets):
            add(node, "drop-statement", "drop the subscript write", "pass")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in DROPPABLE_METHODS and id(node) not in statement_calls:
                add(node, "drop-call", f"drop `.{func.attr}(...)`", _paren(ast.unparse(func.value)))
            positional = node.args
            if len(positional) >= 2 and not any(isinstance(a, ast.Starred) for a in positional[:2]) \
                    and ast.unparse(positional[0]) != ast.unparse(positional[1]):
                swapped = ast.Call(func, [positional[1], positional[0], *positional[2:]], node.keywords)
                add(node, "swap-args", "swap the first two arguments", _paren(ast.unparse(swapped)))
    out.sort(key=lambda m: (m.line, m.col, m.mutation))
    return [m for m in out if _compiles(m.apply(source))]


def _compiles(source: bytes) -> bool:
    try:
        compile(source, "<mutant>", "exec")
    except SyntaxError:
        return False
    return True
