"""Curator pages for the human-in-the-loop side: agreement analytics, example pools, principle
refinement (proposal, diff, edit, held-out check, adoption), rollback and re-judging."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from . import analytics, catalog, charts, launch, pools, refinement
from .forms import RefinementForm, RejudgeForm
from .models import CodeTask, PoolExample, PrincipleVersion, RefinementRun, RejudgeJob
from .params import text_param
from .roles import CURATOR, role_required


def _safe_next(request: HttpRequest, fallback: str) -> str:
    """The form's `next` when it stays on this site (no other host, no javascript: URL), else `fallback`
    (a URL name)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    # Only a path on this site: `redirect()` would read a bare word as a URL name (NoReverseMatch).
    if (
        target.startswith("/")
        and not target.startswith("//")
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return reverse(fallback)


def _task_charts(item: analytics.TaskAnalytics) -> dict:
    trend = charts.grouped_bars(
        [
            charts.Group(
                f"v{p.version}" + ("*" if p.is_current else ""),
                [p.confusion.agreement, None if p.confusion.kappa is None else max(0.0, p.confusion.kappa)],
                f"n={p.confusion.n}",
            )
            for p in item.trend
        ],
        ["agreement", "kappa (≥0)"],
        title=f"{item.task.name}: agreement with reviewers per principle version",
    )
    rules = charts.grouped_bars(
        [
            charts.Group(r.rule_id[:14], [r.precision, r.recall], f"fired {r.fired}")
            for r in item.rules
            if r.judged
        ],
        ["precision", "recall"],
        title=f"{item.task.name}: each rule as a predictor of human rejection",
    )
    return {"trend_chart": trend, "rules_chart": rules}


@role_required(CURATOR)
def analytics_page(request: HttpRequest) -> HttpResponse:
    slug = text_param(request.GET, "task")
    try:
        items = analytics.all_analytics(slug)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("analytics")
    sections = [{"a": item, **_task_charts(item)} for item in items]
    return render(
        request,
        "curation/analytics.html",
        {
            "sections": sections,
            "overall": analytics.confusion_for(),
            "tasks": CodeTask.Slug.choices,
            "selected": slug,
        },
    )


# --- Pools ----------------------------------------------------------------------------------------


@role_required(CURATOR)
def pool_list(request: HttpRequest) -> HttpResponse:
    filters = {key: text_param(request.GET, key) for key in ("task", "kind", "origin", "language", "removed")}
    qs = PoolExample.objects.select_related("task").order_by("-pinned", "-created_at")
    if filters["task"]:
        qs = qs.filter(task__slug=filters["task"])
    if filters["kind"] in PoolExample.Kind.values:
        qs = qs.filter(kind=filters["kind"])
    if filters["origin"] in PoolExample.Origin.values:
        qs = qs.filter(origin=filters["origin"])
    if filters["language"]:
        qs = qs.filter(language=filters["language"])
    qs = qs.filter(removed=filters["removed"] == "1")
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "tasks": CodeTask.Slug.choices,
        "kinds": PoolExample.Kind.choices,
        "origins": PoolExample.Origin.choices,
        "counts": sorted(pools.pool_counts().items()),
        "few_shot": settings.FEW_SHOT,
    }
    return render(request, "curation/pools.html", context)


@role_required(CURATOR)
@require_POST
def pool_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    example = get_object_or_404(PoolExample.objects.select_related("task"), pk=pk)
    if action in ("pin", "unpin"):
        pools.set_pinned(example, action == "pin")
    elif action in ("remove", "restore"):
        pools.set_removed(example, action == "remove")
    else:
        return HttpResponse("Unknown action.", status=400)
    if request.htmx:
        return render(request, "curation/pools.html#pool-row", {"e": example})
    messages.success(request, f"Example #{example.pk}: {action} done.")
    return redirect(_safe_next(request, "pool-list"))


