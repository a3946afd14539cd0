"""Review: people accept, edit or reject what the Generator made, with the Discriminator's verdict in view.

The queue hands each reviewer one instance at a time under a lease (an `Assignment`); an instance is held
by at most `job.overlap` reviewers, each deciding once. A reviewer decides only an instance they hold, or
one with a free seat under the overlap, which the decision takes the way the queue would (`NotHeld`
otherwise). Reviewing is blind: until a reviewer accepts or rejects, they are shown the generated text,
never another reviewer's edit. When `overlap` reviewers agree the instance is accepted or rejected; when
they disagree it is a conflict a curator resolves. Edits are revisions, guarded by an optimistic lock
(`Instance.version`): a stale decision raises `Conflict`, never overwrites.
The final human decision feeds the example pools and outranks the discriminator's judgement there.

Views, the API and tests call these functions; none of the logic lives in a view.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from . import pools
from .models import (
    Assignment,
    CodeTask,
    Instance,
    InstanceRevision,
    PoolExample,
    Review,
    RuleVerdict,
)

LEASE = timedelta(seconds=getattr(settings, "REVIEW_LEASE_S", 600))
# A bulk action touches at most this many instances; a larger selection must be narrowed first.
BULK_LIMIT = 5000
DECIDED = (Review.Decision.ACCEPT, Review.Decision.REJECT)
OPEN = (Instance.ReviewStatus.IN_REVIEW, Instance.ReviewStatus.UNREVIEWED)  # in queue order
# Counting a selection reads every row of it. Past this many rows (by the planner's estimate), or past
# COUNT_BUDGET_MS of counting, the facet counts are the planner's estimates instead (PostgreSQL only).
EXACT_COUNT_LIMIT = 5_000
COUNT_BUDGET_MS = 25
FILTER_KEYS = ("task", "language", "verdict", "rule", "status", "disagreement", "job", "q")
Status = Instance.ReviewStatus


class ReviewError(ValueError):
    """A decision that cannot be taken as asked (missing reason, unknown rule, nothing to undo...)."""


class NotHeld(ReviewError):
    """The reviewer neither holds the instance nor may take a seat on it: it is not theirs to decide."""

    def __init__(self, instance_id: int) -> None:
        self.instance_id = instance_id
        super().__init__(
            f"Instance #{instance_id} is not assigned to you, so it is not shown and nothing was saved. "
            "Review the instance the queue gives you."
        )


# A decision names the version it was made on; without one it could not be checked for staleness.
VERSION_REQUIRED = (
    "This decision needs the version of the instance you reviewed (expected_version); nothing was "
    "saved. Reload the instance and decide again."
)


class Conflict(Exception):
    """The instance changed since the reviewer loaded it; carries the newer text."""

    def __init__(self, instance: Instance, revision: InstanceRevision | None) -> None:
        self.instance, self.revision = instance, revision
        who = f" by {revision.author}" if revision and revision.author else ""
        super().__init__(
            f"Instance #{instance.pk} changed while you were reviewing it: it is now at version "
            f"{instance.version}{who}. Nothing was saved; review the newer version."
        )

    @property
    def blind_message(self) -> str:
        """The message for a reviewer who has not decided yet: names neither the editor nor the text."""
        return (
            f"Instance #{self.instance.pk} changed while you were reviewing it (it is now at version "
            f"{self.instance.version}). Nothing was saved; decide again."
        )


# --- Filters -------------------------------------------------------------------------------------


def clean_filters(data: Mapping[str, str]) -> dict[str, str]:
    """The known, non-empty filters from a query string."""
    return {key: str(data.get(key, "")).strip() for key in FILTER_KEYS if str(data.get(key, "")).strip()}


def reviewable() -> QuerySet[Instance]:
    """Instances a person can review: generated and judged."""
    return Instance.objects.filter(status=Instance.Status.DONE)


def filter_instances(qs: QuerySet[Instance], filters: Mapping[str, str]) -> QuerySet[Instance]:
    """Narrow `qs` by task slug, language, overall verdict (pass/fail), failing rule id, review status,
    human-vs-discriminator disagreement ("1"), generation job id and text search (`q`)."""
    if task := filters.get("task"):
        # By id, not by a join on the slug: the planner then knows how many rows the task has.
        qs = qs.filter(task_id=CodeTask.objects.filter(slug=task).values_list("id", flat=True).first())
    if language := filters.get("language"):
        qs = qs.filter(language=language)
    if filters.get("verdict") in ("pass", "fail"):
        qs = qs.filter(passed=filters["verdict"] == "pass")
    if rule := filters.get("rule"):
        qs = qs.filter(
            Exists(RuleVerdict.objects.filter(verdict_id=OuterRef("verdict_id"), rule_id=rule, passed=False))
        )
    if (status := filters.get("status")) in Status.values:
        qs = qs.filter(review_status=status)
    if filters.get("disagreement"):
        qs = qs.filter(
            Q(human_decision=Instance.Decision.ACCEPT, passed=False)
            | Q(human_decision=Instance.Decision.REJECT, passed=True)
        )
    if (job := filters.get("job", "")).isdigit():
        qs = qs.filter(job_id=int(job))
    if q := filters.get("q"):
        qs = qs.filter(Q(instruction__icontains=q) | Q(input__icontains=q) | Q(output__icontains=q))
    return qs


@dataclass
class FilterCounts:
    total: int
    by_status: dict[str, int]
    by_task: dict[str, int]
    by_language: dict[str, int]
    by_verdict: dict[str, int]
    # True when the counts are the planner's estimates (a large selection), not exact.
    approximate: bool = False

    @property
    def decided(self) -> int:
        return sum(self.by_status.get(s, 0) for s in (Status.ACCEPTED, Status.REJECTED, Status.RESOLVED))

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.decided / self.total)) if self.total else 0


def languages() -> list[str]:
    """Languages that instances are written in (a facet's options). One indexed step per language
    (`language > last ORDER BY language LIMIT 1`) instead of a DISTINCT over every row, and kept for a
    minute: new languages arrive with generation jobs, not between two reviews."""
    found = cache.get(_LANGUAGES_KEY)
    if found is not None:
        return found
    found = []
    qs = reviewable().exclude(language="").order_by("language").values_list("language", flat=True)
    while (lang := (qs.filter(language__gt=found[-1]) if found else qs).first()) is not None:
        found.append(lang)
    cache.set(_LANGUAGES_KEY, found, 60)
    return found


_LANGUAGES_KEY = "review:languages"


def _estimate(qs: QuerySet) -> int:
    """The planner's estimate of how many rows `qs` returns (EXPLAIN, nothing is read)."""
    sql, params = qs.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def _aggregate_within_budget(qs: QuerySet, aggregates: dict) -> dict | None:
    """qs.aggregate(...), or None when it would take longer than COUNT_BUDGET_MS (the estimate of a
    selection can be far off, as for a text search)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # No JIT: compiling takes longer than counting a small selection, and cannot be cancelled.
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true), set_config('jit', 'off', true)",
                [f"{COUNT_BUDGET_MS}ms"],
            )
            row = qs.aggregate(**aggregates)
            cursor.execute("SET LOCAL statement_timeout TO DEFAULT; SET LOCAL jit TO DEFAULT")
    except OperationalError:  # canceled by the timeout; the savepoint is rolled back
        return None
    return row


def filter_counts(
    filters: Mapping[str, str], *, language_options: Sequence[str] | None = None
) -> FilterCounts:
    """Counts of the filtered instances per review status, task, language and verdict.

    A small selection is counted exactly, in one query of conditional aggregates (one pass over the
    matching rows). A large one is not counted: on PostgreSQL each count is the planner's estimate
    (`approximate`), so the page costs the same at a million rows as at a thousand."""
    tasks = dict(CodeTask.objects.values_list("id", "slug"))
    langs = list(language_options if language_options is not None else languages())
    facets = {"total": Q()}
    facets |= {f"s_{s}": Q(review_status=s) for s in Status.values}
    facets |= {f"t_{slug}": Q(task_id=pk) for pk, slug in tasks.items()}
    facets |= {f"l_{n}": Q(language=lang) for n, lang in enumerate(langs)}
    facets |= {"v_pass": Q(passed=True), "v_fail": Q(passed=False)}
    qs = filter_instances(reviewable(), filters).order_by()
    aggregates = {key: Count("id", filter=q) if q else Count("id") for key, q in facets.items()}
    approximate = False
    if connection.vendor != "postgresql":
        row = qs.aggregate(**aggregates)
    elif _estimate(qs) <= EXACT_COUNT_LIMIT and (row := _aggregate_within_budget(qs, aggregates)):
        pass
    else:
        row = {key: _estimate(qs.filter(q)) for key, q in facets.items()}
        approximate = True
    return FilterCounts(
        total=row["total"],
        by_status={s: row[f"s_{s}"] for s in Status.values},
        by_task={slug: row[f"t_{slug}"] for slug in tasks.values()},
        by_language={lang: row[f"l_{n}"] for n, lang in enumerate(langs)},
        by_verdict={"pass": row["v_pass"], "fail": row["v_fail"]},
        approximate=approximate,
    )


# --- The queue -----------------------------------------------------------------------------------


def _candidates(reviewer, filters: Mapping[str, str], status: str, now) -> QuerySet[Instance]:
    """Open instances in one review status that this reviewer may take: not decided or skipped by them,
    and with fewer than `overlap` reviewers holding or having decided them."""
    held = (
        Assignment.objects.filter(instance=OuterRef("pk"), lease_until__gt=now)
        .exclude(reviewer=reviewer)
        .order_by()
        .values("instance")
        .annotate(n=Count("id"))
        .values("n")
    )
    decided = (
        Review.objects.filter(instance=OuterRef("pk"), is_resolution=False, decision__in=DECIDED)
        .order_by()
        .values("instance")
        .annotate(n=Count("id"))
        .values("n")
    )
    qs = filter_instances(reviewable().filter(review_status=status), {**filters, "status": ""})
    qs = qs.exclude(Exists(Review.objects.filter(instance=OuterRef("pk"), reviewer=reviewer)))
    if status == Status.UNREVIEWED:
        taken = Coalesce(Subquery(held), 0)  # nobody decided an unreviewed one yet
    else:
        taken = Coalesce(Subquery(held), 0) + Coalesce(Subquery(decided), 0)
    return qs.annotate(taken=taken).filter(taken__lt=F("job__overlap")).order_by("id")


def _holds(reviewer, instance_id: int, now) -> bool:
    return Assignment.objects.filter(instance_id=instance_id, reviewer=reviewer, lease_until__gt=now).exists()


def holds(reviewer, instance_id: int) -> bool:
    """True while the reviewer's lease on the instance runs."""
    return _holds(reviewer, instance_id, timezone.now())


def _lease(reviewer, instance_id: int, now) -> None:
    # One instance held at a time: taking a new one lets go of the others.
    Assignment.objects.filter(reviewer=reviewer).exclude(instance_id=instance_id).delete()
    Assignment.objects.update_or_create(
        instance_id=instance_id, reviewer=reviewer, defaults={"lease_until": now + LEASE}
    )


def _held(reviewer, filters: Mapping[str, str], now) -> QuerySet[Instance]:
    """Open instances the reviewer holds and has not reviewed yet, matching the filters."""
    mine = Assignment.objects.filter(reviewer=reviewer, lease_until__gt=now).values("instance_id")
    held = filter_instances(reviewable().filter(pk__in=mine, review_status__in=OPEN), filters)
    return held.exclude(Exists(Review.objects.filter(instance=OuterRef("pk"), reviewer=reviewer)))


def held_instance(reviewer, filters: Mapping[str, str] | None = None) -> Instance | None:
    """The instance the reviewer holds now, if any; unlike next_instance it never takes a new one."""
    return _held(reviewer, dict(filters or {}), timezone.now()).order_by("id").first()


def next_instance(reviewer, filters: Mapping[str, str] | None = None) -> Instance | None:
    """The instance this reviewer should review now, leased to them; None when the queue is empty.

    An instance the reviewer still holds comes back first (a reload shows the same one). Otherwise the
    oldest open instance they may take, finishing instances others started (overlap) before new ones.
    Two reviewers can never both take the last free seat: the candidate row is locked and re-checked
    before the lease is written."""
    filters = dict(filters or {})
    now = timezone.now()
    if instance := _held(reviewer, filters, now).order_by("id").first():
        Assignment.objects.filter(instance=instance, reviewer=reviewer).update(lease_until=now + LEASE)
        return instance
    for status in OPEN:
        tried: list[int] = []
        for _ in range(5):  # a few losers of a race move on to the next candidate
            with transaction.atomic():
                qs = _candidates(reviewer, filters, status, now).exclude(pk__in=tried)
                pk = qs.select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True).first()
                if pk is None:
                    break
                # Re-check under the row lock, with a fresh snapshot: someone may have just taken it.
                if not _candidates(reviewer, {}, status, timezone.now()).filter(pk=pk).exists():
                    tried.append(pk)
                    continue
                _lease(reviewer, pk, now)
                return Instance.objects.get(pk=pk)
    return None


