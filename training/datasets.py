"""Dataset versions: the accepted instances as a numbered, immutable training set.

A version is created with its filters (task, language, job, reviewer, date of acceptance), an optional task
mix (WaveCoder's CodeOcean: generation 57%, summarization 16%, repair 16%, translation 11%) and its
decontamination settings, then built once by `build_version` (the Celery task, the `export_dataset`
command and the admin all call it):

1. **collect** the accepted instances in their reviewed form (the latest revision, else the generated text);
2. **decontaminate** against the version's benchmarks with `training.decontamination.Decontaminator`
   (n-gram overlap, exact substrings, and, unless turned off, embedding nearest neighbours): every match
   is recorded as a `DatasetExclusion`, and the instances it flags are left out;
3. **deduplicate** with MinHash-LSH (datasketch) over 5-gram token shingles of the whole instance: of a
   group of near duplicates the earliest instance stays;
4. **mix**: the largest set that meets the task mix (and the size limit), drawn with the version's seed;
5. **save** the rows (`DatasetItem`, frozen text) and **export** every format with the dataset card
   (`training.exports`).
"""

from __future__ import annotations

import logging
import math
import random
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np
from datasketch import MinHash, MinHashLSH
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.db.models.functions import Coalesce

from curation.models import CodeTask, GenerationJob, Instance, ProgressReporter, Review
from training.benchmarks import BenchmarkFileError, load_benchmark_jsonl
from training.decontamination import (
    DEFAULT_NGRAM,
    DEFAULT_SUBSTRING_MIN_CHARS,
    Decontaminator,
    InstanceText,
    Match,
)
from training.models import Benchmark, DatasetExclusion, DatasetItem, DatasetVersion
from wavecoder_site.files import open_private, private_dir

if TYPE_CHECKING:
    from curation.embeddings import Embedder

log = logging.getLogger(__name__)

# WaveCoder's CodeOcean (Yu et al. 2024, table 1): 11,370 / 3,165 / 3,144 / 2,236 of 19,915, rounded.
CODEOCEAN_MIX = {"generation": 0.57, "summarization": 0.16, "repair": 0.16, "translation": 0.11}
MIX_PRESETS = {"codeocean": CODEOCEAN_MIX}
NUM_PERM = 256
SHINGLE_SIZE = 5
_MINHASH_SEED = 1
_TOKEN = re.compile(r"\w+|[^\w\s]")
_CHUNK = 2000  # instances per decontamination, MinHash and insert batch


class DatasetError(ValueError):
    """A version that cannot be made or built as asked; the message is for people."""


class InstanceFilter(NamedTuple):
    """Which accepted instances a version takes; an empty field does not narrow. Reviewer and dates narrow
    together: an accept decision by one of those reviewers within the period (`accepted_until` exclusive)."""

    tasks: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    job_ids: tuple[int, ...] = ()
    reviewer_ids: tuple[int, ...] = ()
    accepted_from: datetime | None = None
    accepted_until: datetime | None = None

    @classmethod
    def of(cls, version: DatasetVersion) -> InstanceFilter:
        """The filter a version was made with."""
        values = (getattr(version, name) for name in cls._fields)
        return cls(*(tuple(v) if isinstance(v, list) else v for v in values))


EVERY_ACCEPTED = InstanceFilter()


class Candidate(NamedTuple):
    """An accepted instance as the version will hold it, with what the dataset card reports about it."""

    instance_id: int
    task: str
    language: str
    instruction: str
    input: str
    output: str
    job_id: int
    generator_model: str
    discriminator_model: str
    principles: str  # "generation v2", or "" when it was never judged


# --- Creating a version ---------------------------------------------------------------------------------


