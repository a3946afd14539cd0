"""The dataset API: token and session auth, curators only, pagination, create → build → download, and an
OpenAPI schema that builds."""

from __future__ import annotations

import io
import json

import pytest
from rest_framework.test import APIClient

from curation.tokens import issue_token
from training.datasets import create_version
from training.models import Benchmark, DatasetVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(curator) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(curator)}")
    return client


# --- Auth and permissions -----------------------------------------------------------------------------------


def test_anonymous_and_bad_tokens_get_401(db):
    client = APIClient()
    assert client.get("/api/dataset-versions/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get("/api/dataset-versions/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path", ["/api/dataset-versions/", "/api/benchmarks/"])
def test_reviewers_and_people_without_a_role_get_403(reviewer, nobody, path):
    for user in (reviewer, nobody):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user)}")
        assert client.get(path).status_code == 403
        assert client.post(path, {}, format="json").status_code == 403


def test_admins_may_use_it_too(admin_user, built_version):
    client = APIClient()
    client.force_authenticate(admin_user)
    assert client.get(f"/api/dataset-versions/{built_version.number}/").status_code == 200


def test_session_posts_need_a_csrf_token(curator, queued_builds):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(curator)
    response = client.post("/api/dataset-versions/", {"name": "no token"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not DatasetVersion.objects.exists() and queued_builds == []


# --- Create, follow, download -------------------------------------------------------------------------------


def test_create_queues_a_build_with_the_settings_given(
    api, queued_builds, reviewer, django_capture_on_commit_callbacks
):
    Benchmark.humaneval()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/dataset-versions/",
            {
                "name": "From the API",
                "tasks": ["generation", "repair"],
                "languages": ["python"],
                "reviewer_ids": [reviewer.pk],
                "task_mix": "generation=3,repair=1",
                "max_size": 100,
                "benchmarks": ["HumanEval"],
                "use_embeddings": False,
                "near_dup_threshold": 0.8,
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    version = DatasetVersion.objects.get(number=body["number"])
    assert queued_builds == [version.pk]
    assert (body["status"], body["name"], body["benchmarks"]) == (
        "queued",
        "From the API",
        ["HumanEval"],
    )
    assert version.tasks == ["generation", "repair"] and version.reviewer_ids == [reviewer.pk]
    assert version.task_mix == {"generation": 0.75, "repair": 0.25} and version.near_dup_threshold == 0.8
    assert version.use_embeddings is False and version.created_by.username == "carl"


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"task_mix": "cooking=1"}, "detail", "Unknown task in the mix: cooking"),
        ({"tasks": ["cooking"]}, "detail", "Tasks must be some of"),
        ({"benchmarks": ["Nope"]}, "benchmarks", "No benchmark named Nope"),
        ({"max_size": 0}, "max_size", "greater than or equal to 1"),
        ({"near_dup_threshold": 1.5}, "detail", "near-duplicate threshold must be in"),
    ],
)
def test_bad_settings_get_400_with_a_reason(api, queued_builds, payload, field, message):
    response = api.post("/api/dataset-versions/", payload, format="json")
    assert response.status_code == 400
    assert message in json.dumps(response.json()[field])
    assert not DatasetVersion.objects.exists() and queued_builds == []


def test_a_built_version_reports_and_downloads_every_format(api, built_version):
    body = api.get(f"/api/dataset-versions/{built_version.number}/").json()
    assert body["status"] == "succeeded" and body["item_count"] == 6
    assert body["report"]["decontamination"]["instances"] == 1
    assert set(body["files"]) == {"alpaca", "messages", "parquet", "hf", "card"}
    assert (
        body["files"]["alpaca"]["url"]
        == f"http://testserver/api/dataset-versions/{built_version.number}/download/alpaca/"
    )

    response = api.get(body["files"]["alpaca"]["url"])
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="wavecoder-v{built_version.number}-alpaca.json"'
    )
    rows = json.loads(b"".join(response.streaming_content))
    assert len(rows) == 6 and set(rows[0]) == {"instruction", "input", "output"}
    for fmt in ("messages", "parquet", "hf", "card"):
        response = api.get(f"/api/dataset-versions/{built_version.number}/download/{fmt}/")
        assert response.status_code == 200, fmt
        assert (
            b"".join(response.streaming_content)
            == (
                built_version.folder
                / response["Content-Disposition"].split(f"wavecoder-v{built_version.number}-")[1].rstrip('"')
            ).read_bytes()
        )
    assert api.get(f"/api/dataset-versions/{built_version.number}/download/csv/").status_code == 404


