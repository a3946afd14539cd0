"""The admin: versions are read-only; actions download their files and build queued or failed ones."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from tests.training.dataset_factory import make_clean
from training import tasks as training_tasks
from training.datasets import build_version, create_version
from training.models import DatasetVersion

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/training/datasetversion/"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_versions_are_listed_and_read_only(admin_client, reviewer):
    make_clean(reviewer)
    version = build_version(create_version(name="Admin", use_embeddings=False).pk)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Dataset v1 · Admin" in page and "Add dataset version" not in page
    detail = admin_client.get(
        reverse("admin:training_datasetversion_change", args=[version.pk])
    ).content.decode()
    assert 'href="/datasets/v1/"' in detail and 'name="_save"' not in detail
    assert admin_client.get("/admin/training/benchmark/").status_code == 200


def test_the_download_action_streams_a_zip_of_every_selected_version(admin_client, reviewer):
    make_clean(reviewer)
    first = build_version(create_version(use_embeddings=False).pk)
    second = build_version(create_version(use_embeddings=False, max_size=2).pk)
    response = admin_client.post(
        CHANGELIST, {"action": "download_files", "_selected_action": [first.pk, second.pk]}
    )
    assert response["Content-Disposition"] == 'attachment; filename="wavecoder-datasets-1-2.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = set(archive.namelist())
    assert {
        "wavecoder-v1/alpaca.json",
        "wavecoder-v2/README.md",
        "wavecoder-v2/hf_dataset/state.json",
    } <= names
    assert archive.read("wavecoder-v2/alpaca.json") == (second.folder / "alpaca.json").read_bytes()


def test_the_build_action_queues_queued_and_failed_versions_only(
    admin_client, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[int] = []
    monkeypatch.setattr(training_tasks.build_dataset_version, "delay", queued.append)
    failed = build_version(create_version(use_embeddings=False).pk)  # nothing accepted yet
    assert failed.status == DatasetVersion.Status.FAILED
    waiting = create_version(use_embeddings=False)
    make_clean(reviewer)
    done = build_version(create_version(use_embeddings=False).pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            CHANGELIST,
            {"action": "build_versions", "_selected_action": [failed.pk, waiting.pk, done.pk]},
            follow=True,
        )
    assert "Queued 2 build(s); 1 running or built left as they are." in response.content.decode()
    assert sorted(queued) == sorted([failed.pk, waiting.pk])
    failed.refresh_from_db()
    assert (failed.status, failed.error) == (DatasetVersion.Status.QUEUED, "")
    assert build_version(failed.pk).status == DatasetVersion.Status.SUCCEEDED  # accepted instances now exist


def test_reviewers_do_not_get_into_the_admin(client, reviewer):
    client.force_login(reviewer)
    assert client.get(CHANGELIST)["Location"].startswith("/admin/login/")
