"""The Generator and generation jobs.

A job plans one `Instance` row per (sample, task, prompt version, generator model, sample index) — a
unique key, so redelivered or repeated work can never make a second instance. Workers claim pending
rows with a lease (a conditional update, so exactly one worker wins each row), then run each through the
pipeline: generator → parse → static checks → sandbox → discriminator → pools. Many rows are in flight at
once on an asyncio loop, bounded by the job's concurrency; the LLM client retries with backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q, Sum
from django.utils import timezone

from . import checks, discrimination, llm, mutation, params, pools, sandbox
from .models import CodeSample, CodeTask, GenerationJob, Instance, LLMCall, PoolExample, SelectionRun
from .parsing import ParseError, parse_fields

log = logging.getLogger(__name__)

SYSTEM = (
    "You are the Generator of a code instruction dataset. From a piece of raw code you write one "
    "instruction-tuning instance for the given task, about that code and no other, following every "
    "requirement. Reply with the sections asked for, nothing else."
)
TRANSLATION_TARGETS = ["python", "javascript", "java", "go", "cpp", "rust", "typescript"]


def plants_bug(task_slug: str, language: str) -> bool:
    """Whether the app plants the repair task's bug itself (curation/mutation.py) rather than the model."""
    return task_slug == "repair" and language == "python"


def fields_for(task_slug: str, language: str) -> tuple[list[str], list[str]]:
    """(all fields, required fields) the generator writes for a task. Summarization and translation take
    the raw code itself as their input, so the model is not asked to copy it (and cannot garble it).
    Where the app plants a repair's bug, the model writes the correct code and its tests, and the app
    makes the buggy input and the explanation from the bug it planted."""
    fields = (
        ["instruction", "output"]
        if task_slug in ("summarization", "translation") or plants_bug(task_slug, language)
        else ["instruction", "input", "output"]
    )
    if task_slug == "repair" and not plants_bug(task_slug, language):
        fields.append("explanation")
    if task_slug in ("generation", "repair") and language == "python":
        fields.append("tests")
    required = [f for f in fields if not (f == "input" and task_slug == "generation")]
    return fields, required


def _row_seed(sample_id: int, sample_index: int) -> int:
    """A number fixed by a row's sample and index: the same choice on every re-run of the row."""
    return int.from_bytes(hashlib.sha256(f"{sample_id}:{sample_index}".encode()).digest()[:4])


def target_language_for(sample_id: int, sample_index: int, source: str) -> str:
    """A translation target other than the source, spread evenly and the same on every re-run."""
    choices = [lang for lang in TRANSLATION_TARGETS if lang != source]
    # The first byte of the digest, as before, so existing rows keep their targets.
    return choices[(_row_seed(sample_id, sample_index) >> 24) % len(choices)]


# What a small model most often forgot, said again next to the code at hand.
_REMINDERS = {
    "generation": " The output is a standalone function (no `self`); the tests call only that function.",
    "repair": " The input holds the planted bug, so it differs from the output.",
    "repair-planted": " The output is the correct, standalone function (no `self`); the tests call only it.",
}


def _reminder(slug: str, language: str) -> str:
    return _REMINDERS.get("repair-planted" if plants_bug(slug, language) else slug, "")


def _ask(slug: str, language: str, code: str, target: str) -> str:
    text = f"Raw code ({language}):\n```{language}\n{code}\n```"
    if slug == "translation":
        text += f"\nTranslate it from {language} into {target or 'another language'}."
    elif plants_bug(slug, language):
        text += "\nWrite its correct, self-contained version; the app plants the bug in it afterwards."
    return text


def _code_language(slug: str, field: str, language: str, target: str) -> str | None:
    """The language of a field's code block, or None for a prose field."""
    if field == "tests":
        return "python"
    if field == "output" and slug != "summarization":
        return target if slug == "translation" else language
    if field == "input" and slug == "repair":
        return language
    return None


def as_sections(slug: str, values: dict[str, str], language: str, target: str = "") -> str:
    """A reply in the generator's format: `### field` headers, code fields in fenced blocks."""
    parts = []
    for field, value in values.items():
        if not value:
            continue
        fence = _code_language(slug, field, language, target)
        parts.append(f"### {field}\n" + (f"```{fence}\n{value}\n```" if fence else value))
    return "\n\n".join(parts)


