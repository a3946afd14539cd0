"""Reviewer and curator review pages. Thin: decisions, leases and counts are in curation/review.py.

Every action is a POST form that works without JavaScript (redirect to the next instance) and with htmx
(the response is the `review-pane` partial of the next instance, swapped in place).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from . import review
from .forms import BulkDecisionForm, ResolveForm, ReviewEditForm, ReviewRejectForm
from .models import CodeTask, Instance, InstanceRevision, Review
from .params import INT32_MAX, int_param, text_param
from .roles import CURATOR, REVIEWER, has_role, role_required

_PANE = "review/review.html#review-pane"
_PAGE_SIZE = 50
_ACTIONS = ("accept", "edit", "reject", "skip")


def _query(filters: dict[str, str]) -> str:
    return urlencode(filters)


def _filters(request: HttpRequest) -> dict[str, str]:
    """The review filters of the query string, checked first (a 400 otherwise): review.py filters by
    `job` as an id and compares the others with columns, where PostgreSQL refuses NUL characters."""
    int_param(request.GET, "job")
    for key in review.FILTER_KEYS:
        text_param(request.GET, key)
    return review.clean_filters(request.GET)


def _load(pk: int) -> Instance:
    related = ("task", "sample", "job", "prompt_version", "verdict__principle_version", "current_revision")
    return get_object_or_404(Instance.objects.select_related(*related), pk=pk)


def _facets(filters: dict[str, str]) -> dict:
    """Filter options, each with its count under the current filters (one aggregate query)."""
    counts = review.filter_counts(filters, language_options=review.languages())
    tasks = CodeTask.objects.select_related("current_principles").order_by("id")
    rules = {rule["id"] for t in tasks if t.current_principles for rule in t.current_principles.rules}
    return {
        "counts": counts,
        "task_options": [(t.slug, t.name, counts.by_task.get(t.slug, 0)) for t in tasks],
        "status_options": [
            (value, label, counts.by_status.get(value, 0)) for value, label in Instance.ReviewStatus.choices
        ],
        "rule_choices": sorted(rules),
    }


def _pane_context(request: HttpRequest, instance: Instance | None, filters: dict[str, str], **extra) -> dict:
    """Everything the review pane shows; `extra` carries error, conflict and form state."""
    context = {"instance": instance, "filters": filters, "filter_query": _query(filters), **_facets(filters)}
    last = review.last_review(request.user)
    context["last"] = last
    if last and last.revision_id:
        context["last_diff"] = review.diff_html(last.instance, last.revision)
    if instance is not None:
        mine = Review.objects.filter(instance=instance, reviewer=request.user, is_resolution=False).first()
        # Blind until they decide: another reviewer's edit is neither shown, nor diffed, nor in the form.
        blind = review.is_blind(instance, request.user)
        text = review.generated_text(instance) if blind else review.current_text(instance)
        principles = instance.verdict.principle_version if instance.verdict_id else None
        rule_ids = review.rule_ids(instance)
        failed = (
            [r.rule_id for r in instance.verdict.rules.all() if not r.passed] if instance.verdict_id else []
        )
        prev_id, next_id = review.history_neighbours(request.user, instance.pk if mine else None)
        context |= {
            "mine": mine,
            "blind": blind,
            "text": text,
            "rules": instance.verdict.rules.all() if instance.verdict_id else [],
            "principles": principles.rules if principles else [],
            "diff": "" if blind else review.diff_html(instance),
            "prev_id": prev_id,
            "next_id": next_id,
            "edit_form": extra.pop("edit_form", None)
            or ReviewEditForm(initial={"expected_version": instance.version, **text}),
            "reject_form": extra.pop("reject_form", None)
            or ReviewRejectForm(
                initial={"expected_version": instance.version, "rules": failed}, rule_ids=rule_ids
            ),
        }
    else:
        context["prev_id"], context["next_id"] = review.history_neighbours(request.user, None)
    return context | extra


def _render(
    request: HttpRequest, instance: Instance | None, filters: dict[str, str], status: int = 200, **extra
):
    template = _PANE if request.htmx else "review/review.html"
    return render(request, template, _pane_context(request, instance, filters, **extra), status=status)


@role_required(REVIEWER)
def review_page(request: HttpRequest) -> HttpResponse:
    """The next instance for this reviewer (or, with ?instance=, one from their history)."""
    filters = _filters(request)
    wanted = int_param(request.GET, "instance")
    if wanted is not None:
        instance = _load(wanted)
        seen = Review.objects.filter(instance=instance, reviewer=request.user, is_resolution=False).exists()
        # An expired lease is not enough: by now the seat may be someone else's.
        if not seen and not review.holds(request.user, instance.pk):
            raise Http404("Not one of your instances.")
    else:
        instance = review.next_instance(request.user, filters)
        instance = _load(instance.pk) if instance else None
    return _render(request, instance, filters)


def _after_action(request: HttpRequest, filters: dict[str, str], note: str, *, error: bool = False):
    """Move on: a redirect to the next instance, or (htmx) the next instance's pane."""
    if not request.htmx:
        (messages.error if error else messages.success)(request, note)
        return redirect(f"{reverse('review')}?{_query(filters)}")
    instance = review.next_instance(request.user, filters)
    extra = {"error": note} if error else {"note": note}
    return _render(request, _load(instance.pk) if instance else None, filters, **extra)


