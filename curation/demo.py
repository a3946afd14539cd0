"""The demo's pipeline: real code in, a selection, a first generation job — as jobs on the worker.

`make demo` starts the web server and the worker first; `queue_pipeline` then puts the work on the
worker as ordinary jobs (ingest runs, a selection run, a generation job), so a newcomer logs in at once
and watches their progress on the dashboard like any user's jobs. A few packages are ingested before
the selection, so the first instances come early; the rest follow and grow the corpus.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from celery import chain

from . import catalog, generation, ingest, selection
from .models import CodeSource, GenerationJob, IngestRun, SelectionRun

# Real, permissively licensed code that is on every machine with Python: several stdlib packages.
FIRST_PACKAGES = ["json", "email", "http", "logging"]
LATER_PACKAGES = ["asyncio", "concurrent", "urllib", "importlib", "unittest"]
DEMO_K = 200
DEMO_SAMPLES_PER_TASK = 5
DEMO_TASKS = ("summarization", "generation", "translation", "repair")


def _stdlib_folder(package: str) -> Path | None:
    folder = Path(sysconfig.get_paths()["stdlib"]) / package
    return folder if folder.is_dir() else None


def _ingest_runs(packages: list[str]) -> list[IngestRun]:
    """A queued ingest run per package not ingested yet (one already queued or running is reused)."""
    runs = []
    for package in packages:
        folder = _stdlib_folder(package)
        if folder is None:
            continue
        existing = (
            IngestRun.objects.filter(source__kind=CodeSource.Kind.DIRECTORY, source__location=str(folder))
            .exclude(status__in=[IngestRun.Status.FAILED, IngestRun.Status.CANCELLED])
            .order_by("-pk")
            .first()
        )
        if existing is not None and existing.status == IngestRun.Status.SUCCEEDED:
            continue
        runs.append(existing or ingest.create_ingest_run(folder, name=f"python-stdlib/{package}"))
    return runs


def queue_pipeline(k: int = DEMO_K) -> list[int]:
    """Queue the demo's jobs on the worker, in order; returns the ingest run ids queued.

    Idempotent: packages already ingested, a finished selection and an existing generation job are not
    redone. The selection and the first generation job come after the first packages' ingest.
    """
    from . import tasks  # the tasks module imports the stages; imported here to keep this one light

    first = _ingest_runs(FIRST_PACKAGES)
    later = _ingest_runs(LATER_PACKAGES)
    steps = [tasks.ingest_source.si(run.pk) for run in first]
    steps.append(tasks.demo_select_and_generate.si(k))
    steps += [tasks.ingest_source.si(run.pk) for run in later]
    chain(*steps).delay()
    return [run.pk for run in first + later]


def select_and_generate(k: int = DEMO_K, *, create_job: bool = True) -> GenerationJob | None:
    """Run the demo's selection if there is none yet, then (with `create_job`) create and queue its
    first generation job."""
    from . import tasks

    run = SelectionRun.objects.filter(status=SelectionRun.Status.SUCCEEDED).order_by("-pk").first()
    if run is None:
        try:
            run = selection.create_selection_run(k=k, seed=0)
        except ValueError:
            # Fewer samples than k (a small machine's standard library): take them all.
            run = selection.create_selection_run(k=max(1, _pool_size()), seed=0)
        run = selection.run_selection(run.pk)
        if run.status != SelectionRun.Status.SUCCEEDED:
            return None
    if not create_job or GenerationJob.objects.filter(selection_run__isnull=False).exists():
        return None  # (an import job of the demo dataset does not count)
    catalog.ensure_catalog()
    job = generation.create_generation_job(
        selection_run=run, tasks=list(DEMO_TASKS), samples_per_task=DEMO_SAMPLES_PER_TASK, concurrency=4
    )
    tasks.run_generation_job.delay(job.pk)
    return job


def _pool_size() -> int:
    from .models import CodeSample

    return CodeSample.objects.count()