def release(reviewer) -> None:
    """Let go of every instance this reviewer holds."""
    Assignment.objects.filter(reviewer=reviewer).delete()


# --- Decisions -----------------------------------------------------------------------------------


def _locked(instance: Instance | int) -> Instance:
    pk = instance.pk if isinstance(instance, Instance) else instance
    related = ("job", "verdict__principle_version")
    return Instance.objects.select_for_update(of=("self",)).select_related(*related).get(pk=pk)


def _is_stale(instance: Instance, expected_version: int | None) -> bool:
    return expected_version is not None and int(expected_version) != instance.version


def _take_hold(row: Instance, reviewer) -> None:
    """Make sure the reviewer holds the locked, open instance: their running lease, or else a free seat
    under the job's overlap, leased as next_instance leases one. NotHeld when neither."""
    now = timezone.now()
    if _holds(reviewer, row.pk, now):
        return
    # The row lock serialises this with next_instance's re-check: two reviewers never share a last seat.
    if not _candidates(reviewer, {}, row.review_status, now).filter(pk=row.pk).exists():
        raise NotHeld(row.pk)
    _lease(reviewer, row.pk, now)


def _check_open(instance: Instance, reviewer) -> None:
    if instance.status != Instance.Status.DONE:
        raise ReviewError(f"Instance #{instance.pk} is not ready for review.")
    if instance.review_status not in OPEN:
        label = Status(instance.review_status).label.lower()
        raise ReviewError(f"Instance #{instance.pk} needs no more reviews (it is {label}).")
    if Review.objects.filter(instance=instance, reviewer=reviewer, is_resolution=False).exists():
        raise ReviewError(f"You already reviewed instance #{instance.pk}; undo your decision to change it.")


