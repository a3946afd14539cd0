"""`python manage.py refine_principles`: propose, check and adopt revised principles from the shell."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation import catalog, launch, refinement
from curation.management.progress import ProgressBar
from curation.models import RefinementRun
from curation.templatetags.stats import kappa, pct


class Command(BaseCommand):
    help = (
        "Refine a task's discriminator principles from the reviewers' decisions: the LLM proposes a revised "
        "rule set from the disagreement cases, the discriminator checks it against the current one on "
        "held-out reviewed instances, and --adopt (or --adopt-if-better) makes it current. "
        "With --run N, continue an existing run instead."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--task", help="Task slug (for a new run)")
        parser.add_argument("--run", type=int, help="Continue this refinement run")
        parser.add_argument("--heldout", type=float, default=0.3, help="Held-out fraction (default 0.3)")
        parser.add_argument("--max-cases", type=int, default=40)
        parser.add_argument("--max-heldout", type=int, default=60)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--model", help="LLM model name (default: the discriminator model)")
        parser.add_argument(
            "--rules-file", help="Replace the proposal with these rules (`id: question` lines)"
        )
        parser.add_argument("--no-check", action="store_true", help="Stop after the proposal")
        parser.add_argument("--adopt", action="store_true", help="Adopt the checked proposal")
        parser.add_argument(
            "--adopt-if-better", action="store_true", help="Adopt only if its held-out agreement is higher"
        )
        parser.add_argument("--discard", action="store_true", help="Discard the run's proposal")
        parser.add_argument("--queue", action="store_true", help="Queue the proposal for a Celery worker")

    def handle(self, *args, **opts) -> None:
        catalog.ensure_catalog()
        try:
            run = self._run(opts)
            if opts["discard"]:
                refinement.discard(run)
                self.stdout.write(f"Refinement run #{run.pk} discarded.")
                return
            if run.stage == RefinementRun.Stage.PROPOSING:
                if opts["queue"]:
                    self.stdout.write(f"Refinement run #{run.pk} queued for the `llm` queue.")
                    return
                run = refinement.propose(run.pk)
            if run.stage == RefinementRun.Stage.FAILED:
                raise CommandError(f"Refinement run #{run.pk} failed: {run.error}")
            if opts["rules_file"]:
                rules = catalog.parse_rules_text(Path(opts["rules_file"]).read_text(encoding="utf-8"))
                run = refinement.edit_proposal(run, rules)
            self._print_changes(run)
            if opts["no_check"]:
                return
            if run.stage == RefinementRun.Stage.PROPOSED:
                refinement.prepare_check(run)
                bar = ProgressBar(self.stdout)
                run = refinement.check(run.pk, on_progress=bar)
                bar.close()
            if run.stage != RefinementRun.Stage.CHECKED:
                raise CommandError(f"The check did not finish: {run.error or run.get_stage_display()}")
            self._print_check(run)
            better = run.check_results["proposed"]["agreement"] or 0
            current = run.check_results["current"]["agreement"] or 0
            if opts["adopt"] or (opts["adopt_if_better"] and better > current):
                version = refinement.adopt(run)
                self.stdout.write(self.style.SUCCESS(f"Adopted principles v{version.version}."))
            elif opts["adopt_if_better"]:
                self.stdout.write("Not adopted: the proposal does not agree better with the reviewers.")
        except (refinement.RefinementError, ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc

    def _run(self, opts) -> RefinementRun:
        if opts["run"]:
            run = RefinementRun.objects.filter(pk=opts["run"]).first()
            if run is None:
                raise CommandError(f"No refinement run #{opts['run']}.")
            return run
        if not opts["task"]:
            raise CommandError("Give --task SLUG for a new run, or --run N to continue one.")
        options = dict(
            task=opts["task"],
            heldout_fraction=opts["heldout"],
            max_cases=opts["max_cases"],
            max_heldout=opts["max_heldout"],
            seed=opts["seed"],
            model=opts["model"],
        )
        if opts["queue"]:
            return launch.start_refinement(user=None, **options)
        return refinement.create_refinement_run(**options)

    def _print_changes(self, run: RefinementRun) -> None:
        self.stdout.write(
            f"Refinement run #{run.pk} of {run.task.slug}: {len(run.case_ids)} cases, "
            f"{len(run.heldout_ids)} held out. Proposed changes:"
        )
        marks = {"added": "+", "removed": "-", "reworded": "~", "kept": " "}
        for c in run.changes:
            text = c["question"] or c["old_question"]
            self.stdout.write(f"  {marks[c['op']]} {c['id']}: {text}")
            if c["op"] == "reworded":
                self.stdout.write(f"      was: {c['old_question']}")
            if c["op"] != "kept" and c["rationale"]:
                self.stdout.write(f"      why: {c['rationale']}")

    def _print_check(self, run: RefinementRun) -> None:
        r = run.check_results
        self.stdout.write(f"Held-out check on {r['judged']} of {r['heldout']} instances:")
        for key in ("current", "proposed"):
            m = r[key]
            self.stdout.write(
                f"  {key:<9} v{r[key + '_version']}: agreement {pct(m['agreement'])}, "
                f"kappa {kappa(m['kappa'])}, "
                f"false acceptances {m['false_accept']}, false rejections {m['false_reject']}"
            )
