"""Principle refinement: the reviewers' decisions sharpen the discriminator's checklist.

The loop, for one task:

1. **Split** the human-reviewed instances (final decision and a verdict) by a seeded hash of their id:
   a held-out part checks proposals; the rest supplies the cases.
2. **Propose** (`propose`, a Celery task): the LLM gets the current principles and the cases where the
   discriminator and the humans disagreed, with the reviewers' reasons and the rules they named, and
   answers with a revised rule set (rules kept, reworded, added, removed), a rationale per change.
   What changed is worked out by comparing ids and questions, not taken on the model's word.
3. The curator sees the **diff**, may **edit** the rules (`edit_proposal`), then starts the **check**.
4. **Check** (`check`, a Celery task): the proposal is frozen as a principle version (not adopted) and
   the discriminator judges every held-out instance twice, with the current and with the proposed
   rules, same model, same examples (never the held-out instances themselves). Both are scored against
   the human decisions on the same instances.
5. **Adopt** (one action) makes the checked version current; new and re-judged instances are judged
   with it and their verdicts record it. **Rollback** (`adopt_version`) makes any earlier version
   current again, also one action.
6. **Re-judge** (`run_rejudge`, a Celery task) runs the discriminator with the current principles on the
   instances nobody has reviewed yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import catalog, discrimination, llm, pools
from .analytics import Confusion
from .models import (
    CodeTask,
    Instance,
    LLMCall,
    PrincipleVersion,
    ProgressReporter,
    RefinementRun,
    RejudgeJob,
)
from .parsing import ParseError, first_json_object

log = logging.getLogger(__name__)
Stage = RefinementRun.Stage
TEXT_LIMIT = 1200  # characters of each instance field shown to the LLM in a proposal prompt


class RefinementError(ValueError):
    """A refinement step cannot be done now or with these inputs; the message is for people."""


# --- 1. Split ------------------------------------------------------------------------------------


def reviewed_instances(task: CodeTask):
    """The task's instances with a final human decision and a verdict, oldest first."""
    return Instance.objects.filter(task=task, human_decision__isnull=False, verdict__isnull=False).order_by(
        "id"
    )


def _held_out(pk: int, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{pk}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(task: CodeTask, *, fraction: float, seed: int, max_heldout: int, max_cases: int):
    """(case ids, held-out ids): held-out by a seeded hash of the id; cases are the disagreements of
    the rest, newest first. Both capped."""
    rows = reviewed_instances(task).values_list("id", "passed", "human_decision")
    heldout, cases = [], []
    for pk, passed, human in rows.iterator(chunk_size=5000):
        if _held_out(pk, seed, fraction):
            heldout.append(pk)
        elif passed != (human == Instance.Decision.ACCEPT):
            cases.append(pk)
    return cases[::-1][:max_cases], heldout[:max_heldout]


# --- 2. Propose ----------------------------------------------------------------------------------

PROPOSAL_SYSTEM = (
    "You maintain the checklist a Discriminator uses to judge instances of a code instruction dataset. "
    "Human reviewers disagreed with some of its verdicts. Revise the checklist so that its verdicts "
    "would match the reviewers: reword rules that misfire, add rules for problems the reviewers "
    "caught and it missed, remove rules that only cause false rejections. Each rule is a yes/no "
    "question where yes means good. Keep rules that work. Reply with one JSON object only."
)


def proposal_schema() -> dict:
    rule = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "question": {"type": "string"},
            "rationale": {"type": "string"},
        },
        "required": ["id", "question", "rationale"],
        "additionalProperties": False,
    }
    removed = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "rationale": {"type": "string"}},
        "required": ["id", "rationale"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "rules": {"type": "array", "items": rule, "minItems": 1},
            "removed": {"type": "array", "items": removed},
            "summary": {"type": "string"},
        },
        "required": ["rules", "removed", "summary"],
        "additionalProperties": False,
    }


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …[cut]"


