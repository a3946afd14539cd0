"""Bad inputs the fuzz test (test_fuzz.py) found beyond the audit's list, each as a plain example."""

from __future__ import annotations

import pytest
from django.urls import reverse

from curation.models import CodeTask, IngestRun, RefinementRun
from training.models import DatasetVersion

pytestmark = pytest.mark.django_db

HUGE = "1" + "0" * 30


def test_a_lone_surrogate_anywhere_in_a_json_body_is_a_400_saying_where(curator_client):
    response = curator_client.post(
        "/api/rejudge-jobs/", '{"tasks": ["\\ud800"]}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "tasks[0]" in response.json()["detail"] and "surrogate" in response.json()["detail"]


def test_a_nul_in_a_task_slug_is_refused_before_the_lookup(curator_client):
    response = curator_client.post(
        "/api/refinement-runs/", {"task": "gene\x00ration"}, content_type="application/json"
    )
    assert response.status_code == 400 and "task" in response.json()


def test_edited_principles_refuse_a_nul_character(curator_client):
    task = CodeTask.objects.get(slug="generation")
    run = RefinementRun.objects.create(
        task=task,
        base_version=task.current_principles,
        model="m",
        stage=RefinementRun.Stage.PROPOSED,
        status=RefinementRun.Status.SUCCEEDED,
        proposed_rules=[{"id": "a", "question": "Is it?"}],
    )
    response = curator_client.post(reverse("refinement-detail", args=[run.pk]), {"rules": "a: Is\x00 it?"})
    assert response.status_code == 200 and "NUL" in response.content.decode()
    run.refresh_from_db()
    assert run.proposed_rules == [{"id": "a", "question": "Is it?"}]


def test_a_server_path_too_long_for_the_file_system_is_a_400(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/api/ingest-runs/", {"path": "x" * 300}, content_type="application/json")
    assert response.status_code == 400, response.content
    page = client.post(reverse("ingest-new"), {"path": "x" * 300, "min_chars": 1, "max_chars": 5})
    assert page.status_code == 200 and page.context["form"].errors
    assert not IngestRun.objects.exists()


def test_the_new_version_form_refuses_a_benchmark_id_past_64_bits(curator_client):
    response = curator_client.post(
        reverse("dataset-new"),
        {"seed": 0, "embedding_threshold": 0.9, "ngram_threshold": 0.5, "near_dup_threshold": 0.7,
         "benchmarks": [HUGE]},
    )  # fmt: skip
    assert response.status_code == 200 and response.context["form"].errors.get("benchmarks")
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("value", [HUGE, "1e30"])
def test_a_resolution_refuses_a_revision_past_every_id(curator_client, value: str):
    from tests.review.factory import make_instance, make_job

    instance = make_instance(make_job())
    response = curator_client.post(
        reverse("review-resolve", args=[instance.pk]), {"decision": "accept", "revision": value}
    )
    assert response.status_code == 200 and response.context["form"].errors.get("revision")