def _decide(
    instance: Instance | int,
    reviewer,
    decision: str,
    *,
    expected_version: int | None,
    reason: str = "",
    broken_rules: Iterable[str] = (),
    fields: Mapping[str, str] | None = None,
) -> Review:
    with transaction.atomic():
        row = _locked(instance)
        _check_open(row, reviewer)
        _take_hold(row, reviewer)
        stale = _is_stale(row, expected_version)
        if not stale:
            revision = None
            if fields is not None:
                revision = _add_revision(row, reviewer, fields)
            review = Review.objects.create(
                instance=row,
                reviewer=reviewer,
                decision=decision,
                reason=reason,
                broken_rules=list(broken_rules),
                revision=revision,
            )
            Assignment.objects.filter(instance=row, reviewer=reviewer).delete()
            recompute(row)
    if stale:
        # Raised after the commit: the hold stays, so the reviewer goes on with the newer version.
        raise Conflict(row, row.current_revision)
    return review


def _add_revision(row: Instance, author, fields: Mapping[str, str]) -> InstanceRevision:
    # The reviewer edited what they were shown: the generated text (blind), never another one's edit.
    base = generated_text(row)
    text = {
        name: str(fields.get(name, base[name])).replace("\r\n", "\n") for name in InstanceRevision.EDITABLE
    }
    if not text["instruction"].strip() or not text["output"].strip():
        raise ReviewError("An edit needs an instruction and an output.")
    last = row.revisions.order_by("-number").values_list("number", flat=True).first() or 0
    revision = InstanceRevision.objects.create(instance=row, number=last + 1, author=author, **text)
    row.current_revision, row.version = revision, row.version + 1
    Instance.objects.filter(pk=row.pk).update(current_revision=revision, version=row.version)
    return revision


