"""Agreement analytics: how well the discriminator predicts the reviewers, per task and per rule.

Terms, used the same way on the page, in the API and in the tests:

* An instance counts once it has a final human decision (agreed reviewers or a curator) and a verdict.
  The current figures compare each instance's current verdict with that decision.
* Confusion matrix, discriminator verdict (rows) against human decision (columns):
  pass/accept = true acceptance, pass/reject = **false acceptance**,
  fail/accept = **false rejection**, fail/reject = true rejection.
* Agreement = (true acceptances + true rejections) / n; Cohen's kappa corrects it for chance.
* A rule "fires" when the discriminator answered *no* to it. As a predictor of human rejection, its
  precision is P(rejected | fired) and its recall is P(fired | rejected).
* A false rejection is blamed on every rule that fired; a false acceptance on the rules the rejecting
  reviewers named as broken (the discriminator said yes to them all), or on "no rule named".
* The trend compares, per principle version, the verdicts made with that version (the latest per
  instance) with the human decisions, so re-judged instances count under each version they saw.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode

from django.db.models import Count, Exists, F, OuterRef
from django.urls import reverse
from sklearn.metrics import cohen_kappa_score

from .models import CodeTask, Instance, Review, RuleVerdict, Verdict

ACCEPT, REJECT = Instance.Decision.ACCEPT, Instance.Decision.REJECT
NO_RULE = "(no rule named)"
CASES_PER_RULE = 5


@dataclass
class Confusion:
    """Discriminator verdict against human decision."""

    true_accept: int = 0  # pass, accepted
    false_accept: int = 0  # pass, rejected
    false_reject: int = 0  # fail, accepted
    true_reject: int = 0  # fail, rejected

    def add(self, passed: bool, human: str, n: int = 1) -> None:
        if passed:
            key = "true_accept" if human == ACCEPT else "false_accept"
        else:
            key = "false_reject" if human == ACCEPT else "true_reject"
        setattr(self, key, getattr(self, key) + n)

    @property
    def n(self) -> int:
        return self.true_accept + self.false_accept + self.false_reject + self.true_reject

    @property
    def agreement(self) -> float | None:
        return (self.true_accept + self.true_reject) / self.n if self.n else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa of the 2×2 table (scikit-learn, weighted by the cell counts); None when it is
        undefined: no instances, or both raters used one label throughout."""
        cells = [
            ("pass", "accept", self.true_accept),
            ("pass", "reject", self.false_accept),
            ("fail", "accept", self.false_reject),
            ("fail", "reject", self.true_reject),
        ]
        cells = [c for c in cells if c[2]]
        labels = {c[0] == "pass" for c in cells} | {c[1] == "accept" for c in cells}
        if not cells or len(labels) < 2:
            return None
        verdicts = [c[0] == "pass" for c in cells]
        humans = [c[1] == "accept" for c in cells]
        return float(cohen_kappa_score(verdicts, humans, sample_weight=[c[2] for c in cells]))

    def as_dict(self) -> dict:
        return asdict(self) | {"n": self.n, "agreement": self.agreement, "kappa": self.kappa}


@dataclass
class RuleStats:
    rule_id: str
    question: str
    fired: int = 0  # the rule said no
    fired_rejected: int = 0  # ... and the human rejected
    rejected: int = 0  # human rejections among instances judged on this rule
    judged: int = 0
    false_rejections: int = 0  # fired, but the human accepted
    false_acceptances: int = 0  # the human named it broken; the discriminator passed the instance
    false_rejection_cases: list[int] = field(default_factory=list)
    false_acceptance_cases: list[int] = field(default_factory=list)
    false_rejection_url: str = ""
    false_acceptance_url: str = ""

    @property
    def precision(self) -> float | None:
        return self.fired_rejected / self.fired if self.fired else None

    @property
    def recall(self) -> float | None:
        return self.fired_rejected / self.rejected if self.rejected else None

    def as_dict(self) -> dict:
        return asdict(self) | {"precision": self.precision, "recall": self.recall}


@dataclass
class VersionPoint:
    version: int
    principle_version_id: int
    is_current: bool
    confusion: Confusion

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "principle_version_id": self.principle_version_id,
            "is_current": self.is_current,
            **self.confusion.as_dict(),
        }


@dataclass
class TaskAnalytics:
    task: CodeTask
    confusion: Confusion
    rules: list[RuleStats]
    trend: list[VersionPoint]

    @property
    def false_rejection_ranking(self) -> list[RuleStats]:
        return sorted((r for r in self.rules if r.false_rejections), key=lambda r: -r.false_rejections)

    @property
    def false_acceptance_ranking(self) -> list[RuleStats]:
        return sorted((r for r in self.rules if r.false_acceptances), key=lambda r: -r.false_acceptances)

    def as_dict(self) -> dict:
        return {
            "task": self.task.slug,
            "name": self.task.name,
            "current_principle_version": (
                self.task.current_principles.version if self.task.current_principles_id else None
            ),
            "confusion": self.confusion.as_dict(),
            "rules": [r.as_dict() for r in self.rules],
            "top_false_rejections": [r.rule_id for r in self.false_rejection_ranking],
            "top_false_acceptances": [r.rule_id for r in self.false_acceptance_ranking],
            "trend": [p.as_dict() for p in self.trend],
        }