def reply_format(slug: str, language: str, target: str = "") -> str:
    """How the generator is asked to lay out its reply."""
    fields, required = fields_for(slug, language)
    lines = []
    for field in fields:
        fence = _code_language(slug, field, language, target)
        what = f"a ```{fence} code block" if fence else "plain text"
        optional = "" if field in required else " (leave it out when the task needs no input data)"
        lines.append(f"### {field}: {what}{optional}")
    return "Reply with these sections, each a header line then its content:\n" + "\n".join(lines)


def _example_turns(slug: str, example: PoolExample) -> tuple[str, str]:
    """A good example as the (request, reply) turns that would have made it: the raw code it was written
    from (else the code it summarizes or translates, or its correct code), and its fields as a reply."""
    raw = example.source_code or (
        example.input if slug in ("summarization", "translation") else example.output
    )
    fields, _ = fields_for(slug, example.language)
    values = {field: getattr(example, field) for field in fields}
    reply = as_sections(slug, values, example.language, example.target_language)
    return _ask(slug, example.language, raw, example.target_language), reply


def build_messages(instance: Instance, good: list[PoolExample], bad: list[PoolExample]) -> list[dict]:
    """The generator's prompt as a chat: definition, requirements and reply format, each good example as
    an earlier request and its reply, then the bad examples and the raw code at hand.

    A small model copies an example written into the prompt as its answer; shown as a finished earlier
    turn, an example is a pattern to follow, and the last turn holds only the code at hand. Replies are
    sections with fenced code, not JSON: escaping code inside JSON strings broke a third of a small
    model's replies (unbalanced quotes, lost line continuations).
    """
    prompt, sample, slug = instance.prompt_version, instance.sample, instance.task.slug
    requirements = "\n".join(f"- {line}" for line in prompt.requirement_list)
    intro = f"Task definition: {prompt.definition}\n\nRequirements:\n{requirements}\n\n" + reply_format(
        slug, instance.language, instance.target_language
    )
    messages = [{"role": "system", "content": SYSTEM}]
    for example in good:
        ask, reply = _example_turns(slug, example)
        messages.append({"role": "user", "content": f"{intro}\n\n{ask}" if len(messages) == 1 else ask})
        messages.append({"role": "assistant", "content": reply})
    last = [intro] if len(messages) == 1 else []
    if bad:
        # Only why they were rejected: a small model copies a rejected reply shown in full as its answer.
        reasons = "\n".join(f"- {example.reasons}" for example in bad)
        last.append(f"Earlier replies were rejected because:\n{reasons}\nDo not repeat these mistakes.")
    last.append(_ask(slug, sample.language, sample.code, instance.target_language))
    if len(messages) > 1:
        # The format was given turns ago; a small model drops the headers without a reminder.
        _, required = fields_for(slug, instance.language)
        last.append(
            "Reply with the sections "
            + ", ".join(f"### {f}" for f in required)
            + "."
            + _reminder(slug, instance.language)
        )
    messages.append({"role": "user", "content": "\n\n".join(last)})
    return messages


# --- Jobs ---------------------------------------------------------------------------------------


def create_generation_job(
    *,
    selection_run: SelectionRun | None = None,
    tasks: list[str],
    samples_per_task: int,
    instances_per_sample: int = 1,
    generator_model: str | None = None,
    discriminator_model: str | None = None,
    concurrency: int | None = None,
    execute: bool = True,
    few_shot: int | None = None,
    tries: int | None = None,
    user=None,
) -> GenerationJob:
    """Validate, create a job and plan its instances. ValueError with a clear message on bad input."""
    known = set(CodeTask.Slug.values)
    if not tasks or not set(tasks) <= known:
        raise ValueError(f"Tasks must be some of {', '.join(sorted(known))}; got {tasks!r}.")
    if selection_run is None:  # optional only in the model, where import jobs have none
        raise ValueError("A generation job needs a selection run.")
    if selection_run.status != SelectionRun.Status.SUCCEEDED:
        raise ValueError(f"Selection run #{selection_run.pk} has not succeeded ({selection_run.status}).")
    if samples_per_task < 1 or not 1 <= instances_per_sample <= 20:
        raise ValueError("samples_per_task must be ≥ 1 and instances_per_sample between 1 and 20.")
    concurrency = settings.LLM_CONCURRENCY if concurrency is None else concurrency
    if not 1 <= concurrency <= params.CONCURRENCY_MAX:
        raise ValueError(f"concurrency must be between 1 and {params.CONCURRENCY_MAX}.")
    tries = settings.GENERATION_TRIES if tries is None else tries
    if not 1 <= tries <= params.TRIES_MAX:
        raise ValueError(f"tries must be between 1 and {params.TRIES_MAX}; got {tries}.")
    job = GenerationJob.objects.create(
        selection_run=selection_run,
        tasks=list(dict.fromkeys(tasks)),
        samples_per_task=samples_per_task,
        instances_per_sample=instances_per_sample,
        # An offline model that cannot run here is recorded as the one that will stand in for it.
        generator_model=llm.resolve_model(generator_model or settings.LLM_GENERATOR_MODEL),
        discriminator_model=llm.resolve_model(discriminator_model or settings.LLM_DISCRIMINATOR_MODEL),
        concurrency=concurrency,
        execute=execute,
        few_shot=settings.FEW_SHOT if few_shot is None else few_shot,
        tries=tries,
        created_by=user,
    )
    plan_instances(job)
    return job


