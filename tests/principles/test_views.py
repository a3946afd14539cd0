"""The analytics, pools, refinement and re-judging pages: roles, CSRF, escaping and the actions."""

import pytest
from django.test import Client
from django.urls import reverse

from curation import review
from curation.catalog import new_principle_version
from curation.models import CodeTask, PoolExample, RefinementRun, RejudgeJob
from tests.review.factory import make_instance, make_job

PAGES = ["analytics", "pool-list", "refinement-list", "rejudge-list"]


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_a_curator(name, reviewer, curator):
    url = reverse(name)
    assert Client().get(url).status_code == 302  # anonymous: to the login page
    for user, status in [(reviewer, 403), (curator, 200)]:
        client = Client()
        client.force_login(user)
        assert client.get(url).status_code == status


def test_analytics_page_shows_the_matrix_and_the_rule(decided, curator_client):
    a, rows = decided
    page = curator_client.get(reverse("analytics")).content.decode()
    # Pass/accept 1, pass/reject 1, fail/accept 3, fail/reject 1.
    assert 'data-cell="true_accept">1<' in page and 'data-cell="false_reject">3<' in page
    assert 'data-cell="false_accept">1<' in page and 'data-cell="true_reject">1<' in page
    assert "<svg" in page and a in page
    assert reverse("instance-detail", args=[rows[1].pk]) in page  # a false-rejection case is linked
    one = curator_client.get(reverse("analytics"), {"task": "repair"}).content.decode()
    assert "No reviewed instances" in one
    assert curator_client.get(reverse("analytics"), {"task": "nope"}).status_code == 302


def test_pool_actions_pin_unpin_remove_restore(decided, curator_client, curator):
    example = PoolExample.objects.filter(origin=PoolExample.Origin.HUMAN, kind="bad").first()
    assert "&lt;b&gt;bad&lt;/b&gt;" in curator_client.get(reverse("pool-list")).content.decode()
    for action, field, value in [
        ("pin", "pinned", True),
        ("unpin", "pinned", False),
        ("remove", "removed", True),
    ]:
        response = curator_client.post(
            reverse("pool-action", args=[example.pk, action]), HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        example.refresh_from_db()
        assert getattr(example, field) is value
    # A removed example stays out even when the instance is decided again.
    instance = example.instance
    review.recompute(instance)
    example.refresh_from_db()
    assert example.removed
    listed = curator_client.get(reverse("pool-list"), {"removed": "1"}).content.decode()
    assert f'id="pool-{example.pk}"' in listed
    curator_client.post(reverse("pool-action", args=[example.pk, "restore"]))
    example.refresh_from_db()
    assert not example.removed
    assert curator_client.post(reverse("pool-action", args=[example.pk, "explode"])).status_code == 400


def test_posts_need_csrf(decided, curator):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(curator)
    example = PoolExample.objects.first()
    assert strict.post(reverse("pool-action", args=[example.pk, "pin"])).status_code == 403
    assert strict.post(reverse("refinement-list"), {"task": "generation"}).status_code == 403


def test_refinement_form_errors_are_shown(db, curator_client):
    response = curator_client.post(
        reverse("refinement-list"),
        {
            "task": "generation",
            "heldout_fraction": 0.3,
            "max_cases": 5,
            "max_heldout": 5,
            "seed": 0,
            "model": "m",
        },
    )
    assert response.status_code == 200
    assert "no disagreements" in response.content.decode()
    assert not RefinementRun.objects.exists()


def test_refinement_detail_diff_edit_and_escaping(decided, curator_client, curator):
    task = CodeTask.objects.get(slug="generation")
    base = task.current_principles
    run = RefinementRun.objects.create(
        task=task,
        base_version=base,
        model="m",
        stage=RefinementRun.Stage.PROPOSED,
        status=RefinementRun.Status.SUCCEEDED,
        proposed_rules=[dict(r) for r in base.rules[1:]]
        + [{"id": "new_rule", "question": "Is it <script>ok</script>?"}],
        changes=[],
        heldout_ids=[decided[1][0].pk],
    )
    from curation.refinement import diff_rules

    run.changes = diff_rules(base.rules, run.proposed_rules, {"new_rule": "reviewers <i>asked</i>"})
    run.save()
    url = reverse("refinement-detail", args=[run.pk])
    page = curator_client.get(url).content.decode()
    assert 'data-op="added" data-rule="new_rule"' in page and 'data-op="removed"' in page
    assert "<script>ok</script>" not in page and "&lt;script&gt;" in page
    # A bad edit keeps the text and names the line.
    bad = curator_client.post(url, {"rules": "ok: Fine?\nbroken line"}).content.decode()
    assert "Line 2" in bad and "broken line" in bad
    # A good edit is saved and becomes the proposal.
    curator_client.post(url, {"rules": "only_rule: Is it fine?"})
    run.refresh_from_db()
    assert run.proposed_rules == [{"id": "only_rule", "question": "Is it fine?"}] and run.edited
    # Adopting before the check is refused with a message.
    response = curator_client.post(reverse("refinement-action", args=[run.pk, "adopt"]), follow=True)
    assert "held-out check" in response.content.decode()
    task.refresh_from_db()
    assert task.current_principles == base


def test_rollback_is_one_post(db, curator_client):
    task = CodeTask.objects.get(slug="repair")
    v1 = task.current_principles
    v2 = new_principle_version(task, rules=v1.rules[:2], note="shorter")
    task.refresh_from_db()
    assert task.current_principles == v2
    page = curator_client.get(reverse("task-detail", args=["repair"])).content.decode()
    assert reverse("principle-adopt", args=["repair", v1.version]) in page
    curator_client.post(reverse("principle-adopt", args=["repair", v1.version]))
    task.refresh_from_db()
    assert task.current_principles == v1


def test_rejudge_form_and_cancel(decided, curator_client, reviewer):
    # Nothing unreviewed is outdated: a clear error, no job.
    job = make_job()
    response = curator_client.post(
        reverse("rejudge-list"),
        {"tasks": ["generation"], "only_outdated": "on", "model": "m", "concurrency": 2},
    )
    assert "No unreviewed instance" in response.content.decode()
    make_instance(job)
    response = curator_client.post(
        reverse("rejudge-list"), {"tasks": ["generation"], "model": "m", "concurrency": 2}
    )
    created = RejudgeJob.objects.get()
    assert response.status_code == 302 and created.progress_total == 1
    curator_client.post(reverse("rejudge-cancel", args=[created.pk]))
    created.refresh_from_db()
    assert created.status == RejudgeJob.Status.CANCELLED


def test_dashboard_lists_running_refinement_and_rejudging(decided, curator_client):
    task = CodeTask.objects.get(slug="generation")
    run = RefinementRun.objects.create(task=task, base_version=task.current_principles, model="m")
    job = RejudgeJob.objects.create(model="m", tasks=["generation"])
    from training.datasets import create_version

    version = create_version(name="queued")
    page = curator_client.get(reverse("dashboard")).content.decode()
    assert reverse("dataset-detail", args=[version.number]) in page
    assert reverse("refinement-detail", args=[run.pk]) in page
    assert reverse("rejudge-detail", args=[job.pk]) in page
