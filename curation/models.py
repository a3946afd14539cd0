"""Data of the curation pipeline: raw code, ingest runs, embeddings and coreset selections."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


class Job(models.Model):
    """A long piece of work done by a Celery task; its row carries status and progress for polling."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=64, blank=True, help_text="What the job is doing now.")
    progress_done = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker process that claimed it: when that process is gone from its machine, the job is orphaned.
    worker_host = models.CharField(max_length=255, blank=True)
    worker_pid = models.PositiveIntegerField(null=True, blank=True)

    # Whether a starting worker takes the job up again by itself (generation jobs, training runs,
    # evaluations); the others are failed with a message when their worker is known to be dead.
    RECOVERS_ITSELF = False

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        if self.progress_total <= 0:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    def claim(self, *, only_from_dead_holder: bool = False) -> bool:
        """Mark the job running, by this process; False when it already finished (a redelivered task then
        does nothing). `only_from_dead_holder`: a running job is taken over only when the process that
        claimed it is gone from this machine (compare-and-set on that holder), so a message redelivered
        while a live worker still runs the job does nothing either."""
        claimable = models.Q(status__in=self.ACTIVE)
        if only_from_dead_holder:
            claimable = models.Q(status=self.Status.QUEUED)
            if self.holder_gone:
                holder = {"worker_host": self.worker_host, "worker_pid": self.worker_pid}
                claimable |= models.Q(status=self.Status.RUNNING, **holder)
        claimed = (
            type(self)
            .objects.filter(claimable, pk=self.pk)
            .update(
                status=self.Status.RUNNING,
                started_at=timezone.now(),
                error="",
                worker_host=socket.gethostname(),
                worker_pid=os.getpid(),
            )
        )
        self.refresh_from_db()
        return bool(claimed)

    @property
    def holder_gone(self) -> bool:
        """Running, claimed by a process of this machine that no longer exists: its worker died."""
        return bool(
            self.status == self.Status.RUNNING
            and self.worker_pid
            and self.worker_host == socket.gethostname()
            and not process_alive(self.worker_pid)
        )

    def set_phase(self, phase: str, total: int = 0) -> None:
        self.phase, self.progress_total, self.progress_done = phase, total, 0
        type(self).objects.filter(pk=self.pk).update(phase=phase, progress_total=total, progress_done=0)

    def finish(self, status: str = Status.SUCCEEDED, error: str = "") -> None:
        self.status, self.error, self.finished_at = status, error, timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists here (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


ORPHANED_JOB_ERROR = (
    "its worker stopped while it ran (killed or restarted); what it saved is kept: start it again"
)


def fail_orphaned_jobs() -> list[str]:
    """Fail, with a message, every running job whose worker process on this machine is gone, among the job
    kinds that do not recover by themselves (a starting worker calls this). Returns "Model #pk" labels."""
    from django.apps import apps

    ended = []
    here = socket.gethostname()
    for model in apps.get_models():
        if not issubclass(model, Job) or model.RECOVERS_ITSELF:
            continue
        for job in model.objects.filter(status=Job.Status.RUNNING, worker_host=here):
            if not job.holder_gone:
                continue
            if model.objects.filter(pk=job.pk, status=Job.Status.RUNNING, worker_pid=job.worker_pid).update(
                status=Job.Status.FAILED, error=ORPHANED_JOB_ERROR, finished_at=timezone.now()
            ):
                ended.append(f"{model.__name__} #{job.pk}")
    return ended


class ProgressReporter:
    """Writes a job's progress to its row, at most every `interval` seconds, and calls an optional hook.

    The hook lets a management command draw a progress bar from the same numbers the dashboard polls.
    """

    def __init__(self, job: Job, on_progress=None, interval: float = 0.5) -> None:
        self.job, self.on_progress, self.interval = job, on_progress, interval
        self._last = 0.0

    def start(self, phase: str, total: int) -> None:
        self.job.set_phase(phase, total)
        self._last = 0.0
        self.update(0, force=True)

    def update(self, done: int, *, force: bool = False) -> None:
        self.job.progress_done = done
        now = time.monotonic()
        if force or now - self._last >= self.interval or done >= self.job.progress_total:
            type(self.job).objects.filter(pk=self.job.pk).update(progress_done=done)
            self._last = now
        if self.on_progress:
            self.on_progress(self.job.phase, done, self.job.progress_total)

    def advance(self, n: int = 1) -> None:
        self.update(self.job.progress_done + n)


class CodeSource(models.Model):
    """Where raw code came from: a folder, a git checkout, an archive, or a CodeSearchNet-style file."""

    class Kind(models.TextChoices):
        DIRECTORY = "directory", "Local directory"
        GIT = "git", "Git checkout"
        ARCHIVE = "archive", "Archive (.zip / .tar.gz)"
        JSONL = "jsonl", "JSONL (CodeSearchNet shape)"
        PARQUET = "parquet", "Parquet (CodeSearchNet shape)"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    location = models.CharField(max_length=1000, help_text="Path, URL or uploaded file name.")
    repo = models.CharField(max_length=500, blank=True)
    license = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "location"], name="unique_source_location")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IngestRun(Job):
    """One pass over a source: extraction, filters, exact and near dedup, with a report of what happened."""

    source = models.ForeignKey(CodeSource, on_delete=models.CASCADE, related_name="ingest_runs")
    upload_path = models.CharField(max_length=1000, blank=True, help_text="Stored upload, if any.")
    options = models.JSONField(default=dict, blank=True)
    # {"files_seen", "candidates", "kept", "dropped": {reason: n}, "errors": [{"path", "error"}], "languages"}
    report = models.JSONField(default=dict, blank=True)
    kept_count = models.PositiveIntegerField(default=0)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Ingest #{self.pk} of {self.source}"

    @property
    def dropped_total(self) -> int:
        return sum((self.report.get("dropped") or {}).values())


