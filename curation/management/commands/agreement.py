"""`python manage.py agreement`: discriminator-vs-human agreement per task and per rule."""

import json

from django.core.management.base import BaseCommand, CommandError

from curation import analytics
from curation.templatetags.stats import kappa as _kappa
from curation.templatetags.stats import pct as _pct


class Command(BaseCommand):
    help = (
        "Show how well the discriminator's verdicts predict the reviewers' decisions: confusion matrix, "
        "Cohen's kappa, each rule's precision/recall as a predictor of rejection, trend per principle "
        "version."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--task", default="", help="One task slug (default: all)")
        parser.add_argument("--json", action="store_true", help="Print JSON (the API's format)")

    def handle(self, *args, **opts) -> None:
        try:
            items = analytics.all_analytics(opts["task"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps([item.as_dict() for item in items], indent=1))
            return
        for item in items:
            c = item.confusion
            self.stdout.write(self.style.MIGRATE_HEADING(f"{item.task.name}"))
            if not c.n:
                self.stdout.write("  no reviewed instances with a verdict yet")
                continue
            self.stdout.write(
                f"  n={c.n}  agreement {_pct(c.agreement)}  kappa {_kappa(c.kappa)}\n"
                f"                 human accept  human reject\n"
                f"  verdict pass   {c.true_accept:>12}  {c.false_accept:>12}\n"
                f"  verdict fail   {c.false_reject:>12}  {c.true_reject:>12}"
            )
            self.stdout.write(
                f"  {'rule':<28} {'fired':>7} {'prec.':>6} {'recall':>6} "
                f"{'false rej.':>10} {'false acc.':>10}"
            )
            for r in item.rules:
                self.stdout.write(
                    f"  {r.rule_id[:28]:<28} {r.fired:>7} {_pct(r.precision):>6} {_pct(r.recall):>6} "
                    f"{r.false_rejections:>10} {r.false_acceptances:>10}"
                )
            for p in item.trend:
                current = " (current)" if p.is_current else ""
                self.stdout.write(
                    f"  principles v{p.version}{current}: n={p.confusion.n} "
                    f"agreement {_pct(p.confusion.agreement)} kappa {_kappa(p.confusion.kappa)}"
                )
