"""Refinement and re-judging through the pages and a real Celery worker, with a stub LLM server."""

from django.urls import reverse

from curation import review
from curation.models import CodeTask, Instance, RefinementRun, RejudgeJob
from tests.fakes.openai_stub import OpenAIStub
from tests.principles.stub import combined, proposer, strict_judge
from tests.review.factory import make_instance, make_job, rules_of

from .conftest import wait_for


def _finished(model, pk, *stages):
    def check():
        row = model.objects.get(pk=pk)
        done = row.stage in stages if stages else not row.is_active
        return row if done else None

    return check


def test_worker_proposes_checks_and_rejudges(worker, client, curator, reviewer, tmp_path):
    a = rules_of("generation")[0]
    job = make_job()
    for n in range(10):
        instance = make_instance(job, passed=False, failed_rules=(a,))
        if n % 5 == 0:
            review.reject(instance, reviewer, reason="Too vague.", expected_version=0)
        else:
            review.accept(instance, reviewer, expected_version=0)
    unreviewed = make_instance(job, passed=False, failed_rules=(a,))
    with OpenAIStub(responder=combined(strict_judge(a), proposer(a))) as stub:
        worker(env={"OPENAI_BASE_URL": stub.base_url, "WAVECODER_LLM_MAX_RETRIES": "1"})
        client.force_login(curator)
        response = client.post(
            reverse("refinement-list"),
            {
                "task": "generation",
                "heldout_fraction": 0.5,
                "max_cases": 40,
                "max_heldout": 60,
                "seed": 3,
                "model": "m",
            },
        )
        run = RefinementRun.objects.get()
        assert response.status_code == 302
        run = wait_for(_finished(RefinementRun, run.pk, "proposed", "failed"), logs=tmp_path)
        assert run.stage == "proposed", run.error
        page = client.get(reverse("refinement-detail", args=[run.pk])).content.decode()
        assert f'data-op="removed" data-rule="{a}"' in page

        client.post(reverse("refinement-action", args=[run.pk, "check"]))
        run = wait_for(_finished(RefinementRun, run.pk, "checked", "failed"), logs=tmp_path)
        assert run.stage == "checked", run.error
        assert run.progress_done == run.progress_total == 2 * len(run.heldout_ids)
        assert run.check_results["proposed"]["agreement"] >= run.check_results["current"]["agreement"]
        page = client.get(reverse("refinement-detail", args=[run.pk])).content.decode()
        assert "data-proposed-agreement" in page

        client.post(reverse("refinement-action", args=[run.pk, "adopt"]))
        task = CodeTask.objects.get(slug="generation")
        assert task.current_principles_id == run.proposed_version_id

        client.post(
            reverse("rejudge-list"),
            {"tasks": ["generation"], "only_outdated": "on", "model": "m", "concurrency": 4},
        )
        rejudge = RejudgeJob.objects.get()
        rejudge = wait_for(_finished(RejudgeJob, rejudge.pk), logs=tmp_path)
        assert rejudge.status == "succeeded", rejudge.error
        assert rejudge.progress_done == rejudge.progress_total == 1
    unreviewed = Instance.objects.get(pk=unreviewed.pk)
    assert unreviewed.verdict.principle_version_id == run.proposed_version_id and unreviewed.passed
