"""`python manage.py train --dataset-version N [--base-model …] [--method lora] [--max-steps 5] [--queue]`."""

from django.core.management.base import BaseCommand, CommandError

from curation.management.progress import ProgressBar
from training import runs
from training.models import DatasetVersion, TrainingRun


class Command(BaseCommand):
    help = (
        "Fine-tune a base model on a dataset version (WaveCoder's recipe unless overridden): here, with a "
        "progress bar, or on the gpu queue with --queue."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset-version", type=int, required=True, help="The version's number")
        parser.add_argument("--base-model", default="", help="A local folder or a registered model name")
        parser.add_argument("--method", choices=list(TrainingRun.Method.values), default="full")
        parser.add_argument("--max-steps", type=int)
        parser.add_argument("--epochs", type=float, dest="num_epochs")
        parser.add_argument("--lr", type=float, dest="learning_rate")
        parser.add_argument("--max-length", type=int)
        parser.add_argument("--global-batch-size", type=int)
        parser.add_argument("--per-device-batch-size", type=int)
        parser.add_argument("--warmup-steps", type=int)
        parser.add_argument("--save-steps", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--bf16", choices=list(TrainingRun.Precision.values))
        parser.add_argument("--packing", action="store_true", default=None)
        parser.add_argument("--cpu-demo", action="store_true", help="Small values for a CPU (see the README)")
        parser.add_argument("--queue", action="store_true", help="Queue it for a gpu worker and return")

    def handle(self, *args, **opts) -> None:
        try:
            version = DatasetVersion.objects.get(number=opts["dataset_version"])
        except DatasetVersion.DoesNotExist:
            raise CommandError(f"No dataset version {opts['dataset_version']}.")
        params = dict(runs.CPU_DEMO_PRESET) if opts["cpu_demo"] else {}
        names = ("max_steps", "num_epochs", "learning_rate", "max_length", "global_batch_size")
        names += ("per_device_batch_size", "warmup_steps", "save_steps", "seed", "bf16", "packing")
        params |= {name: opts[name] for name in names if opts[name] is not None}
        params |= {"base_model": opts["base_model"], "method": opts["method"]}
        try:
            run = runs.create_training_run(dataset_version=version, **params)
        except runs.RunError as exc:
            raise CommandError("\n".join(["The run was not created:", *exc.errors]))
        if opts["queue"]:
            runs.queue_training(run)
            self.stdout.write(f"Training run #{run.pk} queued on the gpu queue; folder {run.output_dir}")
            return
        self.stdout.write(f"Training run #{run.pk} in {run.output_dir}")
        bar = ProgressBar(self.stdout)

        def progress(step: dict) -> None:
            bar("training", step["step"], step.get("max_steps") or 0)

        run = runs.run_training(run.pk, on_progress=progress)
        bar.close()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Run #{run.pk} {run.status}: {run.error}")
        self.stdout.write(
            f"Done: {run.last_step} steps, loss {run.first_loss:.4f} → {run.last_loss:.4f}; "
            f"final model in {run.final_model_path}"
        )