def plan_instances(job: GenerationJob) -> int:
    """Create the job's pending instance rows. Tasks take different picks where the selection allows,
    in pick order (the most diverse first); generation and repair take self-contained Python code first,
    since their tests run it alone. Rows another job already made are skipped, not repeated."""
    picks = list(job.selection_run.pick_rows.order_by("rank").values_list("sample_id", "sample__language"))
    if not picks:
        raise ValueError("The selection has no picks.")
    tasks = {t.slug: t for t in CodeTask.objects.filter(slug__in=job.tasks).select_related("current_prompt")}
    alone = _runs_alone(picks) if {"generation", "repair"} & set(job.tasks) else set()
    rows = []
    for t_index, slug in enumerate(job.tasks):
        task = tasks[slug]
        prefers = slug in ("generation", "repair")
        # This task's share of the picks first (every T-th), then the others, each in pick order.
        order = sorted(
            range(len(picks)),
            key=lambda j: (prefers and picks[j][0] not in alone, (j - t_index) % len(job.tasks) != 0, j),
        )
        for j in order[: job.samples_per_task]:
            sample_id, language = picks[j]
            for index in range(job.instances_per_sample):
                rows.append(
                    Instance(
                        job=job,
                        sample_id=sample_id,
                        task=task,
                        prompt_version=task.current_prompt,
                        generator_model=job.generator_model,
                        sample_index=index,
                        language=language,
                        target_language=(
                            target_language_for(sample_id, index, language) if slug == "translation" else ""
                        ),
                    )
                )
    Instance.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    total = job.instances.count()
    GenerationJob.objects.filter(pk=job.pk).update(progress_total=total)
    job.progress_total = total
    return total


def _runs_alone(picks: list[tuple[int, str]]) -> set[int]:
    """The Python picks whose code runs on its own, read in batches (a selection can be large)."""
    ids = [sample_id for sample_id, language in picks if language == "python"]
    alone = set()
    for start in range(0, len(ids), 1000):
        batch = CodeSample.objects.filter(pk__in=ids[start : start + 1000]).values_list("pk", "code")
        alone.update(pk for pk, code in batch if checks.self_contained(code))
    return alone


@dataclass
class JobCounts:
    pending: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed


def job_counts(job: GenerationJob) -> JobCounts:
    rows = job.instances.values("status").annotate(n=Count("id"))
    return JobCounts(**{row["status"]: row["n"] for row in rows})


def stalled_since(job: GenerationJob, *, quiet_s: float = 120) -> datetime | None:
    """When an active, unpaused job last made progress, if no worker has touched it for `quiet_s`
    seconds and none holds a live lease (its worker died, or none listens on the `llm` queue)."""
    if not job.is_active or job.paused:
        return None
    now = timezone.now()
    rows = job.instances
    if rows.filter(status=Instance.Status.IN_FLIGHT, lease_until__gt=now).exists():
        return None
    if not rows.filter(status__in=[Instance.Status.PENDING, Instance.Status.IN_FLIGHT]).exists():
        return None
    last = rows.aggregate(last=Max("finished_at"))["last"] or job.started_at or job.created_at
    return last if (now - last).total_seconds() > quiet_s else None


