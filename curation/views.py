"""Curator pages: dashboard, ingest, selection and the corpus browser. Thin: the work is in stage modules."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from . import launch
from .forms import IngestForm, SelectionForm
from .models import CodeSample, CodeSource, IngestRun, SelectionRun
from .roles import CURATOR, has_role, role_required


def home(request: HttpRequest) -> HttpResponse:
    """Send each role to its own starting page."""
    if has_role(request.user, CURATOR):
        return redirect("dashboard")
    return render(request, "curation/home.html")


def _active_jobs() -> list:
    ingests = IngestRun.objects.filter(status__in=IngestRun.ACTIVE).select_related("source")
    selections = SelectionRun.objects.filter(status__in=SelectionRun.ACTIVE)
    return [*ingests, *selections]


@role_required(CURATOR)
def dashboard(request: HttpRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "active-jobs":
        return render(request, "curation/dashboard.html#active-jobs", {"active_jobs": _active_jobs()})
    context = {
        "sample_total": CodeSample.objects.count(),
        "by_language": CodeSample.objects.values("language").annotate(n=Count("id")).order_by("-n"),
        "by_source": CodeSource.objects.annotate(n=Count("samples")).order_by("-n"),
        "ingest_runs": IngestRun.objects.select_related("source")[:10],
        "selection_runs": SelectionRun.objects.all()[:10],
        "active_jobs": _active_jobs(),
    }
    return render(request, "curation/dashboard.html", context)


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def ingest_new(request: HttpRequest) -> HttpResponse:
    form = IngestForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = {"min_chars": data["min_chars"], "max_chars": data["max_chars"]}
        if not data["use_blacklist"]:
            options["blacklist"] = []
        try:
            run = launch.start_ingest(
                user=request.user, upload=data["upload"], path=data["path"], options=options
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Ingest run #{run.pk} queued.")
            return redirect("ingest-detail", run.pk)
    return render(request, "curation/ingest_new.html", {"form": form})


@role_required(CURATOR)
def ingest_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(IngestRun.objects.select_related("source"), pk=pk)
    if request.htmx:
        return render(request, "curation/ingest_detail.html#run-status", {"run": run})
    return render(request, "curation/ingest_detail.html", {"run": run})


def _languages() -> list[str]:
    return list(CodeSample.objects.order_by("language").values_list("language", flat=True).distinct())


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def selection_new(request: HttpRequest) -> HttpResponse:
    form = SelectionForm(request.POST or None, languages=_languages())
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = launch.start_selection(
                user=request.user,
                k=data["k"],
                seed=data["seed"],
                model_name=data["model_name"],
                languages=data["languages"],
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Selection run #{run.pk} queued.")
            return redirect("selection-detail", run.pk)
    return render(request, "curation/selection_new.html", {"form": form})


@role_required(CURATOR)
def selection_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(SelectionRun, pk=pk)
    if request.htmx and request.htmx.target == "run-status":
        return render(request, "curation/selection_detail.html#run-status", {"run": run})
    picks = run.pick_rows.select_related("sample").order_by("rank")
    page = Paginator(picks, 25).get_page(request.GET.get("page"))
    return render(request, "curation/selection_detail.html", {"run": run, "page": page})


@role_required(CURATOR)
def corpus(request: HttpRequest) -> HttpResponse:
    samples = CodeSample.objects.select_related("source").order_by("id")
    language, source, q = (
        request.GET.get("language", ""),
        request.GET.get("source", ""),
        request.GET.get("q", ""),
    )
    if language:
        samples = samples.filter(language=language)
    if source.isdigit():
        samples = samples.filter(source_id=int(source))
    if q:
        samples = samples.filter(Q(func_name__icontains=q) | Q(path__icontains=q))
    page = Paginator(samples, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "languages": _languages(),
        "sources": CodeSource.objects.all(),
        "filters": {"language": language, "source": source, "q": q},
    }
    if request.htmx:
        return render(request, "curation/corpus.html#sample-table", context)
    return render(request, "curation/corpus.html", context)


@role_required(CURATOR)
def sample_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sample = get_object_or_404(CodeSample.objects.select_related("source", "ingest_run"), pk=pk)
    return render(request, "curation/sample_detail.html", {"sample": sample})
