"""Django admin lists the pipeline's models (tasks and their versions included) for admins."""

import pytest

from curation import generation
from curation.models import CodeTask

from .pipeline_factory import make_selection

MODELS = [
    "codesource",
    "codesample",
    "ingestrun",
    "selectionrun",
    "embeddingset",
    "codetask",
    "taskpromptversion",
    "principleversion",
    "generationjob",
    "instance",
    "verdict",
    "poolexample",
    "llmcall",
]


@pytest.mark.parametrize("model", MODELS)
def test_admin_changelists_load(client, admin_user, model):
    generation.create_generation_job(selection_run=make_selection(), tasks=["repair"], samples_per_task=1)
    client.force_login(admin_user)
    assert client.get(f"/admin/curation/{model}/").status_code == 200


def test_task_admin_shows_its_versions(client, admin_user):
    client.force_login(admin_user)
    task = CodeTask.objects.get(slug="repair")
    page = client.get(f"/admin/curation/codetask/{task.pk}/change/").content.decode()
    assert "realistic_bug" in page
    assert task.current_prompt.definition[:40] in page