def _case(instance: Instance) -> dict:
    verdict = instance.verdict
    failed = {r.rule_id: r.reason for r in verdict.rules.all() if not r.passed}
    reviews = [r for r in instance.reviews.all() if r.decision in ("accept", "reject")]
    case = {
        "instance": {
            "instruction": _clip(instance.instruction),
            "input": _clip(instance.input),
            "output": _clip(instance.output),
        },
        "discriminator": "pass" if verdict.passed else "fail",
        "rules_it_failed": failed,
        "human_decision": instance.human_decision,
        "reviewer_reasons": [r.reason for r in reviews if r.reason],
        "rules_reviewers_named_broken": sorted({rule for r in reviews for rule in r.broken_rules or []}),
    }
    if instance.language:
        case["instance"]["language"] = instance.language
    return case


def proposal_messages(run: RefinementRun, instances: Sequence[Instance]) -> list[dict]:
    task = run.task
    rules = "\n".join(f"- {r['id']}: {r['question']}" for r in run.base_version.rules)
    cases = "\n\n".join(json.dumps(_case(i), indent=1) for i in instances)
    definition = task.current_prompt.definition if task.current_prompt else ""
    prompt = (
        f"Task: {task.name}.\nTask definition: {definition}"
        f"\n\nCurrent checklist (principles v{run.base_version.version}):\n{rules}"
        f"\n\nCases where the discriminator and the reviewers disagreed ({len(instances)}):\n\n{cases}"
        '\n\nReply with JSON: {"rules": [{"id": "snake_case_id", "question": "...?", '
        '"rationale": "why kept, reworded or added"}], "removed": [{"id": "...", "rationale": '
        '"..."}], "summary": "..."}. Keep the id of a rule you reword; use a new id for a new rule.'
    )
    return [{"role": "system", "content": PROPOSAL_SYSTEM}, {"role": "user", "content": prompt}]


