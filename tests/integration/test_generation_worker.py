"""Generation jobs through real Celery worker processes, against a faulty stub LLM server (a test double)."""

import os
import signal

import pytest
from django.db.models import Count
from django.test import override_settings
from django.urls import reverse

from curation.catalog import ensure_catalog
from curation.models import GenerationJob, Instance, LLMCall, Verdict
from tests.curation.pipeline_factory import make_selection
from tests.fakes.openai_stub import Faults, OpenAIStub
from tests.fakes.responders import responder

from .conftest import wait_for

pytestmark = pytest.mark.integration

FAULTS = Faults(
    rate_429=0.1,
    rate_500=0.1,
    rate_timeout=0.05,
    rate_truncated_json=0.1,
    rate_non_json=0.1,
    retry_after=0,
    hang_s=3,
)


def _llm_env(stub, **extra) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": stub.base_url,
        "WAVECODER_LLM_TIMEOUT_S": "1",
        "WAVECODER_LLM_MAX_RETRIES": "2",
        **extra,
    }


def _start_job(client, curator, selection, samples: int, concurrency: int, stub) -> GenerationJob:
    client.force_login(curator)
    with override_settings(OPENAI_BASE_URL=stub.base_url):  # the page checks the models it may use
        response = _post_job(client, selection, samples, concurrency)
    assert response.status_code == 302, response.content
    return GenerationJob.objects.get()


def _post_job(client, selection, samples: int, concurrency: int):
    return client.post(
        reverse("generation-new"),
        {
            "selection_run": selection.pk,
            "tasks": ["summarization", "generation", "translation", "repair"],
            "samples_per_task": samples,
            "instances_per_sample": 1,
            "generator_model": "stub-gen",
            "discriminator_model": "stub-judge",
            "concurrency": concurrency,
        },
    )


def _finished(job):
    def check():
        job.refresh_from_db()
        return not job.is_active and job

    return check


def test_fault_mix_loses_nothing_and_duplicates_nothing(worker, client, curator, tmp_path):
    ensure_catalog()
    selection = make_selection(4)
    with OpenAIStub(responder=responder, faults=FAULTS, seed=3) as stub:
        worker(env=_llm_env(stub))
        job = _start_job(client, curator, selection, samples=4, concurrency=8, stub=stub)
        assert job.progress_total == 16
        wait_for(_finished(job), timeout=180, logs=tmp_path)
        assert job.status == GenerationJob.Status.SUCCEEDED, job.error
        instances = Instance.objects.filter(job=job)
        assert instances.count() == 16
        assert set(instances.values_list("status", flat=True)) <= {"done", "failed"}
        failed = list(instances.filter(status="failed"))
        assert failed, "with these fault rates some instances fail"
        assert all(i.failure for i in failed), "every failure says why"
        assert instances.filter(status="done").exists()
        # At most one verdict per instance, and every judged instance has exactly one.
        per_instance = Verdict.objects.values("instance").annotate(n=Count("id"))
        assert max(row["n"] for row in per_instance) == 1
        assert Verdict.objects.count() == instances.filter(stage="judged").count()
        # Faults really happened and were retried.
        assert {"429", "500", "timeout"} & set(stub.outcomes)
        assert LLMCall.objects.filter(job=job, attempts__gt=1).exists()

        # Re-running retries only the failures.
        failed_ids = {i.pk for i in failed}
        calls_before = set(LLMCall.objects.values_list("id", flat=True))
        client.post(reverse("generation-control", args=[job.pk, "retry"]))
        wait_for(_finished(job), timeout=180, logs=tmp_path)
        new_calls = LLMCall.objects.exclude(id__in=calls_before)
        assert new_calls.exists()
        assert set(new_calls.values_list("instance_id", flat=True)) <= failed_ids
        assert Instance.objects.filter(job=job).count() == 16


def test_killed_worker_is_replaced_and_each_instance_is_made_once(worker, client, curator, tmp_path):
    ensure_catalog()
    selection = make_selection(4)
    with OpenAIStub(responder=responder, latency=0.5) as stub:
        env = _llm_env(stub, WAVECODER_LLM_TIMEOUT_S="10", WAVECODER_LLM_LEASE_S="4")
        first = worker(env=env)
        job = _start_job(client, curator, selection, samples=4, concurrency=2, stub=stub)
        wait_for(
            lambda: Instance.objects.filter(job=job, status="done").count() >= 2, timeout=120, logs=tmp_path
        )
        os.kill(first.pid, signal.SIGKILL)  # dies with rows in flight
        first.wait(10)
        worker(env=env)  # joins the running job by itself (no click): its rows come free as leases end
        wait_for(_finished(job), timeout=180, logs=tmp_path)
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert Instance.objects.filter(job=job).count() == 16
    assert Instance.objects.filter(job=job, status="done").count() == 16
    assert Verdict.objects.filter(instance__job=job).count() == 16