def accept(instance: Instance | int, reviewer, *, expected_version: int | None) -> Review:
    """Accept the instance as it stands (its latest revision). Conflict if it changed since loaded."""
    return _decide(instance, reviewer, Review.Decision.ACCEPT, expected_version=expected_version)


def edit_and_accept(
    instance: Instance | int, reviewer, fields: Mapping[str, str], *, expected_version: int | None
) -> Review:
    """Save the reviewer's edit as a new revision and accept it. Conflict (with the newer revision) when
    someone changed the instance since `expected_version`; nothing is written then."""
    if expected_version is None:
        raise ReviewError("An edit needs the version it was made from.")
    return _decide(
        instance, reviewer, Review.Decision.ACCEPT, expected_version=expected_version, fields=fields
    )


def rule_ids(instance: Instance) -> list[str]:
    """Ids of the rules of the principle version the instance was judged with."""
    if not instance.verdict_id:
        return []
    return [rule["id"] for rule in instance.verdict.principle_version.rules]


def _check_rejection(instance: Instance, reason: str, broken_rules: Iterable[str]) -> list[str]:
    if not (reason or "").strip():
        raise ReviewError("Say why the instance is rejected.")
    broken = list(dict.fromkeys(broken_rules))
    unknown = set(broken) - set(rule_ids(instance))
    if unknown:
        raise ReviewError(f"Not rules of this instance's principles: {', '.join(sorted(unknown))}.")
    return broken