def job_cost(job: GenerationJob) -> float | None:
    """Estimated USD cost from the per-model price setting; None when a model has no price."""
    total = 0.0
    usage = job.calls.values("model").annotate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    for row in usage:
        cost = llm.estimate_cost(row["model"], row["p"] or 0, row["c"] or 0)
        if cost is None:
            return None
        total += cost
    return total


def pause(job: GenerationJob) -> None:
    """Workers stop claiming new rows; rows in flight finish."""
    GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.ACTIVE).update(paused=True)


def resume(job: GenerationJob) -> bool:
    """Clear the pause and queue the job again; False when it already ended."""
    return bool(GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.ACTIVE).update(paused=False))


def cancel(job: GenerationJob) -> None:
    """End the job: pending rows are recorded as cancelled failures, rows in flight finish."""
    with transaction.atomic():
        updated = GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.ACTIVE).update(
            status=GenerationJob.Status.CANCELLED, finished_at=timezone.now()
        )
        if updated:
            job.instances.filter(status=Instance.Status.PENDING).update(
                status=Instance.Status.FAILED,
                failure="cancelled before it was generated",
                finished_at=timezone.now(),
            )


def running_job_ids() -> list[int]:
    """Jobs marked running and not paused: a starting `llm` worker joins them (their worker may be dead)."""
    running = GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING, paused=False)
    return list(running.order_by("pk").values_list("pk", flat=True))


def retry_failures(job: GenerationJob) -> int:
    """Reset the job's failed rows to pending and reopen the job; returns how many will be retried."""
    with transaction.atomic():
        n = job.instances.filter(status=Instance.Status.FAILED).update(
            status=Instance.Status.PENDING,
            stage="",
            failure="",
            raw_response="",
            checks=[],
            failed_check="",
            execution_status="",
            execution_detail="",
            lease_until=None,
        )
        GenerationJob.objects.filter(pk=job.pk).update(
            status=GenerationJob.Status.QUEUED, finished_at=None, paused=False, error=""
        )
    return n


# --- The worker side ----------------------------------------------------------------------------


def run_generation(job_id: int, *, client: llm.LLMClient | None = None, on_progress=None) -> GenerationJob:
    """Work on a job until no row is left to claim, it is paused or cancelled. Safe to run in several
    workers at once and to run again after a crash: rows are claimed one worker at a time."""
    job = GenerationJob.objects.get(pk=job_id)
    if not job.claim():
        return job
    GenerationJob.objects.filter(pk=job.pk).update(phase="generating")
    try:
        # async_to_sync (not asyncio.run) so the drain's database calls run in this very thread: the
        # same connection and transaction as the caller's.
        async_to_sync(_Drain(job, client or llm.get_llm_client(), on_progress).run)()
    except Exception as exc:  # a bug or a dead database: say so on the job, keep the rows for a retry
        log.exception("generation job %s failed", job.pk)
        Instance.objects.filter(job=job, status=Instance.Status.IN_FLIGHT, lease_until__isnull=False).update(
            status=Instance.Status.PENDING, lease_until=None
        )
        job.finish(GenerationJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return job
    _finish_if_complete(job)
    job.refresh_from_db()
    return job


def _finish_if_complete(job: GenerationJob) -> None:
    open_rows = job.instances.filter(status__in=[Instance.Status.PENDING, Instance.Status.IN_FLIGHT])
    if not open_rows.exists():
        GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.RUNNING).update(
            status=GenerationJob.Status.SUCCEEDED, finished_at=timezone.now(), phase="done"
        )


def claim_rows(job: GenerationJob, limit: int) -> list[Instance]:
    """Lease up to `limit` pending rows (or rows whose lease ran out) to this worker."""
    token = uuid.uuid4().hex
    now = timezone.now()
    claimable = job.instances.filter(
        Q(status=Instance.Status.PENDING) | Q(status=Instance.Status.IN_FLIGHT, lease_until__lt=now)
    )
    ids = list(claimable.order_by("id").values_list("id", flat=True)[:limit])
    if not ids:
        return []
    # The status/lease condition is repeated in the update, so of two workers racing for a row one wins.
    claimable.filter(id__in=ids).update(
        status=Instance.Status.IN_FLIGHT,
        lease_until=now + timedelta(seconds=settings.LLM_LEASE_S),
        claim_token=token,
        attempts=F("attempts") + 1,
    )
    return list(
        Instance.objects.filter(claim_token=token, status=Instance.Status.IN_FLIGHT).select_related(
            "task", "task__current_principles", "prompt_version", "sample"
        )
    )