def _refuse(request: HttpRequest, pk: int, filters: dict[str, str], status: int, message: str, **extra):
    """Refuse an action without side effects: instance `pk` again only if the reviewer holds it, else the
    one they hold (never a new lease, never the text of an instance that is not theirs)."""
    if review.holds(request.user, pk):
        instance = _load(pk)
    else:
        held = review.held_instance(request.user, filters)
        instance = _load(held.pk) if held else None
    return _render(request, instance, filters, status, error=message, refused=True, **extra)


@role_required(REVIEWER)
@require_POST
def review_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """accept / edit (then accept) / reject / skip one instance, then move on to the next."""
    filters = _filters(request)
    instance = _load(pk)
    user = request.user
    expected_version = int_param(request.POST, "expected_version", minimum=0, maximum=INT32_MAX)
    if action not in _ACTIONS:
        raise Http404("No such action.")
    if expected_version is None:
        return _refuse(request, pk, filters, 400, review.VERSION_REQUIRED)
    edit_form = reject_form = None
    try:
        if action == "accept":
            review.accept(instance, user, expected_version=expected_version)
            note = f"Accepted #{pk}."
        elif action == "edit":
            edit_form = ReviewEditForm(request.POST)
            if not edit_form.is_valid():
                if not review.holds(user, pk):  # the form comes back with the instance's text
                    raise review.NotHeld(pk)
                return _render(request, instance, filters, 400, edit_form=edit_form, error="Fix the edit.")
            data = edit_form.cleaned_data
            fields = {name: data[name] for name in InstanceRevision.EDITABLE}
            made = review.edit_and_accept(instance, user, fields, expected_version=expected_version)
            note = f"Saved revision {made.revision.number} of #{pk} and accepted it."
        elif action == "reject":
            reject_form = ReviewRejectForm(request.POST, rule_ids=review.rule_ids(instance))
            if not reject_form.is_valid():
                if not review.holds(user, pk):
                    raise review.NotHeld(pk)
                error = "Say why, and tick only this instance's rules."
                return _render(request, instance, filters, 400, reject_form=reject_form, error=error)
            data = reject_form.cleaned_data
            review.reject(
                instance,
                user,
                reason=data["reason"],
                broken_rules=data["rules"],
                expected_version=expected_version,
            )
            note = f"Rejected #{pk}."
        else:
            review.skip(instance, user, expected_version=expected_version)
            note = f"Skipped #{pk}."
    except review.NotHeld as exc:
        return _refuse(request, pk, filters, 409, str(exc), your_edit=edit_form)
    except review.Conflict as conflict:
        # The decision took (or kept) the hold: show the instance at its new version, still blind (the
        # reviewer has not decided), with a fresh form, and keep what the reviewer typed.
        return _render(
            request,
            _load(pk),
            filters,
            409,
            conflict=conflict,
            error=conflict.blind_message,
            your_edit=edit_form,
        )
    except review.ReviewError as exc:
        decided = Review.objects.filter(instance=instance, reviewer=user, is_resolution=False).exists()
        fixable = instance.review_status in review.OPEN and not decided and review.holds(user, pk)
        if fixable:  # show it again
            return _render(request, _load(pk), filters, 400, error=str(exc), reject_form=reject_form)
        return _after_action(request, filters, str(exc), error=True)
    return _after_action(request, filters, note)