class CodeSample(models.Model):
    """One unit of raw code (a function or method, or a whole file) with its provenance."""

    source = models.ForeignKey(CodeSource, on_delete=models.CASCADE, related_name="samples")
    ingest_run = models.ForeignKey(IngestRun, on_delete=models.SET_NULL, null=True, related_name="samples")
    language = models.CharField(max_length=40, db_index=True)
    code = models.TextField()
    docstring = models.TextField(blank=True)
    func_name = models.CharField(max_length=300, blank=True)
    repo = models.CharField(max_length=500, blank=True)
    path = models.CharField(max_length=1000, blank=True)
    start_line = models.PositiveIntegerField(null=True, blank=True)
    end_line = models.PositiveIntegerField(null=True, blank=True)
    license = models.CharField(max_length=100, blank=True)
    n_chars = models.PositiveIntegerField()
    # sha256 of the normalized code: the exact-dedup key across the whole corpus.
    content_hash = models.CharField(max_length=64, unique=True)
    # MinHash signature (uint32 × permutations), kept so later ingests near-dedup against this sample.
    minhash = models.BinaryField(editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["source", "language"])]

    def __str__(self) -> str:
        name = self.func_name or self.path or f"sample {self.pk}"
        return f"{name} ({self.language})"

    @property
    def location(self) -> str:
        lines = f":{self.start_line}-{self.end_line}" if self.start_line else ""
        return f"{self.repo + '/' if self.repo else ''}{self.path}{lines}"


class EmbeddingSet(models.Model):
    """Embeddings of a set of samples by one model, stored as two .npy files (vectors and sample ids)."""

    model_name = models.CharField(max_length=300, db_index=True)
    dim = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    dtype = models.CharField(max_length=16, default="float32")
    vectors_file = models.CharField(max_length=1000)
    ids_file = models.CharField(max_length=1000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model_name} × {self.count}"


class SelectionRun(Job):
    """A KCenterGreedy coreset of the corpus: k samples in pick order, with its coverage radius."""

    k = models.PositiveIntegerField()
    seed = models.IntegerField(default=0)
    model_name = models.CharField(max_length=300)
    languages = models.JSONField(default=list, blank=True, help_text="Only these languages; empty = all.")
    embedding_set = models.ForeignKey(EmbeddingSet, null=True, blank=True, on_delete=models.SET_NULL)
    pool_size = models.PositiveIntegerField(default=0)
    # Largest distance from any sample to its nearest chosen one; and the same for k random samples.
    coverage_radius = models.FloatField(null=True, blank=True)
    random_radius = models.FloatField(null=True, blank=True)
    picks = models.ManyToManyField(CodeSample, through="SelectionPick", related_name="selections")

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Selection #{self.pk} (k={self.k}, seed={self.seed})"

    @property
    def radius_ratio(self) -> float | None:
        if self.coverage_radius is None or not self.random_radius:
            return None
        return self.coverage_radius / self.random_radius