class _Drain:
    """One worker's loop over a job: keeps `concurrency` rows in flight until nothing is left."""

    # Few-shot examples are re-read from the pools at most this often (seconds): fresh enough for the
    # feedback loop, and it keeps the database out of the way of hundreds of requests per second.
    EXAMPLES_TTL = 2.0
    LEASE_POLL_S = 1.0

    def __init__(self, job: GenerationJob, client: llm.LLMClient, on_progress) -> None:
        self.job, self.client, self.on_progress = job, client, on_progress
        self.db = sync_to_async(lambda fn, *a, **kw: fn(*a, **kw), thread_sensitive=True)
        self._examples: dict[tuple, tuple[float, tuple]] = {}
        self._calls: list[LLMCall] = []
        self._flushed = time.monotonic()

    async def examples(self, row: Instance) -> tuple[list[PoolExample], list[PoolExample]]:
        key = (row.task_id, row.language)
        now = time.monotonic()
        cached = self._examples.get(key)
        if cached is None or now - cached[0] > self.EXAMPLES_TTL:
            cached = (now, await self.db(pools.examples_for, row, self.job.few_shot))
            self._examples[key] = cached
        return cached[1]

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self.flush_calls(force=True)

    async def _run(self) -> None:
        running: set[asyncio.Task] = set()
        while True:
            if not await self.db(self._should_stop):
                free = self.job.concurrency - len(running)
                if free > 0:
                    batch = await self.db(claim_rows, self.job, free)
                    running.update(asyncio.create_task(self._process(row)) for row in batch)
            if not running:
                # Nothing to claim now. Rows leased by another worker either finish or, if that worker
                # died, come free when their lease ends: wait for that rather than leave the job stuck.
                if await self.db(self._should_stop) or not await self.db(self._others_in_flight):
                    break
                await asyncio.sleep(self.LEASE_POLL_S)
                continue
            _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            await self.flush_calls()
            if self.on_progress:
                counts = await self.db(job_counts, self.job)
                self.on_progress("generating", counts.finished, self.job.progress_total)

    def _others_in_flight(self) -> bool:
        return self.job.instances.filter(status=Instance.Status.IN_FLIGHT).exists()

    def _should_stop(self) -> bool:
        state = GenerationJob.objects.filter(pk=self.job.pk).values("status", "paused").first()
        return state is None or state["paused"] or state["status"] not in GenerationJob.ACTIVE

    async def _call(self, row: Instance, role: str, model: str, messages: list[dict], schema: dict | None):
        """One LLM call, recorded with its tokens; LLMError after the client's retries are spent."""
        try:
            completion = await self.client.complete(
                messages, model=model, json_schema=schema, max_tokens=settings.LLM_MAX_TOKENS
            )
        except llm.LLMError as exc:
            self._note_call(row, role, model, None, str(exc))
            raise
        self._note_call(row, role, model, completion, "")
        return completion

    def _note_call(self, row: Instance, role: str, model: str, completion, error: str) -> None:
        # Calls are written in batches (see flush_calls): one insert per call would make the database,
        # not the LLM, the limit at a hundred calls a second.
        self._calls.append(
            LLMCall.of(completion, job=self.job, instance=row, role=role, model=model, error=error)
        )

    async def flush_calls(self, *, force: bool = False) -> None:
        if self._calls and (force or len(self._calls) >= 64 or time.monotonic() - self._flushed > 1.0):
            calls, self._calls, self._flushed = self._calls, [], time.monotonic()
            await self.db(_record_calls, self.job, calls)

    async def _process(self, row: Instance) -> None:
        try:
            await self._generate_and_judge(row)
        except llm.LLMError as exc:
            await self.db(_fail, row, Instance.Stage.LLM_ERROR, f"LLM call failed: {exc}")
        except Exception as exc:  # one bad row must not stop the others
            log.exception("instance %s failed", row.pk)
            await self.db(_fail, row, Instance.Stage.LLM_ERROR, f"{type(exc).__name__}: {exc}")

    async def _generate_and_judge(self, row: Instance) -> None:
        # Imported instances (curation/imports.py) were written elsewhere: only the discriminator runs.
        if self.job.kind != GenerationJob.Kind.IMPORT and not await self._generate(row):
            return
        principles = row.task.current_principles
        good_j, bad_j = await self.examples(row)
        judged = await self._call(
            row,
            LLMCall.Role.DISCRIMINATOR,
            self.job.discriminator_model,
            *discrimination.request_for(row, principles, good_j, bad_j),
        )
        try:
            answers, overall, reasons = discrimination.read_judgement(judged.text, principles)
        except ParseError as exc:
            await self.db(
                _fail,
                row,
                Instance.Stage.JUDGE_FAILED,
                f"Discriminator output did not parse: {exc}",
                judge_text=judged.text,
            )
            return
        await self.db(
            _complete, row, principles, self.job.discriminator_model, judged.text, answers, overall, reasons
        )

    async def _generate(self, row: Instance) -> bool:
        """Generate, parse, check and run one row; False when it failed there (and was recorded so).

        A reply that does not parse, fails a static check or fails its own tests goes back to the
        generator with the error, up to the job's `tries` replies (SelfCodeAlign keeps only
        instances whose code passes its tests; a small teacher often fixes a missing import or a
        wrong expected value once it sees the traceback). The last reply's failure is recorded."""
        good, bad = await self.examples(row)
        messages = prompt = build_messages(row, good, bad)
        for attempt in range(1, self.job.tries + 1):
            completion = await self._call(row, LLMCall.Role.GENERATOR, row.generator_model, messages, None)
            row.raw_response = completion.text
            failure = await self._read_reply(row, completion.text)
            if failure is None:
                return True
            stage, name, detail = failure
            if attempt == self.job.tries:
                break
            # Only the last failed reply goes back: the prompt stays short for a small model.
            messages = [
                *prompt,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": _feedback(row, name, detail)},
            ]
        if stage == Instance.Stage.PARSE_FAILED:
            await self.db(_fail, row, stage, f"Generator output did not parse: {detail}")
            return False
        if stage == Instance.Stage.CHECK_FAILED:
            await self._check_failed(row, name, detail)
            return False
        return True  # its own tests failed: judged all the same, with the execution result shown

    async def _read_reply(self, row: Instance, text: str) -> tuple[str | None, str, str] | None:
        """Fill the row from a generator reply, check and run it: None when it is fine, else (the stage a
        final failure records, or None for a failed run; the check's name; what went wrong)."""
        slug = row.task.slug
        fields, required = fields_for(slug, row.language)
        try:
            values = parse_fields(text, fields, required)
        except ParseError as exc:
            return Instance.Stage.PARSE_FAILED, "parse", str(exc)
        for field in fields:
            setattr(row, field, values.get(field, ""))
        if slug in ("summarization", "translation"):
            row.input = row.sample.code
        row.checks, row.failed_check = [], ""
        row.execution_status = row.execution_detail = ""
        if plants_bug(slug, row.language):
            unplanted = _plant_or_why(row)
            if unplanted:
                return Instance.Stage.CHECK_FAILED, *unplanted
        results = checks.run_static_checks(
            task=slug,
            instruction=row.instruction,
            input=row.input,
            output=row.output,
            language=row.language,
            target_language=row.target_language,
            tests=row.tests,
        )
        row.checks = checks.as_json(results)
        failure = checks.first_failure(results)
        if failure:
            return Instance.Stage.CHECK_FAILED, failure.name, failure.detail
        if self.job.execute:
            row.execution_status, row.execution_detail = await asyncio.to_thread(execute_instance, row)
            if row.execution_status in ("failed", "timeout"):
                return None, "execution", row.execution_detail
        return None

    async def _check_failed(self, row: Instance, name: str, detail: str) -> None:
        row.failed_check = name
        await self.db(_fail, row, Instance.Stage.CHECK_FAILED, f"Static check {name}: {detail}")


