"""Curator pages: upload → ingest run → report; selection form; corpus browser; htmx partials."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from curation import ingest
from curation.models import CodeSample, IngestRun, SelectionRun

from .corpus_factory import write_package, zip_bytes


def _ingest_folder(tmp_path):
    run = ingest.create_ingest_run(write_package(tmp_path / "pkg"))
    return ingest.run_ingest(run.pk)


def test_upload_creates_and_queues_an_ingest_run(curator_client, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("corpus.zip", zip_bytes(), content_type="application/zip")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = curator_client.post(
            reverse("ingest-new"),
            {"upload": upload, "min_chars": 20, "max_chars": 800, "use_blacklist": "on"},
        )
    run = IngestRun.objects.get()
    assert response["Location"] == reverse("ingest-detail", args=[run.pk])
    assert len(callbacks) == 1, "the Celery task is queued once the run is committed"
    assert run.options["min_chars"] == 20
    ingest.run_ingest(run.pk)
    page = curator_client.get(reverse("ingest-detail", args=[run.pk]))
    assert b"Succeeded" in page.content
    assert CodeSample.objects.filter(ingest_run=run).count() >= 5


def test_ingest_form_rejects_both_or_neither_source(curator_client):
    response = curator_client.post(reverse("ingest-new"), {"min_chars": 50, "max_chars": 800})
    assert b"either a file to upload or a server path" in response.content
    assert not IngestRun.objects.exists()


def test_ingest_form_rejects_inverted_length_window(curator_client):
    upload = SimpleUploadedFile("c.zip", zip_bytes())
    response = curator_client.post(
        reverse("ingest-new"), {"upload": upload, "min_chars": 900, "max_chars": 800}
    )
    assert b"must be larger than the minimum" in response.content
    assert not IngestRun.objects.exists()


def test_curator_cannot_ingest_arbitrary_server_paths(curator_client, tmp_path):
    response = curator_client.post(
        reverse("ingest-new"), {"path": str(tmp_path), "min_chars": 50, "max_chars": 800}
    )
    assert b"WAVECODER_INGEST_ALLOWED_ROOTS" in response.content
    assert not IngestRun.objects.exists()


def test_curator_may_ingest_inside_allowed_roots(curator_client, tmp_path, settings):
    settings.INGEST_ALLOWED_ROOTS = [tmp_path.resolve()]
    write_package(tmp_path / "pkg")
    response = curator_client.post(
        reverse("ingest-new"), {"path": str(tmp_path / "pkg"), "min_chars": 50, "max_chars": 800}
    )
    assert response.status_code == 302
    assert IngestRun.objects.get().source.location == str((tmp_path / "pkg").resolve())


def test_dashboard_shows_corpus_and_runs(curator_client, tmp_path):
    run = _ingest_folder(tmp_path)
    page = curator_client.get(reverse("dashboard")).content.decode()
    assert "python" in page
    assert f"#{run.pk}" in page
    assert "No job is running" in page


def test_dashboard_polls_active_jobs_partial(curator_client, tmp_path):
    run = ingest.create_ingest_run(write_package(tmp_path / "pkg"))
    page = curator_client.get(reverse("dashboard")).content.decode()
    assert 'hx-trigger="every 2s"' in page
    partial = curator_client.get(reverse("dashboard"), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="active-jobs")
    body = partial.content.decode()
    assert f"Ingest #{run.pk}" in body
    assert "<html" not in body, "htmx gets only the partial"


def test_ingest_detail_stops_polling_when_finished(curator_client, tmp_path):
    run = ingest.create_ingest_run(write_package(tmp_path / "pkg"))
    url = reverse("ingest-detail", args=[run.pk])
    assert "every 1s" in curator_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    ingest.run_ingest(run.pk)
    finished = curator_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "every 1s" not in finished
    assert "Succeeded" in finished


def test_corpus_filters_and_sample_page_highlights_code(curator_client, tmp_path):
    _ingest_folder(tmp_path)
    response = curator_client.get(reverse("corpus"), {"q": "fizzbuzz"})
    assert b"fizzbuzz" in response.content
    assert b"is_palindrome" not in response.content
    sample = CodeSample.objects.get(func_name="fizzbuzz")
    detail = curator_client.get(reverse("sample-detail", args=[sample.pk])).content.decode()
    assert 'class="code"' in detail
    assert "FizzBuzz" in detail


def test_sample_page_escapes_code(curator_client, tmp_path):
    sample = CodeSample.objects.create(
        source=_ingest_folder(tmp_path).source,
        language="python",
        code="x = '<script>alert(1)</script>'",
        docstring="<img src=x onerror=alert(1)>",
        n_chars=30,
        content_hash="f" * 64,
        minhash=b"",
    )
    detail = curator_client.get(reverse("sample-detail", args=[sample.pk])).content.decode()
    assert "<script>alert(1)" not in detail
    assert "<img src=x" not in detail


def test_selection_form_validates_k(curator_client, tmp_path):
    _ingest_folder(tmp_path)
    response = curator_client.post(reverse("selection-new"), {"k": 10_000, "seed": 0, "model_name": "m"})
    assert response.status_code == 200
    assert not SelectionRun.objects.exists()
    assert b"errorlist" in response.content


def test_selection_form_queues_a_run(curator_client, tmp_path, django_capture_on_commit_callbacks):
    _ingest_folder(tmp_path)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = curator_client.post(
            reverse("selection-new"), {"k": 3, "seed": 7, "model_name": "all-MiniLM-L6-v2"}
        )
    run = SelectionRun.objects.get()
    assert response["Location"] == reverse("selection-detail", args=[run.pk])
    assert (run.k, run.seed, run.status) == (3, 7, SelectionRun.Status.QUEUED)
    assert len(callbacks) == 1


@pytest.mark.parametrize("name", ["ingest-detail", "selection-detail", "sample-detail"])
def test_missing_objects_are_404(curator_client, name):
    assert curator_client.get(reverse(name, args=[999])).status_code == 404