@role_required(REVIEWER)
@require_POST
def review_undo(request: HttpRequest) -> HttpResponse:
    """Take back this reviewer's last decision and show that instance again."""
    filters = _filters(request)
    try:
        instance = review.undo_last(request.user)
    except review.ReviewError as exc:
        if not request.htmx:
            messages.error(request, str(exc))
            return redirect(f"{reverse('review')}?{_query(filters)}")
        instance = review.next_instance(request.user, filters)
        return _render(request, _load(instance.pk) if instance else None, filters, error=str(exc))
    if not request.htmx:
        messages.success(request, f"Undid your decision on #{instance.pk}.")
        return redirect(f"{reverse('review')}?{_query({**filters, 'instance': instance.pk})}")
    return _render(request, _load(instance.pk), filters, note=f"Undid your decision on #{instance.pk}.")


# --- List, bulk, conflicts, agreement --------------------------------------------------------------


@role_required(REVIEWER)
def review_list(request: HttpRequest) -> HttpResponse:
    """Filtered instances, 50 at a time by id (keyset paging: no count of what is not shown)."""
    filters = _filters(request)
    after = int_param(request.GET, "after", minimum=0)
    qs = review.filter_instances(review.reviewable(), filters).select_related("task").order_by("id")
    if after is not None:
        qs = qs.filter(id__gt=after)
    rows = list(qs[: _PAGE_SIZE + 1])
    context = {
        "rows": rows[:_PAGE_SIZE],
        "next_after": rows[_PAGE_SIZE - 1].pk if len(rows) > _PAGE_SIZE else None,
        "filters": filters,
        "filter_query": _query(filters),
        "bulk_form": BulkDecisionForm(),
        "can_bulk": has_role(request.user, CURATOR),
        "bulk_limit": review.BULK_LIMIT,
        **_facets(filters),
    }
    if request.htmx and request.htmx.target == "instance-rows":
        return render(request, "review/list.html#instance-rows", context)
    return render(request, "review/list.html", context)


@role_required(CURATOR)
@require_POST
def review_bulk(request: HttpRequest) -> HttpResponse:
    """Bulk accept/reject of the filtered selection: first a confirmation stating the count, then the
    decision (only if the count did not change in between)."""
    filters = _filters(request)
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose accept or reject.")
        return redirect(f"{reverse('review-list')}?{_query(filters)}")
    data = form.cleaned_data
    # Exact, unlike the page's counts (which may be estimates on large selections), and bounded.
    qs = review.filter_instances(review.reviewable(), filters)
    count = qs.order_by().values("id")[: review.BULK_LIMIT + 1].count()
    if data["confirm_count"] != count:
        context = {"form": form, "count": count, "filters": filters, "filter_query": _query(filters)}
        context["too_many"] = count > review.BULK_LIMIT
        context["bulk_limit"] = review.BULK_LIMIT
        return render(request, "review/bulk_confirm.html", context)
    try:
        done = review.bulk_decide(filters, request.user, data["decision"], reason=data["reason"])
    except review.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{data['decision'].capitalize()}ed {done} instances.")
    return redirect(f"{reverse('review-list')}?{_query(filters)}")


@role_required(CURATOR)
def conflict_list(request: HttpRequest) -> HttpResponse:
    conflicts = (
        review.reviewable()
        .filter(review_status=Instance.ReviewStatus.CONFLICT)
        .select_related("task")
        .order_by("id")[:200]
    )
    return render(request, "review/conflicts.html", {"conflicts": conflicts})


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def conflict_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """A curator's decision on an instance, seeing every reviewer's decision, reason and edit."""
    instance = _load(pk)
    rule_ids = review.rule_ids(instance)
    form = ResolveForm(request.POST or None, rule_ids=rule_ids)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        revision = instance.revisions.filter(pk=data["revision"]).first() if data["revision"] else None
        try:
            review.resolve(
                instance,
                request.user,
                data["decision"],
                reason=data["reason"],
                broken_rules=data["rules"],
                revision=revision,
            )
        except review.ReviewError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Resolved #{pk}: {data['decision']}.")
            return redirect("review-conflicts")
    reviews = instance.reviews.select_related("reviewer", "revision").order_by("id")
    decisions = [
        {"review": r, "diff": review.diff_html(instance, r.revision) if r.revision_id else ""}
        for r in reviews
    ]
    context = {
        "instance": instance,
        "text": review.current_text(instance),
        "rules": instance.verdict.rules.all() if instance.verdict_id else [],
        "decisions": decisions,
        "form": form,
    }
    return render(request, "review/resolve.html", context)


@role_required(CURATOR)
def agreement(request: HttpRequest) -> HttpResponse:
    """Inter-reviewer agreement (Cohen's / Fleiss' kappa) per task and per reviewer."""
    context = {"by_task": review.agreement_by_task(), "by_reviewer": review.agreement_by_reviewer()}
    return render(request, "review/agreement.html", context)
