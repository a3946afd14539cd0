"""`python manage.py rejudge`: re-run the discriminator on unreviewed instances."""

from django.core.management.base import BaseCommand, CommandError

from curation import launch, refinement
from curation.management.progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Judge the unreviewed instances again with each task's current principles (by default only those "
        "judged with an older version)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tasks", default="", help="Comma-separated task slugs (default: all)")
        parser.add_argument(
            "--all", action="store_true", help="Also instances judged with the current version"
        )
        parser.add_argument("--model", help="Discriminator model (default: WAVECODER_DISCRIMINATOR_MODEL)")
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--queue", action="store_true", help="Queue it for a Celery worker instead")

    def handle(self, *args, **opts) -> None:
        options = dict(
            tasks=[t.strip() for t in opts["tasks"].split(",") if t.strip()],
            model=opts["model"],
            only_outdated=not opts["all"],
            concurrency=opts["concurrency"],
        )
        try:
            if opts["queue"]:
                job = launch.start_rejudge(user=None, **options)
                self.stdout.write(f"Queued re-judging job #{job.pk} ({job.progress_total} instances).")
                return
            job = refinement.create_rejudge_job(**options)
        except refinement.RefinementError as exc:
            raise CommandError(str(exc)) from exc
        bar = ProgressBar(self.stdout)
        job = refinement.run_rejudge(job.pk, on_progress=bar)
        bar.close()
        self.stdout.write(
            f"Re-judging job #{job.pk} {job.status}: {job.progress_done} judged, {job.changed} flipped, "
            f"{job.failed} could not be judged."
        )
        if job.error:
            raise CommandError(job.error)
