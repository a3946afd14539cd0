"""`python manage.py evaluate --samples FILE`: score a HumanEval samples file (no model needed);
`python manage.py evaluate --model PATH_OR_NAME [--limit 5] [--n 1]`: generate with a model, then score."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.management.progress import ProgressBar
from training import evaluation, runs
from training.models import EvaluationRun


class Command(BaseCommand):
    help = (
        "Run a HumanEval samples file (task_id + solution or completion) in the sandbox, or a model's "
        "completions (--model), and print pass@k."
    )

    def add_arguments(self, parser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--samples", help="JSONL file: task_id, solution or completion")
        source.add_argument("--model", help="A model folder or a registered name: generate, then score")
        parser.add_argument("--limit", type=int, help="With --model: the first N problems")
        parser.add_argument("--n", type=int, default=1, help="With --model: samples per problem (1: greedy)")
        parser.add_argument("--max-new-tokens", type=int, default=512, help="With --model")
        parser.add_argument("--out", help="Write the per-problem results here as JSON")
        parser.add_argument(
            "--workers", type=int, default=evaluation.DEFAULT_WORKERS, help="Programs run at the same time"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=evaluation.DEFAULT_TIMEOUT_S,
            help="Seconds per program (the official harness uses 3)",
        )

    def handle(self, *args, **opts) -> None:
        if opts["model"]:
            return self._model(opts)
        samples = Path(opts["samples"])
        if not samples.is_file():
            raise CommandError(f"Samples file not found: {samples}")
        if opts["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        if opts["timeout"] <= 0:
            raise CommandError("--timeout must be positive")
        problems = evaluation.read_humaneval()
        try:
            loaded = evaluation.load_samples(samples, problems=problems)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"Malformed samples file: {exc}")
        bar = ProgressBar(self.stdout)
        result = evaluation.evaluate_samples(
            loaded, problems=problems, workers=opts["workers"], timeout_s=opts["timeout"], on_progress=bar
        )
        bar.close()

        self.stdout.write(f"passed {result.passed}/{result.total}")
        if result.tasks < len(problems):
            # A partial file scores only the problems it covers; say so rather than look like a full run.
            self.stdout.write(f"(samples for {result.tasks} of {len(problems)} problems)")
        for k, value in sorted(result.pass_at_k.items()):
            self.stdout.write(f"pass@{k}: {100 * value:.1f}%")
        outcomes = [r.outcome for r in result.results if not r.passed]
        if outcomes:
            counts = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
            self.stdout.write(f"not passed: {counts}")
        self.stdout.write(f"took {result.duration_s:.1f} s with {opts['workers']} workers")

        if opts["out"]:
            out = Path(opts["out"])
            try:
                out.write_text(json.dumps({"samples": str(samples), **result.to_dict()}, indent=2) + "\n")
            except OSError as exc:
                raise CommandError(f"Could not write {out}: {exc}")
            self.stdout.write(f"Wrote per-problem results to {out}")

    def _model(self, opts) -> None:
        """An EvaluationRun of the model, run here (recorded like one started from the dashboard)."""
        try:
            run = runs.create_evaluation(
                model=opts["model"], limit=opts["limit"], n=opts["n"], max_new_tokens=opts["max_new_tokens"]
            )
        except runs.RunError as exc:
            raise CommandError("; ".join(exc.errors))
        bar = ProgressBar(self.stdout)
        run = runs.run_evaluation(run.pk, on_progress=bar)
        bar.close()
        if run.status != EvaluationRun.Status.SUCCEEDED:
            raise CommandError(f"Evaluation #{run.pk} failed: {run.error}")
        problems = run.results["problems"]
        self.stdout.write(f"passed {sum(p['passed'] for p in problems)}/{sum(p['n'] for p in problems)}")
        for k, value in run.pass_at_k.items():
            self.stdout.write(f"{k}: {100 * value:.1f}%")
        self.stdout.write(f"evaluation #{run.pk}")
        if opts["out"]:
            Path(opts["out"]).write_text(json.dumps(run.results, indent=2) + "\n")
            self.stdout.write(f"Wrote per-problem results to {opts['out']}")