class SelectionPick(models.Model):
    run = models.ForeignKey(SelectionRun, on_delete=models.CASCADE, related_name="pick_rows")
    sample = models.ForeignKey(CodeSample, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField(help_text="0 = first center.")
    # Distance to the nearest earlier center when it was picked (the greedy's objective at that step).
    distance = models.FloatField(null=True)

    class Meta:
        ordering = ["run", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["run", "rank"], name="unique_pick_rank"),
            models.UniqueConstraint(fields=["run", "sample"], name="unique_pick_sample"),
        ]

    def __str__(self) -> str:
        return f"#{self.rank} of selection {self.run_id}"


# --- Stage 2: Generator and Discriminator ---------------------------------------------------------


class CodeTask(models.Model):
    """One of WaveCoder's four tasks; its prompt and its principles are versioned separately."""

    class Slug(models.TextChoices):
        SUMMARIZATION = "summarization", "Code summarization"
        GENERATION = "generation", "Code generation"
        TRANSLATION = "translation", "Code translation"
        REPAIR = "repair", "Code repair"

    slug = models.CharField(max_length=32, choices=Slug.choices, unique=True)
    name = models.CharField(max_length=100)
    current_prompt = models.ForeignKey(
        "TaskPromptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    current_principles = models.ForeignKey(
        "PrincipleVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class TaskVersion(models.Model):
    """What every frozen version of a task's text has: its number, who made it, when and why."""

    version = models.PositiveIntegerField()
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True
        ordering = ["task", "-version"]


class TaskPromptVersion(TaskVersion):
    """The generator's side of a task: its definition and generation requirements, frozen per version."""

    task = models.ForeignKey(CodeTask, on_delete=models.CASCADE, related_name="prompt_versions")
    definition = models.TextField()
    requirements = models.TextField(help_text="One requirement per line.")

    class Meta(TaskVersion.Meta):
        constraints = [models.UniqueConstraint(fields=["task", "version"], name="unique_prompt_version")]

    def __str__(self) -> str:
        return f"{self.task.slug} prompt v{self.version}"

    @property
    def requirement_list(self) -> list[str]:
        return [line.strip() for line in self.requirements.splitlines() if line.strip()]


class PrincipleVersion(TaskVersion):
    """The discriminator's checklist for a task: rules, each a yes/no question, frozen per version."""

    task = models.ForeignKey(CodeTask, on_delete=models.CASCADE, related_name="principle_versions")
    # [{"id": "addresses_instruction", "question": "Does the output ...?"}, ...]
    rules = models.JSONField()

    class Meta(TaskVersion.Meta):
        constraints = [models.UniqueConstraint(fields=["task", "version"], name="unique_principle_version")]

    def __str__(self) -> str:
        return f"{self.task.slug} principles v{self.version}"


class GenerationJob(Job):
    """A selection run × tasks × samples per task, generated and judged by LLMs on the `llm` queue.

    An *import* job holds instruction data written elsewhere (curation/imports.py): it has no selection
    run, and its instances skip the generator and go straight to the discriminator (or to review).
    """

    RECOVERS_ITSELF = True  # a starting worker takes it up again (see Job.RECOVERS_ITSELF)

    class Kind(models.TextChoices):
        GENERATE = "generate", "Generated from raw code"
        IMPORT = "import", "Imported instruction data"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.GENERATE)
    selection_run = models.ForeignKey(
        SelectionRun, null=True, blank=True, on_delete=models.PROTECT, related_name="generation_jobs"
    )
    # Import: {"file", "format", "lines", "imported", "skipped", "errors": [...], "tasks": {...}, ...}.
    report = models.JSONField(default=dict, blank=True)
    tasks = models.JSONField(help_text="Task slugs.")
    samples_per_task = models.PositiveIntegerField(help_text="Raw samples from the selection per task.")
    instances_per_sample = models.PositiveSmallIntegerField(default=1)
    generator_model = models.CharField(max_length=200)
    discriminator_model = models.CharField(max_length=200)
    concurrency = models.PositiveSmallIntegerField(default=8)
    execute = models.BooleanField(default=True, help_text="Run Python outputs and asserts in the sandbox.")
    few_shot = models.PositiveSmallIntegerField(default=2, help_text="Good and bad pool examples per prompt.")
    tries = models.PositiveSmallIntegerField(
        default=1,
        help_text="Generator replies per instance: a reply that does not parse, fails a static check or "
        "fails its own tests is shown to the generator with the error, and it writes another.",
    )
    # Workers stop claiming new instances while paused; in-flight ones finish.
    paused = models.BooleanField(default=False)
    # Totals kept up to date by the workers, so the dashboard polls one row.
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    # Review: how many reviewers decide each instance (Argilla's min_submitted); agreement needs 2+.
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Reviewers per instance.")

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Generation job #{self.pk}"


