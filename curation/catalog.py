"""The four WaveCoder tasks: definitions, generation requirements, principles, and seed examples.

Definitions follow the paper's GPT-4-written ones; requirements and principles start from WaveCoder's
and add what its repository checked separately (imports, readable logic) and what we found missing
(naming both languages of a translation, a realistic bug for repair, no invented behaviour in summaries).
Editing creates a new version; instances record the versions they were made and judged with.
"""

from __future__ import annotations

import re

from django.db import transaction
from django.db.models import Max

from .models import CodeTask, PoolExample, PrincipleVersion, TaskPromptVersion

COMMON_REQUIREMENTS = [
    "The instruction is one or two sentences and names the programming language.",
    "The instance must be solvable from the instruction and input alone, without the original repository.",
    "Code fields contain only code; any explanation goes in comments inside the code.",
    "Code includes every import it needs.",
]

DEFAULTS: dict[str, dict] = {
    "summarization": {
        "name": "Code summarization",
        "definition": (
            "Code summarization: given a piece of code, write clear, concise documentation that explains "
            "what the code does, its inputs and outputs, for a developer who has not seen it."
        ),
        "requirements": [
            *COMMON_REQUIREMENTS[:2],
            "The input is the given code, unchanged.",
            "The output is natural-language documentation of at most five sentences, not the code again.",
            "The output describes only behaviour the code really has.",
        ],
        "rules": [
            ("input_is_code", "Is the input real code, not only comments or prose?"),
            ("names_language", "Does the instruction name the programming language of the code?"),
            (
                "instruction_matches_input",
                "Does the instruction ask to summarize exactly the code in the input?",
            ),
            ("faithful", "Does the output describe only what the code actually does, inventing nothing?"),
            ("concise", "Is the output concise prose (no code copied back, at most a short paragraph)?"),
        ],
    },
    "generation": {
        "name": "Code generation",
        "definition": (
            "Code generation: from the given code, derive a self-contained programming task (instruction, "
            "plus input information if needed) and its solution, so that a model learns to write code from "
            "a natural-language description."
        ),
        "requirements": [
            *COMMON_REQUIREMENTS,
            "The solution answers both the instruction and the information in the input.",
            "Write three to five Python assert statements in `tests` that the solution passes, when the "
            "language is Python.",
        ],
        "rules": [
            ("names_language", "Does the instruction name the programming language?"),
            ("addresses_both", "Does the output solve the instruction and use all information in the input?"),
            ("code_only", "Does the output contain only code, with explanations only in code comments?"),
            ("imports_present", "Does the output include every import it needs?"),
            ("self_contained", "Can the task be solved from the instruction and input alone?"),
            ("readable", "Is the output's logic correct and readable?"),
        ],
    },
    "translation": {
        "name": "Code translation",
        "definition": (
            "Code translation: rewrite the given code in another programming language so that it behaves "
            "the same, using that language's idioms and standard library."
        ),
        "requirements": [
            *COMMON_REQUIREMENTS,
            "The instruction names both the source and the target language.",
            "The input is the given code; the output is the same program in the target language.",
        ],
        "rules": [
            ("input_is_code", "Is the input real code in the source language?"),
            ("names_languages", "Does the instruction name both the source and the target language?"),
            ("output_in_target", "Is the output written in the target language, not the source language?"),
            ("same_behaviour", "Does the output behave like the input for the same inputs?"),
            ("code_only", "Does the output contain only code, with explanations only in code comments?"),
        ],
    },
    "repair": {
        "name": "Code repair",
        "definition": (
            "Code repair: plant one realistic bug in the given code (an off-by-one, a wrong operator or "
            "condition, a missed edge case), ask to find and fix it, and give the fixed code with a short "
            "explanation of the bug and the fix."
        ),
        "requirements": [
            *COMMON_REQUIREMENTS[:2],
            "The input is the buggy code; it differs from the fixed output only where the bug is.",
            "The output is the complete fixed code; `explanation` says briefly what was wrong.",
            "The bug is realistic and changes behaviour; it is not a syntax error or a renamed variable.",
            "Write three to five Python assert statements in `tests` that the fixed code passes and the "
            "buggy code fails, when the language is Python.",
        ],
        "rules": [
            ("input_is_code", "Is the input real code that contains a bug?"),
            ("names_language", "Does the instruction name the programming language?"),
            (
                "realistic_bug",
                "Is the bug realistic (a mistake a programmer could make) and not a syntax error?",
            ),
            ("fix_correct", "Does the output fix the bug so the code does what it should?"),
            ("explains_fix", "Does the explanation say briefly what the bug was and how it was fixed?"),
            ("minimal_change", "Does the fix change only what the bug needs?"),
        ],
    },
}

# One hand-written good example per task, so the first round already has a few-shot example.
SEED_EXAMPLES: dict[str, dict] = {
    "summarization": {
        "language": "python",
        "instruction": "Write concise documentation for the following Python function.",
        "input": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))",
        "output": "Returns x limited to the closed range [lo, hi]: lo when x is below it, hi when x is "
        "above it, and x itself otherwise.",
    },
    "generation": {
        "language": "python",
        "instruction": "Write a Python function `clamp(x, lo, hi)` that limits a number to a closed range.",
        "input": "",
        "output": "def clamp(x, lo, hi):\n    # Below lo gives lo, above hi gives hi.\n"
        "    return max(lo, min(x, hi))",
        "tests": "assert clamp(5, 0, 3) == 3\nassert clamp(-1, 0, 3) == 0\nassert clamp(2, 0, 3) == 2",
    },
    "translation": {
        "language": "python",
        "target_language": "javascript",
        "instruction": "Translate the following Python function into JavaScript.",
        "input": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))",
        "output": "function clamp(x, lo, hi) {\n  return Math.max(lo, Math.min(x, hi));\n}",
    },
    "repair": {
        "language": "python",
        "instruction": "The Python function below should limit x to the range [lo, hi] but returns wrong "
        "values; find and fix the bug.",
        "input": "def clamp(x, lo, hi):\n    return min(lo, max(x, hi))",
        "output": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))",
        "explanation": "min and max were swapped, so the result was always lo or below; the fix applies min "
        "with hi first, then max with lo.",
        "tests": "assert clamp(5, 0, 3) == 3\nassert clamp(-1, 0, 3) == 0",
    },
}


