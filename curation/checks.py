"""Static checks: cheap, LLM-free tests an instance must pass before the discriminator sees it.

They mirror the WaveCoder repository's pre-filter (one parsed case, a 1–2 sentence instruction) and add
what needs no model to verify: code that parses, and for repair an output that differs from the input.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import asdict, dataclass

# A sentence ends at . ! or ? followed by whitespace and a capital/quote/backtick, or at the end. Dots
# inside identifiers (`os.path.join`) or numbers (3.5) do not end a sentence.
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z`\"'(]|\s*$)")
_CODE_TASK_OUTPUT = {"generation", "translation", "repair"}
# How an instruction may name a language, by its slug (others by the slug itself).
LANGUAGE_NAMES = {
    "javascript": ["javascript", "js", "node.js"],
    "go": ["go", "golang"],
    "cpp": ["c++", "cpp"],
    "csharp": ["c#", "csharp"],
    "shell": ["shell", "bash", "sh"],
}


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


def count_sentences(text: str) -> int:
    """Sentences in a piece of prose, ignoring inline code spans."""
    prose = re.sub(r"`[^`]*`", "code", text.strip())
    if not prose:
        return 0
    # Text without final punctuation still counts as one sentence.
    return max(1, len(_SENTENCE_END.findall(prose)))


def names_language(text: str, language: str) -> bool:
    """Whether prose names a language as a word of its own ("Java" is not named by "JavaScript")."""
    names = LANGUAGE_NAMES.get(language.lower(), [language.lower()])
    return any(re.search(rf"(?<![\w#+]){re.escape(name)}(?![\w#+])", text.lower()) for name in names)


def python_parses(code: str) -> str | None:
    """None when the code parses as Python, else the error message with its line."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # e.g. NUL bytes
        return str(exc)
    return None


def _defined_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def free_names(code: str) -> set[str] | None:
    """Names Python code reads that it neither defines, imports, takes as parameters nor finds among the
    builtins: what it needs from its module. None when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return read - _defined_names(tree) - set(dir(builtins))


def self_contained(code: str) -> bool:
    """Whether Python code can run on its own: it parses, holds no method cut out of its class, and
    needs no name from its module. Generation and repair prefer such samples: their tests run the code
    by itself."""
    return free_names(code) == set() and not bound_methods(code)


def bound_methods(code: str) -> list[str]:
    """Top-level functions whose first parameter is `self` or `cls`: methods cut out of their class.
    Empty when the code does not parse: the parse check reports that."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.args.args
        and node.args.args[0].arg in ("self", "cls")
    ]


def undefined_calls(code: str, tests: str) -> list[str]:
    """Names the tests call that neither the code, the tests nor Python's builtins define (a test of a
    function that does not exist). Empty when either does not parse: the parse checks report that."""
    try:
        code_tree, tests_tree = ast.parse(code), ast.parse(tests)
    except (SyntaxError, ValueError):
        return []
    known = _defined_names(code_tree) | _defined_names(tests_tree) | set(dir(builtins))
    called = [
        node.func.id
        for node in ast.walk(tests_tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    return sorted({name for name in called if name not in known})


def _normalized(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def run_static_checks(
    *,
    task: str,
    instruction: str,
    input: str,
    output: str,
    language: str,
    target_language: str = "",
    tests: str = "",
) -> list[CheckResult]:
    """All static checks for one instance, in order; each records whether it passed and why not."""
    results = [
        CheckResult(
            "required_fields",
            bool(instruction.strip() and output.strip() and (input.strip() or task == "generation")),
            "instruction, output" + (" and input" if task != "generation" else "") + " must be non-empty",
        ),
    ]
    sentences = count_sentences(instruction)
    results.append(
        CheckResult("instruction_length", 1 <= sentences <= 2, f"instruction has {sentences} sentences")
    )
    code_fields: list[tuple[str, str, str]] = []
    if task in ("summarization", "translation", "repair"):
        code_fields.append(("input", input, language))
    if task in _CODE_TASK_OUTPUT:
        code_fields.append(("output", output, target_language if task == "translation" else language))
    if tests.strip():
        code_fields.append(("tests", tests, "python"))
    for field, code, lang in code_fields:
        if lang.lower() != "python" or not code.strip():
            continue
        error = python_parses(code)
        results.append(CheckResult(f"{field}_parses", error is None, f"{field} is not valid Python: {error}"))
    if task == "generation" and language.lower() == "python":
        methods = bound_methods(output)
        results.append(
            CheckResult(
                "output_standalone",
                not methods,
                f"{', '.join(f'`{m}`' for m in methods)} takes `self` or `cls`: the solution must be a "
                "standalone function, not a method of a class it does not include",
            )
        )
    if tests.strip() and language.lower() == "python":
        missing = undefined_calls(output, tests)
        results.append(
            CheckResult(
                "tests_call_output",
                not missing,
                f"the tests call {', '.join(f'`{n}`' for n in missing)}, which the output does not define",
            )
        )
    if task == "repair":
        differs = _normalized(input) != _normalized(output)
        results.append(CheckResult("repair_changes_code", differs, "the fixed code equals the input"))
    if task == "translation":
        differs = bool(target_language) and target_language.lower() != language.lower()
        results.append(
            CheckResult("translation_target", differs, "the target language must differ from the source")
        )
        if differs:
            results.append(
                CheckResult(
                    "instruction_names_target",
                    names_language(instruction, target_language),
                    f"the instruction must name the target language, {target_language}",
                )
            )
    for result in results:
        if result.passed:
            result.detail = ""
    return results


def first_failure(results: list[CheckResult]) -> CheckResult | None:
    return next((r for r in results if not r.passed), None)


def as_json(results: list[CheckResult]) -> list[dict]:
    return [asdict(r) for r in results]