class Instance(models.Model):
    """One instruction instance. Its row exists from the moment the job plans it (status `pending`), so a
    (sample, task, prompt version, model, sample index) can never yield two instances."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_FLIGHT = "in_flight", "In flight"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Stage(models.TextChoices):
        """How far a finished instance got; failures say where they stopped."""

        NONE = "", "–"
        LLM_ERROR = "llm_error", "LLM call failed"
        PARSE_FAILED = "parse_failed", "Generator output did not parse"
        CHECK_FAILED = "check_failed", "Failed a static check"
        JUDGED = "judged", "Judged by the discriminator"
        JUDGE_FAILED = "judge_failed", "Discriminator output did not parse"

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="instances")
    # None for an imported instance, which was not generated from raw code; `source` says where it came from.
    sample = models.ForeignKey(
        CodeSample, null=True, blank=True, on_delete=models.PROTECT, related_name="instances"
    )
    source = models.CharField(max_length=500, blank=True, help_text="Imported: file and line it came from.")
    task = models.ForeignKey(CodeTask, on_delete=models.PROTECT, related_name="instances")
    prompt_version = models.ForeignKey(TaskPromptVersion, on_delete=models.PROTECT, related_name="instances")
    generator_model = models.CharField(max_length=200)
    sample_index = models.PositiveSmallIntegerField(default=0)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.NONE, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    failure = models.TextField(blank=True, help_text="Why it failed, for people.")

    language = models.CharField(max_length=40, blank=True)
    target_language = models.CharField(max_length=40, blank=True, help_text="Translation only.")
    instruction = models.TextField(blank=True)
    input = models.TextField(blank=True)
    output = models.TextField(blank=True)
    explanation = models.TextField(blank=True, help_text="Repair: what the bug was and how it is fixed.")
    tests = models.TextField(blank=True, help_text="Asserts written by the generator (generation, repair).")
    raw_response = models.TextField(blank=True)

    checks = models.JSONField(default=list, blank=True)  # [{"name", "passed", "detail"}]
    failed_check = models.CharField(max_length=64, blank=True)
    # passed / failed / error / timeout / skipped; "" = not run.
    execution_status = models.CharField(max_length=16, blank=True)
    execution_detail = models.TextField(blank=True)

    verdict = models.ForeignKey("Verdict", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    passed = models.BooleanField(null=True, help_text="The current verdict's overall answer (denormalized).")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    # --- Review (curation/review.py). The generated text above is revision 0 and never changes.
    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed", "Unreviewed"
        IN_REVIEW = "in_review", "In review"  # some reviewers decided, fewer than the job's overlap
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        CONFLICT = "conflict", "Conflict"  # reviewers disagree; a curator resolves it
        RESOLVED = "resolved", "Resolved"  # a curator decided

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accept"
        REJECT = "reject", "Reject"

    # Optimistic lock: bumped whenever the instance's text changes (a revision is added or undone).
    version = models.PositiveIntegerField(default=0)
    # Indexed by the composite `instance_queue` index below, which leads with it.
    review_status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    # The final human decision (agreed reviewers or a curator); None until there is one.
    human_decision = models.CharField(max_length=8, choices=Decision.choices, null=True, blank=True)
    current_revision = models.ForeignKey(
        "InstanceRevision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sample", "task", "prompt_version", "generator_model", "sample_index"],
                name="unique_instance_per_generation_key",
            )
        ]
        indexes = [
            models.Index(fields=["job", "status"]),
            # The review queue: `review_status = x ORDER BY id LIMIT 1`, alone or with one filter.
            models.Index(fields=["review_status", "id"], name="instance_queue"),
            models.Index(fields=["task", "review_status", "id"], name="instance_queue_task"),
            models.Index(fields=["language", "review_status", "id"], name="instance_queue_language"),
            models.Index(fields=["job", "review_status", "id"], name="instance_queue_job"),
            models.Index(fields=["passed", "review_status", "id"], name="instance_queue_passed"),
            # Facet counts read only these columns: an index-only scan instead of the wide table.
            models.Index(
                fields=["status", "review_status", "task", "language", "passed", "human_decision"],
                name="instance_review_facets",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task.slug} instance #{self.pk}"


class Verdict(models.Model):
    """The discriminator's judgement of one instance against one principle version."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="verdicts")
    principle_version = models.ForeignKey(PrincipleVersion, on_delete=models.PROTECT, related_name="verdicts")
    model = models.CharField(max_length=200)
    passed = models.BooleanField()
    reasons = models.TextField(blank=True)
    raw_response = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{'pass' if self.passed else 'fail'} for instance {self.instance_id}"


