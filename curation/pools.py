"""Example pools: the good and bad instances that become few-shot examples in later rounds.

WaveCoder feeds both pools back into generation. Two bugs of its repository are avoided here: bad
examples are whole examples (it sampled characters of one string), and the discriminator is shown
good examples too (it never was).

Few-shot policy (`few_shot`), the same for the generator and the discriminator; `WAVECODER_FEW_SHOT`
examples of each kind per prompt (default 2):

1. Pinned examples first: a curator's choice always wins.
2. Removed examples never: a curator took them out (they stay listed, and can be restored).
3. Human decisions outrank the discriminator's, which outrank nothing else: among the newest
   candidates, reviewer-made examples come first, then hand-written seeds, then the discriminator's;
   within each, the most recent first.
4. Balanced across languages: the slots go round-robin over languages, the prompt's own first.
5. Diverse: within a language, of its few most favoured candidates (most recent, best origin left)
   the one least similar to the examples already chosen is taken (cosine distance of hashed token
   counts: a model-free embedding cheap enough for every prompt). The first pick is drawn, seeded by
   the instance, from the favoured few, so prompts do not all share one example.
6. Apart from the code at hand: an example too like the raw code being worked on (a copy from an
   earlier round, a near twin) is left out, so the model cannot answer with it.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
from django.db.models import Count
from sklearn.feature_extraction.text import HashingVectorizer

from .models import CodeTask, Instance, PoolExample, Verdict

# Per kind, look at this many candidates, newest first; enough for variety, cheap at any pool size.
_CANDIDATES = 60
# Within a language, diversity chooses among this many of the most favoured candidates.
_FAVOURED = 6
# Cosine similarity above which an example is too like the code at hand to be shown with it.
_TOO_ALIKE = 0.8
_ORIGIN_RANK = {PoolExample.Origin.HUMAN: 0, PoolExample.Origin.SEED: 1, PoolExample.Origin.DISCRIMINATOR: 2}
_VECTORIZER = HashingVectorizer(
    n_features=2**14, token_pattern=r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]", alternate_sign=False
)


def _vectors(examples: list[PoolExample]) -> np.ndarray:
    """L2-normalised hashed token counts of each example's instruction, input and output."""
    texts = [f"{e.instruction}\n{e.input}\n{e.output}" for e in examples]
    return _VECTORIZER.transform(texts).toarray().astype(np.float32)


def few_shot(
    task: CodeTask,
    kind: str,
    k: int,
    *,
    language: str = "",
    seed: int = 0,
    exclude_instances: frozenset[int] | set[int] = frozenset(),
    away_from: str = "",
) -> list[PoolExample]:
    """Up to k examples of one kind for a prompt, by the policy above. `exclude_instances` keeps the
    examples made from those instances out (a held-out check must not show the judge its own cases);
    `away_from` is the code at hand, which no example may resemble too closely."""
    if k <= 0:
        return []
    candidates = task.pool.filter(kind=kind, removed=False)
    if exclude_instances:
        candidates = candidates.exclude(instance_id__in=list(exclude_instances))
    candidates = list(candidates.order_by("-pinned", "-created_at")[:_CANDIDATES])
    # Stable sort: recency is kept within each rank.
    candidates.sort(key=lambda e: (not e.pinned, _ORIGIN_RANK[e.origin]))
    if away_from and candidates:
        here = _VECTORIZER.transform([away_from]).toarray().astype(np.float32)[0]
        similarity = _vectors(candidates) @ here
        candidates = [e for e, s in zip(candidates, similarity, strict=True) if s < _TOO_ALIKE]
    chosen = [e for e in candidates if e.pinned][:k]
    rest = [e for e in candidates if not e.pinned]
    if len(chosen) >= k or not rest:
        return chosen
    vectors = dict(zip((e.pk for e in rest + chosen), _vectors(rest + chosen), strict=True))
    by_language: dict[str, list[PoolExample]] = defaultdict(list)
    for example in rest:
        by_language[example.language].append(example)
    order = sorted(by_language, key=lambda lang: (lang != language, lang))
    rng = random.Random(seed)
    while len(chosen) < k and any(by_language.values()):
        for lang in order:
            bucket = by_language[lang]
            if not bucket or len(chosen) >= k:
                continue
            # Only the best origin left in this language competes: humans first, always.
            best_rank = _ORIGIN_RANK[bucket[0].origin]
            favoured = [e for e in bucket if _ORIGIN_RANK[e.origin] == best_rank][:_FAVOURED]
            if chosen:
                picked = np.stack([vectors[e.pk] for e in chosen])
                similarity = [float((picked @ vectors[e.pk]).max()) for e in favoured]
                best = favoured[int(np.argmin(similarity))]
            else:
                best = rng.choice(favoured[:3])
            bucket.remove(best)
            chosen.append(best)
    return chosen


def examples_for(
    row: Instance, k: int, *, exclude_instances: frozenset[int] | set[int] = frozenset()
) -> tuple[list[PoolExample], list[PoolExample]]:
    """(good, bad) examples for one instance's prompt, k of each, by the policy above."""
    return tuple(
        few_shot(
            row.task,
            kind,
            k,
            language=row.language,
            seed=row.pk,
            exclude_instances=exclude_instances,
            away_from=row.sample.code if row.sample_id else row.input,
        )
        for kind in (PoolExample.Kind.GOOD, PoolExample.Kind.BAD)
    )


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
        "source_code": instance.sample.code if instance.sample_id else "",
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


# --- Curators' pool management ------------------------------------------------------------------


def set_pinned(example: PoolExample, pinned: bool) -> PoolExample:
    """Pin (always shown first) or unpin an example."""
    example.pinned = pinned
    PoolExample.objects.filter(pk=example.pk).update(pinned=pinned)
    return example


def set_removed(example: PoolExample, removed: bool) -> PoolExample:
    """Take an example out of its pool, or put it back. A removed example is also unpinned."""
    example.removed = removed
    example.pinned = example.pinned and not removed
    PoolExample.objects.filter(pk=example.pk).update(removed=removed, pinned=example.pinned)
    return example


def pool_counts() -> dict[tuple[str, str], int]:
    """{(task slug, kind): examples in use}."""
    rows = PoolExample.objects.filter(removed=False).values_list("task__slug", "kind").annotate(n=Count("id"))
    return {(slug, kind): n for slug, kind, n in rows}
