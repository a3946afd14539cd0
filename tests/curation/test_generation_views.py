"""Curator pages and API for tasks, generation jobs and instances."""

import pytest
from django.conf import settings
from django.urls import reverse

from curation import generation
from curation.models import CodeTask, GenerationJob, Instance, PrincipleVersion, TaskPromptVersion
from curation.roles import REVIEWER

from .pipeline_factory import make_selection


def test_task_pages_list_four_tasks(curator_client):
    page = curator_client.get(reverse("task-list")).content.decode()
    for name in ["Code summarization", "Code generation", "Code translation", "Code repair"]:
        assert name in page


def test_editing_a_prompt_makes_a_new_version(curator_client, curator):
    task = CodeTask.objects.get(slug="repair")
    old = task.current_prompt
    response = curator_client.post(
        reverse("task-detail", args=["repair"]),
        {
            "form": "prompt",
            "definition": "Plant one bug.",
            "requirements": "Be realistic.\nName the language.",
            "note": "shorter",
        },
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.current_prompt.version == old.version + 1
    assert task.current_prompt.requirement_list == ["Be realistic.", "Name the language."]
    assert task.current_prompt.created_by == curator
    assert TaskPromptVersion.objects.filter(pk=old.pk).exists(), "old versions are kept"


def test_editing_principles_makes_a_new_version(curator_client):
    response = curator_client.post(
        reverse("task-detail", args=["generation"]),
        {"form": "principles", "rules": "names_language: Does it name the language?\nruns: Does it run?"},
    )
    assert response.status_code == 302
    task = CodeTask.objects.get(slug="generation")
    assert [r["id"] for r in task.current_principles.rules] == ["names_language", "runs"]
    assert PrincipleVersion.objects.filter(task=task).count() == 2


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("no colon here", "write `rule_id: question`"),
        ("a: one?\na: two?", "used twice"),
        ("bad id!: question?", "letters, digits and underscores"),
        ("a:   ", "question is empty"),
    ],
)
def test_bad_principles_are_refused_with_a_clear_message(curator_client, rules, message):
    response = curator_client.post(
        reverse("task-detail", args=["generation"]), {"form": "principles", "rules": rules}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert PrincipleVersion.objects.filter(task__slug="generation").count() == 1


def test_reviewer_cannot_edit_tasks(reviewer_client):
    response = reviewer_client.post(
        reverse("task-detail", args=["generation"]), {"form": "principles", "rules": "a: b?"}
    )
    assert response.status_code == 403


def test_generation_form_queues_a_job(curator_client, django_capture_on_commit_callbacks):
    selection = make_selection()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = curator_client.post(
            reverse("generation-new"),
            {
                "selection_run": selection.pk,
                "tasks": ["generation", "repair"],
                "samples_per_task": 2,
                "instances_per_sample": 1,
                # Offline, the in-process model is the one every machine can reach.
                "generator_model": "smollm2-135m-instruct",
                "discriminator_model": "smollm2-135m-instruct",
                "concurrency": 4,
                "tries": 2,
            },
        )
    job = GenerationJob.objects.get()
    assert response["Location"] == reverse("generation-detail", args=[job.pk])
    assert job.progress_total == 4 and len(callbacks) == 1 and job.tries == 2
    page = curator_client.get(response["Location"]).content.decode()
    assert "Pause" in page and "Cancel" in page and "2 tries per instance" in page
    assert 'hx-trigger="every 2s"' in page


def test_generation_controls(curator_client, django_capture_on_commit_callbacks):
    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=["generation"], samples_per_task=2
    )
    url = lambda action: reverse("generation-control", args=[job.pk, action])  # noqa: E731
    curator_client.post(url("pause"))
    job.refresh_from_db()
    assert job.paused
    assert "Resume" in curator_client.get(reverse("generation-detail", args=[job.pk])).content.decode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        curator_client.post(url("resume"))
    job.refresh_from_db()
    assert not job.paused and len(callbacks) == 1
    curator_client.post(url("cancel"))
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED
    response = curator_client.post(url("resume"), follow=True)
    assert "has ended" in response.content.decode()
    assert curator_client.get(url("pause")).status_code == 405, "controls are POST only"


