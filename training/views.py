"""Curator pages for dataset versions, benchmarks and imports. Thin: the work is in training.datasets,
training.exports and curation.imports."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from curation import imports
from curation.models import GenerationJob
from curation.roles import CURATOR, role_required
from training import datasets, exports
from training.benchmarks import BenchmarkFileError
from training.forms import BenchmarkForm, DatasetVersionForm, ImportForm
from training.models import Benchmark, DatasetExclusion, DatasetVersion


@role_required(CURATOR)
def dataset_list(request: HttpRequest) -> HttpResponse:
    versions = DatasetVersion.objects.select_related("created_by")
    page = Paginator(versions, 25).get_page(request.GET.get("page"))
    context = {"page": page, "any_active": any(v.is_active for v in page)}
    if request.htmx and request.htmx.target == "version-table":
        return render(request, "training/dataset_list.html#version-table", context)
    context["imports"] = GenerationJob.objects.filter(kind=GenerationJob.Kind.IMPORT).order_by("-pk")[:10]
    return render(request, "training/dataset_list.html", context)


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def dataset_new(request: HttpRequest) -> HttpResponse:
    form = DatasetVersionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            version = datasets.start_version(user=request.user, **form.version_params())
        except datasets.DatasetError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Dataset {version.label} queued: it is being built.")
            return redirect("dataset-detail", version.number)
    return render(request, "training/dataset_new.html", {"form": form})


@role_required(CURATOR)
def dataset_detail(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion.objects.select_related("created_by"), number=number)
    context = {"version": version, "formats": _downloads(version)}
    if request.htmx and request.htmx.target == "version-status":
        return render(request, "training/dataset_detail.html#version-status", context)
    reason = request.GET.get("reason", "")
    exclusions = version.exclusions.order_by("reason", "-score", "id")
    if reason in DatasetExclusion.Reason.values:
        exclusions = exclusions.filter(reason=reason)
    context |= {
        "exclusions": Paginator(exclusions, 50).get_page(request.GET.get("page")),
        "filters": {"reason": reason},
        "reasons": DatasetExclusion.Reason.choices,
        "benchmarks": version.benchmarks.order_by("kind", "name"),
        "card": _card(version),
        "task_rows": exports.task_rows(version),
    }
    return render(request, "training/dataset_detail.html", context)


def _downloads(version: DatasetVersion) -> list[dict]:
    files = version.report.get("files", {})
    return [
        {"format": f, "bytes": files.get(key, {}).get("bytes")}
        for key, f in exports.FORMATS.items()
        if key in files
    ]


def _card(version: DatasetVersion) -> str:
    path = exports.export_path(version, "card")
    return (
        path.read_text(encoding="utf-8")
        if version.status == version.Status.SUCCEEDED and path.exists()
        else ""
    )


@role_required(CURATOR)
def dataset_download(request: HttpRequest, number: int, fmt: str) -> FileResponse:
    """One export file of a built version, streamed from disk as an attachment."""
    version = get_object_or_404(DatasetVersion, number=number, status=DatasetVersion.Status.SUCCEEDED)
    if fmt not in exports.FORMATS:
        raise Http404(f"No export format {fmt!r}.")
    path = exports.export_path(version, fmt)
    if not path.exists():
        raise Http404(
            f"The files of {version.label} are missing on this server; write them again with "
            f"`manage.py export_dataset --dataset-version {version.number}`."
        )
    return exports.download_response(version, fmt)


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def benchmark_list(request: HttpRequest) -> HttpResponse:
    Benchmark.humaneval()
    form = BenchmarkForm(request.POST or None, request.FILES or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            benchmark = datasets.add_benchmark(
                data["upload"],
                name=data["name"],
                text_field=data["text_field"],
                code_field=data["code_field"],
                language=data["language"],
                user=request.user,
            )
        except BenchmarkFileError as exc:
            form.add_error("upload", "The file has problems (listed below). Nothing was saved.")
            errors = exc.errors
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Benchmark {benchmark.name} added: {benchmark.item_count} items.")
            return redirect("benchmark-list")
    context = {"form": form, "errors": errors, "benchmarks": Benchmark.objects.order_by("kind", "name")}
    return render(request, "training/benchmark_list.html", context)


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def import_new(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    errors: list[str] = []
    total = 0
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = imports.start_import(
                data["upload"],
                task=data["task"] or None,
                language=data["language"],
                judge=data["judge"],
                valid_only=data["valid_only"],
                discriminator_model=data["discriminator_model"],
                user=request.user,
            )
        except imports.ImportFileError as exc:
            errors, total = exc.errors, exc.total
            form.add_error("upload", "Nothing was imported: the file has problems (listed below).")
        else:
            messages.success(request, f"Imported {job.progress_total} instances as import #{job.pk}.")
            return redirect("import-detail", job.pk)
    return render(request, "training/import_new.html", {"form": form, "errors": errors, "error_total": total})


@role_required(CURATOR)
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob, pk=pk, kind=GenerationJob.Kind.IMPORT)
    return render(request, "training/import_detail.html", {"job": job, "report": job.report})
