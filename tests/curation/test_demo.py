"""The demo's pipeline runs as ordinary jobs on the worker: ingest, then selection and a generation job."""

import json

import pytest

from curation import catalog, demo, imports, tasks
from curation.models import GenerationJob, IngestRun, SelectionRun
from wavecoder_site.celery import app


@pytest.fixture
def eager(monkeypatch):
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    queued = []
    monkeypatch.setattr(tasks.run_generation_job, "delay", lambda job_id: queued.append(job_id))
    yield queued
    app.conf.task_always_eager = before


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_ingests_selects_and_queues_a_first_job(eager, monkeypatch, tmp_path):
    # The demo dataset's import job exists first; it is no reason to skip the first generation job.
    catalog.ensure_catalog()
    records = tmp_path / "records.json"
    record = {"instruction": "Write a Python function.", "input": "", "output": "x = 1"}
    records.write_text(json.dumps([record]))
    imported = imports.import_instances(records, name="records.json", task="generation", language="python")
    monkeypatch.setattr(demo, "FIRST_PACKAGES", ["json"])
    monkeypatch.setattr(demo, "LATER_PACKAGES", ["no_such_package_here", "http"])
    queued_runs = demo.queue_pipeline(k=5)

    runs = list(IngestRun.objects.order_by("pk"))
    assert [r.pk for r in runs] == queued_runs and len(runs) == 2  # the missing package is skipped
    assert all(r.status == IngestRun.Status.SUCCEEDED for r in runs), [r.error for r in runs]
    selection = SelectionRun.objects.get()
    assert selection.status == SelectionRun.Status.SUCCEEDED and selection.k == 5
    job = GenerationJob.objects.exclude(pk=imported.pk).get()
    assert eager == [job.pk] and job.selection_run == selection
    assert sorted(job.tasks) == sorted(demo.DEMO_TASKS)

    # Run again: nothing is ingested, selected or generated twice.
    assert demo.queue_pipeline(k=5) == []
    assert IngestRun.objects.count() == 2 and SelectionRun.objects.count() == 1
    assert GenerationJob.objects.count() == 2 and eager == [job.pk]


@pytest.mark.django_db(transaction=True)
def test_the_first_job_waits_while_the_llama_engine_builds(eager, tmp_path):
    from celery.exceptions import Retry

    from curation import ingest, llm
    from tests.curation.corpus_factory import write_package

    ingest.run_ingest(ingest.create_ingest_run(write_package(tmp_path / "pkg")).pk)
    llm.write_engine_state("building", "var/llm-engine-build.log")
    try:
        with pytest.raises(Retry):
            tasks.demo_select_and_generate.apply(args=(3,), throw=True)
        assert SelectionRun.objects.filter(status=SelectionRun.Status.SUCCEEDED).count() == 1
        assert not GenerationJob.objects.exists() and eager == []
        llm.write_engine_state("ready")
        tasks.demo_select_and_generate.apply(args=(3,), throw=True)
        assert GenerationJob.objects.count() == 1 and len(eager) == 1
    finally:
        llm.write_engine_state("ready")