def reject(
    instance: Instance | int,
    reviewer,
    *,
    reason: str,
    broken_rules: Iterable[str] = (),
    expected_version: int | None,
) -> Review:
    """Reject the instance with a reason and the ids of the rules it breaks (from its principles)."""
    row = Instance.objects.select_related("verdict__principle_version").get(
        pk=instance.pk if isinstance(instance, Instance) else instance
    )
    broken = _check_rejection(row, reason, broken_rules)
    return _decide(
        row,
        reviewer,
        Review.Decision.REJECT,
        expected_version=expected_version,
        reason=reason.strip(),
        broken_rules=broken,
    )


def skip(instance: Instance | int, reviewer, *, expected_version: int | None = None) -> Review:
    """Pass on the instance: it goes back to the queue for others and never comes back to this reviewer."""
    return _decide(instance, reviewer, Review.Decision.SKIP, expected_version=expected_version)


def last_review(reviewer) -> Review | None:
    """The reviewer's latest decision (not a curator's resolution)."""
    return (
        Review.objects.filter(reviewer=reviewer, is_resolution=False)
        .select_related("instance", "revision")
        .order_by("-id")
        .first()
    )


def undo_last(reviewer) -> Instance:
    """Take back the reviewer's latest decision and its revision, and hand the instance back to them."""
    review = last_review(reviewer)
    if review is None:
        raise ReviewError("Nothing to undo.")
    with transaction.atomic():
        row = _locked(review.instance_id)
        if row.review_status == Status.RESOLVED:
            raise ReviewError(f"Instance #{row.pk} was resolved by a curator; it cannot be undone.")
        revision = review.revision
        review.delete()
        # Remove the edit only while it is the latest text; if someone built on it, it stays as history.
        if revision is not None and row.current_revision_id == revision.pk:
            revision.delete()
            previous = row.revisions.order_by("-number").first()
            row.current_revision, row.version = previous, row.version + 1
            Instance.objects.filter(pk=row.pk).update(current_revision=previous, version=row.version)
        release(reviewer)
        Assignment.objects.create(instance=row, reviewer=reviewer, lease_until=timezone.now() + LEASE)
        recompute(row)
    return row