class RuleVerdict(models.Model):
    """The discriminator's answer to one rule of the checklist."""

    verdict = models.ForeignKey(Verdict, on_delete=models.CASCADE, related_name="rules")
    rule_id = models.CharField(max_length=64)
    question = models.TextField()
    passed = models.BooleanField()
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["verdict", "rule_id"], name="unique_rule_per_verdict")]

    def __str__(self) -> str:
        return f"{self.rule_id}: {'yes' if self.passed else 'no'}"


class LLMCall(models.Model):
    """One request to an LLM, for token accounting and cost."""

    class Role(models.TextChoices):
        GENERATOR = "generator", "Generator"
        DISCRIMINATOR = "discriminator", "Discriminator"

    job = models.ForeignKey(GenerationJob, null=True, on_delete=models.CASCADE, related_name="calls")
    instance = models.ForeignKey(Instance, null=True, on_delete=models.CASCADE, related_name="calls")
    role = models.CharField(max_length=16, choices=Role.choices)
    model = models.CharField(max_length=200)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_s = models.FloatField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.role} call {self.pk}"

    @classmethod
    def of(cls, completion, **fields) -> LLMCall:
        """An unsaved row for one call: tokens, latency and attempts from its `llm.Completion` (None when
        the call failed: zeros, and `error` says why)."""
        return cls(
            prompt_tokens=completion.prompt_tokens if completion else 0,
            completion_tokens=completion.completion_tokens if completion else 0,
            latency_s=completion.latency_s if completion else 0,
            attempts=completion.attempts if completion else 0,
            **fields,
        )


