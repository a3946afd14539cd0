"""`python manage.py generate`: run a generation job (Generator + Discriminator) from the shell."""

from django.core.management.base import BaseCommand, CommandError

from curation import catalog, generation, launch, tasks
from curation.management.progress import ProgressBar
from curation.models import CodeTask, GenerationJob, SelectionRun


class Command(BaseCommand):
    help = (
        "Generate instruction instances from a selection run with the Generator and judge them with the "
        "Discriminator. Uses OPENAI_BASE_URL when set, else the offline models this machine runs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--selection", type=int, help="Selection run id (default: the latest succeeded)")
        parser.add_argument(
            "--tasks", default=",".join(CodeTask.Slug.values), help="Comma-separated task slugs"
        )
        parser.add_argument("--samples", type=int, default=5, help="Raw samples per task")
        parser.add_argument("--per-sample", type=int, default=1, help="Instances per raw sample and task")
        parser.add_argument("--generator-model", help="Model name for the Generator")
        parser.add_argument("--discriminator-model", help="Model name for the Discriminator")
        parser.add_argument("--concurrency", type=int, help="Requests in flight at once")
        parser.add_argument("--no-execute", action="store_true", help="Do not run generated code")
        parser.add_argument(
            "--tries", type=int, help="Generator replies per instance when one fails (default: setting)"
        )
        parser.add_argument("--job", type=int, help="Continue this job instead of creating one")
        parser.add_argument("--retry-failures", action="store_true", help="With --job: retry its failures")
        parser.add_argument("--queue", action="store_true", help="Queue it for Celery workers instead")

    def handle(self, *args, **opts) -> None:
        catalog.ensure_catalog()
        job = self._job(opts)
        if opts["queue"]:
            tasks.run_generation_job.delay(job.pk)
            self.stdout.write(f"Queued generation job #{job.pk} ({job.progress_total} instances).")
            return
        bar = ProgressBar(self.stdout)
        job = generation.run_generation(job.pk, on_progress=bar)
        bar.close()
        counts = generation.job_counts(job)
        cost = generation.job_cost(job)
        self.stdout.write(
            f"Generation job #{job.pk} {job.status}: {counts.done} judged, {counts.failed} failed, "
            f"{counts.pending + counts.in_flight} left; tokens {job.prompt_tokens:,} in / "
            f"{job.completion_tokens:,} out" + (f", about ${cost:.4f}" if cost is not None else "")
        )
        if job.status == GenerationJob.Status.FAILED:
            raise CommandError(job.error)

    def _job(self, opts) -> GenerationJob:
        if opts["job"]:
            try:
                job = GenerationJob.objects.get(pk=opts["job"])
            except GenerationJob.DoesNotExist:
                raise CommandError(f"No generation job #{opts['job']}.")
            if opts["retry_failures"]:
                self.stdout.write(f"Retrying {generation.retry_failures(job)} failed instances.")
            generation.resume(job)
            return job
        selections = SelectionRun.objects.filter(status=SelectionRun.Status.SUCCEEDED).order_by("-pk")
        selection = (
            selections.filter(pk=opts["selection"]).first() if opts["selection"] else selections.first()
        )
        if selection is None:
            raise CommandError("No succeeded selection run; run `manage.py select_coreset` first.")
        try:
            models = {
                "generator_model": opts["generator_model"],
                "discriminator_model": opts["discriminator_model"],
            }
            launch.check_models(models)
            return generation.create_generation_job(
                selection_run=selection,
                tasks=[t.strip() for t in opts["tasks"].split(",") if t.strip()],
                samples_per_task=opts["samples"],
                instances_per_sample=opts["per_sample"],
                generator_model=models["generator_model"],
                discriminator_model=models["discriminator_model"],
                concurrency=opts["concurrency"],
                execute=not opts["no_execute"],
                tries=opts["tries"],
            )
        except ValueError as exc:
            raise CommandError(str(exc))