def rules_from_pairs(pairs) -> list[dict]:
    return [{"id": rule_id, "question": question} for rule_id, question in pairs]


@transaction.atomic
def ensure_catalog() -> None:
    """Create the four tasks with version 1 of their prompt and principles and a seed example (idempotent)."""
    for slug, spec in DEFAULTS.items():
        task, _ = CodeTask.objects.get_or_create(slug=slug, defaults={"name": spec["name"]})
        if task.current_prompt_id is None:
            prompt, _ = TaskPromptVersion.objects.get_or_create(
                task=task,
                version=1,
                defaults={"definition": spec["definition"], "requirements": "\n".join(spec["requirements"])},
            )
            task.current_prompt = prompt
        if task.current_principles_id is None:
            principles, _ = PrincipleVersion.objects.get_or_create(
                task=task, version=1, defaults={"rules": rules_from_pairs(spec["rules"])}
            )
            task.current_principles = principles
        task.save()
        if not task.pool.filter(origin=PoolExample.Origin.SEED).exists():
            seed = SEED_EXAMPLES[slug]
            PoolExample.objects.create(
                task=task,
                kind=PoolExample.Kind.GOOD,
                origin=PoolExample.Origin.SEED,
                language=seed["language"],
                instruction=seed["instruction"],
                input=seed["input"],
                output=seed["output"]
                + (f"\n\n# Explanation: {seed['explanation']}" if "explanation" in seed else ""),
                pinned=True,
            )


def validate_rules(rules: list[dict]) -> list[dict]:
    """Clean a rule list: each rule needs a unique identifier-like id and a yes/no question."""
    cleaned, seen = [], set()
    if not rules:
        raise ValueError("A principle set needs at least one rule.")
    for n, rule in enumerate(rules, start=1):
        rule_id = str(rule.get("id", "")).strip()
        question = str(rule.get("question", "")).strip()
        if not rule_id.replace("_", "").isalnum():
            raise ValueError(f"Rule {n}: the id {rule_id!r} must be letters, digits and underscores.")
        if rule_id in seen:
            raise ValueError(f"Rule {n}: the id {rule_id!r} is used twice.")
        if not question:
            raise ValueError(f"Rule {n} ({rule_id}): the question is empty.")
        if re.search("[\x00\ud800-\udfff]", question):  # PostgreSQL's JSON refuses both
            raise ValueError(f"Rule {n} ({rule_id}): the question holds a NUL character or a lone surrogate.")
        seen.add(rule_id)
        cleaned.append({"id": rule_id, "question": question})
    return cleaned


def parse_rules_text(text: str) -> list[dict]:
    """Rules from an edit box, one per line as `rule_id: question`. ValueError names every bad line."""
    rules, errors = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rule_id, sep, question = line.partition(":")
        if not sep:
            errors.append(f"Line {n}: write `rule_id: question`.")
            continue
        rules.append({"id": rule_id.strip(), "question": question.strip()})
    if errors:
        raise ValueError(" ".join(errors))
    return validate_rules(rules)


def rules_text(rules) -> str:
    """The inverse of parse_rules_text."""
    return "\n".join(f"{rule['id']}: {rule['question']}" for rule in rules)


def _locked(task: CodeTask) -> CodeTask:
    """The task's row, locked until the transaction ends, so two editors never take the same number."""
    return CodeTask.objects.select_for_update().get(pk=task.pk)


def _next_number(versions) -> int:
    return (versions.aggregate(n=Max("version"))["n"] or 0) + 1


@transaction.atomic
def new_prompt_version(
    task: CodeTask, *, definition: str, requirements: str, user=None, note: str = ""
) -> TaskPromptVersion:
    """Save an edited definition/requirements as the task's next prompt version and make it current."""
    if not definition.strip() or not requirements.strip():
        raise ValueError("Both the definition and the requirements are needed.")
    task = _locked(task)
    version = TaskPromptVersion.objects.create(
        task=task,
        version=_next_number(task.prompt_versions),
        definition=definition.strip(),
        requirements=requirements.strip(),
        created_by=user,
        note=note,
    )
    task.current_prompt = version
    task.save(update_fields=["current_prompt"])
    return version


@transaction.atomic
def new_principle_version(
    task: CodeTask, *, rules: list[dict], user=None, note: str = "", adopt: bool = True
) -> PrincipleVersion:
    """Save a rule list as the task's next principle version; make it current unless `adopt` is False."""
    rules = validate_rules(rules)
    task = _locked(task)
    version = PrincipleVersion.objects.create(
        task=task, version=_next_number(task.principle_versions), rules=rules, created_by=user, note=note
    )
    if adopt:
        task.current_principles = version
        task.save(update_fields=["current_principles"])
    return version
