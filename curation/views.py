"""Curator pages: dashboard, ingest, selection, corpus, tasks, generation. Thin: the work is in stages."""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from . import catalog, generation, launch, llm, sandbox
from .forms import GenerationJobForm, IngestForm, PrinciplesForm, PromptVersionForm, SelectionForm
from .models import (
    CodeSample,
    CodeSource,
    CodeTask,
    GenerationJob,
    IngestRun,
    Instance,
    RefinementRun,
    RejudgeJob,
    SelectionRun,
)
from .params import int_param, text_param
from .roles import CURATOR, REVIEWER, has_role, role_required


def home(request: HttpRequest) -> HttpResponse:
    """Send each role to its own starting page."""
    if has_role(request.user, CURATOR):
        return redirect("dashboard")
    if has_role(request.user, REVIEWER):
        return redirect("review")
    return render(request, "curation/home.html")


def _active_jobs() -> list[dict]:
    """Running jobs of every kind, each with a label and a link, for the dashboard's live panel."""
    jobs = []
    for run in IngestRun.objects.filter(status__in=IngestRun.ACTIVE).select_related("source"):
        jobs.append(
            {
                "job": run,
                "label": f"Ingest #{run.pk} · {run.source}",
                "url": reverse("ingest-detail", args=[run.pk]),
            }
        )
    for run in SelectionRun.objects.filter(status__in=SelectionRun.ACTIVE):
        jobs.append(
            {
                "job": run,
                "label": f"Selection #{run.pk} · k={run.k}",
                "url": reverse("selection-detail", args=[run.pk]),
            }
        )
    for job in GenerationJob.objects.filter(status__in=GenerationJob.ACTIVE):
        job.progress_done = generation.job_counts(job).finished
        label = f"Generation #{job.pk} · {', '.join(job.tasks)}" + (" (paused)" if job.paused else "")
        jobs.append({"job": job, "label": label, "url": reverse("generation-detail", args=[job.pk])})
    for run in RefinementRun.objects.filter(status__in=RefinementRun.ACTIVE).select_related("task"):
        label = f"Refinement #{run.pk} · {run.task.name} · {run.get_stage_display().lower()}"
        jobs.append({"job": run, "label": label, "url": reverse("refinement-detail", args=[run.pk])})
    for job in RejudgeJob.objects.filter(status__in=RejudgeJob.ACTIVE):
        label = f"Re-judging #{job.pk} · {', '.join(job.tasks) or 'all tasks'}"
        jobs.append({"job": job, "label": label, "url": reverse("rejudge-detail", args=[job.pk])})
    from training.models import DatasetVersion, EvaluationRun, TrainingRun  # training builds on curation

    for version in DatasetVersion.objects.filter(status__in=DatasetVersion.ACTIVE):
        jobs.append(
            {
                "job": version,
                "label": f"Dataset {version.label}",
                "url": reverse("dataset-detail", args=[version.number]),
            }
        )

    for run in TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE):
        label = f"Training #{run.pk} · {run.base_model}" + (
            f" · loss {run.last_loss:.4f}" if run.last_loss is not None else ""
        )
        jobs.append({"job": run, "label": label, "url": reverse("training-run-detail", args=[run.pk])})
    for evaluation in EvaluationRun.objects.filter(status__in=EvaluationRun.ACTIVE):
        label = f"Evaluation #{evaluation.pk} · {evaluation.name}"
        jobs.append(
            {"job": evaluation, "label": label, "url": reverse("evaluation-detail", args=[evaluation.pk])}
        )
    return jobs


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
        "generation_jobs": GenerationJob.objects.all()[:10],
        "active_jobs": _active_jobs(),
        "sandbox_problem": sandbox.availability_problem(),
        "teacher_problem": "" if settings.OPENAI_BASE_URL else llm.offline_teacher()[2],
        "engine": {} if settings.OPENAI_BASE_URL else llm.engine_state(),
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
    language, q = text_param(request.GET, "language"), text_param(request.GET, "q")
    source = int_param(request.GET, "source")
    if language:
        samples = samples.filter(language=language)
    if source is not None:
        samples = samples.filter(source_id=source)
    if q:
        samples = samples.filter(Q(func_name__icontains=q) | Q(path__icontains=q))
    page = Paginator(samples, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "languages": _languages(),
        "sources": CodeSource.objects.all(),
        "filters": {"language": language, "source": "" if source is None else str(source), "q": q},
    }
    if request.htmx:
        return render(request, "curation/corpus.html#sample-table", context)
    return render(request, "curation/corpus.html", context)


@role_required(CURATOR)
def sample_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sample = get_object_or_404(CodeSample.objects.select_related("source", "ingest_run"), pk=pk)
    return render(request, "curation/sample_detail.html", {"sample": sample})


# --- Stage 2: tasks, generation jobs, instances ----------------------------------------------------