def parse_mix(value: str | Mapping[str, float] | None) -> dict[str, float]:
    """A task mix from a preset name ("codeocean"), "generation=57,summarization=16,…" (percentages or
    fractions) or a mapping; returned as shares summing to 1. Empty: no mix. DatasetError when invalid."""
    if not value:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in MIX_PRESETS:
            return dict(MIX_PRESETS[text.lower()])
        pairs: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            slug, sep, share = part.partition("=")
            try:
                pairs[slug.strip()] = float(share.rstrip("%"))
            except ValueError:
                sep = ""
            if not sep:
                raise DatasetError(
                    f"Write the task mix as task=share pairs, e.g. generation=57; got {part!r}."
                )
        value = pairs
    if not isinstance(value, Mapping):
        raise DatasetError(
            "Give the task mix as a preset name (codeocean), task=share pairs or an object of shares; "
            f"got {type(value).__name__}."
        )
    known = set(CodeTask.Slug.values)
    unknown = sorted(map(str, set(value) - known))
    if unknown:
        raise DatasetError(
            f"Unknown task in the mix: {', '.join(unknown)} (tasks: {', '.join(sorted(known))})."
        )
    try:  # a share of "57", [57], true or 1e400 is no share
        if any(isinstance(share, bool | str) for share in value.values()):
            raise TypeError
        shares = {slug: float(share) for slug, share in value.items()}
    except (TypeError, ValueError, OverflowError):
        raise DatasetError("Task mix shares must be numbers.")
    if any(not math.isfinite(s) or s < 0 for s in shares.values()) or sum(shares.values()) <= 0:
        raise DatasetError("Task mix shares must be non-negative numbers, and not all zero.")
    total = sum(shares.values())
    return {slug: share / total for slug, share in shares.items() if share > 0}


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise DatasetError(f"{name} must be in {bound}, got {value}.")
    return value


def create_version(
    *,
    user=None,
    name: str = "",
    note: str = "",
    filters: InstanceFilter = EVERY_ACCEPTED,
    task_mix: str | Mapping[str, float] | None = None,
    max_size: int | None = None,
    seed: int = 0,
    benchmarks: Iterable[Benchmark] | None = None,
    ngram_threshold: float | None = None,
    use_embeddings: bool = True,
    embedding_model: str = "",
    embedding_threshold: float | None = None,
    near_dup_threshold: float | None = None,
) -> DatasetVersion:
    """Validate the settings and create the next numbered version (queued, not built yet).

    `benchmarks` defaults to HumanEval alone; pass an empty list to skip decontamination. DatasetError
    (a ValueError) with a message for people on bad settings.
    """
    fields = DatasetVersion._meta
    tasks = list(dict.fromkeys(filters.tasks))
    if not set(tasks) <= set(CodeTask.Slug.values):
        raise DatasetError(f"Tasks must be some of {', '.join(CodeTask.Slug.values)}; got {tasks!r}.")
    mix = parse_mix(task_mix)
    if tasks and set(mix) - set(tasks):
        missing = ", ".join(sorted(set(mix) - set(tasks)))
        raise DatasetError(f"The task mix asks for {missing}, which the task filter leaves out.")
    if filters.accepted_from and filters.accepted_until and filters.accepted_from >= filters.accepted_until:
        raise DatasetError("The acceptance period must end after it starts.")
    if max_size is not None and max_size < 1:
        raise DatasetError("The size limit must be at least 1.")
    given = {
        "ngram_threshold": ngram_threshold,
        "embedding_threshold": embedding_threshold,
        "near_dup_threshold": near_dup_threshold,
    }
    thresholds = {key: fields.get_field(key).default if v is None else v for key, v in given.items()}
    _check_range("The n-gram threshold", thresholds["ngram_threshold"], 0, 1, low_open=True)
    _check_range("The embedding threshold", thresholds["embedding_threshold"], -1, 1)
    _check_range("The near-duplicate threshold", thresholds["near_dup_threshold"], 0, 1, low_open=True)
    try:  # LSH needs at least two bands: a threshold very near 1 has too few
        MinHashLSH(threshold=thresholds["near_dup_threshold"], num_perm=NUM_PERM)
    except ValueError as exc:
        threshold = thresholds["near_dup_threshold"]
        raise DatasetError(f"The near-duplicate threshold {threshold} is too high: {exc}.")
    chosen = [Benchmark.humaneval()] if benchmarks is None else list(benchmarks)
    values = {
        "name": name.strip(),
        "note": note.strip(),
        "tasks": tasks,
        "languages": list(dict.fromkeys(filters.languages)),
        "job_ids": sorted({int(j) for j in filters.job_ids}),
        "reviewer_ids": sorted({int(r) for r in filters.reviewer_ids}),
        "accepted_from": filters.accepted_from,
        "accepted_until": filters.accepted_until,
        "task_mix": mix,
        "max_size": max_size,
        "seed": int(seed),
        "use_embeddings": bool(use_embeddings),
        "embedding_model": (embedding_model or settings.EMBEDDING_MODEL) if use_embeddings else "",
        "created_by": user,
        **thresholds,
    }
    for _attempt in range(5):  # two versions created at once: one gets the number, the other retries
        try:
            with transaction.atomic():
                number = (DatasetVersion.objects.aggregate(top=Max("number"))["top"] or 0) + 1
                version = DatasetVersion.objects.create(number=number, **values)
                version.benchmarks.set(chosen)
            return version
        except IntegrityError:
            continue
    raise DatasetError("Could not number the new version; try again.")


