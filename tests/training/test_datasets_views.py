"""The Datasets pages: curators only, CSRF on every POST, everything escaped; new version, its live
status, downloads, benchmarks and imports (with line-numbered errors for a bad file)."""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client
from django.urls import reverse

from curation.models import GenerationJob, Instance
from tests.training.dataset_factory import make_clean
from training.datasets import build_version, create_version
from training.models import Benchmark, DatasetVersion

pytestmark = pytest.mark.django_db


PAGES = ["dataset-list", "dataset-new", "benchmark-list", "import-new"]


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_a_login_and_the_curator_role(client, reviewer, name):
    url = reverse(name)
    assert client.get(url)["Location"].startswith("/accounts/login/")
    client.force_login(reviewer)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("name", PAGES)
def test_curators_and_admins_see_them(client, curator, admin_user, name):
    for user in (curator, admin_user):
        client.force_login(user)
        assert client.get(reverse(name)).status_code == 200


def test_the_nav_links_to_datasets_for_curators_only(client, curator, reviewer):
    client.force_login(curator)
    assert 'href="/datasets/">Datasets</a>' in client.get("/review/").content.decode()
    client.force_login(reviewer)
    assert 'href="/datasets/">Datasets</a>' not in client.get("/review/").content.decode()


def test_a_curator_builds_a_version_from_the_form(
    curator_client, reviewer, queued_builds, django_capture_on_commit_callbacks
):
    [first, *_] = make_clean(reviewer)
    page = curator_client.get(reverse("dataset-new")).content.decode()
    assert 'value="python"' in page and f'value="{first.job_id}"' in page and "rita" in page
    humaneval = Benchmark.objects.get(name="HumanEval")
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post(
            reverse("dataset-new"),
            {
                "name": "First",
                "tasks": ["generation"],
                "reviewers": [reviewer.pk],
                "accepted_from": "2020-01-01",
                "accepted_until": "2100-12-31",
                "mix": "custom",
                "mix_generation": "100",
                "seed": "7",
                "benchmarks": [humaneval.pk],
                "embedding_threshold": "0.8",
                "ngram_threshold": "0.5",
                "near_dup_threshold": "0.7",
            },
        )
    version = DatasetVersion.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/datasets/v{version.number}/"
    assert queued_builds == [version.pk]
    assert (version.name, version.tasks, version.reviewer_ids, version.seed) == (
        "First",
        ["generation"],
        [reviewer.pk],
        7,
    )
    assert version.task_mix == {"generation": 1.0} and version.use_embeddings is False  # unticked box
    assert version.accepted_until.date().isoformat() == "2101-01-01"  # the last day counts whole
    assert list(version.benchmarks.all()) == [humaneval]

    # Built by the task, then the page shows the result.
    build_version(version.pk)
    page = curator_client.get(response["Location"]).content.decode()
    assert "Succeeded" in page and "6 instances</strong> of 6 accepted" in page
    assert f'href="/datasets/v{version.number}/download/alpaca/"' in page


def test_a_bad_form_says_why_and_builds_nothing(curator_client, queued_builds):
    response = curator_client.post(
        reverse("dataset-new"),
        {
            "mix": "custom",
            "seed": "0",
            "embedding_threshold": "0.8",
            "ngram_threshold": "0.5",
            "near_dup_threshold": "0.7",
        },
    )
    assert "Give the custom task mix at least one share above 0%." in response.content.decode()
    response = curator_client.post(
        reverse("dataset-new"),
        {"seed": "0", "embedding_threshold": "3", "ngram_threshold": "0.5", "near_dup_threshold": "0.7"},
    )
    assert "Ensure this value is less than or equal to 1" in response.content.decode()
    assert not DatasetVersion.objects.exists() and queued_builds == []


def test_posts_need_the_csrf_token(curator, queued_builds):
    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    assert client.post(reverse("dataset-new"), {"seed": "0"}).status_code == 403
    assert client.post(reverse("import-new"), {}).status_code == 403
    assert client.post(reverse("benchmark-list"), {}).status_code == 403