class PoolExample(models.Model):
    """A few-shot example in a task's pool: good (to imitate) or bad (to avoid, with its reasons)."""

    class Kind(models.TextChoices):
        GOOD = "good", "Good"
        BAD = "bad", "Bad"

    class Origin(models.TextChoices):
        SEED = "seed", "Hand-written seed"
        DISCRIMINATOR = "discriminator", "Discriminator"
        HUMAN = "human", "Reviewer"

    task = models.ForeignKey(CodeTask, on_delete=models.CASCADE, related_name="pool")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    origin = models.CharField(max_length=16, choices=Origin.choices)
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    language = models.CharField(max_length=40, blank=True)
    instruction = models.TextField()
    input = models.TextField(blank=True)
    output = models.TextField()
    target_language = models.CharField(max_length=40, blank=True)
    explanation = models.TextField(blank=True)
    tests = models.TextField(blank=True)
    reasons = models.TextField(blank=True, help_text="Why it is bad (or good).")
    # The raw code the example was written from: the generator sees it as the earlier request.
    source_code = models.TextField(blank=True)
    pinned = models.BooleanField(default=False)
    # A curator took it out of the pool. Kept (not deleted) so a later review of the same instance
    # cannot bring it back, and so it can be restored.
    removed = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-pinned", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "origin"], name="unique_pool_entry_per_origin")
        ]
        indexes = [models.Index(fields=["task", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.task.slug} example #{self.pk}"


# --- Stage 3: Review -------------------------------------------------------------------------------


class InstanceRevision(models.Model):
    """A reviewer's edit of an instance. Revision 0 is the generated text, kept on the Instance itself."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    instruction = models.TextField()
    input = models.TextField(blank=True)
    output = models.TextField()
    explanation = models.TextField(blank=True)
    tests = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    EDITABLE = ("instruction", "input", "output", "explanation", "tests")

    class Meta:
        ordering = ["instance", "number"]
        constraints = [models.UniqueConstraint(fields=["instance", "number"], name="unique_revision_number")]

    def __str__(self) -> str:
        return f"instance {self.instance_id} revision {self.number}"


class Review(models.Model):
    """One reviewer's decision on one instance, or (is_resolution) a curator's final word on it."""

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accept"
        REJECT = "reject", "Reject"
        SKIP = "skip", "Skip"

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason = models.TextField(blank=True)
    broken_rules = models.JSONField(
        default=list, blank=True, help_text="Rule ids of the verdict's principles."
    )
    # The revision this decision made (edit, then accept); None for a decision on the text as it was.
    revision = models.ForeignKey(
        InstanceRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    is_resolution = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "reviewer"],
                condition=models.Q(is_resolution=False),
                name="one_review_per_reviewer",
            )
        ]
        indexes = [models.Index(fields=["reviewer", "id"], name="review_history")]

    def __str__(self) -> str:
        return f"{self.decision} of instance {self.instance_id} by {self.reviewer_id}"


class Assignment(models.Model):
    """An instance held by a reviewer until `lease_until`; an expired lease frees the instance."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="assignments")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    lease_until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "reviewer"], name="unique_assignment")]
        indexes = [models.Index(fields=["reviewer", "lease_until"], name="assignment_by_reviewer")]

    def __str__(self) -> str:
        return f"instance {self.instance_id} held by {self.reviewer_id}"


# --- Stage 4: Principle refinement (curation/refinement.py) ------------------------------------------


class RefinementRun(Job):
    """A curator's attempt to improve a task's principles from the reviewers' disagreements.

    Stages: the LLM proposes a revised rule set (`proposing` → `proposed`), the curator may edit it,
    the discriminator judges a held-out part of the human-reviewed instances with the current and the
    proposed rules (`checking` → `checked`), and the curator adopts or discards the proposal. The Job
    fields track whichever Celery task is running (proposal or check)."""

    class Stage(models.TextChoices):
        PROPOSING = "proposing", "Asking the LLM for a proposal"
        PROPOSED = "proposed", "Proposal ready for review"
        CHECKING = "checking", "Checking on held-out instances"
        CHECKED = "checked", "Checked: ready to adopt"
        ADOPTED = "adopted", "Adopted"
        DISCARDED = "discarded", "Discarded"
        FAILED = "failed", "Failed"

    task = models.ForeignKey(CodeTask, on_delete=models.CASCADE, related_name="refinement_runs")
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.PROPOSING)
    base_version = models.ForeignKey(PrincipleVersion, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)
    heldout_fraction = models.FloatField(default=0.3)
    max_cases = models.PositiveIntegerField(default=40)
    max_heldout = models.PositiveIntegerField(default=60)
    seed = models.PositiveIntegerField(default=0)
    # Which reviewed instances informed the proposal and which were held out to check it.
    case_ids = models.JSONField(default=list, blank=True)
    heldout_ids = models.JSONField(default=list, blank=True)
    # [{"id", "question"}], as proposed then edited by the curator; and what changed, with rationales:
    # [{"op": "added" | "reworded" | "removed" | "kept", "id", "question", "old_question", "rationale"}]
    proposed_rules = models.JSONField(default=list, blank=True)
    changes = models.JSONField(default=list, blank=True)
    summary = models.TextField(blank=True, help_text="The LLM's overall rationale.")
    raw_response = models.TextField(blank=True)
    edited = models.BooleanField(default=False)
    # The frozen version the check judged with (created, not adopted, when the check starts).
    proposed_version = models.ForeignKey(
        PrincipleVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # {"current": {metrics}, "proposed": {metrics}, "cases": [{"instance", "human", "current",
    #  "proposed", "current_failed", "proposed_failed"}]}
    check_results = models.JSONField(default=dict, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"refinement #{self.pk} of {self.task.slug}"


class RejudgeJob(Job):
    """Re-run the discriminator, with each task's current principles, on instances nobody reviewed yet."""

    tasks = models.JSONField(default=list, help_text="Task slugs; empty means every task.")
    model = models.CharField(max_length=200)
    only_outdated = models.BooleanField(
        default=True, help_text="Skip instances already judged with their task's current principles."
    )
    concurrency = models.PositiveIntegerField(default=8)
    changed = models.PositiveIntegerField(default=0, help_text="Instances whose pass/fail flipped.")
    failed = models.PositiveIntegerField(default=0, help_text="Instances the LLM could not judge.")

    def __str__(self) -> str:
        return f"re-judging job #{self.pk}"
