"""`python manage.py evaluate --samples FILE`: score a HumanEval samples file (no model needed)."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.management.progress import ProgressBar
from training import evaluation


class Command(BaseCommand):
    help = "Run a HumanEval samples file (task_id + solution or completion) in the sandbox; print pass@k."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--samples", required=True, help="JSONL file: task_id, solution or completion")
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