# --- Refinement -----------------------------------------------------------------------------------


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def refinement_list(request: HttpRequest) -> HttpResponse:
    form = RefinementForm(request.POST or None, initial={"task": request.GET.get("task", "")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = launch.start_refinement(
                user=request.user,
                task=data["task"],
                heldout_fraction=data["heldout_fraction"],
                max_cases=data["max_cases"],
                max_heldout=data["max_heldout"],
                seed=data["seed"],
                model=data["model"],
            )
        except refinement.RefinementError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("refinement-detail", run.pk)
    runs = RefinementRun.objects.select_related("task", "base_version", "proposed_version", "created_by")
    return render(
        request,
        "curation/refinement_list.html",
        {"form": form, "runs": runs[:50], "reviewed": sorted(analytics.decided_counts().items())},
    )


def _refinement_context(run: RefinementRun) -> dict:
    return {
        "run": run,
        "results": run.check_results or {},
        "polling": run.stage in (RefinementRun.Stage.PROPOSING, RefinementRun.Stage.CHECKING)
        and run.status in RefinementRun.ACTIVE,
    }


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def refinement_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(
        RefinementRun.objects.select_related(
            "task", "base_version", "proposed_version", "task__current_principles"
        ),
        pk=pk,
    )
    if request.htmx and request.htmx.target == "run-state":
        return render(request, "curation/refinement_detail.html#run-state", _refinement_context(run))
    edit_text = catalog.rules_text(run.proposed_rules)
    edit_error = ""
    if request.method == "POST":
        edit_text = request.POST.get("rules", "")
        try:
            refinement.edit_proposal(run, catalog.parse_rules_text(edit_text), user=request.user)
        except (ValueError, refinement.RefinementError) as exc:
            edit_error = str(exc)
        else:
            messages.success(request, "Proposal edited; run the held-out check again before adopting it.")
            return redirect("refinement-detail", pk)
    return render(
        request,
        "curation/refinement_detail.html",
        {**_refinement_context(run), "edit_text": edit_text, "edit_error": edit_error},
    )


@role_required(CURATOR)
@require_POST
def refinement_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    run = get_object_or_404(RefinementRun, pk=pk)
    try:
        if action == "check":
            launch.start_check(run, user=request.user)
            messages.success(request, "Held-out check queued.")
        elif action == "adopt":
            version = refinement.adopt(run, user=request.user)
            messages.success(request, f"Adopted principles v{version.version}; new judgements use it.")
        elif action == "discard":
            refinement.discard(run, user=request.user)
            messages.success(request, "Proposal discarded.")
        else:
            return HttpResponse("Unknown action.", status=400)
    except refinement.RefinementError as exc:
        messages.error(request, str(exc))
    return redirect("refinement-detail", pk)


@role_required(CURATOR)
@require_POST
def principle_adopt(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    """Make any version of a task's principles current: rollback in one action."""
    principle_version = get_object_or_404(PrincipleVersion, task__slug=slug, version=version)
    refinement.adopt_version(principle_version, user=request.user)
    messages.success(request, f"Principles v{version} of {principle_version.task.name} are current now.")
    return redirect("task-detail", slug)


# --- Re-judging -----------------------------------------------------------------------------------


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def rejudge_list(request: HttpRequest) -> HttpResponse:
    form = RejudgeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = launch.start_rejudge(
                user=request.user,
                tasks=data["tasks"],
                model=data["model"],
                only_outdated=data["only_outdated"],
                concurrency=data["concurrency"],
            )
        except refinement.RefinementError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("rejudge-detail", job.pk)
    return render(
        request, "curation/rejudge_list.html", {"form": form, "jobs": RejudgeJob.objects.all()[:50]}
    )


@role_required(CURATOR)
def rejudge_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(RejudgeJob, pk=pk)
    if request.htmx and request.htmx.target == "rejudge-status":
        return render(request, "curation/rejudge_detail.html#rejudge-status", {"job": job})
    return render(request, "curation/rejudge_detail.html", {"job": job})


@role_required(CURATOR)
@require_POST
def rejudge_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(RejudgeJob, pk=pk)
    if refinement.cancel_rejudge(job):
        messages.success(request, "Re-judging cancelled; instances judged so far keep their new verdicts.")
    else:
        messages.error(request, "The job already finished.")
    return redirect("rejudge-detail", pk)
