"""Starting jobs from the web page and the API alike: validate, create the job row, queue its task."""

import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from . import ingest, selection, tasks
from .models import IngestRun, SelectionRun
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


def store_upload(upload: UploadedFile) -> Path:
    """Stream an uploaded file to the uploads folder, keeping its name (and so its kind) readable."""
    folder = settings.UPLOADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stored = folder / f"{uuid.uuid4().hex[:12]}-{Path(upload.name).name.replace(' ', '_')}"
    with open(stored, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return stored


def start_ingest(*, user, upload: UploadedFile | None = None, path: str = "", options: dict) -> IngestRun:
    """Create an ingest run from an upload or a server path and queue it. Raises ValueError on bad input."""
    if upload is not None:
        stored = store_upload(upload)
        try:
            run = ingest.create_ingest_run(
                stored, name=Path(upload.name).name, user=user, options=options, upload_path=str(stored)
            )
        except ValueError:
            stored.unlink(missing_ok=True)
            raise
    elif path:
        run = ingest.create_ingest_run(allowed_server_path(user, path), user=user, options=options)
    else:
        raise ValueError("Give a file to upload or a server path.")
    transaction.on_commit(lambda: tasks.ingest_source.delay(run.pk))
    return run


def start_selection(*, user, k: int, seed: int, model_name: str | None, languages=()) -> SelectionRun:
    """Create a selection run and queue it. Raises ValueError on bad parameters."""
    run = selection.create_selection_run(
        k=k, seed=seed, model_name=model_name, languages=languages, user=user
    )
    transaction.on_commit(lambda: tasks.run_selection.delay(run.pk))
    return run
