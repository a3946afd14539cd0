"""Pages for training and evaluation runs: curators follow them, admins start, cancel and resume them.
Thin: the work is in training.runs."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from curation.charts import line_chart
from curation.params import int_param
from curation.roles import ADMIN, CURATOR, role_required
from training import runs
from training.models import EvaluationRun, TrainingRun
from training.run_forms import EvaluationForm, TrainingRunForm


@role_required(CURATOR)
def run_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(TrainingRun.objects.select_related("dataset_version", "created_by"), 25).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "any_active": any(r.is_active for r in page)}
    if request.htmx and request.htmx.target == "run-table":
        return render(request, "training/run_list.html#run-table", context)
    context["evaluations"] = EvaluationRun.objects.select_related("training_run")[:10]
    return render(request, "training/run_list.html", context)


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest) -> HttpResponse:
    form = TrainingRunForm(request.POST or None, preset=request.GET.get("preset", ""))
    if request.method == "POST" and form.is_valid():
        try:
            run = runs.start_training(user=request.user, **form.run_params())
        except runs.RunError as exc:  # checked again: the version may have changed meanwhile
            for error in exc.errors:
                form.add_error(None, error)
        else:
            messages.success(request, f"Training run #{run.pk} queued on the gpu queue.")
            return redirect("training-run-detail", run.pk)
    return render(request, "training/run_new.html", {"form": form, "preset": runs.CPU_DEMO_PRESET})


@role_required(CURATOR)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("dataset_version", "created_by"), pk=pk)
    context = {
        "run": run,
        "chart": line_chart(runs.loss_points(run), title=f"Training loss of run #{run.pk}"),
        "log": runs.log_tail(run),
        "can_resume": runs.can_resume(run),
        "evaluations": run.evaluation_runs.order_by("-pk")[:10],
        "compare_form": EvaluationForm(initial={"training_run": run.pk}),
    }
    if request.htmx and request.htmx.target == "run-status":
        return render(request, "training/run_detail.html#run-status", context)
    return render(request, "training/run_detail.html", context)


@role_required(ADMIN)
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=pk)
    messages.info(request, runs.request_cancel(run))
    return redirect("training-run-detail", run.pk)


@role_required(ADMIN)
@require_POST
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=pk)
    try:
        messages.success(request, runs.resume_training(run))
    except runs.RunError as exc:
        messages.error(request, str(exc))
    return redirect("training-run-detail", run.pk)


@role_required(CURATOR)
def evaluation_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(EvaluationRun.objects.select_related("training_run", "compare_with"), 25).get_page(
        request.GET.get("page")
    )
    return render(request, "training/evaluation_list.html", {"page": page})


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def evaluation_new(request: HttpRequest) -> HttpResponse:
    run_id = int_param(request.GET, "run")
    initial = {"training_run": run_id} if run_id is not None else None
    form = EvaluationForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        params = form.evaluation_params()
        run = form.cleaned_data["training_run"]
        try:
            if run is not None:
                _, evaluation = runs.start_comparison(run, user=request.user, **params)
            else:
                evaluation = runs.start_evaluation(
                    model=form.cleaned_data["model"], user=request.user, **params
                )
        except runs.RunError as exc:
            for error in exc.errors:
                form.add_error(None, error)
        else:
            messages.success(request, f"Evaluation #{evaluation.pk} queued on the gpu queue.")
            return redirect("evaluation-detail", evaluation.pk)
    return render(request, "training/evaluation_new.html", {"form": form})


@role_required(CURATOR)
def evaluation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    evaluation = get_object_or_404(
        EvaluationRun.objects.select_related("training_run", "compare_with", "created_by"), pk=pk
    )
    base = evaluation.compare_with
    active = evaluation.is_active or (base is not None and base.is_active)
    context = {
        "evaluation": evaluation,
        "base": base,
        "active": active,
        "comparison": runs.comparison(evaluation),
        "problems": (evaluation.results or {}).get("problems", []),
    }
    if request.htmx and request.htmx.target == "evaluation-status":
        return render(request, "training/evaluation_detail.html#evaluation-status", context)
    return render(request, "training/evaluation_detail.html", context)