def test_exclusions_list_what_was_left_out(api, built_version):
    body = api.get(f"/api/dataset-versions/{built_version.number}/exclusions/?reason=contaminated").json()
    assert body["count"] >= 1
    assert {row["benchmark_item"] for row in body["results"]} == {"HumanEval/12"}
    assert {"instance", "method", "score", "detail"} <= set(body["results"][0])
    assert (
        api.get(f"/api/dataset-versions/{built_version.number}/exclusions/?reason=near_duplicate").json()[
            "count"
        ]
        == 0
    )


def test_an_unbuilt_version_has_no_files_to_download(api, queued_builds):
    version = create_version(use_embeddings=False)
    assert api.get(f"/api/dataset-versions/{version.number}/download/alpaca/").status_code == 404
    assert api.get(f"/api/dataset-versions/{version.number}/").json()["files"] == {}


def test_the_list_is_paginated_newest_first(api):
    for _ in range(51):  # one more than a page
        create_version(use_embeddings=False)
    first = api.get("/api/dataset-versions/").json()
    assert first["count"] == 51 and [v["number"] for v in first["results"]] == list(range(51, 1, -1))
    assert [v["number"] for v in api.get(first["next"]).json()["results"]] == [1]


def test_versions_cannot_be_changed_or_deleted(api, built_version):
    url = f"/api/dataset-versions/{built_version.number}/"
    assert api.patch(url, {"name": "x"}, format="json").status_code == 405
    assert api.delete(url).status_code == 405


# --- Benchmarks ---------------------------------------------------------------------------------------------


def test_benchmarks_are_listed_and_uploaded(api):
    assert [b["name"] for b in api.get("/api/benchmarks/").json()["results"]] == ["HumanEval"]
    upload = io.BytesIO(
        json.dumps({"task_id": "T/1", "text": "Add two numbers.", "code": "def add(a, b): ..."}).encode()
    )
    upload.name = "tiny.jsonl"
    response = api.post("/api/benchmarks/", {"name": "Tiny", "upload": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert (response.json()["name"], response.json()["item_count"]) == ("Tiny", 1)
    bad = io.BytesIO(b'{"text": "x", "code": "y"}\nnot json\n')
    bad.name = "bad.jsonl"
    response = api.post("/api/benchmarks/", {"name": "Bad", "upload": bad}, format="multipart")
    assert response.status_code == 400
    assert response.json()["upload"] == ["line 2: invalid JSON: Expecting value (column 1)"]


# --- Schema -------------------------------------------------------------------------------------------------


def test_the_openapi_schema_builds_and_describes_the_dataset_endpoints(api):
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/dataset-versions/"])
    download = paths["/api/dataset-versions/{number}/download/{fmt}/"]["get"]
    fmt = next(p for p in download["parameters"] if p["name"] == "fmt")
    assert set(fmt["schema"]["enum"]) == {"alpaca", "messages", "parquet", "hf", "card"}
    assert "application/octet-stream" in download["responses"]["200"]["content"]
    request = schema["components"]["schemas"]["DatasetVersionRequest"]["properties"]
    assert {"task_mix", "benchmarks", "use_embeddings", "reviewer_ids"} <= set(request)
    assert "/api/benchmarks/" in paths
    assert APIClient().get("/api/schema/").status_code == 401  # the schema needs a login too


def test_the_schema_has_no_warnings_from_these_endpoints():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=None)
    generator.get_schema(request=None, public=True)
    mine = [
        w for w in GENERATOR_STATS._warn_cache if "training" in w or "DatasetVersion" in w or "Benchmark" in w
    ]
    assert mine == []
