"""Bugs planted by the app for the repair task, the way mutation-testing tools plant them.

A small teacher asked to plant a bug itself mostly copies the raw code unchanged as its "buggy" input
(Qwen2.5-Coder-0.5B did so in 10 of 15 repairs). For Python the app plants one instead: a single
operator, comparison, boolean or constant changed in place, the rest of the source left byte for byte as
it was (comments and layout kept), so the input and output differ only by the bug. The teacher then
writes what needs language: the instruction and the tests.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass

# Each operator's realistic slip. Swapped in both directions where both are plausible.
_COMPARE = {
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
    ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"),
}
_BINARY = {
    ast.Add: ("+", "-"),
    ast.Sub: ("-", "+"),
    ast.Mult: ("*", "+"),
    ast.FloorDiv: ("//", "/"),
    ast.Mod: ("%", "//"),
}
_BOOLEAN = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
_KINDS = {
    "compare": "a wrong comparison",
    "binary": "a wrong arithmetic operator",
    "boolean": "a wrong boolean operator",
    "constant": "an off-by-one constant",
    "negation": "a dropped negation",
}


@dataclass(frozen=True)
class Mutation:
    """One planted bug: the buggy code and where it differs from the original."""

    buggy: str
    line: int  # 1-based, in the code
    before: str  # the original line
    after: str  # the line with the bug
    kind: str  # one of _KINDS' descriptions

    def explanation(self) -> str:
        """What was wrong and the fix, as a repair instance's explanation."""
        return (
            f"The bug is {self.kind} on line {self.line}: `{self.after.strip()}` must be "
            f"`{self.before.strip()}`."
        )


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
    )


class _Source:
    """Character offsets in code for ast positions (ast counts lines by \\n and columns in UTF-8 bytes)."""

    def __init__(self, code: str) -> None:
        self.lines = code.split("\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)

    def at(self, lineno: int | None, col: int | None) -> int | None:
        if lineno is None or col is None or not 1 <= lineno <= len(self.lines):
            return None
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def start(self, node: ast.AST) -> int | None:
        return self.at(getattr(node, "lineno", None), getattr(node, "col_offset", None))

    def end(self, node: ast.AST) -> int | None:
        return self.at(getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))


def _sites(code: str, source: _Source, tree: ast.AST) -> list[tuple[int, int, str, str]]:
    """Every place one token can be changed: (start, end, new text, kind)."""
    sites = []

    def operator_site(left, right, old: str, new: str, kind: str) -> None:
        # The operator sits between the end of one operand and the start of the next.
        span = (source.end(left), source.start(right))
        if None in span or span[0] >= span[1]:
            return
        gap = code[span[0] : span[1]]
        # The gap holds the operator among spaces, brackets and line breaks; one occurrence only.
        stripped = gap.replace("(", " ").replace(")", " ").split()
        if stripped != old.split():
            return
        at = gap.index(old.split()[0])
        end = at + len(old) if " " not in old else gap.index(old.split()[-1], at) + len(old.split()[-1])
        sites.append((span[0] + at, span[0] + end, new, kind))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
                if type(op) in _COMPARE:
                    old, new = _COMPARE[type(op)]
                    operator_site(left, right, old, new, _KINDS["compare"])
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            if any(_is_text(side) for side in (node.left, node.right)):
                continue  # "a" + x joins text and "a" % x formats it: no arithmetic to get wrong
            old, new = _BINARY[type(node.op)]
            operator_site(node.left, node.right, old, new, _KINDS["binary"])
        elif isinstance(node, ast.BoolOp) and type(node.op) in _BOOLEAN:
            old, new = _BOOLEAN[type(node.op)]
            operator_site(node.values[0], node.values[1], old, new, _KINDS["boolean"])
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            a, b = source.start(node), source.start(node.operand)
            if a is not None and b is not None and code[a:b].strip() == "not":
                sites.append((a, b, "", _KINDS["negation"]))
        elif (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and 0 <= node.value <= 10
            and getattr(node, "end_lineno", None) == node.lineno
        ):
            a, b = source.start(node), source.end(node)
            if a is not None and b is not None and code[a:b] == str(node.value):
                sites.append((a, b, str(node.value + 1), _KINDS["constant"]))
    return sites


def _body_spans(source: _Source, tree: ast.Module) -> list[tuple[int, int]]:
    """The source spans of the top-level functions' bodies, after their docstrings: bugs go into a body,
    not into a default argument, a docstring's doctest or module-level set-up."""
    spans = []
    for func in tree.body:
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = func.body
        if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        start, end = source.start(body[0]), source.end(func)
        if start is not None and end is not None:
            spans.append((start, end))
    return spans


def plant_bug(code: str, seed: int) -> Mutation | None:
    """One bug planted in the functions of Python code, chosen by `seed` among every possible site (the
    same seed, the same bug). None when the code does not parse, defines no function or offers no site."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    source = _Source(code)
    spans = _body_spans(source, tree)
    sites = [s for s in _sites(code, source, tree) if any(a <= s[0] and s[1] <= b for a, b in spans)]
    random.Random(seed).shuffle(sites)
    for start, end, new, kind in sites:
        buggy = code[:start] + new + code[end:]
        try:
            ast.parse(buggy)
        except SyntaxError:
            continue
        line = code.count("\n", 0, start)
        return Mutation(
            buggy=buggy,
            line=line + 1,
            before=code.split("\n")[line],
            after=buggy.split("\n")[line],
            kind=kind,
        )
    return None
