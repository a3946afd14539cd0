"""The bad inputs an audit found answered with a 500, each as sent: they get a clear 400 (an API names the
field, a page re-renders its form with the error or answers a plain message), and an import lists the bad
line while the rest of the file can still be imported."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from curation import imports
from curation.models import CodeSample, GenerationJob, Instance
from tests.curation.pipeline_factory import make_selection
from tests.review.factory import make_instance, make_job
from training.models import DatasetVersion

pytestmark = pytest.mark.django_db

HUGE = "1" + "0" * 30  # 30 digits: past every integer column
SUPERSCRIPT = "²"  # str.isdigit() says yes, int() says no

GOOD = {
    "instruction": "Write a Python function that adds two numbers.",
    "output": "def add(a, b):\n    return a + b",
}
SURROGATE_LINE = '{"instruction": "Write a function \\ud800 that adds.", "output": "def f(): pass"}'
NUL_LINE = '{"instruction": "Write a function that adds.", "output": "def f():\\u0000 pass"}'
NUL_TURN = (
    '{"conversations": [{"from": "human", "value": "Write a function\\u0000 that adds."},'
    ' {"from": "gpt", "value": "def f(): pass"}]}'
)


def _jsonl(*lines: str) -> bytes:
    return "\n".join(lines).encode() + b"\n"


# --- Imports -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "what"),
    [(SURROGATE_LINE, "surrogate"), (NUL_LINE, "NUL"), (NUL_TURN, "NUL")],
    ids=["lone-surrogate", "nul-in-a-field", "nul-in-a-turn"],
)
def test_an_import_names_the_line_with_a_surrogate_or_nul(bad: str, what: str):
    data = _jsonl(json.dumps(GOOD), bad, json.dumps({**GOOD, "output": "def g(): pass"}))
    with pytest.raises(imports.ImportFileError) as error:
        imports.import_instances(io.BytesIO(data), name="bad.jsonl")
    assert len(error.value.errors) == 1
    assert error.value.errors[0].startswith("line 2: ") and what in error.value.errors[0]
    assert not Instance.objects.exists()

    job = imports.import_instances(io.BytesIO(data), name="bad.jsonl", valid_only=True)
    assert job.progress_total == 2 and job.report["error_count"] == 1
    assert sorted(i.source for i in Instance.objects.all()) == ["bad.jsonl:1", "bad.jsonl:3"]


def test_the_import_page_lists_a_surrogate_line_instead_of_failing(curator_client):
    upload = SimpleUploadedFile("bad.jsonl", _jsonl(json.dumps(GOOD), SURROGATE_LINE))
    response = curator_client.post(reverse("import-new"), {"upload": upload, "discriminator_model": "m"})
    assert response.status_code == 200
    assert "line 2: " in response.content.decode()
    assert not Instance.objects.exists()


# --- POST /api/dataset-versions/ ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["seed", "max_size"])
@pytest.mark.parametrize("value", [1e30, 10**30], ids=["float-1e30", "int-10e30"])
def test_dataset_version_api_refuses_a_huge_seed_or_size(curator_client, field: str, value):
    number = "1e30" if isinstance(value, float) else HUGE  # written out: json.dumps would not keep 1e30
    body = f'{{"{field}": {number}, "benchmarks": []}}'
    response = curator_client.post("/api/dataset-versions/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not DatasetVersion.objects.exists()


def test_dataset_version_api_refuses_a_list_as_task_mix(curator_client):
    response = curator_client.post(
        "/api/dataset-versions/", {"task_mix": [1, 2], "benchmarks": []}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert "task_mix" in response.json()


# --- Forms -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e30", HUGE])
def test_generate_form_refuses_a_huge_samples_per_task(curator_client, value: str):
    run = make_selection(2)
    response = curator_client.post(
        reverse("generation-new"),
        {
            "selection_run": run.pk,
            "tasks": ["generation"],
            "samples_per_task": value,
            "instances_per_sample": 1,
            "generator_model": "m",
            "discriminator_model": "m",
            "concurrency": 2,
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors.get("samples_per_task")
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize("value", ["1e30", HUGE])
def test_new_version_form_refuses_a_huge_seed(curator_client, value: str):
    response = curator_client.post(
        reverse("dataset-new"),
        {
            "seed": value,
            "embedding_threshold": 0.9,
            "ngram_threshold": 0.5,
            "near_dup_threshold": 0.7,
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors.get("seed")
    assert not DatasetVersion.objects.exists()


def test_generation_job_api_refuses_a_million_few_shot_examples(curator_client):
    run = make_selection(2)
    response = curator_client.post(
        "/api/generation-jobs/",
        {"selection_run": run.pk, "tasks": ["generation"], "samples_per_task": 1, "few_shot": 1000000},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert "few_shot" in response.json()
    assert not GenerationJob.objects.exists()


# --- Query parameters and expected_version -----------------------------------------------------------------


PAGE_PARAMETERS = [
    ("corpus", "source"),
    ("instance-list", "job"),
    ("review", "instance"),
    ("review", "job"),
    ("review-list", "after"),
    ("review-list", "job"),
]


@pytest.mark.parametrize(("page", "name"), PAGE_PARAMETERS)
@pytest.mark.parametrize("value", [SUPERSCRIPT, HUGE], ids=["superscript", "30-digits"])
def test_pages_answer_a_bad_number_in_the_query_with_a_plain_400(client, admin_user, page, name, value):
    client.force_login(admin_user)
    response = client.get(reverse(page), {name: value})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert name in response.content.decode()


@pytest.mark.parametrize(("path", "name"), [("/api/samples/", "source"), ("/api/instances/", "job")])
@pytest.mark.parametrize("value", [SUPERSCRIPT, HUGE], ids=["superscript", "30-digits"])
def test_api_lists_answer_a_bad_number_in_the_query_with_a_400_naming_it(curator_client, path, name, value):
    response = curator_client.get(path, {name: value})
    assert response.status_code == 400
    assert name in response.json()


@pytest.mark.parametrize("value", [SUPERSCRIPT, HUGE], ids=["superscript", "30-digits"])
def test_a_review_decision_refuses_a_bad_expected_version(reviewer_client, value: str):
    instance = make_instance(make_job())
    response = reviewer_client.post(
        reverse("review-action", args=[instance.pk, "accept"]), {"expected_version": value}
    )
    assert response.status_code == 400
    assert "expected_version" in response.content.decode()
    instance.refresh_from_db()
    assert instance.review_status == Instance.ReviewStatus.UNREVIEWED


def test_good_numbers_in_the_query_still_filter(curator_client):
    job = make_job()
    make_instance(job)
    assert curator_client.get("/api/instances/", {"job": job.pk}).json()["count"] == 1
    assert curator_client.get("/api/instances/", {"job": job.pk + 1}).json()["count"] == 0
    source = CodeSample.objects.first().source_id
    assert curator_client.get(reverse("corpus"), {"source": source}).status_code == 200
