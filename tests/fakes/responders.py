"""Answers for the OpenAI stub server (a test double) that read like a competent LLM's.

The responder reads the request to tell the Generator from the Discriminator and the task from the
prompt, and answers as the prompt asks: the generator's sections (`### field` headers, code in fenced
blocks), the discriminator's JSON. No Django here: the stub also runs as its own process.
"""

import json
import re

GOOD = {
    "summarization": {
        "instruction": "Write concise documentation for the following Python function.",
        "output": "Adds two numbers and returns the sum.",
    },
    "generation": {
        "instruction": "Write a Python function add(a, b) that returns the sum of two numbers.",
        "input": "",
        "output": "def add(a, b):\n    return a + b",
        "tests": "assert add(1, 2) == 3",
    },
    "translation": {
        "instruction": "Translate the following Python function into another language.",
        "output": "function add(a, b) {\n  return a + b;\n}",
    },
    "repair": {
        "instruction": "Find and fix the bug in this Python function.",
        "input": "def add(a, b):\n    return a - b",
        "output": "def add(a, b):\n    return a + b",
        "explanation": "It subtracted instead of adding.",
        "tests": "assert add(1, 2) == 3",
    },
}


def _prompt(request: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []))


def task_of(request: dict) -> str:
    prompt = _prompt(request)
    for slug, marker in [
        ("summarization", "Code summarization"),
        ("generation", "Code generation"),
        ("translation", "Code translation"),
        ("repair", "Code repair"),
    ]:
        if f"Task definition: {marker}" in prompt:
            return slug
    raise AssertionError("no task in prompt")


def is_discriminator(request: dict) -> bool:
    return "Discriminator" in request["messages"][0]["content"]


def rule_ids(request: dict) -> list[str]:
    schema = request["response_format"]["json_schema"]["schema"]
    return [key for key in schema["properties"] if key not in ("overall", "reasons")]


def responder(request: dict, *, fail_rules: tuple[str, ...] = ()) -> str:
    """Valid generator JSON for the task, or a judgement saying yes to every rule but `fail_rules`."""
    if is_discriminator(request):
        reply = {
            r: {"reason": f"checked {r}", "answer": "no" if r in fail_rules else "yes"}
            for r in rule_ids(request)
        }
        failed = [r for r, v in reply.items() if v["answer"] == "no"]
        reply |= {"overall": "no" if failed else "yes", "reasons": "looked at it"}
        return json.dumps(reply)
    return sections(request, generator_fields(request))


def generator_fields(request: dict) -> dict[str, str]:
    """A good instance's fields for the generator request's task."""
    slug = task_of(request)
    fields = dict(GOOD[slug])
    if slug in ("summarization", "translation"):
        fields["input"] = "def add(a, b):\n    return a + b"
    # The last "Translate it from … into …" is the code at hand's (earlier ones are few-shot turns).
    targets = re.findall(r"Translate it from \S+ into (\S+?)\.\s*$", _prompt(request), re.M)
    if slug == "translation" and targets:
        fields["instruction"] = f"Translate the following Python function into {targets[-1]}."
    return fields


def asked_fields(request: dict) -> dict[str, bool]:
    """{field: is a code block} for the sections the generator's prompt asks for."""
    found = re.findall(r"^### (\w+): (a ```|plain text)", _prompt(request), re.M)
    assert found, "no reply format in the generator prompt"
    return {field: kind == "a ```" for field, kind in found}


def sections(request: dict, fields: dict[str, str]) -> str:
    """A generator reply with the asked-for sections filled from `fields`."""
    parts = []
    for field, code in asked_fields(request).items():
        if fields.get(field):
            value = fields[field]
            parts.append(f"### {field}\n" + (f"```\n{value}\n```" if code else value))
    return "\n\n".join(parts)