def _rule_id(raw: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", str(raw).strip().lower()).strip("_")[:64]


def read_proposal(text: str) -> tuple[list[dict], dict[str, str], dict[str, str], str]:
    """(rules, rationale per kept/added id, rationale per removed id, summary) from the LLM's reply.
    ParseError with the reason when it is not a usable rule set."""
    data = first_json_object(text)
    if data is None:
        raise ParseError("The reply holds no JSON object.")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ParseError("The reply has no list of rules.")
    rules, rationale = [], {}
    for n, item in enumerate(raw_rules, start=1):
        if not isinstance(item, dict):
            raise ParseError(f"Rule {n} is not an object.")
        rule_id = _rule_id(item.get("id", ""))
        rules.append({"id": rule_id, "question": str(item.get("question", "")).strip()})
        rationale[rule_id] = str(item.get("rationale", "")).strip()
    try:
        rules = catalog.validate_rules(rules)
    except ValueError as exc:
        raise ParseError(str(exc)) from exc
    removed = {}
    for item in data.get("removed") or []:
        if isinstance(item, dict) and item.get("id"):
            removed[_rule_id(item["id"])] = str(item.get("rationale", "")).strip()
    return rules, rationale, removed, str(data.get("summary", "")).strip()


def diff_rules(
    base: Sequence[dict],
    proposed: Sequence[dict],
    rationale: dict[str, str] | None = None,
    removed_rationale: dict[str, str] | None = None,
) -> list[dict]:
    """What changed from `base` to `proposed`, in the proposal's order then the removals:
    [{"op": kept|reworded|added|removed, "id", "question", "old_question", "rationale"}]."""
    rationale, removed_rationale = rationale or {}, removed_rationale or {}
    old = {r["id"]: r["question"] for r in base}
    changes = []
    for rule in proposed:
        before = old.get(rule["id"])
        op = "added" if before is None else ("kept" if before == rule["question"] else "reworded")
        changes.append(
            {
                "op": op,
                "id": rule["id"],
                "question": rule["question"],
                "old_question": before or "",
                "rationale": rationale.get(rule["id"], ""),
            }
        )
    kept = {r["id"] for r in proposed}
    for rule in base:
        if rule["id"] not in kept:
            changes.append(
                {
                    "op": "removed",
                    "id": rule["id"],
                    "question": "",
                    "old_question": rule["question"],
                    "rationale": removed_rationale.get(rule["id"], ""),
                }
            )
    return changes


def create_refinement_run(
    task: CodeTask | str,
    *,
    user=None,
    model: str | None = None,
    heldout_fraction: float = 0.3,
    max_cases: int = 40,
    max_heldout: int = 60,
    seed: int = 0,
) -> RefinementRun:
    """Validate, split and create a run (stage `proposing`). RefinementError says what is missing."""
    if isinstance(task, str):
        task = CodeTask.objects.filter(slug=task).first() or _unknown_task(task)
    if not 0 < heldout_fraction < 1:
        raise RefinementError("The held-out fraction must be between 0 and 1 (for example 0.3).")
    if max_cases < 1 or max_heldout < 1:
        raise RefinementError("At least one case and one held-out instance are needed.")
    if task.current_principles_id is None:
        raise RefinementError(f"{task.name} has no principles yet.")
    busy = task.refinement_runs.filter(stage__in=[Stage.PROPOSING, Stage.CHECKING]).first()
    if busy:
        raise RefinementError(f"Refinement run #{busy.pk} of {task.name} is still running; wait for it.")
    cases, heldout = split(
        task, fraction=heldout_fraction, seed=seed, max_heldout=max_heldout, max_cases=max_cases
    )
    reviewed = reviewed_instances(task).count()
    if not cases:
        raise RefinementError(
            f"{task.name}: no disagreements between the discriminator and the reviewers outside the "
            f"held-out part ({reviewed} reviewed instances). Review more instances first."
        )
    if not heldout:
        raise RefinementError(
            f"{task.name}: no reviewed instance fell into the held-out part ({reviewed} reviewed); review "
            "more instances or raise the held-out fraction."
        )
    return RefinementRun.objects.create(
        task=task,
        base_version=task.current_principles,
        model=llm.resolve_model(model or settings.LLM_DISCRIMINATOR_MODEL),
        heldout_fraction=heldout_fraction,
        max_cases=max_cases,
        max_heldout=max_heldout,
        seed=seed,
        case_ids=cases,
        heldout_ids=heldout,
        created_by=user,
    )


def _unknown_task(slug: str):
    raise RefinementError(f"No task {slug!r}; tasks are {', '.join(CodeTask.Slug.values)}.")


def _call_row(model: str, instance: Instance | None, completion: llm.Completion | None, error: str = ""):
    """An (unsaved) LLMCall row: every discriminator-side call is counted, like the generation job's."""
    return LLMCall.of(
        completion, role=LLMCall.Role.DISCRIMINATOR, model=model, instance=instance, error=error
    )


def _fail_run(run: RefinementRun, message: str) -> None:
    run.stage = Stage.FAILED
    run.save(update_fields=["stage"])
    run.finish(RefinementRun.Status.FAILED, error=message)


def propose(run_id: int, *, client: llm.LLMClient | None = None, on_progress=None) -> RefinementRun:
    """Ask the LLM for a revised principle set. Garbage ends the run with the reason and the raw text."""
    run = RefinementRun.objects.select_related("task__current_prompt", "base_version").get(pk=run_id)
    if run.stage != Stage.PROPOSING or not run.claim():
        return run
    progress = ProgressReporter(run, on_progress)
    progress.start("asking the LLM", 1)
    instances = list(
        Instance.objects.filter(pk__in=run.case_ids)
        .select_related("verdict")
        .prefetch_related("verdict__rules", "reviews")
        .order_by("-id")
    )
    client = client or llm.get_llm_client()
    try:
        completion = async_to_sync(client.complete)(
            proposal_messages(run, instances),
            model=run.model,
            json_schema=proposal_schema(),
            max_tokens=max(settings.LLM_MAX_TOKENS, 1500),
        )
    except llm.LLMError as exc:
        _call_row(run.model, None, None, str(exc)).save()
        _fail_run(run, f"The LLM could not be reached: {exc}")
        return run
    _call_row(run.model, None, completion).save()
    run.raw_response = completion.text
    try:
        rules, rationale, removed, summary = read_proposal(completion.text)
    except ParseError as exc:
        run.save(update_fields=["raw_response"])
        _fail_run(run, f"The LLM's proposal could not be read: {exc}")
        return run
    run.proposed_rules = rules
    run.changes = diff_rules(run.base_version.rules, rules, rationale, removed)
    run.summary = summary
    run.stage = Stage.PROPOSED
    run.save(update_fields=["raw_response", "proposed_rules", "changes", "summary", "stage"])
    progress.update(1)
    run.finish()
    return run


# --- 3. Edit -------------------------------------------------------------------------------------


@transaction.atomic
def edit_proposal(run: RefinementRun, rules: list[dict], *, user=None) -> RefinementRun:
    """Replace the proposed rules with the curator's edit. Any earlier check no longer applies."""
    run = RefinementRun.objects.select_for_update().get(pk=run.pk)
    if run.stage not in (Stage.PROPOSED, Stage.CHECKED):
        raise RefinementError(
            f"A proposal can be edited only before it is adopted (it is {run.get_stage_display()})."
        )
    rules = catalog.validate_rules(rules)
    rationale = {c["id"]: c["rationale"] for c in run.changes if c["op"] != "removed"}
    removed = {c["id"]: c["rationale"] for c in run.changes if c["op"] == "removed"}
    before = {r["id"]: r["question"] for r in run.proposed_rules}
    for rule in rules:
        if before.get(rule["id"]) != rule["question"]:
            note = "Edited by the curator."
            rationale[rule["id"]] = (
                f"{rationale[rule['id']]} {note}".strip() if rule["id"] in rationale else note
            )
    run.proposed_rules = rules
    run.changes = diff_rules(run.base_version.rules, rules, rationale, removed)
    run.edited, run.stage, run.proposed_version, run.check_results = True, Stage.PROPOSED, None, {}
    run.save(
        update_fields=["proposed_rules", "changes", "edited", "stage", "proposed_version", "check_results"]
    )
    return run


@transaction.atomic
def discard(run: RefinementRun, *, user=None) -> RefinementRun:
    run = RefinementRun.objects.select_for_update().get(pk=run.pk)
    if run.stage in (Stage.ADOPTED, Stage.DISCARDED, Stage.PROPOSING, Stage.CHECKING):
        raise RefinementError(f"This run cannot be discarded now (it is {run.get_stage_display()}).")
    run.stage, run.decided_by, run.decided_at = Stage.DISCARDED, user, timezone.now()
    run.save(update_fields=["stage", "decided_by", "decided_at"])
    return run


# --- 4. Check, adopt, roll back -------------------------------------------------------------------


@transaction.atomic
def prepare_check(run: RefinementRun, *, user=None) -> RefinementRun:
    """Freeze the proposal as a (not adopted) principle version and mark the run `checking`."""
    run = RefinementRun.objects.select_for_update(of=("self",)).select_related("task").get(pk=run.pk)
    if run.stage not in (Stage.PROPOSED, Stage.CHECKED):
        raise RefinementError(f"Only a proposal can be checked (this run is {run.get_stage_display()}).")
    if not run.proposed_rules:
        raise RefinementError("The proposal has no rules.")
    if run.proposed_version is None:
        run.proposed_version = catalog.new_principle_version(
            run.task,
            rules=run.proposed_rules,
            user=user,
            note=f"Proposed by refinement run #{run.pk}" + (" (edited)" if run.edited else ""),
            adopt=False,
        )
    run.stage, run.status, run.check_results = Stage.CHECKING, RefinementRun.Status.QUEUED, {}
    run.progress_done = run.progress_total = 0
    run.save(
        update_fields=[
            "proposed_version",
            "stage",
            "status",
            "check_results",
            "progress_done",
            "progress_total",
        ]
    )
    return run


@dataclass
class Judged:
    """One judgement for a check or a re-judge: None for `passed` when the LLM failed or was unreadable."""

    instance: Instance
    passed: bool | None
    failed_rules: list[str]
    answers: dict | None = None
    overall: bool | None = None
    reasons: str = ""
    text: str = ""
    error: str = ""
    call: LLMCall | None = None  # the request's token record, saved by judge_all


async def _judge(client, model: str, row: Instance, principles: PrincipleVersion, good, bad) -> Judged:
    messages, schema = discrimination.request_for(row, principles, good, bad)
    try:
        completion = await client.complete(
            messages, model=model, json_schema=schema, max_tokens=settings.LLM_MAX_TOKENS
        )
    except llm.LLMError as exc:
        return Judged(
            row, None, [], error=f"LLM call failed: {exc}", call=_call_row(model, row, None, str(exc))
        )
    call = _call_row(model, row, completion)
    try:
        answers, overall, reasons = discrimination.read_judgement(completion.text, principles)
    except ParseError as exc:
        error = f"Discriminator output did not parse: {exc}"
        return Judged(row, None, [], text=completion.text, error=error, call=call)
    passed = all(ok for ok, _ in answers.values()) and overall is not False
    failed = [rule_id for rule_id, (ok, _) in answers.items() if not ok]
    return Judged(row, passed, failed, answers, overall, reasons, completion.text, call=call)


def judge_all(
    client,
    model: str,
    jobs: Sequence[tuple[Instance, PrincipleVersion]],
    *,
    exclude_examples: Iterable[int] = (),
    concurrency: int = 8,
    on_done: Callable[[int], None] | None = None,
) -> list[Judged]:
    """Judge each (instance, principles) pair, `concurrency` requests at a time, with few-shot examples
    from the pools chosen by the usual policy minus `exclude_examples` (and the instance itself)."""
    excluded = frozenset(exclude_examples) | {row.pk for row, _ in jobs}
    examples: dict[tuple, tuple] = {}
    prepared = []
    for row, principles in jobs:
        key = (row.task_id, row.language)
        if key not in examples:
            examples[key] = pools.examples_for(row, settings.FEW_SHOT, exclude_instances=excluded)
        prepared.append((row, principles, *examples[key]))

    async def run_all() -> list[Judged]:
        gate = asyncio.Semaphore(max(1, concurrency))
        done = 0

        async def one(args) -> Judged:
            nonlocal done
            async with gate:
                result = await _judge(client, model, *args)
            done += 1
            if on_done:
                await sync_to_async(on_done)(done)  # it writes progress to the database
            return result

        return list(await asyncio.gather(*(one(args) for args in prepared)))

    results = async_to_sync(run_all)()
    LLMCall.objects.bulk_create(r.call for r in results if r.call is not None)
    return results


def _metrics(results: Sequence[Judged], humans: dict[int, str]) -> Confusion:
    confusion = Confusion()
    for result in results:
        confusion.add(result.passed, humans[result.instance.pk])
    return confusion


def check(run_id: int, *, client: llm.LLMClient | None = None, on_progress=None) -> RefinementRun:
    """Judge the held-out instances with the current and the proposed principles; score both against
    the human decisions on the instances both could judge."""
    run = RefinementRun.objects.select_related("task__current_principles", "proposed_version").get(pk=run_id)
    if run.stage != Stage.CHECKING or not run.claim():
        return run
    current, proposed = run.task.current_principles, run.proposed_version
    rows = list(
        Instance.objects.filter(pk__in=run.heldout_ids, human_decision__isnull=False)
        .select_related("task", "prompt_version")
        .order_by("id")
    )
    if not rows:
        run.stage = Stage.PROPOSED
        run.save(update_fields=["stage"])
        run.finish(
            RefinementRun.Status.FAILED, error="The held-out instances no longer have a human decision."
        )
        return run
    progress = ProgressReporter(run, on_progress)
    progress.start("judging held-out instances", 2 * len(rows))
    client = client or llm.get_llm_client()
    try:
        results = judge_all(
            client,
            run.model,
            [(row, current) for row in rows] + [(row, proposed) for row in rows],
            exclude_examples=run.heldout_ids,
            concurrency=min(settings.LLM_CONCURRENCY, 16),
            on_done=progress.update,
        )
    except Exception as exc:  # noqa: BLE001 - the run must end with a message, whatever happened
        log.exception("check of refinement run %s failed", run.pk)
        run.stage = Stage.PROPOSED
        run.save(update_fields=["stage"])
        run.finish(RefinementRun.Status.FAILED, error=f"The check failed: {type(exc).__name__}: {exc}")
        return run
    with_current, with_proposed = results[: len(rows)], results[len(rows) :]
    both = [
        i
        for i in range(len(rows))
        if with_current[i].passed is not None and with_proposed[i].passed is not None
    ]
    humans = {row.pk: row.human_decision for row in rows}
    cases = [
        {
            "instance": rows[i].pk,
            "human": rows[i].human_decision,
            "current": with_current[i].passed,
            "proposed": with_proposed[i].passed,
            "current_failed": with_current[i].failed_rules,
            "proposed_failed": with_proposed[i].failed_rules,
            "error": with_current[i].error or with_proposed[i].error,
        }
        for i in range(len(rows))
    ]
    run.check_results = {
        "current_version": current.version,
        "proposed_version": proposed.version,
        "heldout": len(rows),
        "judged": len(both),
        "unjudged": len(rows) - len(both),
        "current": _metrics([with_current[i] for i in both], humans).as_dict(),
        "proposed": _metrics([with_proposed[i] for i in both], humans).as_dict(),
        "cases": cases,
    }
    run.stage = Stage.CHECKED
    run.save(update_fields=["check_results", "stage"])
    run.finish()
    return run


@transaction.atomic
def adopt(run: RefinementRun, *, user=None) -> PrincipleVersion:
    """Make a checked proposal the task's current principles."""
    run = (
        RefinementRun.objects.select_for_update(of=("self",))
        .select_related("task", "proposed_version")
        .get(pk=run.pk)
    )
    if run.stage != Stage.CHECKED or run.proposed_version is None:
        raise RefinementError(
            "Only a checked proposal can be adopted: run the held-out check first"
            f" (this run is {run.get_stage_display()})."
        )
    adopt_version(run.proposed_version, user=user)
    run.stage, run.decided_by, run.decided_at = Stage.ADOPTED, user, timezone.now()
    run.save(update_fields=["stage", "decided_by", "decided_at"])
    return run.proposed_version


@transaction.atomic
def adopt_version(version: PrincipleVersion, *, user=None) -> PrincipleVersion:
    """Make any version of a task's principles current (adoption, or rollback to an earlier one)."""
    task = CodeTask.objects.select_for_update().get(pk=version.task_id)
    task.current_principles = version
    task.save(update_fields=["current_principles"])
    log.info("principles of %s set to v%s by %s", task.slug, version.version, user)
    return version


# --- 5. Re-judge ---------------------------------------------------------------------------------


def rejudge_queryset(job: RejudgeJob):
    """Instances nobody reviewed yet whose generation finished (judged, or the judge failed), of the
    job's tasks; with `only_outdated`, only those not judged with their task's current principles."""
    qs = Instance.objects.filter(
        review_status=Instance.ReviewStatus.UNREVIEWED, human_decision__isnull=True
    ).filter(
        Q(status=Instance.Status.DONE, stage=Instance.Stage.JUDGED)
        | Q(status=Instance.Status.FAILED, stage=Instance.Stage.JUDGE_FAILED)
    )
    if job.tasks:
        qs = qs.filter(task__slug__in=job.tasks)
    if job.only_outdated:
        qs = qs.filter(
            Q(verdict__isnull=True) | ~Q(verdict__principle_version_id=F("task__current_principles"))
        )
    return qs


def create_rejudge_job(
    *,
    tasks: Sequence[str] = (),
    user=None,
    model: str | None = None,
    only_outdated: bool = True,
    concurrency: int = 8,
) -> RejudgeJob:
    unknown = set(tasks) - set(CodeTask.Slug.values)
    if unknown:
        raise RefinementError(f"Unknown task(s): {', '.join(sorted(unknown))}.")
    if not 1 <= concurrency <= settings.LLM_CONCURRENCY:
        raise RefinementError(f"Concurrency must be between 1 and {settings.LLM_CONCURRENCY}.")
    job = RejudgeJob(
        tasks=list(tasks),
        model=llm.resolve_model(model or settings.LLM_DISCRIMINATOR_MODEL),
        only_outdated=only_outdated,
        concurrency=concurrency,
        created_by=user,
    )
    total = rejudge_queryset(job).count()
    if total == 0:
        raise RefinementError(
            "No unreviewed instance needs judging"
            + (" with the current principles." if only_outdated else ".")
        )
    job.progress_total = total
    job.save()
    return job


def _save_judged(result: Judged, principles: PrincipleVersion, model: str) -> bool:
    """Store a re-judgement as the instance's current verdict; True when pass/fail flipped. An instance
    a reviewer decided in the meantime keeps its place in the pools (the human decision rules there)."""
    with transaction.atomic():
        row = Instance.objects.select_for_update().get(pk=result.instance.pk)
        before = row.passed
        discrimination.save_verdict(
            row,
            principles,
            model=model,
            text=result.text,
            answers=result.answers,
            overall=result.overall,
            reasons=result.reasons,
            to_pool=row.human_decision is None,
        )
        if row.status != Instance.Status.DONE:
            Instance.objects.filter(pk=row.pk).update(
                status=Instance.Status.DONE, stage=Instance.Stage.JUDGED, failure=""
            )
    return before is not None and before != row.passed


def run_rejudge(
    job_id: int, *, client: llm.LLMClient | None = None, on_progress=None, batch: int = 64
) -> RejudgeJob:
    """Re-judge the job's instances in batches; cancelling stops it between batches."""
    job = RejudgeJob.objects.get(pk=job_id)
    if not job.claim():
        return job
    client = client or llm.get_llm_client()
    progress = ProgressReporter(job, on_progress)
    progress.start("re-judging", rejudge_queryset(job).count())
    done = last_id = 0
    try:
        while True:
            if RejudgeJob.objects.filter(pk=job.pk, status=RejudgeJob.Status.CANCELLED).exists():
                return job
            rows = list(
                rejudge_queryset(job)
                .filter(id__gt=last_id)
                .select_related("task__current_principles", "prompt_version")
                .order_by("id")[:batch]
            )
            if not rows:
                break
            last_id = rows[-1].pk
            results = judge_all(
                client,
                job.model,
                [(row, row.task.current_principles) for row in rows],
                concurrency=job.concurrency,
            )
            changed = failed = 0
            for result in results:
                if result.passed is None:
                    failed += 1
                elif _save_judged(result, result.instance.task.current_principles, job.model):
                    changed += 1
            done += len(rows)
            job.changed, job.failed = job.changed + changed, job.failed + failed
            RejudgeJob.objects.filter(pk=job.pk).update(changed=job.changed, failed=job.failed)
            progress.update(done)
    except Exception as exc:  # noqa: BLE001 - the job must end with a message, whatever happened
        log.exception("re-judging job %s failed", job.pk)
        job.finish(RejudgeJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return job
    job.phase = "done"
    RejudgeJob.objects.filter(pk=job.pk).update(phase="done")
    job.finish()
    return job


def cancel_rejudge(job: RejudgeJob) -> bool:
    return bool(
        RejudgeJob.objects.filter(pk=job.pk, status__in=RejudgeJob.ACTIVE).update(
            status=RejudgeJob.Status.CANCELLED, finished_at=timezone.now()
        )
    )
