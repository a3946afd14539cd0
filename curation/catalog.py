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
            "The instruction is one or two sentences; it names the programming language and the function "
            "to write.",
            "The output is one self-contained function that does what the raw code does, with only the "
            "standard library: helpers, globals and `self` of the original become parameters or your "
            "own code.",
            "The task is solvable from the instruction and input alone, without the original repository.",
            "Code fields contain only code; any explanation goes in comments inside the code.",
            "Code includes every import it needs.",
            "When the language is Python, `tests` holds three to five `assert` lines that call only the "
            "output's function, with literal arguments.",
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
            "Code repair: a realistic bug (an off-by-one, a wrong operator or condition, a missed edge "
            "case) is planted in correct code; the instance asks to find and fix it, and gives the fixed "
            "code with a short explanation of the bug and the fix."
        ),
        "requirements": [
            *COMMON_REQUIREMENTS[:2],
            "The output is a complete, correct, self-contained version of the raw code (standard library "
            "only, no helpers or globals of its repository).",
            "The instruction asks to find and fix the bug in that code and says what the code should do, "
            "not what the bug is.",
            "When the language is Python, the app plants the bug in your output and explains it; `tests` "
            "holds two to five `assert` lines that call only the output's function, with literal "
            "arguments, and pass on the output.",
            "In other languages, the input is the output with one realistic bug planted (not a syntax "
            "error or a renamed variable) and `explanation` says briefly what was wrong.",
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

# Hand-written good examples, three per task, each about a different kind of code. A small generator
# copies a lone example as its answer (Qwen2.5-Coder-0.5B did so in 15 of 15 summaries with one); with
# several, varied ones shown as earlier turns of the chat it writes about the code it is given.
SEED_EXAMPLES: dict[str, list[dict]] = {
    "summarization": [
        {
            "language": "python",
            "instruction": "Write concise documentation for the following Python function.",
            "input": "def word_counts(text):\n    counts = {}\n    for word in text.lower().split():\n"
            "        counts[word] = counts.get(word, 0) + 1\n    return counts",
            "output": "Counts how often each word occurs in `text`, ignoring case and "
            "splitting on whitespace. "
            "Returns a dict that maps each lower-cased word to its number of occurrences.",
        },
        {
            "language": "python",
            "instruction": "Explain what this Python generator yields and when it raises an error.",
            "input": "def chunked(items, size):\n    if size < 1:\n        raise ValueError('size must be "
            "positive')\n    for start in range(0, len(items), size):\n"
            "        yield items[start:start + size]",
            "output": "Yields consecutive slices of `items`, each `size` elements long "
            "except possibly the last, "
            "which holds what is left. Raises ValueError when `size` is less than 1.",
        },
        {
            "language": "python",
            "instruction": "Document this Python method of a cache entry class in a few sentences.",
            "input": "def is_expired(self, now=None):\n    now = time.time() if now is None else now\n"
            "    return self.created + self.ttl < now",
            "output": "Tells whether the entry's time to live has run out: True when its creation time plus "
            "`ttl` seconds lies before `now`. `now` defaults to the current time from `time.time()`.",
        },
    ],
    "generation": [
        {
            "language": "python",
            "source_code": "def merged(self):\n    result = []\n    for start, end in sorted(self._spans):\n"
            "        if result and start <= result[-1][1]:\n"
            "            result[-1] = (result[-1][0], max(result[-1][1], end))\n        else:\n"
            "            result.append((start, end))\n    return result",
            "instruction": "Write a Python function `merge_intervals(intervals)` that merges overlapping "
            "(start, end) pairs and returns the merged pairs sorted by start.",
            "input": "",
            "output": "def merge_intervals(intervals):\n    merged = []\n"
            "    for start, end in sorted(intervals):\n        if merged and start <= merged[-1][1]:\n"
            "            merged[-1] = (merged[-1][0], max(merged[-1][1], end))\n        else:\n"
            "            merged.append((start, end))\n    return merged",
            "tests": "assert merge_intervals([(1, 3), (2, 6), (8, 9)]) == [(1, 6), (8, 9)]\n"
            "assert merge_intervals([]) == []\nassert merge_intervals([(5, 7), (1, 2)]) == [(1, 2), (5, 7)]",
        },
        {
            "language": "python",
            "source_code": "def _seconds(self, spec):\n    total = 0\n"
            "    for amount, unit in _DURATION_RE.findall(spec):\n"
            "        total += int(amount) * _UNIT_SECONDS[unit]\n    return total",
            "instruction": "Write a Python function `parse_duration(text)` that turns strings "
            "such as '1h30m' or "
            "'45s' into a number of seconds.",
            "input": "",
            "output": "import re\n\n\ndef parse_duration(text):\n    units = {'h': 3600, 'm': 60, 's': 1}\n"
            "    return sum(int(n) * units[u] for n, u in re.findall(r'(\\d+)([hms])', text))",
            "tests": "assert parse_duration('1h30m') == 5400\nassert parse_duration('45s') == 45\n"
            "assert parse_duration('') == 0",
        },
        {
            "language": "python",
            "source_code": "def unique_names(self):\n    seen = set()\n"
            "    return [n for n in self.names if not (n in seen or seen.add(n))]",
            "instruction": "Write a Python function `dedupe(items)` that removes repeated values from a list "
            "but keeps the order in which values first appear.",
            "input": "",
            "output": "def dedupe(items):\n    seen = set()\n    result = []\n    for item in items:\n"
            "        if item not in seen:\n            seen.add(item)\n            result.append(item)\n"
            "    return result",
            "tests": "assert dedupe([3, 1, 3, 2, 1]) == [3, 1, 2]\nassert dedupe([]) == []\n"
            "assert dedupe(['a', 'a']) == ['a']",
        },
    ],
    "translation": [
        {
            "language": "python",
            "target_language": "javascript",
            "instruction": "Translate the following Python function into JavaScript.",
            "input": "def word_counts(text):\n    counts = {}\n    for word in text.lower().split():\n"
            "        counts[word] = counts.get(word, 0) + 1\n    return counts",
            "output": "function wordCounts(text) {\n  const counts = {};\n"
            "  for (const word of text.toLowerCase().split(/\\s+/).filter(Boolean)) {\n"
            "    counts[word] = (counts[word] || 0) + 1;\n  }\n  return counts;\n}",
        },
        {
            "language": "python",
            "target_language": "go",
            "instruction": "Rewrite this Python function in Go, keeping its behaviour.",
            "input": "def is_palindrome(s):\n    s = ''.join(c.lower() for c in s if c.isalnum())\n"
            "    return s == s[::-1]",
            "output": 'import (\n\t"strings"\n\t"unicode"\n)\n\nfunc isPalindrome(s string) bool {\n'
            "\tvar b strings.Builder\n\tfor _, r := range s {\n"
            "\t\tif unicode.IsLetter(r) || unicode.IsDigit(r) {\n\t\t\tb.WriteRune(unicode.ToLower(r))\n"
            "\t\t}\n\t}\n\tr := []rune(b.String())\n\tfor i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {\n"
            "\t\tif r[i] != r[j] {\n\t\t\treturn false\n\t\t}\n\t}\n\treturn true\n}",
        },
        {
            "language": "python",
            "target_language": "java",
            "instruction": "Translate this Python function that sums the even numbers of a list into Java.",
            "input": "def sum_even(numbers):\n    return sum(n for n in numbers if n % 2 == 0)",
            "output": "static int sumEven(java.util.List<Integer> numbers) {\n    int total = 0;\n"
            "    for (int n : numbers) {\n        if (n % 2 == 0) {\n            total += n;\n        }\n"
            "    }\n    return total;\n}",
        },
    ],
    "repair": [
        {
            "language": "python",
            "source_code": "def tail(self, n):\n    return self.buffer[len(self.buffer) - n:]",
            "instruction": "This Python function should return the last n items of a list, but it has a "
            "bug; find and fix it.",
            "input": "def last_items(items, n):\n    return items[len(items) - n - 1:]",
            "output": "def last_items(items, n):\n    return items[len(items) - n:]",
            "explanation": "The slice started one position too early (an off-by-one); it must start at "
            "len(items) - n.",
            "tests": "assert last_items([1, 2, 3, 4], 2) == [3, 4]\nassert last_items([1, 2], 1) == [2]",
        },
        {
            "language": "python",
            "source_code": 'def _is_leap(year):\n    """Return True for leap years."""\n'
            "    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
            "instruction": "Fix the bug in this Python function, which should tell whether a year is a "
            "leap year.",
            "input": "def is_leap(year):\n    return year % 4 == 0 and year % 100 == 0 or year % 400 == 0",
            "output": "def is_leap(year):\n    return year % 4 == 0 and year % 100 != 0 or year % 400 == 0",
            "explanation": "The condition used == 0 where it needs != 0 for the hundreds, so "
            "ordinary leap years "
            "such as 2024 were rejected.",
            "tests": "assert is_leap(2024)\nassert not is_leap(1900)\nassert is_leap(2000)",
        },
        {
            "language": "python",
            "source_code": "def first_word(self):\n    words = self.text.split()\n"
            '    return words[0] if words else ""',
            "instruction": "Find and fix the bug in this Python function that returns the first word of a "
            "text.",
            "input": "def first_word(text):\n    return text.split()[0]",
            "output": "def first_word(text):\n    words = text.split()\n    return words[0] if words else ''",
            "explanation": "An empty or blank string has no words, so indexing [0] raised IndexError; "
            "the fix "
            "returns an empty string then.",
            "tests": "assert first_word('hello world') == 'hello'\nassert first_word('') == ''",
        },
    ],
}


def rules_from_pairs(pairs) -> list[dict]:
    return [{"id": rule_id, "question": question} for rule_id, question in pairs]


@transaction.atomic
def ensure_catalog() -> None:
    """Create the four tasks with version 1 of their prompt and principles, add any seed example the pool
    lacks and retire the unpinned seeds no longer shipped (idempotent; a seed a curator removed stays
    removed)."""
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
        shipped = {seed["instruction"] for seed in SEED_EXAMPLES[slug]}
        # A seed this version no longer ships is retired (removed, restorable), unless a curator pinned it.
        task.pool.filter(origin=PoolExample.Origin.SEED, pinned=False, removed=False).exclude(
            instruction__in=shipped
        ).update(removed=True)
        existing = set(task.pool.filter(origin=PoolExample.Origin.SEED).values_list("instruction", flat=True))
        for seed in SEED_EXAMPLES[slug]:
            if seed["instruction"] in existing:
                continue
            PoolExample.objects.create(
                task=task,
                kind=PoolExample.Kind.GOOD,
                origin=PoolExample.Origin.SEED,
                language=seed["language"],
                target_language=seed.get("target_language", ""),
                instruction=seed["instruction"],
                input=seed["input"],
                output=seed["output"],
                explanation=seed.get("explanation", ""),
                tests=seed.get("tests", ""),
                source_code=seed.get("source_code", seed["input"]),
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
