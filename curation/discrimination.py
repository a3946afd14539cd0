"""The Discriminator: judges an instance against its task's principles, rule by rule.

WaveCoder's discriminator works zero-shot chain-of-thought style: first check that the input is code,
then answer each rule of a checklist yes/no with a reason, then an overall answer. Here it also sees
examples from both pools (good ones to calibrate "yes", bad ones with their reasons for "no").
"""

from __future__ import annotations

import json

from django.db import transaction

from . import pools
from .models import Instance, PoolExample, PrincipleVersion, RuleVerdict, Verdict
from .parsing import parse_judgement

SYSTEM = (
    "You are the Discriminator of a code instruction dataset. You judge one instance against a checklist. "
    "For each rule first write the reason, one sentence about this instance that names what you checked "
    "in it (a function, a value, a line, words of the instruction), then answer yes or no. Never repeat "
    "the rule's question as the reason. Then give an overall answer: yes only if every rule is yes. "
    "Reply with one JSON object only."
)


def judgement_schema(rule_ids: list[str]) -> dict:
    """JSON schema of the reply: one object per rule (reason first, then yes/no: think, then answer),
    then the overall answer. Endpoints that constrain output to it cannot skip or invent a rule."""
    answer = {
        "type": "object",
        "properties": {"reason": {"type": "string"}, "answer": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["reason", "answer"],
        "additionalProperties": False,
    }
    properties = {rule_id: answer for rule_id in rule_ids}
    properties["overall"] = {"type": "string", "enum": ["yes", "no"]}
    properties["reasons"] = {"type": "string"}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def instance_fields(instance: Instance) -> dict:
    fields = {
        "task": instance.task.slug,
        "language": instance.language,
        "instruction": instance.instruction,
        "input": instance.input,
        "output": instance.output,
    }
    if instance.target_language:
        fields["target_language"] = instance.target_language
    if instance.explanation:
        fields["explanation"] = instance.explanation
    if instance.tests:
        fields["tests"] = instance.tests
    return fields


def build_messages(
    instance: Instance, principles: PrincipleVersion, good: list[PoolExample], bad: list[PoolExample]
) -> list[dict]:
    """The discriminator's prompt: task, examples from both pools, the instance, then the checklist.

    The checklist comes last, next to the reply it shapes: a small model answers the rules it read last
    and cites the instance it just read, instead of restating the questions.
    """
    definition = instance.prompt_version.definition
    checklist = "\n".join(f"- {rule['id']}: {rule['question']}" for rule in principles.rules)
    parts = [f"Task definition: {definition}"]
    for example in good:
        parts.append("An instance that passed every rule:\n" + json.dumps(pools.as_prompt_dict(example)))
    for example in bad:
        parts.append(
            "An instance that failed, and why:\n"
            + json.dumps(pools.as_prompt_dict(example))
            + f"\nFailed because: {example.reasons}"
        )
    parts.append("The instance to judge:\n" + json.dumps(instance_fields(instance), indent=1))
    if instance.execution_status:
        parts.append(f"Running its code with its tests: {instance.execution_status}.")
    parts.append(
        "First check that the input (or, for code generation, the output) is real code, not only comments. "
        f"Then answer each rule of the checklist:\n{checklist}"
    )
    shape = {rule["id"]: {"reason": "...", "answer": "yes|no"} for rule in principles.rules}
    shape |= {"overall": "yes|no", "reasons": "..."}
    parts.append(
        f"Reply with JSON shaped {json.dumps(shape)}; each reason cites this instance, and no reason "
        "repeats its rule's question."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def request_for(
    instance: Instance, principles: PrincipleVersion, good: list[PoolExample], bad: list[PoolExample]
) -> tuple[list[dict], dict]:
    """The messages and the JSON schema of one judgement request."""
    schema = judgement_schema([rule["id"] for rule in principles.rules])
    return build_messages(instance, principles, good, bad), schema


def read_judgement(text: str, principles: PrincipleVersion):
    """Parse a reply into (answers per rule, overall, reasons); ParseError if any rule is unanswered."""
    return parse_judgement(text, [rule["id"] for rule in principles.rules])


@transaction.atomic
def save_verdict(
    instance: Instance,
    principles: PrincipleVersion,
    *,
    model: str,
    text: str,
    answers,
    overall,
    reasons: str,
    write_instance: bool = True,
    to_pool: bool = True,
) -> Verdict:
    """Store a verdict and its per-rule answers, make it the instance's current one, and file the instance
    in the good or bad pool. Passing needs every rule to be yes and no overall "no". With
    `write_instance=False` the caller saves `instance.verdict` and `instance.passed` itself; with
    `to_pool=False` the pools are left alone (a human decision already filed the instance there)."""
    passed = all(ok for ok, _ in answers.values()) and overall is not False
    if not reasons:
        failed = [rule_id for rule_id, (ok, _) in answers.items() if not ok]
        reasons = "All rules satisfied." if passed else f"Failed: {', '.join(failed) or 'overall no'}."
    verdict = Verdict.objects.create(
        instance=instance,
        principle_version=principles,
        model=model,
        passed=passed,
        reasons=reasons,
        raw_response=text,
    )
    questions = {rule["id"]: rule["question"] for rule in principles.rules}
    RuleVerdict.objects.bulk_create(
        RuleVerdict(verdict=verdict, rule_id=rule_id, question=questions[rule_id], passed=ok, reason=reason)
        for rule_id, (ok, reason) in answers.items()
    )
    instance.verdict, instance.passed = verdict, passed
    if write_instance:
        Instance.objects.filter(pk=instance.pk).update(verdict=verdict, passed=passed)
    if to_pool:
        failed = [f"{rule_id}: {reason}" for rule_id, (ok, reason) in answers.items() if not ok]
        pools.add_judged(instance, verdict, failed)
    return verdict