def recompute(row: Instance) -> None:
    """Derive the review status and the human decision from the reviews, and update the pools when the
    human decision changes. Call inside a transaction holding the instance's row lock."""
    decisions = list(
        row.reviews.filter(decision__in=DECIDED).order_by("id").values_list("decision", "is_resolution")
    )
    resolution = [d for d, is_resolution in decisions if is_resolution]
    votes = [d for d, is_resolution in decisions if not is_resolution]
    if resolution:
        status, human = Status.RESOLVED, resolution[-1]
    elif not votes:
        status, human = Status.UNREVIEWED, None
    elif len(votes) < row.job.overlap:
        # Wait for every reviewer even after a disagreement: agreement statistics need full rows.
        status, human = Status.IN_REVIEW, None
    elif len(set(votes)) > 1:
        status, human = Status.CONFLICT, None
    else:
        status = Status.ACCEPTED if votes[0] == Review.Decision.ACCEPT else Status.REJECTED
        human = votes[0]
    changed = human != row.human_decision
    row.review_status, row.human_decision = status, human
    Instance.objects.filter(pk=row.pk).update(review_status=status, human_decision=human)
    if changed or human:
        _update_pools(row)


# --- Pools ---------------------------------------------------------------------------------------


def current_text(instance: Instance) -> dict[str, str]:
    """The instance's fields as they stand: the latest revision, else the generated text."""
    source = instance.current_revision if instance.current_revision_id else instance
    return {name: getattr(source, name) for name in InstanceRevision.EDITABLE}


def generated_text(instance: Instance) -> dict[str, str]:
    """The instance's fields as the generator wrote them (revision 0)."""
    return {name: getattr(instance, name) for name in InstanceRevision.EDITABLE}


def is_blind(instance: Instance, reviewer) -> bool:
    """True until the reviewer accepts or rejects the instance (a skip does not count): until then they
    see the generated text only, so overlapping reviewers judge independently."""
    return not Review.objects.filter(
        instance=instance, reviewer=reviewer, is_resolution=False, decision__in=DECIDED
    ).exists()


def _update_pools(row: Instance) -> None:
    """A human decision puts the instance in the pool in its reviewed form (origin human) and takes the
    discriminator's entry out, so the two never contradict; no decision restores the discriminator's."""
    if row.human_decision is None:
        PoolExample.objects.filter(instance=row, origin=PoolExample.Origin.HUMAN).delete()
        if row.verdict_id and not PoolExample.objects.filter(instance=row).exists():
            failed = [f"{r.rule_id}: {r.reason}" for r in row.verdict.rules.all() if not r.passed]
            pools.add_judged(row, row.verdict, failed)
        return
    accepted = row.human_decision == Instance.Decision.ACCEPT
    if accepted:
        reasons = "Accepted by a reviewer."
    else:
        rejections = row.reviews.filter(decision=Review.Decision.REJECT).order_by("-is_resolution", "-id")
        reasons = "; ".join(
            (f"[{', '.join(r.broken_rules)}] " if r.broken_rules else "") + r.reason for r in rejections[:3]
        )
    fields = {
        "task_id": row.task_id,
        "kind": PoolExample.Kind.GOOD if accepted else PoolExample.Kind.BAD,
        "language": row.language,
        "target_language": row.target_language,
        "reasons": reasons or "Rejected by a reviewer.",
        "source_code": row.sample.code if row.sample_id else "",
        **current_text(row),
    }
    PoolExample.objects.filter(instance=row, origin=PoolExample.Origin.DISCRIMINATOR).delete()
    PoolExample.objects.update_or_create(instance=row, origin=PoolExample.Origin.HUMAN, defaults=fields)


# --- Curators: resolution and bulk ----------------------------------------------------------------


