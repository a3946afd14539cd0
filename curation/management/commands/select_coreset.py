"""`python manage.py select_coreset --k K --seed S`: KCenterGreedy over sentence embeddings."""

from django.core.management.base import BaseCommand, CommandError

from curation import selection, tasks
from curation.management.progress import ProgressBar
from curation.models import SelectionRun


class Command(BaseCommand):
    help = "Pick a diverse coreset of the corpus with KCenterGreedy over code embeddings."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--k", type=int, required=True, help="Number of samples to pick")
        parser.add_argument("--seed", type=int, default=0, help="Seed that draws the first center")
        parser.add_argument("--model", help="sentence-transformers model name or local path")
        parser.add_argument("--language", action="append", default=[], help="Only this language (repeatable)")
        parser.add_argument("--queue", action="store_true", help="Queue it for a Celery worker instead")

    def handle(self, *args, **opts) -> None:
        try:
            run = selection.create_selection_run(
                k=opts["k"], seed=opts["seed"], model_name=opts["model"], languages=opts["language"]
            )
        except ValueError as exc:
            raise CommandError(str(exc))
        if opts["queue"]:
            tasks.run_selection.delay(run.pk)
            self.stdout.write(f"Queued selection run #{run.pk}.")
            return
        bar = ProgressBar(self.stdout)
        run = selection.run_selection(run.pk, on_progress=bar)
        bar.close()
        if run.status != SelectionRun.Status.SUCCEEDED:
            raise CommandError(f"Selection run #{run.pk} {run.status}: {run.error}")
        ratio = f" ({run.radius_ratio:.2f}× random)" if run.radius_ratio else ""
        self.stdout.write(
            f"Selection run #{run.pk}: picked {run.k:,} of {run.pool_size:,} samples; coverage radius "
            f"{run.coverage_radius:.4f}, random selection {run.random_radius:.4f}{ratio}."
        )
