"""Stage 1 end to end through a real Celery worker process: upload → ingest → selection."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from curation.models import CodeSample, IngestRun, SelectionRun
from tests.curation.corpus_factory import zip_bytes

from .conftest import wait_for

pytestmark = pytest.mark.integration


def test_worker_ingests_an_upload_and_runs_a_selection(worker, client, curator, tmp_path):
    worker()
    client.force_login(curator)
    upload = SimpleUploadedFile("corpus.zip", zip_bytes())
    client.post(
        reverse("ingest-new"), {"upload": upload, "min_chars": 30, "max_chars": 800, "use_blacklist": "on"}
    )
    run = IngestRun.objects.get()

    def ingest_done():
        run.refresh_from_db()
        return not run.is_active and run

    wait_for(ingest_done, logs=tmp_path)
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert run.kept_count == CodeSample.objects.count() >= 5

    client.post(reverse("selection-new"), {"k": 3, "seed": 0, "model_name": "all-MiniLM-L6-v2"})
    selection = SelectionRun.objects.get()

    def selection_done():
        selection.refresh_from_db()
        return not selection.is_active and selection

    wait_for(selection_done, timeout=300, logs=tmp_path)
    assert selection.status == SelectionRun.Status.SUCCEEDED, selection.error
    assert selection.pick_rows.count() == 3
    assert selection.coverage_radius > 0 and selection.random_radius > 0
    page = client.get(reverse("selection-detail", args=[selection.pk])).content.decode()
    assert "Coverage radius" in page