def _plant_or_why(row: Instance) -> tuple[str, str] | None:
    """Plant a repair row's bug in its output (the same bug on every re-run of the row): the buggy code
    becomes the input and the bug's description the explanation. Else the failed check's (name, detail)."""
    error = checks.python_parses(row.output)
    if error:
        return "output_parses", f"output is not valid Python: {error}"
    planted = mutation.plant_bug(row.output, _row_seed(row.sample_id, row.sample_index))
    if planted is None:
        return "bug_planted", (
            "the output is not one function with an operator, comparison or small constant in its body "
            "to plant a bug in"
        )
    row.input, row.explanation = planted.buggy, planted.explanation()
    return None


def _feedback(row: Instance, name: str, detail: str) -> str:
    """What the generator is told when its reply failed: the error, then the format again."""
    _, required = fields_for(row.task.slug, row.language)
    if name == "parse":
        what = f"Your reply could not be read: {detail}"
    elif name == "execution":
        what = (
            "Running your code with your tests failed:\n"
            f"{detail[-1200:].strip()}\n"
            "Fix the code, or the tests where they expect a wrong value, and add any missing import"
        )
    else:
        what = f"Your reply failed the check {name}: {detail}"
    return (
        f"{what}.\n\nWrite the whole reply again, with the sections "
        + ", ".join(f"### {f}" for f in required)
        + "."
        + _reminder(row.task.slug, row.language)
    )