def resolve(
    instance: Instance | int,
    curator,
    decision: str,
    *,
    reason: str = "",
    broken_rules: Iterable[str] = (),
    revision: InstanceRevision | None = None,
) -> Review:
    """A curator's final decision on an instance (a conflict, or any other). Accepting may pick one of the
    reviewers' revisions as the final text; rejecting needs a reason."""
    if decision not in DECIDED:
        raise ReviewError("A resolution accepts or rejects.")
    with transaction.atomic():
        row = _locked(instance)
        broken: list[str] = []
        if decision == Review.Decision.REJECT:
            broken = _check_rejection(row, reason, broken_rules)
        if revision is not None:
            if revision.instance_id != row.pk:
                raise ReviewError("That revision belongs to another instance.")
            row.current_revision, row.version = revision, row.version + 1
            Instance.objects.filter(pk=row.pk).update(current_revision=revision, version=row.version)
        row.reviews.filter(is_resolution=True).delete()
        review = Review.objects.create(
            instance=row,
            reviewer=curator,
            decision=decision,
            reason=reason.strip(),
            broken_rules=broken,
            revision=revision,
            is_resolution=True,
        )
        Assignment.objects.filter(instance=row).delete()
        recompute(row)
    return review


def bulk_decide(filters: Mapping[str, str], curator, decision: str, *, reason: str = "") -> int:
    """Accept or reject every instance matching the filters, as the curator's resolution. At most
    BULK_LIMIT instances at once; returns how many were decided."""
    if decision not in DECIDED:
        raise ReviewError("Bulk actions accept or reject.")
    if decision == Review.Decision.REJECT and not reason.strip():
        raise ReviewError("Say why these instances are rejected.")
    qs = filter_instances(reviewable(), filters)
    ids = list(qs.order_by("id").values_list("id", flat=True)[: BULK_LIMIT + 1])
    if len(ids) > BULK_LIMIT:
        raise ReviewError(f"More than {BULK_LIMIT} instances match; narrow the filter first.")
    for pk in ids:
        resolve(pk, curator, decision, reason=reason or "Bulk decision.")
    return len(ids)


# --- Agreement -----------------------------------------------------------------------------------


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels; None when undefined (no pairs, or one label throughout)."""
    from sklearn.metrics import cohen_kappa_score

    if not pairs:
        return None
    a, b = zip(*pairs, strict=True)
    if len(set(a) | set(b)) < 2:
        return None  # chance agreement is 1: kappa is 0/0
    return float(cohen_kappa_score(a, b))


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa. `table[i][j]` = raters who put subject i in category j; every row sums to the same
    number of raters n >= 2. kappa = (P̄ - P̄e) / (1 - P̄e) with P_i = (Σ_j n_ij² - n) / (n(n-1)),
    P̄ their mean, p_j = Σ_i n_ij / (N n) and P̄e = Σ_j p_j². None when undefined."""
    if not table:
        return None
    n = sum(table[0])
    if n < 2 or any(sum(row) != n for row in table):
        raise ValueError("Every subject needs the same number (2 or more) of ratings.")
    subjects = len(table)
    p_bar = sum((sum(c * c for c in row) - n) / (n * (n - 1)) for row in table) / subjects
    categories = len(table[0])
    p_e = sum((sum(row[j] for row in table) / (subjects * n)) ** 2 for j in range(categories))
    if p_e == 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


@dataclass
class Agreement:
    label: str
    instances: int
    raters: int
    method: str
    kappa: float | None
    observed: float | None  # share of instances (or pairs) in full agreement


def _votes(qs: QuerySet[Review]) -> dict[int, list[tuple[int, str]]]:
    by_instance: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for instance_id, reviewer_id, decision in qs.values_list("instance_id", "reviewer_id", "decision"):
        by_instance[instance_id].append((reviewer_id, decision))
    return {pk: votes for pk, votes in by_instance.items() if len(votes) >= 2}


def _agreement(label: str, votes: dict[int, list[tuple[int, str]]]) -> Agreement:
    if not votes:
        return Agreement(label, 0, 0, "–", None, None)
    raters = len({r for vs in votes.values() for r, _ in vs})
    sizes = Counter(len(vs) for vs in votes.values())
    if set(sizes) == {2}:
        pairs = [(vs[0][1], vs[1][1]) for vs in votes.values()]
        observed = sum(a == b for a, b in pairs) / len(pairs)
        return Agreement(label, len(pairs), raters, "Cohen", cohen_kappa(pairs), observed)
    # Fleiss needs a constant number of ratings per instance: use the most common one.
    n = sizes.most_common(1)[0][0]
    rows = [[sum(d == c for _, d in vs) for c in DECIDED] for vs in votes.values() if len(vs) == n]
    observed = sum(max(row) == n for row in rows) / len(rows)
    return Agreement(label, len(rows), raters, "Fleiss", fleiss_kappa(rows), observed)


