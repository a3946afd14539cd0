"""Data of the curation pipeline: raw code, ingest runs, embeddings and coreset selections."""

from __future__ import annotations

import time

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

    def claim(self) -> bool:
        """Mark the job running; False when it already finished (a redelivered task then does nothing)."""
        claimed = (
            type(self)
            .objects.filter(pk=self.pk, status__in=self.ACTIVE)
            .update(status=self.Status.RUNNING, started_at=timezone.now(), error="")
        )
        self.refresh_from_db()
        return bool(claimed)

    def set_phase(self, phase: str, total: int = 0) -> None:
        self.phase, self.progress_total, self.progress_done = phase, total, 0
        type(self).objects.filter(pk=self.pk).update(phase=phase, progress_total=total, progress_done=0)

    def finish(self, status: str = Status.SUCCEEDED, error: str = "") -> None:
        self.status, self.error, self.finished_at = status, error, timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])


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