def execute_instance(row: Instance) -> tuple[str, str]:
    """Run a Python instance's code (with its asserts, if any) in the sandbox: (status, detail). For a
    repair with tests, the detail also says whether the tests catch the bug (fail on the input)."""
    slug = row.task.slug
    language = row.target_language if slug == "translation" else row.language
    if slug == "summarization" or language != "python":
        return "skipped", "only Python code outputs are executed"
    code = row.output + ("\n\n" + row.tests if row.tests else "")
    result = sandbox.run_python(code)
    if result.not_run:
        return "not run", result.reason
    if result.ok:
        detail = (result.stdout or "")[-2000:]
        if slug == "repair" and row.tests and row.input.strip():
            on_bug = sandbox.run_python(row.input + "\n\n" + row.tests)
            if not on_bug.not_run:
                detail = (
                    "the tests fail on the buggy input, as they should"
                    if not on_bug.ok
                    else "the tests pass on the buggy input too: they do not catch the bug"
                ) + ("\n" + detail if detail else "")
        return "passed", detail
    status = "timeout" if result.timed_out else "failed"
    return status, (result.reason + "\n" + (result.stderr or ""))[-2000:]


def _record_calls(job: GenerationJob, calls: list[LLMCall]) -> None:
    LLMCall.objects.bulk_create(calls)
    GenerationJob.objects.filter(pk=job.pk).update(
        prompt_tokens=F("prompt_tokens") + sum(c.prompt_tokens for c in calls),
        completion_tokens=F("completion_tokens") + sum(c.completion_tokens for c in calls),
    )


_RESULT_FIELDS = [
    "language",
    "target_language",
    "instruction",
    "input",
    "output",
    "explanation",
    "tests",
    "raw_response",
    "checks",
    "failed_check",
    "execution_status",
    "execution_detail",
    "verdict",
    "passed",
]


def _fail(row: Instance, stage: str, failure: str, judge_text: str = "") -> None:
    row.status, row.stage, row.failure, row.finished_at = (
        Instance.Status.FAILED,
        stage,
        failure,
        timezone.now(),
    )
    if judge_text:
        row.failure += f"\nDiscriminator reply: {judge_text[:2000]}"
    _save_result(row)


class _LeaseLost(Exception):
    """Another worker took the row over; undo what this one wrote."""


def _complete(row: Instance, principles, model: str, text: str, answers, overall, reasons: str) -> None:
    row.status, row.stage, row.finished_at = Instance.Status.DONE, Instance.Stage.JUDGED, timezone.now()
    try:
        with transaction.atomic():
            discrimination.save_verdict(
                row,
                principles,
                model=model,
                text=text,
                answers=answers,
                overall=overall,
                reasons=reasons,
                write_instance=False,
            )
            if not _save_result(row):
                raise _LeaseLost
    except _LeaseLost:
        pass


def _save_result(row: Instance) -> bool:
    """Write a finished row. Only the worker holding the lease writes: if another worker reclaimed the row
    (this one was too slow), nothing is written and False is returned."""
    return bool(
        Instance.objects.filter(
            pk=row.pk, claim_token=row.claim_token, status=Instance.Status.IN_FLIGHT
        ).update(
            status=row.status,
            stage=row.stage,
            failure=row.failure,
            finished_at=row.finished_at,
            lease_until=None,
            **{field: getattr(row, field) for field in _RESULT_FIELDS},
        )
    )