def add_benchmark(
    source: str | Path | IO[bytes],
    *,
    name: str,
    text_field: str = "",
    code_field: str = "",
    language: str = "",
    user=None,
) -> Benchmark:
    """Keep a curator's benchmark file (JSONL: a problem statement and a reference program per line) for
    versions to be checked against. BenchmarkFileError, listing bad lines by number, when it does not
    read; DatasetError when the name is taken. `source` is a path or a binary file (an upload)."""
    name = name.strip()
    if not name:
        raise DatasetError("Give the benchmark a name.")
    if Benchmark.objects.filter(name__iexact=name).exists():
        raise DatasetError(f"There is a benchmark named {name!r} already.")
    folder = private_dir(settings.UPLOADS_DIR / "benchmarks")
    stored = folder / f"{uuid.uuid4().hex[:12]}.jsonl"
    # Kept for later versions to be checked against, readable by the app's own user only.
    with open_private(stored) as out:
        if isinstance(source, str | Path):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, out)
        else:
            for chunk in (
                source.chunks() if hasattr(source, "chunks") else iter(lambda: source.read(1 << 20), b"")
            ):
                out.write(chunk)
    try:
        items = load_benchmark_jsonl(
            stored, name=name, text_field=text_field or None, code_field=code_field or None, language=language
        )
    except (BenchmarkFileError, ValueError):
        stored.unlink(missing_ok=True)
        raise
    return Benchmark.objects.create(
        name=name,
        kind=Benchmark.Kind.UPLOAD,
        file=str(stored),
        text_field=text_field,
        code_field=code_field,
        language=language,
        item_count=len(items),
        created_by=user,
    )


def start_version(**params: Any) -> DatasetVersion:
    """Create a version and queue its build for a worker (once the transaction commits)."""
    from training import tasks  # the task module imports this one

    version = create_version(**params)
    transaction.on_commit(lambda: tasks.build_dataset_version.delay(version.pk))
    return version


# --- Collecting -------------------------------------------------------------------------------------------


def accepted_instances(filters: InstanceFilter = EVERY_ACCEPTED) -> QuerySet[Instance]:
    """Instances people accepted (reviewers who agreed, or a curator's resolution), narrowed by `filters`."""
    rows = Instance.objects.filter(human_decision=Instance.Decision.ACCEPT)
    if filters.tasks:
        rows = rows.filter(task__slug__in=filters.tasks)
    if filters.languages:
        rows = rows.filter(language__in=filters.languages)
    if filters.job_ids:
        rows = rows.filter(job_id__in=filters.job_ids)
    if filters.reviewer_ids or filters.accepted_from or filters.accepted_until:
        decisions = Review.objects.filter(instance=OuterRef("pk"), decision=Review.Decision.ACCEPT)
        if filters.reviewer_ids:
            decisions = decisions.filter(reviewer_id__in=filters.reviewer_ids)
        if filters.accepted_from:
            decisions = decisions.filter(created_at__gte=filters.accepted_from)
        if filters.accepted_until:
            decisions = decisions.filter(created_at__lt=filters.accepted_until)
        rows = rows.filter(Exists(decisions))
    return rows.order_by("id")


def training_output(output: str, explanation: str) -> str:
    """What a model learns to answer. Repair instances carry the fixed code and then the explanation of the
    fix (WaveCoder's repair output), which the instance keeps in a separate field."""
    explanation = explanation.strip()
    return f"{output.rstrip()}\n\n{explanation}" if explanation else output


def collect(version: DatasetVersion) -> list[Candidate]:
    """The version's accepted instances in their reviewed form, in id order."""
    rows = (
        accepted_instances(InstanceFilter.of(version))
        .annotate(
            text_instruction=Coalesce("current_revision__instruction", "instruction"),
            text_input=Coalesce("current_revision__input", "input"),
            text_output=Coalesce("current_revision__output", "output"),
            text_explanation=Coalesce("current_revision__explanation", "explanation"),
        )
        .values_list(
            "id",
            "task__slug",
            "language",
            "text_instruction",
            "text_input",
            "text_output",
            "text_explanation",
            "job_id",
            "generator_model",
            "verdict__model",
            "verdict__principle_version__version",
        )
    )
    candidates = []
    for (
        pk,
        task,
        language,
        instruction,
        input_,
        output,
        explanation,
        job,
        generator,
        judge,
        principles,
    ) in rows.iterator(chunk_size=_CHUNK):
        candidates.append(
            Candidate(
                pk,
                task,
                language,
                instruction,
                input_,
                training_output(output, explanation),
                job,
                generator,
                judge or "",
                f"{task} v{principles}" if principles else "",
            )
        )
    return candidates