def test_instance_pages_show_verdicts_and_escape_llm_output(curator_client):
    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=["summarization"], samples_per_task=1
    )
    instance = job.instances.get()
    Instance.objects.filter(pk=instance.pk).update(
        status="failed",
        stage="parse_failed",
        raw_response="<script>alert('x')</script>",
        instruction="<img src=x onerror=alert(1)>",
        failure="Generator output did not parse: the reply is empty",
    )
    listing = curator_client.get(reverse("instance-list"), {"status": "failed"}).content.decode()
    assert f'href="{reverse("instance-detail", args=[instance.pk])}"' in listing
    detail = curator_client.get(reverse("instance-detail", args=[instance.pk])).content.decode()
    assert "<script>alert" not in detail and "&lt;script&gt;" in detail
    assert "<img src=x" not in detail
    assert "did not parse" in detail


def test_generation_api(curator_client, django_capture_on_commit_callbacks):
    selection = make_selection()
    with django_capture_on_commit_callbacks(execute=False):
        response = curator_client.post(
            "/api/generation-jobs/",
            {"selection_run": selection.pk, "tasks": ["generation"], "samples_per_task": 3},
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["counts"]["pending"] == 3
    assert body["tries"] == settings.GENERATION_TRIES  # left out: the setting
    too_many = curator_client.post(
        "/api/generation-jobs/",
        {"selection_run": selection.pk, "tasks": ["generation"], "samples_per_task": 1, "tries": 11},
        content_type="application/json",
    )
    assert too_many.status_code == 400 and "tries" in too_many.json()
    paused = curator_client.post(f"/api/generation-jobs/{body['id']}/pause/").json()
    assert paused["job"]["paused"] is True
    bad = curator_client.post(
        "/api/generation-jobs/",
        {"selection_run": selection.pk, "tasks": ["poetry"], "samples_per_task": 1},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "Tasks must be" in bad.content.decode()
    instances = curator_client.get("/api/instances/", {"job": body["id"]}).json()
    assert instances["count"] == 3


def test_task_api_edits_principles(curator_client):
    response = curator_client.post(
        "/api/tasks/repair/principle-versions/",
        {"rules": [{"id": "fix_correct", "question": "Is the fix right?"}], "note": "api"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert curator_client.get("/api/tasks/repair/").json()["current_principles"]["version"] == 2
    bad = curator_client.post(
        "/api/tasks/repair/principle-versions/",
        {"rules": [{"id": "", "question": "?"}]},
        content_type="application/json",
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("url", ["/api/tasks/", "/api/generation-jobs/", "/api/instances/"])
def test_stage_two_api_needs_curator(client, db, django_user_model, url):
    user = django_user_model.objects.create_user("r2", password="x")
    from curation.roles import grant

    grant(user, REVIEWER)
    client.force_login(user)
    assert client.get(url).status_code == 403


def test_a_job_whose_worker_died_says_so_and_can_be_resumed(
    curator_client, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=["generation"], samples_per_task=2
    )
    url = reverse("generation-detail", args=[job.pk])
    assert "No worker has worked" not in curator_client.get(url).content.decode(), "queued a moment ago"
    long_ago = timezone.now() - timedelta(minutes=10)
    GenerationJob.objects.filter(pk=job.pk).update(status="running", started_at=long_ago)
    job.instances.filter(pk=job.instances.first().pk).update(status="in_flight", lease_until=long_ago)
    page = curator_client.get(url).content.decode()
    assert "No worker has worked on this job" in page
    assert "Resume" in page
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        curator_client.post(reverse("generation-control", args=[job.pk, "resume"]))
    assert len(callbacks) == 1, "resuming queues the job again"
