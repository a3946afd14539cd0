"""Example pools: the good and bad instances that become few-shot examples in later rounds.

WaveCoder feeds both pools back into generation. Two bugs of its repository are avoided here: bad
examples are whole examples (it sampled characters of one string), and the discriminator is shown
good examples too (it never was).

Few-shot policy: pinned examples first, then the most recent, preferring the prompt's language and
then other languages in turn so the examples stay balanced across languages. Human decisions outrank
the discriminator's: an example a reviewer made wins over one the discriminator made.
"""

from __future__ import annotations

import random
from collections import defaultdict

from .models import CodeTask, Instance, PoolExample, Verdict

# Per kind, look at this many candidates, newest first; enough for variety, cheap at any pool size.
_CANDIDATES = 60
_ORIGIN_RANK = {PoolExample.Origin.HUMAN: 0, PoolExample.Origin.SEED: 1, PoolExample.Origin.DISCRIMINATOR: 2}


def few_shot(task: CodeTask, kind: str, k: int, *, language: str = "", seed: int = 0) -> list[PoolExample]:
    """Up to k examples of one kind for a prompt: pinned, then human, then recent; languages balanced."""
    if k <= 0:
        return []
    candidates = list(task.pool.filter(kind=kind).order_by("-pinned", "-created_at")[:_CANDIDATES])
    candidates.sort(key=lambda e: (not e.pinned, _ORIGIN_RANK[e.origin]))
    pinned = [e for e in candidates if e.pinned][:k]
    rest = [e for e in candidates if not e.pinned]
    random.Random(seed).shuffle(rest)
    rest.sort(key=lambda e: _ORIGIN_RANK[e.origin])  # stable: shuffled within each origin
    by_language: dict[str, list[PoolExample]] = defaultdict(list)
    for example in rest:
        by_language[example.language].append(example)
    # Round-robin over languages, the prompt's own language first.
    order = sorted(by_language, key=lambda lang: (lang != language, lang))
    chosen = list(pinned)
    while len(chosen) < k and any(by_language.values()):
        for lang in order:
            if by_language[lang] and len(chosen) < k:
                chosen.append(by_language[lang].pop(0))
    return chosen


def add_judged(instance: Instance, verdict: Verdict, failed_rules: list[str] = ()) -> PoolExample:
    """Put a judged instance in its task's good pool (passed) or bad pool (failed, with the reasons:
    `failed_rules` as "rule_id: reason" strings, else the verdict's overall reasons)."""
    kind = PoolExample.Kind.GOOD if verdict.passed else PoolExample.Kind.BAD
    reasons = verdict.reasons if verdict.passed else ("; ".join(failed_rules) or verdict.reasons)
    fields = {
        "task_id": instance.task_id,
        "kind": kind,
        "language": instance.language,
        "target_language": instance.target_language,
        "instruction": instance.instruction,
        "input": instance.input,
        "output": instance.output,
        "explanation": instance.explanation,
        "tests": instance.tests,
        "reasons": reasons,
    }
    # One statement (an upsert): a re-judged instance replaces its discriminator entry.
    (example,) = PoolExample.objects.bulk_create(
        [PoolExample(instance=instance, origin=PoolExample.Origin.DISCRIMINATOR, **fields)],
        update_conflicts=True,
        unique_fields=["instance", "origin"],
        update_fields=[name.removesuffix("_id") if name == "task_id" else name for name in fields],
    )
    return example


def as_prompt_dict(example: PoolExample) -> dict:
    """The fields of an example as the generator writes them."""
    fields = {"instruction": example.instruction, "input": example.input, "output": example.output}
    if example.explanation:
        fields["explanation"] = example.explanation
    if example.tests:
        fields["tests"] = example.tests
    return fields