# --- Decontamination --------------------------------------------------------------------------------------


def decontaminate(
    version: DatasetVersion,
    candidates: Sequence[Candidate],
    *,
    embedder: Embedder | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[Match], dict]:
    """Every benchmark match of the candidates, and the settings for the report."""
    benchmarks = list(version.benchmarks.order_by("kind", "name"))  # HumanEval first
    items = []
    for benchmark in benchmarks:
        try:
            items.extend(benchmark.items())
        except (BenchmarkFileError, OSError) as exc:
            raise DatasetError(f"Benchmark {benchmark.name} cannot be read: {exc}") from exc
    settings_report = {
        "benchmarks": [{"name": b.name, "items": b.item_count} for b in benchmarks],
        "ngram": {"n": DEFAULT_NGRAM, "threshold": version.ngram_threshold},
        "substring": {"min_chars": DEFAULT_SUBSTRING_MIN_CHARS},
        "embedding": (
            {"model": version.embedding_model, "threshold": version.embedding_threshold}
            if version.use_embeddings
            else None
        ),
    }
    if not items:
        return [], settings_report
    if version.use_embeddings and embedder is None:
        from curation.embeddings import get_embedder

        embedder = get_embedder(version.embedding_model or None)
    decontaminator = Decontaminator(
        items,
        ngram_threshold=version.ngram_threshold,
        embedding_threshold=version.embedding_threshold if version.use_embeddings else None,
        embedder=embedder,
    )
    texts = [InstanceText(c.instance_id, c.instruction, c.input, c.output, c.language) for c in candidates]
    return decontaminator.check(texts, on_progress=on_progress, chunk_size=_CHUNK), settings_report


# --- Near duplicates --------------------------------------------------------------------------------------


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[bytes]:
    """The distinct `size`-token shingles of a text (words and punctuation, lowercased)."""
    tokens = _TOKEN.findall(text.lower())
    return {" ".join(tokens[i : i + size]).encode() for i in range(max(1, len(tokens) - size + 1))}


def instance_text(candidate: Candidate) -> str:
    return "\n".join((candidate.instruction, candidate.input, candidate.output))