@role_required(CURATOR)
def task_list(request: HttpRequest) -> HttpResponse:
    tasks = CodeTask.objects.select_related("current_prompt", "current_principles")
    return render(request, "curation/task_list.html", {"tasks": tasks})


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def task_detail(request: HttpRequest, slug: str) -> HttpResponse:
    task = get_object_or_404(
        CodeTask.objects.select_related("current_prompt", "current_principles"), slug=slug
    )
    prompt, principles = task.current_prompt, task.current_principles
    prompt_form = PromptVersionForm(
        request.POST if request.POST.get("form") == "prompt" else None,
        initial={"definition": prompt.definition, "requirements": prompt.requirements},
    )
    rules_text = catalog.rules_text(principles.rules)
    principles_form = PrinciplesForm(
        request.POST if request.POST.get("form") == "principles" else None, initial={"rules": rules_text}
    )
    if request.method == "POST":
        if prompt_form.is_bound and prompt_form.is_valid():
            data = prompt_form.cleaned_data
            version = catalog.new_prompt_version(
                task,
                definition=data["definition"],
                requirements=data["requirements"],
                user=request.user,
                note=data["note"],
            )
            messages.success(request, f"Saved {task.name} prompt version {version.version}.")
            return redirect("task-detail", slug)
        if principles_form.is_bound and principles_form.is_valid():
            data = principles_form.cleaned_data
            version = catalog.new_principle_version(
                task, rules=data["rules"], user=request.user, note=data["note"]
            )
            messages.success(request, f"Saved {task.name} principles version {version.version}.")
            return redirect("task-detail", slug)
    context = {
        "task": task,
        "prompt_form": prompt_form,
        "principles_form": principles_form,
        "prompt_versions": task.prompt_versions.select_related("created_by"),
        "principle_versions": task.principle_versions.select_related("created_by"),
    }
    return render(request, "curation/task_detail.html", context)


@role_required(CURATOR)
@require_http_methods(["GET", "POST"])
def generation_new(request: HttpRequest) -> HttpResponse:
    form = GenerationJobForm(request.POST or None)
    # Each role's model is picked from those this machine can reach (a datalist; the stage checks it).
    for field, default in (
        ("generator_model", settings.LLM_GENERATOR_MODEL),
        ("discriminator_model", settings.LLM_DISCRIMINATOR_MODEL),
    ):
        form.fields[field].widget.attrs["list"] = "reachable-models"
        form.fields[field].initial = llm.resolve_model(default)
    if request.method == "POST" and form.is_valid():
        try:
            job = launch.start_generation(user=request.user, **form.cleaned_data)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Generation job #{job.pk} queued: {job.progress_total} instances.")
            return redirect("generation-detail", job.pk)
    return render(request, "curation/generation_new.html", {"form": form, "models": llm.reachable_models()})


def _job_context(job: GenerationJob) -> dict:
    return {
        "job": job,
        "counts": generation.job_counts(job),
        "cost": generation.job_cost(job),
        "stalled_since": generation.stalled_since(job),
    }


@role_required(CURATOR)
def generation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob.objects.select_related("selection_run"), pk=pk)
    if request.htmx and request.htmx.target == "job-status":
        return render(request, "curation/generation_detail.html#job-status", _job_context(job))
    by_task = (
        job.instances.values("task__slug", "task__name")
        .annotate(
            done=Count("id", filter=Q(status=Instance.Status.DONE)),
            failed=Count("id", filter=Q(status=Instance.Status.FAILED)),
            passed=Count("id", filter=Q(passed=True)),
            total=Count("id"),
        )
        .order_by("task__slug")
    )
    failures = job.instances.filter(status=Instance.Status.FAILED).values("stage").annotate(n=Count("id"))
    return render(
        request,
        "curation/generation_detail.html",
        {**_job_context(job), "by_task": by_task, "failures": failures},
    )


@role_required(CURATOR)
@require_POST
def generation_control(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    job = get_object_or_404(GenerationJob, pk=pk)
    try:
        text = launch.control_generation(job, action)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, text)
    return redirect("generation-detail", pk)


@role_required(CURATOR)
def instance_list(request: HttpRequest) -> HttpResponse:
    instances = Instance.objects.select_related("task", "sample").order_by("-id")
    filters = {key: text_param(request.GET, key) for key in ("job", "task", "status", "verdict", "stage")}
    if (job := int_param(request.GET, "job")) is not None:
        instances = instances.filter(job_id=job)
    if filters["task"]:
        instances = instances.filter(task__slug=filters["task"])
    if filters["status"]:
        instances = instances.filter(status=filters["status"])
    if filters["stage"]:
        instances = instances.filter(stage=filters["stage"])
    if filters["verdict"] in ("pass", "fail"):
        instances = instances.filter(passed=filters["verdict"] == "pass")
    page = Paginator(instances, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "tasks": CodeTask.Slug.choices,
        "statuses": Instance.Status.choices,
        "stages": Instance.Stage.choices,
    }
    if request.htmx:
        return render(request, "curation/instance_list.html#instance-table", context)
    return render(request, "curation/instance_list.html", context)


@role_required(CURATOR)
def instance_detail(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_object_or_404(
        Instance.objects.select_related("task", "sample", "prompt_version", "verdict__principle_version"),
        pk=pk,
    )
    rules = instance.verdict.rules.all() if instance.verdict else []
    return render(request, "curation/instance_detail.html", {"instance": instance, "rules": rules})
