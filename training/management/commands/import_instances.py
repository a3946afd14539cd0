"""`python manage.py import_instances FILE`: existing instruction data as instances to judge and review."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from curation import generation, imports
from curation.management.progress import ProgressBar
from curation.models import CodeTask, GenerationJob


class Command(BaseCommand):
    help = (
        "Import Alpaca or ShareGPT-style instruction data (JSON array or JSON Lines: CodeAlpaca, "
        "Evol-Instruct, Magicoder) as instances, each recording its file and line. A file with errors "
        "imports nothing unless --valid-only is given. With --judge the Discriminator judges them first."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="A .json or .jsonl file")
        parser.add_argument(
            "--task", choices=CodeTask.Slug.values, help="Task of every record (default: inferred)"
        )
        parser.add_argument("--language", default="", help="Language of every record (default: inferred)")
        parser.add_argument(
            "--valid-only", action="store_true", help="Import the valid records, skip bad lines"
        )
        parser.add_argument("--judge", action="store_true", help="Judge them with the Discriminator first")
        parser.add_argument("--queue", action="store_true", help="With --judge: queue it for workers instead")
        parser.add_argument("--discriminator-model", help="Model name for the Discriminator")
        parser.add_argument(
            "--max-mb", type=float, default=1024, help="Refuse larger files (default 1024 MB; uploads: 64 MB)"
        )

    def handle(self, *args, **opts) -> None:
        options = {
            "task": opts["task"],
            "language": opts["language"],
            "judge": opts["judge"],
            "valid_only": opts["valid_only"],
            "discriminator_model": opts["discriminator_model"],
            "max_bytes": int(opts["max_mb"] * 2**20),
        }
        try:
            start = imports.start_import if opts["queue"] else imports.import_instances
            job = start(opts["file"], **options)
        except imports.ImportFileError as exc:
            self.stderr.write(str(exc))
            raise CommandError(
                "Nothing was imported. Fix the lines above, or pass --valid-only to skip them."
            )
        except OSError as exc:
            raise CommandError(f"Cannot read {opts['file']}: {exc}")
        report = job.report
        skipped = f"; {report['error_count']:,} bad lines skipped" if report["error_count"] else ""
        self.stdout.write(
            f"Import #{job.pk}: {report['imported']:,} instances from {report['file']} ({report['format']}); "
            f"{report['duplicates']:,} exact repeats skipped{skipped}."
        )
        self.stdout.write("  tasks: " + ", ".join(f"{t} {n:,}" for t, n in report["tasks"].items()))
        if not opts["judge"]:
            self.stdout.write(f"  ready for review: /review/?job={job.pk}")
        elif opts["queue"]:
            self.stdout.write(f"  queued for the Discriminator on the llm queue (job #{job.pk}).")
        else:
            bar = ProgressBar(self.stdout)
            job = generation.run_generation(job.pk, on_progress=bar)
            bar.close()
            counts = generation.job_counts(job)
            self.stdout.write(f"  judged: {counts.done:,} done, {counts.failed:,} failed ({job.status}).")
            if job.status == GenerationJob.Status.FAILED:
                raise CommandError(job.error)
