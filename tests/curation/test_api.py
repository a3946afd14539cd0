"""The REST API: start ingest and selection runs, read reports, samples and picks; OpenAPI schema."""

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile

from curation import ingest
from curation.models import CodeSample, IngestRun, SelectionPick, SelectionRun

from .corpus_factory import write_package, zip_bytes


def test_upload_through_api_starts_an_ingest_run(curator_client, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("corpus.zip", zip_bytes())
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post("/api/ingest-runs/", {"upload": upload, "min_chars": 30})
    assert response.status_code == 201, response.content
    run = IngestRun.objects.get(pk=response.json()["id"])
    assert run.options["min_chars"] == 30
    ingest.run_ingest(run.pk)
    body = curator_client.get(f"/api/ingest-runs/{run.pk}/").json()
    assert body["status"] == "succeeded"
    assert body["kept_count"] == CodeSample.objects.count() > 0
    assert "dropped" in body["report"]


def test_api_rejects_missing_source_with_clear_error(curator_client):
    response = curator_client.post("/api/ingest-runs/", {"min_chars": 30}, content_type="application/json")
    assert response.status_code == 400
    assert "upload" in response.content.decode()


def test_api_refuses_server_path_outside_allowed_roots(curator_client, tmp_path):
    response = curator_client.post(
        "/api/ingest-runs/", {"path": str(tmp_path)}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "ALLOWED_ROOTS" in response.content.decode()


def test_admin_may_ingest_a_server_path_through_api(client, admin_user, tmp_path):
    client.force_login(admin_user)
    write_package(tmp_path / "pkg")
    response = client.post(
        "/api/ingest-runs/", {"path": str(tmp_path / "pkg"), "blacklist": []}, content_type="application/json"
    )
    assert response.status_code == 201
    assert IngestRun.objects.get().options["blacklist"] == []


def test_samples_filter_by_language(curator_client, tmp_path):
    ingest.run_ingest(ingest.create_ingest_run(write_package(tmp_path / "pkg")).pk)
    body = curator_client.get("/api/samples/", {"language": "python"}).json()
    assert body["count"] == CodeSample.objects.filter(language="python").count() > 0
    assert curator_client.get("/api/samples/", {"language": "cobol"}).json()["count"] == 0


def test_selection_api_validates_and_lists_picks(curator_client, tmp_path):
    ingest.run_ingest(ingest.create_ingest_run(write_package(tmp_path / "pkg")).pk)
    bad = curator_client.post("/api/selection-runs/", {"k": 0}, content_type="application/json")
    assert bad.status_code == 400
    response = curator_client.post(
        "/api/selection-runs/", {"k": 2, "seed": 1}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    run = SelectionRun.objects.get(pk=response.json()["id"])
    samples = list(CodeSample.objects.order_by("id")[:2])
    for rank, sample in enumerate(reversed(samples)):
        SelectionPick.objects.create(run=run, sample=sample, rank=rank, distance=float(np.float32(rank)))
    picks = curator_client.get(f"/api/selection-runs/{run.pk}/picks/").json()["results"]
    assert [p["sample"] for p in picks] == [samples[1].pk, samples[0].pk]


def test_openapi_schema_lists_endpoints(curator_client):
    response = curator_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/ingest-runs/" in paths
    assert "/api/selection-runs/{id}/picks/" in paths
