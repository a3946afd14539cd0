"""`python manage.py export_dataset`: build a dataset version (or take a built one) and write its files."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from curation.management.progress import ProgressBar
from training import datasets, exports
from training.benchmarks import BenchmarkFileError
from training.models import Benchmark, DatasetVersion


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _day(value: str | None, *, after: bool = False) -> datetime | None:
    """The start of a YYYY-MM-DD day (of the next day with `after`, for an inclusive end)."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Dates are YYYY-MM-DD; got {value!r}.")
    return timezone.make_aware(datetime.combine(day + timedelta(days=after), time.min))


class Command(BaseCommand):
    help = (
        "Build a dataset version from the accepted instances (decontaminated, deduplicated, with an optional "
        "task mix) and write it as Alpaca JSON, chat-messages JSONL, Parquet, a Hugging Face datasets folder "
        "and a dataset card; or, with --dataset-version, write the files of a version already built."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dataset-version", type=int, metavar="N", help="Export built version N instead of building one"
        )
        parser.add_argument(
            "--format",
            default="all",
            help=f"Comma-separated formats: {', '.join(exports.FORMATS)} (default: all)",
        )
        parser.add_argument("--out", help="Folder to write to (default: the version's own folder)")
        build = parser.add_argument_group("building a new version")
        build.add_argument("--name", default="")
        build.add_argument("--note", default="")
        build.add_argument("--tasks", help="Comma-separated task slugs (default: all)")
        build.add_argument("--languages", help="Comma-separated languages (default: all)")
        build.add_argument("--jobs", help="Comma-separated generation or import job ids (default: all)")
        build.add_argument("--reviewers", help="Comma-separated usernames: accepted by one of them")
        build.add_argument("--accepted-from", help="YYYY-MM-DD: accepted on or after this day")
        build.add_argument("--accepted-until", help="YYYY-MM-DD: accepted on or before this day")
        build.add_argument("--mix", help='"codeocean", or shares such as generation=57,repair=43')
        build.add_argument("--max-size", type=int, help="At most this many instances")
        build.add_argument("--seed", type=int, default=0, help="Which instances a mix or size limit keeps")
        build.add_argument(
            "--benchmark", action="append", default=[], help="Benchmark name (repeatable; default HumanEval)"
        )
        build.add_argument(
            "--benchmark-file", action="append", default=[], help="Add a JSONL benchmark file (repeatable)"
        )
        build.add_argument("--no-decontamination", action="store_true", help="Check against no benchmark")
        build.add_argument("--no-embeddings", action="store_true", help="Skip the embedding method")
        build.add_argument("--embedding-threshold", type=float)
        build.add_argument("--ngram-threshold", type=float)
        build.add_argument("--near-dup-threshold", type=float)

    def handle(self, *args, **opts) -> None:
        formats = list(exports.FORMATS) if opts["format"] == "all" else _csv(opts["format"])
        unknown = sorted(set(formats) - set(exports.FORMATS))
        if unknown or not formats:
            raise CommandError(f"Unknown format {', '.join(unknown)}; formats: {', '.join(exports.FORMATS)}.")
        version = self._existing(opts["dataset_version"]) if opts["dataset_version"] else self._build(opts)
        accepted = version.report.get("candidates", 0)
        self.stdout.write(
            f"Dataset {version.label}: {version.item_count:,} instances of {accepted:,} "
            f"accepted; {version.contaminated_count:,} left out for leaking a benchmark, "
            f"{version.near_duplicate_count:,} near duplicates removed."
        )
        folder = Path(opts["out"]).resolve() if opts["out"] else version.folder
        missing = not all(exports.export_path(version, key).exists() for key in formats)
        if opts["out"] or missing:
            bar, written = ProgressBar(self.stdout), 0

            def advance(n: int) -> None:
                nonlocal written
                written += n
                bar("exporting", written, version.item_count)

            exports.export_version(version, folder, formats=formats, on_progress=advance)
            bar.close()
        for key in formats:
            path = folder / exports.FORMATS[key].filename
            self.stdout.write(f"  {exports.FORMATS[key].label:<45} {path}")
        self.stdout.write(f"  content hash (sha256 of messages.jsonl)       {version.content_hash}")

    def _existing(self, number: int) -> DatasetVersion:
        version = DatasetVersion.objects.filter(number=number).first()
        if version is None:
            raise CommandError(f"No dataset version {number}.")
        if version.status != DatasetVersion.Status.SUCCEEDED:
            raise CommandError(
                f"Dataset {version.label} is {version.status}: {version.error or 'not built yet'}"
            )
        return version

    def _build(self, opts) -> DatasetVersion:
        users = get_user_model().objects.filter(username__in=_csv(opts["reviewers"]))
        unknown_users = set(_csv(opts["reviewers"])) - set(users.values_list("username", flat=True))
        if unknown_users:
            raise CommandError(f"No user named {', '.join(sorted(unknown_users))}.")
        try:
            filters = datasets.InstanceFilter(
                tasks=tuple(_csv(opts["tasks"])),
                languages=tuple(_csv(opts["languages"])),
                job_ids=tuple(int(j) for j in _csv(opts["jobs"])),
                reviewer_ids=tuple(users.values_list("pk", flat=True)),
                accepted_from=_day(opts["accepted_from"]),
                accepted_until=_day(opts["accepted_until"], after=True),
            )
            version = datasets.create_version(
                name=opts["name"],
                note=opts["note"],
                filters=filters,
                task_mix=opts["mix"],
                max_size=opts["max_size"],
                seed=opts["seed"],
                benchmarks=self._benchmarks(opts),
                use_embeddings=not opts["no_embeddings"],
                embedding_threshold=opts["embedding_threshold"],
                ngram_threshold=opts["ngram_threshold"],
                near_dup_threshold=opts["near_dup_threshold"],
            )
        except BenchmarkFileError as exc:
            raise CommandError(str(exc))
        except ValueError as exc:  # DatasetError, and job ids that are not numbers
            raise CommandError(str(exc))
        self.stdout.write(f"Building dataset {version.label}")
        bar = ProgressBar(self.stdout)
        version = datasets.build_version(version.pk, on_progress=bar)
        bar.close()
        if version.status != DatasetVersion.Status.SUCCEEDED:
            raise CommandError(f"Dataset {version.label} failed: {version.error}")
        return version

    def _benchmarks(self, opts) -> list[Benchmark]:
        if opts["no_decontamination"]:
            return []
        chosen = [Benchmark.humaneval()] if not opts["benchmark"] else []
        for name in opts["benchmark"]:
            if name == Benchmark.HUMANEVAL_NAME:
                chosen.append(Benchmark.humaneval())
            elif benchmark := Benchmark.objects.filter(name=name).first():
                chosen.append(benchmark)
            else:
                raise CommandError(f"No benchmark named {name!r} (add its file with --benchmark-file).")
        for path in opts["benchmark_file"]:
            name = Path(path).stem
            benchmark = Benchmark.objects.filter(name=name).first() or datasets.add_benchmark(path, name=name)
            chosen.append(benchmark)
        return chosen