def near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float,
    num_perm: int = NUM_PERM,
    on_progress: Callable[[int], None] | None = None,
) -> dict[int, tuple[int, float]]:
    """For each text that nearly duplicates an earlier one: its index → (the earlier index, estimated
    Jaccard similarity). LSH candidates are confirmed on their signatures, so only pairs whose estimated
    Jaccard similarity reaches `threshold` count. Only texts kept so far are indexed: a chain of small
    edits does not carry a text away from the one it is compared with."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, np.ndarray] = {}
    duplicates: dict[int, tuple[int, float]] = {}
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start : start + _CHUNK]
        signatures = MinHash.bulk((shingles(t) for t in chunk), num_perm=num_perm, seed=_MINHASH_SEED)
        for offset, signature in enumerate(signatures):
            index = start + offset
            best: tuple[int, float] | None = None
            for other in lsh.query(signature):
                similarity = float(np.mean(kept[other] == signature.hashvalues))
                if similarity >= threshold and (best is None or (similarity, -other) > (best[1], -best[0])):
                    best = (other, similarity)
            if best is None:
                lsh.insert(index, signature, check_duplication=False)
                kept[index] = signature.hashvalues
            else:
                duplicates[index] = best
        if on_progress:
            on_progress(len(chunk))
    return duplicates


# --- Task mix ---------------------------------------------------------------------------------------------


def _apportion(total: int, shares: Mapping[str, float], room: Mapping[str, int]) -> dict[str, int]:
    """`total` split by `shares` (largest remainder), never more than `room` allows per task."""
    exact = {task: total * share for task, share in shares.items()}
    counts = {task: min(int(value), room[task]) for task, value in exact.items()}
    by_remainder = sorted(exact, key=lambda t: (-(exact[t] - int(exact[t])), t))
    while sum(counts.values()) < total and any(counts[t] < room[t] for t in counts):
        for task in by_remainder:
            if sum(counts.values()) >= total:
                break
            if counts[task] < room[task]:
                counts[task] += 1
    return counts


def apply_mix(
    candidates: Sequence[Candidate], mix: Mapping[str, float], max_size: int | None, seed: int
) -> tuple[list[Candidate], dict]:
    """The largest subset that meets the task mix (shares of the total) and the size limit, drawn at
    random with `seed` within each task; without a mix, every candidate (or a proportional sample when
    there is a size limit). Returns the kept candidates in id order and the mix report."""
    by_task: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_task.setdefault(candidate.task, []).append(candidate)
    available = {task: len(rows) for task, rows in by_task.items()}
    if mix:
        short = sorted(task for task in mix if not available.get(task))
        if short:
            raise DatasetError(
                f"The task mix asks for {', '.join(short)}, but no accepted instance of it is left after the "
                "filters, decontamination and deduplication."
            )
        total = min(math.floor(available[task] / share + 1e-9) for task, share in mix.items())
        shares = dict(mix)
    else:
        total = len(candidates)
        shares = {task: n / total for task, n in available.items()} if total else {}
    if max_size is not None:
        total = min(total, max_size)
    counts = _apportion(total, shares, {task: available.get(task, 0) for task in shares})
    rng = random.Random(seed)
    kept: list[Candidate] = []
    for task in sorted(counts):
        rows = by_task[task]
        kept.extend(rows if counts[task] == len(rows) else rng.sample(rows, counts[task]))
    kept.sort(key=lambda c: c.instance_id)
    achieved = {task: n / len(kept) for task, n in counts.items() if n} if kept else {}
    report = {
        "target": dict(mix),
        "available": available,
        "kept": {task: n for task, n in counts.items() if n},
        "achieved": achieved,
        "dropped": {task: available[task] - counts.get(task, 0) for task in available},
    }
    return kept, report


# --- Building ---------------------------------------------------------------------------------------------


def build_version(
    version_id: int,
    *,
    embedder: Embedder | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> DatasetVersion:
    """Build a queued version: collect, decontaminate, deduplicate, mix, save and export. A version that
    already succeeded or failed is left as it is (a redelivered task does nothing); one that was running
    when its worker died starts again from nothing. Errors are recorded on the version, not raised."""
    version = DatasetVersion.objects.get(pk=version_id)
    if not version.claim():
        return version
    progress = ProgressReporter(version, on_progress)
    try:
        _Build(version, progress, embedder).run()
    except Exception as exc:
        if not isinstance(exc, DatasetError):
            log.exception("dataset version %s failed", version.number)
        with transaction.atomic():
            version.items.all().delete()
            version.exclusions.all().delete()
        message = str(exc) if isinstance(exc, DatasetError) else f"{type(exc).__name__}: {exc}"
        version.finish(DatasetVersion.Status.FAILED, error=message)
    return version


class _Build:
    """One build of one version; each step adds its part to the report."""

    def __init__(self, version: DatasetVersion, progress: ProgressReporter, embedder: Embedder | None):
        self.version, self.progress, self.embedder = version, progress, embedder
        self.report: dict[str, Any] = {"seconds": {}}

    def _timed(self, phase: str, started: float) -> None:
        self.report["seconds"][phase] = round(time.perf_counter() - started, 3)

    def run(self) -> None:
        from training import exports

        version = self.version
        with transaction.atomic():  # a build that died half-way left rows behind
            version.items.all().delete()
            version.exclusions.all().delete()

        started = time.perf_counter()
        self.progress.start("collecting", 0)
        candidates = collect(version)
        if not candidates:
            raise DatasetError("No accepted instance matches this version's filters.")
        self.report["candidates"] = len(candidates)
        self._timed("collect", started)

        candidates = self.decontaminate(candidates)
        candidates = self.deduplicate(candidates)

        kept, self.report["mix"] = apply_mix(candidates, version.task_mix, version.max_size, version.seed)
        if not kept:
            raise DatasetError("Nothing is left once the size limit and task mix are applied.")
        self.describe(kept)

        started = time.perf_counter()
        self.progress.start("saving", len(kept))
        with transaction.atomic():
            for start in range(0, len(kept), _CHUNK):
                chunk = kept[start : start + _CHUNK]
                DatasetItem.objects.bulk_create(
                    DatasetItem(
                        version=version,
                        position=start + offset,
                        instance_id=c.instance_id,
                        task=c.task,
                        language=c.language,
                        instruction=c.instruction,
                        input=c.input,
                        output=c.output,
                    )
                    for offset, c in enumerate(chunk)
                )
                self.progress.advance(len(chunk))
        version.item_count = len(kept)
        self._timed("save", started)

        started = time.perf_counter()
        self.progress.start("exporting", len(kept))
        version.report = self.report  # the card is written from it
        files = exports.export_version(version, on_progress=self.progress.advance)
        self._timed("export", started)
        self.report["files"] = {
            key: {"name": f.name, "bytes": f.bytes, "rows": f.rows} for key, f in files.items()
        }
        version.content_hash = files["messages"].sha256
        version.report = self.report
        version.save(update_fields=["item_count", "report", "content_hash"])
        version.finish(DatasetVersion.Status.SUCCEEDED)
        DatasetVersion.objects.filter(pk=version.pk).update(phase="done")

    def decontaminate(self, candidates: list[Candidate]) -> list[Candidate]:
        started = time.perf_counter()
        self.progress.start("decontaminating", len(candidates))
        matches, used = decontaminate(
            self.version, candidates, embedder=self.embedder, on_progress=self.progress.advance
        )
        DatasetExclusion.objects.bulk_create(
            (
                DatasetExclusion(
                    version=self.version,
                    instance_id=m.key,
                    reason=DatasetExclusion.Reason.CONTAMINATED,
                    benchmark=m.benchmark,
                    benchmark_item=m.item_id,
                    method=m.method,
                    score=m.score,
                    detail=m.detail,
                )
                for m in matches
            ),
            batch_size=_CHUNK,
        )
        flagged = {m.key for m in matches}
        methods: dict[str, set] = {}
        benchmarks: dict[str, set] = {}
        for m in matches:
            methods.setdefault(m.method, set()).add(m.key)
            benchmarks.setdefault(m.benchmark, set()).add(m.key)
        self.report["decontamination"] = {
            **used,
            "instances": len(flagged),
            "matches": len(matches),
            "by_method": {method: len(keys) for method, keys in sorted(methods.items())},
            "by_benchmark": {name: len(keys) for name, keys in sorted(benchmarks.items())},
        }
        self._timed("decontaminate", started)
        return [c for c in candidates if c.instance_id not in flagged]

    def deduplicate(self, candidates: list[Candidate]) -> list[Candidate]:
        started = time.perf_counter()
        threshold = self.version.near_dup_threshold
        self.progress.start("deduplicating", len(candidates))
        found = near_duplicates(
            [instance_text(c) for c in candidates], threshold=threshold, on_progress=self.progress.advance
        )
        DatasetExclusion.objects.bulk_create(
            (
                DatasetExclusion(
                    version=self.version,
                    instance_id=candidates[index].instance_id,
                    reason=DatasetExclusion.Reason.NEAR_DUPLICATE,
                    method="minhash",
                    score=round(similarity, 4),
                    detail=f"estimated Jaccard similarity {similarity:.2f} to instance "
                    f"#{candidates[kept].instance_id}",
                    duplicate_of_id=candidates[kept].instance_id,
                )
                for index, (kept, similarity) in found.items()
            ),
            batch_size=_CHUNK,
        )
        self.report["dedup"] = {
            "method": "MinHash-LSH",
            "threshold": threshold,
            "num_perm": NUM_PERM,
            "shingle_size": SHINGLE_SIZE,
            "removed": len(found),
        }
        self._timed("dedup", started)
        return [c for index, c in enumerate(candidates) if index not in found]

    def describe(self, kept: list[Candidate]) -> None:
        """Counts per task and language, the models and principle versions, and where the rows came from."""
        self.report["by_task"] = dict(Counter(c.task for c in kept).most_common())
        self.report["by_language"] = dict(Counter(c.language or "unknown" for c in kept).most_common())
        self.report["models"] = {
            "generator": dict(Counter(c.generator_model for c in kept if c.generator_model).most_common()),
            "discriminator": dict(
                Counter(c.discriminator_model for c in kept if c.discriminator_model).most_common()
            ),
        }
        self.report["principle_versions"] = dict(
            sorted(Counter(c.principles for c in kept if c.principles).items())
        )
        per_job = Counter(c.job_id for c in kept)
        jobs = GenerationJob.objects.filter(pk__in=per_job).values_list("pk", "kind", "report")
        sources = {}
        for pk, kind, report in jobs.order_by("pk"):
            if kind == GenerationJob.Kind.IMPORT:
                label = f"import #{pk} ({(report or {}).get('file', 'file')})"
            else:
                label = f"generation job #{pk}"
            sources[label] = per_job[pk]
        self.report["sources"] = sources
