"""`python manage.py ingest SOURCE`: ingest a folder, git checkout, archive, JSONL or Parquet file."""

import json

from django.core.management.base import BaseCommand, CommandError

from curation import ingest, tasks
from curation.management.progress import ProgressBar
from curation.models import IngestRun


class Command(BaseCommand):
    help = "Ingest raw code: extract functions, filter, deduplicate (exact and MinHash-LSH), and report."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", help="Folder, git checkout or URL, .zip/.tar.gz, .jsonl or .parquet")
        parser.add_argument("--name", help="Display name of the source")
        parser.add_argument("--min-chars", type=int, help="Shortest sample kept (default 50)")
        parser.add_argument("--max-chars", type=int, help="Longest sample kept (default 800)")
        parser.add_argument("--no-blacklist", action="store_true", help="Keep code with blacklisted words")
        parser.add_argument("--blacklist", help="Comma-separated words that drop a sample")
        parser.add_argument("--queue", action="store_true", help="Queue it for a Celery worker instead")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")

    def handle(self, *args, **opts) -> None:
        options: dict = {}
        if opts["min_chars"] is not None:
            options["min_chars"] = opts["min_chars"]
        if opts["max_chars"] is not None:
            options["max_chars"] = opts["max_chars"]
        if opts["no_blacklist"]:
            options["blacklist"] = []
        elif opts["blacklist"]:
            options["blacklist"] = [w.strip() for w in opts["blacklist"].split(",") if w.strip()]
        try:
            run = ingest.create_ingest_run(opts["source"], name=opts["name"], options=options)
        except ValueError as exc:
            raise CommandError(str(exc))
        if opts["queue"]:
            tasks.ingest_source.delay(run.pk)
            self.stdout.write(f"Queued ingest run #{run.pk}.")
            return
        bar = ProgressBar(self.stdout)
        run = ingest.run_ingest(run.pk, on_progress=bar)
        bar.close()
        self._report(run, as_json=opts["json"])
        if run.status == IngestRun.Status.FAILED:
            raise CommandError(run.error)

    def _report(self, run: IngestRun, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps({"id": run.pk, "status": run.status, **run.report}, indent=2))
            return
        report = run.report
        self.stdout.write(f"Ingest run #{run.pk} {run.status}: kept {run.kept_count:,} samples.")
        for reason, n in (report.get("dropped") or {}).items():
            self.stdout.write(f"  dropped {reason}: {n:,}")
        for lang, n in (report.get("languages") or {}).items():
            self.stdout.write(f"  kept {lang}: {n:,}")
        errors = report.get("errors") or []
        if errors:
            self.stdout.write(self.style.WARNING(f"  {len(errors)} file errors:"))
            for err in errors[:20]:
                self.stdout.write(f"    {err['path']}: {err['error']}")