def _decisions() -> QuerySet[Review]:
    return Review.objects.filter(is_resolution=False, decision__in=DECIDED).order_by("id")


def agreement_by_task() -> list[Agreement]:
    """Inter-reviewer agreement per task over instances with 2+ decisions: Cohen's kappa when each has
    exactly two, Fleiss' kappa otherwise."""
    return [
        _agreement(task.name, _votes(_decisions().filter(instance__task=task)))
        for task in CodeTask.objects.order_by("id")
    ]


@dataclass
class ReviewerAgreement:
    reviewer: str
    decisions: int
    shared: int  # decisions on instances someone else decided too
    kappa: float | None  # Cohen's kappa against the other reviewers on those instances
    with_others: float | None
    with_discriminator: float | None


def agreement_by_reviewer() -> list[ReviewerAgreement]:
    """Per reviewer: Cohen's kappa and raw agreement with the other reviewers on shared instances, and how
    often they agree with the discriminator."""
    from django.contrib.auth import get_user_model

    rows = list(_decisions().values_list("instance_id", "reviewer_id", "decision", "instance__passed"))
    by_instance: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for instance_id, reviewer_id, decision, _ in rows:
        by_instance[instance_id].append((reviewer_id, decision))
    names = dict(get_user_model().objects.values_list("id", "username"))
    result = []
    for reviewer_id in sorted({r for _, r, _, _ in rows}, key=lambda r: names.get(r, "")):
        mine = [(i, d, passed) for i, r, d, passed in rows if r == reviewer_id]
        pairs = [(d, other) for i, d, _ in mine for r, other in by_instance[i] if r != reviewer_id]
        judged = [(d, passed) for _, d, passed in mine if passed is not None]
        result.append(
            ReviewerAgreement(
                reviewer=names.get(reviewer_id, str(reviewer_id)),
                decisions=len(mine),
                shared=sum(1 for i, _, _ in mine if len(by_instance[i]) > 1),
                kappa=cohen_kappa(pairs),
                with_others=(sum(a == b for a, b in pairs) / len(pairs)) if pairs else None,
                with_discriminator=(
                    sum((d == Review.Decision.ACCEPT) == passed for d, passed in judged) / len(judged)
                    if judged
                    else None
                ),
            )
        )
    return result


# --- For the pages ---------------------------------------------------------------------------------


def diff_html(instance: Instance, revision: InstanceRevision | None = None) -> SafeString | str:
    """A side-by-side HTML diff of a revision (default: the current one) against the generated text.
    difflib.HtmlDiff escapes the text it shows."""
    revision = revision or instance.current_revision
    if revision is None:
        return ""
    parts = []
    for name in InstanceRevision.EDITABLE:
        before, after = getattr(instance, name), getattr(revision, name)
        if before != after:
            labels = (f"{name} (generated)", f"{name} (revision {revision.number})")
            table = difflib.HtmlDiff(wrapcolumn=70).make_table(
                before.splitlines(), after.splitlines(), *labels, context=True, numlines=2
            )
            parts.append(table)
    return mark_safe("\n".join(parts))  # noqa: S308 — HtmlDiff escapes &, < and > of every line


def history_neighbours(reviewer, instance_id: int | None) -> tuple[int | None, int | None]:
    """The instances the reviewer decided just before and just after `instance_id` (None: the current
    queue item, whose predecessor is their latest decision)."""
    reviews = Review.objects.filter(reviewer=reviewer, is_resolution=False)
    if instance_id is None:
        return reviews.order_by("-id").values_list("instance_id", flat=True).first(), None
    here = reviews.filter(instance_id=instance_id).values_list("id", flat=True).first()
    if here is None:
        return reviews.order_by("-id").values_list("instance_id", flat=True).first(), None
    previous = reviews.filter(id__lt=here).order_by("-id").values_list("instance_id", flat=True).first()
    following = reviews.filter(id__gt=here).order_by("id").values_list("instance_id", flat=True).first()
    return previous, following
