"""Starting jobs from the web page and the API alike: validate, create the job row, queue its task."""

import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from wavecoder_site.files import open_private, private_dir

from . import generation, ingest, llm, refinement, selection
from . import tasks as tasks_module
from .models import GenerationJob, IngestRun, RefinementRun, RejudgeJob, SelectionRun
from .roles import ADMIN, has_role


def allowed_server_path(user, raw: str) -> Path:
    """A server path a curator may ingest: inside INGEST_ALLOWED_ROOTS (admins may use any path)."""
    path = Path(raw).expanduser().resolve()
    if has_role(user, ADMIN):
        return path
    if not any(path == root or root in path.parents for root in settings.INGEST_ALLOWED_ROOTS):
        raise ValueError(
            "Curators may ingest server folders only under WAVECODER_INGEST_ALLOWED_ROOTS; upload an "
            "archive instead, or ask an admin."
        )
    return path


def _too_large(size: int, limit: int) -> ValueError:
    return ValueError(
        f"The upload is {size / 2**20:,.1f} MB, over the {limit / 2**20:,.0f} MB limit for ingest uploads "
        "(WAVECODER_MAX_UPLOAD_MB). Split it, or ask an admin to ingest it from a server folder."
    )


def store_upload(upload: UploadedFile) -> Path:
    """Stream an uploaded file to the uploads folder (0600), keeping its name (and so its kind) readable.
    ValueError, and nothing kept, when it is over INGEST_MAX_UPLOAD_BYTES. The ingest run deletes it
    once it has read it."""
    limit = settings.INGEST_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise _too_large(upload.size, limit)
    folder = private_dir(settings.UPLOADS_DIR)
    stored = folder / f"{uuid.uuid4().hex[:12]}-{Path(upload.name).name.replace(' ', '_')}"
    written = 0
    out = open_private(stored)
    try:
        with out:
            for chunk in upload.chunks():
                written += len(chunk)
                if written > limit:  # a size the upload did not declare
                    raise _too_large(written, limit)
                out.write(chunk)
    except BaseException:
        stored.unlink(missing_ok=True)
        raise
    return stored


def start_ingest(*, user, upload: UploadedFile | None = None, path: str = "", options: dict) -> IngestRun:
    """Create an ingest run from an upload or a server path and queue it. Raises ValueError on bad input."""
    if upload is not None:
        stored = store_upload(upload)
        name = Path(upload.name).name
        try:
            # Its location is the name it was uploaded as: where the server keeps it is nobody's business.
            run = ingest.create_ingest_run(
                name, name=name, user=user, options=options, upload_path=str(stored)
            )
        except ValueError:
            stored.unlink(missing_ok=True)
            raise
    elif path:
        try:
            run = ingest.create_ingest_run(allowed_server_path(user, path), user=user, options=options)
        except OSError as exc:  # looking at the path failed: a name too long, a folder it may not read
            raise ValueError(f"Cannot use that server path: {exc.strerror or exc}.") from exc
    else:
        raise ValueError("Give a file to upload or a server path.")
    transaction.on_commit(lambda: tasks_module.ingest_source.delay(run.pk))
    return run


def start_selection(*, user, k: int, seed: int, model_name: str | None, languages=()) -> SelectionRun:
    """Create a selection run and queue it. Raises ValueError on bad parameters."""
    run = selection.create_selection_run(
        k=k, seed=seed, model_name=model_name, languages=languages, user=user
    )
    transaction.on_commit(lambda: tasks_module.run_selection.delay(run.pk))
    return run


def check_models(options: dict) -> None:
    """Refuse a job's models that this machine cannot reach (offline: no local server, not in-process)."""
    for role in ("generator_model", "discriminator_model"):
        if options.get(role):
            options[role] = llm.check_model(options[role])


def start_generation(*, user, selection_run, tasks, samples_per_task, **options) -> GenerationJob:
    """Create a generation job, plan its instances and queue it on the `llm` queue.

    The Generator's and Discriminator's models must be ones this machine can reach (ValueError)."""
    check_models(options)
    job = generation.create_generation_job(
        selection_run=selection_run, tasks=tasks, samples_per_task=samples_per_task, user=user, **options
    )
    transaction.on_commit(lambda: tasks_module.run_generation_job.delay(job.pk))
    return job


def control_generation(job: GenerationJob, action: str) -> str:
    """Pause, resume, cancel or retry the failures of a job; returns what happened, for people."""
    if action == "pause":
        generation.pause(job)
        return f"Job #{job.pk} paused: in-flight instances finish, no new ones start."
    if action == "resume":
        if not generation.resume(job):
            raise ValueError(f"Job #{job.pk} has ended; retry its failures instead.")
        transaction.on_commit(lambda: tasks_module.run_generation_job.delay(job.pk))
        return f"Job #{job.pk} resumed."
    if action == "cancel":
        generation.cancel(job)
        return f"Job #{job.pk} cancelled."
    if action == "retry":
        n = generation.retry_failures(job)
        transaction.on_commit(lambda: tasks_module.run_generation_job.delay(job.pk))
        return f"Retrying {n} failed instances of job #{job.pk}."
    raise ValueError(f"Unknown action {action!r}.")


def start_refinement(*, user, task, **options) -> RefinementRun:
    """Create a refinement run and queue the LLM's proposal. RefinementError on bad input."""
    run = refinement.create_refinement_run(task, user=user, **options)
    transaction.on_commit(lambda: tasks_module.propose_refinement.delay(run.pk))
    return run


def start_check(run: RefinementRun, *, user) -> RefinementRun:
    """Freeze a proposal and queue its held-out check."""
    run = refinement.prepare_check(run, user=user)
    transaction.on_commit(lambda: tasks_module.check_refinement.delay(run.pk))
    return run


def start_rejudge(*, user, **options) -> RejudgeJob:
    """Create a re-judging job over the unreviewed instances and queue it."""
    job = refinement.create_rejudge_job(user=user, **options)
    transaction.on_commit(lambda: tasks_module.rejudge.delay(job.pk))
    return job