def _decided():
    """Instances with a final human decision and a current verdict."""
    return Instance.objects.filter(human_decision__isnull=False, verdict__isnull=False)


def _review_list_url(**params) -> str:
    return reverse("review-list") + "?" + urlencode(params)


def _rule_stats(task: CodeTask) -> list[RuleStats]:
    questions = {
        r["id"]: r["question"] for r in (task.current_principles.rules if task.current_principles else [])
    }
    stats: dict[str, RuleStats] = {}

    def get(rule_id: str, question: str = "") -> RuleStats:
        if rule_id not in stats:
            stats[rule_id] = RuleStats(rule_id, questions.get(rule_id) or question)
        return stats[rule_id]

    for rule_id in questions:
        get(rule_id)
    # Rule answers of the current verdicts of decided instances, counted per (rule, answer, decision).
    current = RuleVerdict.objects.filter(
        verdict__instance__task=task,
        verdict__instance__human_decision__isnull=False,
        verdict__instance__verdict_id=F("verdict_id"),
    )
    rows = current.values("rule_id", "question", "passed", "verdict__instance__human_decision").annotate(
        n=Count("id")
    )
    for row in rows:
        s = get(row["rule_id"], row["question"])
        rejected = row["verdict__instance__human_decision"] == REJECT
        s.judged += row["n"]
        s.rejected += row["n"] if rejected else 0
        if not row["passed"]:
            s.fired += row["n"]
            if rejected:
                s.fired_rejected += row["n"]
            else:
                s.false_rejections += row["n"]
    for s in stats.values():
        if s.false_rejections:
            s.false_rejection_cases = list(
                current.filter(rule_id=s.rule_id, passed=False, verdict__instance__human_decision=ACCEPT)
                .order_by("-verdict__instance_id")
                .values_list("verdict__instance_id", flat=True)[:CASES_PER_RULE]
            )
            s.false_rejection_url = _review_list_url(
                task=task.slug, rule=s.rule_id, verdict="fail", disagreement="1", status=""
            )
    # False acceptances: the rules the rejecting reviewers named.
    rejections = Review.objects.filter(
        instance__task=task,
        instance__human_decision=REJECT,
        instance__passed=True,
        decision=Review.Decision.REJECT,
    ).order_by("-instance_id")
    blamed: dict[str, list[int]] = defaultdict(list)
    for instance_id, broken in rejections.values_list("instance_id", "broken_rules").iterator():
        for rule_id in set(broken or []) or {NO_RULE}:
            if instance_id not in blamed[rule_id]:
                blamed[rule_id].append(instance_id)
    for rule_id, instance_ids in blamed.items():
        s = get(rule_id)
        s.false_acceptances = len(instance_ids)
        s.false_acceptance_cases = instance_ids[:CASES_PER_RULE]
        s.false_acceptance_url = _review_list_url(task=task.slug, verdict="pass", disagreement="1")
    return list(stats.values())


def _trend(task: CodeTask) -> list[VersionPoint]:
    newer = Verdict.objects.filter(
        instance_id=OuterRef("instance_id"),
        principle_version_id=OuterRef("principle_version_id"),
        id__gt=OuterRef("id"),
    )
    rows = (
        Verdict.objects.filter(principle_version__task=task, instance__human_decision__isnull=False)
        .filter(~Exists(newer))
        .values("principle_version_id", "principle_version__version", "passed", "instance__human_decision")
        .annotate(n=Count("id"))
    )
    points: dict[int, VersionPoint] = {}
    for row in rows:
        pk = row["principle_version_id"]
        if pk not in points:
            points[pk] = VersionPoint(
                row["principle_version__version"], pk, pk == task.current_principles_id, Confusion()
            )
        points[pk].confusion.add(row["passed"], row["instance__human_decision"], row["n"])
    return sorted(points.values(), key=lambda p: p.version)


def confusion_for(task: CodeTask | None = None) -> Confusion:
    """The current confusion matrix of one task, or of all tasks."""
    qs = _decided() if task is None else _decided().filter(task=task)
    confusion = Confusion()
    for row in qs.values("passed", "human_decision").annotate(n=Count("id")):
        confusion.add(row["passed"], row["human_decision"], row["n"])
    return confusion


def task_analytics(task: CodeTask) -> TaskAnalytics:
    return TaskAnalytics(task, confusion_for(task), _rule_stats(task), _trend(task))


def all_analytics(slug: str = "") -> list[TaskAnalytics]:
    """Analytics for every task (or the one with `slug`). ValueError for an unknown slug."""
    tasks = CodeTask.objects.select_related("current_principles").order_by("id")
    if slug:
        tasks = tasks.filter(slug=slug)
        if not tasks:
            raise ValueError(f"No task {slug!r}; tasks are {', '.join(CodeTask.Slug.values)}.")
    return [task_analytics(task) for task in tasks]


def decided_counts() -> Counter:
    """{task slug: instances with a human decision and a verdict}: what the analytics rest on."""
    return Counter(dict(_decided().values_list("task__slug").annotate(n=Count("id"))))