def test_the_detail_page_polls_while_building_and_escapes_what_people_wrote(curator_client, built_version):
    version = create_version(name="<script>alert(1)</script>", use_embeddings=False)
    page = curator_client.get(reverse("dataset-detail", args=[version.number])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'hx-trigger="every 1s"' in page and "Waiting for a worker" in page
    partial = curator_client.get(
        reverse("dataset-detail", args=[version.number]),
        headers={"HX-Request": "true", "HX-Target": "version-status"},
    ).content.decode()
    assert partial.strip().startswith('<section id="version-status"') and "<html" not in partial

    page = curator_client.get(reverse("dataset-detail", args=[built_version.number])).content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt; name" in page and "hx-trigger" not in page
    assert "HumanEval · HumanEval/12" in page and "ngram" in page  # the exclusion report
    assert "Dataset card (README.md)" in page and "## Decontamination" in page


def test_the_list_polls_only_while_a_version_is_building(curator_client, built_version):
    page = curator_client.get(reverse("dataset-list")).content.decode()
    assert f'href="/datasets/v{built_version.number}/"' in page and "hx-trigger" not in page
    create_version(use_embeddings=False)
    page = curator_client.get(reverse("dataset-list")).content.decode()
    assert 'hx-trigger="every 2s"' in page


def test_downloads_are_attachments_of_the_built_files(curator_client, built_version):
    response = curator_client.get(reverse("dataset-download", args=[built_version.number, "messages"]))
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="wavecoder-v{built_version.number}-messages.jsonl"'
    )
    assert b"".join(response.streaming_content) == (built_version.folder / "messages.jsonl").read_bytes()
    assert (
        curator_client.get(reverse("dataset-download", args=[built_version.number, "README.md"])).status_code
        == 404
    )
    assert (
        curator_client.get(reverse("dataset-download", args=[built_version.number, "csv"])).status_code == 404
    )
    (built_version.folder / "data.parquet").unlink()
    response = curator_client.get(reverse("dataset-download", args=[built_version.number, "parquet"]))
    assert response.status_code == 404


def test_a_benchmark_is_uploaded_or_refused_line_by_line(curator_client):
    good = io.BytesIO(json.dumps({"task_id": "X/1", "text": "Add.", "code": "def add(a, b): ..."}).encode())
    good.name = "x.jsonl"
    response = curator_client.post(reverse("benchmark-list"), {"name": "X", "upload": good})
    assert response.status_code == 302 and Benchmark.objects.get(name="X").item_count == 1
    bad = io.BytesIO(b'{"text": "Add.", "code": "x"}\n{"text": "<i>no code</i>"}\n')
    bad.name = "bad.jsonl"
    page = curator_client.post(reverse("benchmark-list"), {"name": "Bad", "upload": bad}).content.decode()
    assert "line 2: missing field &#x27;code&#x27;" in page and "Nothing was saved" in page
    assert not Benchmark.objects.filter(name="Bad").exists()


def test_an_import_upload_shows_every_bad_line_and_imports_nothing(curator_client):
    lines = [
        json.dumps(
            {
                "instruction": "Write a Python function that adds.",
                "output": "def add(a, b):\n    return a + b",
            }
        ),
        '{"instruction": "<script>x</script>"',
        json.dumps({"instruction": "Typed.", "output": 42}),
    ]
    upload = io.BytesIO(("\n".join(lines) + "\n").encode() + b'{"instruction": "\xe9"}\n')
    upload.name = "mixed.jsonl"
    page = curator_client.post(
        reverse("import-new"), {"upload": upload, "discriminator_model": "m"}
    ).content.decode()
    assert "3 problems in the file" in page
    assert (
        "line 2: invalid JSON" in page
        and "line 3: field &#x27;output&#x27; must be a string, got int" in page
    )
    assert "line 4: not valid UTF-8 (byte 0xe9 at column 18)" in page
    assert "<script>x</script>" not in page
    assert not Instance.objects.exists()

    upload.seek(0)
    response = curator_client.post(
        reverse("import-new"),
        {"upload": upload, "discriminator_model": "m", "valid_only": "on", "task": "generation"},
    )
    job = GenerationJob.objects.get(kind=GenerationJob.Kind.IMPORT)
    assert response["Location"] == f"/datasets/import/{job.pk}/"
    assert job.instances.get().source == "mixed.jsonl:1" and job.status == GenerationJob.Status.SUCCEEDED
    page = curator_client.get(response["Location"]).content.decode()
    assert "3 problems in the file" in page and "Not judged" in page and f"/review/?job={job.pk}" in page


def test_an_import_with_judging_is_queued_for_the_discriminator(
    curator_client, monkeypatch, django_capture_on_commit_callbacks
):
    from curation import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.run_generation_job, "delay", queued.append)
    upload = io.BytesIO(
        json.dumps({"instruction": "Fix the bug.", "input": "x = 1 +", "output": "x = 1"}).encode()
    )
    upload.name = "fix.json"
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post(
            reverse("import-new"), {"upload": upload, "judge": "on", "discriminator_model": "judge-model"}
        )
    job = GenerationJob.objects.get()
    assert queued == [job.pk] and job.discriminator_model == "judge-model"
    assert job.instances.get().task.slug == "repair"
    page = curator_client.get(response["Location"]).content.decode()
    assert f'href="/generation/{job.pk}/"' in page


def test_an_oversized_upload_is_refused(curator_client, settings):
    settings.IMPORT_MAX_BYTES = 1000
    upload = io.BytesIO(b"x" * 2000)
    upload.name = "big.jsonl"
    page = curator_client.post(
        reverse("import-new"), {"upload": upload, "discriminator_model": "m"}
    ).content.decode()
    assert "the file is 0.0 MB, over the 0 MB limit; nothing was read" in page
    assert not GenerationJob.objects.exists()
