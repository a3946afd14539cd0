"""The Generator–Discriminator engine against a stub OpenAI-compatible server (a test double)."""

import threading

import pytest
from asgiref.sync import sync_to_async

from curation import generation
from curation.llm import OpenAICompatibleClient
from curation.models import CodeTask, GenerationJob, Instance, LLMCall, PoolExample, RuleVerdict
from tests.fakes.openai_stub import OpenAIStub
from tests.fakes.responders import asked_fields, generator_fields, is_discriminator, responder, sections

from .pipeline_factory import make_selection

ALL_TASKS = ["summarization", "generation", "translation", "repair"]


@pytest.fixture
def stub():
    with OpenAIStub(responder=responder) as server:
        yield server


def _client(stub, **kw):
    return OpenAICompatibleClient(stub.base_url, timeout=5, max_retries=3, backoff_base=0.01, **kw)


def _job(tasks=ALL_TASKS, samples=2, **kw):
    return generation.create_generation_job(
        selection_run=make_selection(), tasks=tasks, samples_per_task=samples, execute=False, **kw
    )


def test_job_generates_and_judges_every_task(db, stub):
    job = _job()
    assert job.progress_total == 8
    job = generation.run_generation(job.pk, client=_client(stub))
    assert job.status == GenerationJob.Status.SUCCEEDED
    instances = list(job.instances.select_related("task", "verdict"))
    assert {i.task.slug for i in instances} == set(ALL_TASKS)
    assert all(i.status == Instance.Status.DONE and i.passed for i in instances), [
        i.failure for i in instances
    ]
    repair = next(i for i in instances if i.task.slug == "repair")
    # The app planted the Python repair's bug in the generator's correct code, and says what it was.
    assert repair.output == "def add(a, b):\n    return a + b"
    assert repair.input == "def add(a, b):\n    return a - b"
    assert repair.explanation == (
        "The bug is a wrong arithmetic operator on line 2: `return a - b` must be `return a + b`."
    )
    translation = next(i for i in instances if i.task.slug == "translation")
    assert translation.target_language and translation.target_language != "python"
    # One verdict per instance, one rule verdict per principle, versions recorded.
    task = CodeTask.objects.get(slug="repair")
    assert repair.verdict.principle_version == task.current_principles
    assert repair.prompt_version == task.current_prompt
    assert RuleVerdict.objects.filter(verdict=repair.verdict).count() == len(task.current_principles.rules)
    # Tokens per call and on the job.
    assert LLMCall.objects.filter(job=job).count() == 16
    assert job.prompt_tokens > 0 and job.completion_tokens > 0
    assert stub.count == 16


def test_generator_writes_sections_and_the_judge_is_held_to_a_json_schema(db, stub):
    generation.run_generation(_job(tasks=["generation"], samples=1).pk, client=_client(stub))
    generator, judge = stub.requests
    assert "response_format" not in generator
    assert set(asked_fields(generator)) == {"instruction", "input", "output", "tests"}
    assert judge["response_format"]["type"] == "json_schema"
    schema = judge["response_format"]["json_schema"]["schema"]
    assert {"names_language", "overall"} <= set(schema["required"])


def test_failed_verdicts_go_to_the_bad_pool_and_feed_later_prompts(db):
    def strict(request):
        return responder(request, fail_rules=("names_language",))

    with OpenAIStub(responder=strict) as server:
        job = _job(tasks=["generation"], samples=2)
        generation.run_generation(job.pk, client=_client(server))
    bad = PoolExample.objects.filter(kind=PoolExample.Kind.BAD, task__slug="generation")
    assert bad.count() == 2
    assert "names_language: checked names_language" in bad.first().reasons
    assert job.instances.filter(passed=False).count() == 2

    with OpenAIStub(responder=responder) as server:
        job2 = generation.create_generation_job(
            selection_run=job.selection_run,
            tasks=["generation"],
            samples_per_task=1,
            execute=False,
            generator_model="other-model",
        )
        generation.run_generation(job2.pk, client=_client(server))
        generator_messages = server.requests[0]["messages"]
        generator_prompt = generator_messages[-1]["content"]
        judge_prompt = next(r for r in server.requests if is_discriminator(r))["messages"][1]["content"]
    # Bad examples by their reasons (whole ones, never single characters of one string).
    assert (
        "Earlier replies were rejected because:\n- names_language: checked names_language" in generator_prompt
    )
    # Good examples (the hand-written seeds) are earlier turns: their raw code, then their reply.
    roles = [m["role"] for m in generator_messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert generator_messages[2]["content"].startswith("### instruction\n")
    assert "Raw code (python)" in generator_messages[3]["content"]
    # The discriminator sees good examples too (WaveCoder's repository never showed them).
    assert "An instance that passed every rule:" in judge_prompt
    assert "An instance that failed, and why:" in judge_prompt


def test_parse_failure_is_recorded_with_raw_text(db):
    def garbage(request):
        return (
            "I am a tiny model and I like turtles." if not is_discriminator(request) else responder(request)
        )

    with OpenAIStub(responder=garbage) as server:
        job = generation.run_generation(_job(tasks=["summarization"], samples=1).pk, client=_client(server))
    instance = job.instances.get()
    assert instance.status == Instance.Status.FAILED
    assert instance.stage == Instance.Stage.PARSE_FAILED
    assert instance.raw_response == "I am a tiny model and I like turtles."
    assert "did not parse" in instance.failure
    assert job.status == GenerationJob.Status.SUCCEEDED


def test_static_check_failure_skips_the_discriminator(db):
    def broken_code(request):
        if is_discriminator(request):
            return responder(request)
        reply = generator_fields(request)
        reply["output"] = "def add(a, b) return a + b"
        return sections(request, reply)

    with OpenAIStub(responder=broken_code) as server:
        job = generation.run_generation(_job(tasks=["generation"], samples=1).pk, client=_client(server))
        # The generator was told why and tried again, up to the job's tries; no verdict was asked for.
        assert server.count == job.tries == 3
        retry = server.requests[1]["messages"]
        assert retry[-2] == {"role": "assistant", "content": broken_code(server.requests[0])}
        assert "Your reply failed the check output_parses" in retry[-1]["content"]
        assert len(server.requests[2]["messages"]) == len(retry)  # only the last failed reply goes back
    instance = job.instances.get()
    assert (instance.stage, instance.failed_check) == (Instance.Stage.CHECK_FAILED, "output_parses")
    assert LLMCall.objects.filter(instance=instance, role=LLMCall.Role.GENERATOR).count() == 3


def test_garbage_judgement_is_recorded(db):
    def bad_judge(request):
        return '{"rules": [{"id": "nope"' if is_discriminator(request) else responder(request)

    with OpenAIStub(responder=bad_judge) as server:
        job = generation.run_generation(_job(tasks=["generation"], samples=1).pk, client=_client(server))
    instance = job.instances.get()
    assert instance.stage == Instance.Stage.JUDGE_FAILED
    assert instance.passed is None


def test_llm_errors_are_recorded_per_instance(db):
    with OpenAIStub(responder=responder) as server:
        server.fail_request(1, "400")
        job = generation.run_generation(
            _job(tasks=["generation"], samples=2, concurrency=1).pk, client=_client(server)
        )
    failed = job.instances.get(status=Instance.Status.FAILED)
    assert failed.stage == Instance.Stage.LLM_ERROR
    assert "LLM call failed" in failed.failure
    assert job.instances.filter(status=Instance.Status.DONE).count() == 1
    assert LLMCall.objects.filter(job=job).exclude(error="").count() == 1


def test_same_generation_key_never_yields_two_instances(db, stub):
    job = _job(tasks=["generation"], samples=2)
    again = generation.create_generation_job(
        selection_run=job.selection_run, tasks=["generation"], samples_per_task=2, execute=False
    )
    assert again.progress_total == 0
    assert Instance.objects.count() == 2


def test_running_a_finished_job_again_does_nothing(db, stub):
    job = _job(tasks=["generation"], samples=2)
    generation.run_generation(job.pk, client=_client(stub))
    calls = stub.count
    generation.run_generation(job.pk, client=_client(stub))
    assert stub.count == calls


def test_two_workers_on_one_job_share_the_rows(transactional_db):
    """Two drains at once (as two Celery workers would run them) process each row exactly once."""
    from curation.catalog import ensure_catalog

    ensure_catalog()
    with OpenAIStub(responder=responder, latency=0.05) as server:
        job = _job(samples=4, concurrency=3)
        errors = []

        def drain():
            try:
                generation.run_generation(job.pk, client=_client(server))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=drain) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert server.count == 2 * 16
    assert Instance.objects.filter(status=Instance.Status.DONE).count() == 16
    assert LLMCall.objects.filter(role="generator").values("instance").distinct().count() == 16


def test_redelivered_job_takes_over_rows_of_a_dead_worker(db, stub, settings):
    settings.LLM_LEASE_S = 0.5
    job = _job(tasks=["generation"], samples=3)
    # A worker claimed two rows and died: they are in flight under its lease.
    dead = generation.claim_rows(job, 2)
    assert len(dead) == 2
    assert generation.claim_rows(job, 5)[0].pk not in {d.pk for d in dead}, "leased rows are not claimable"
    job.instances.exclude(pk__in=[d.pk for d in dead]).update(status=Instance.Status.PENDING)
    # The redelivered task waits for the dead worker's lease to run out, then takes its rows.
    job = generation.run_generation(job.pk, client=_client(stub))
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert job.instances.filter(status=Instance.Status.DONE).count() == 3
    assert stub.count == 6, "each row generated and judged once"
    # The dead worker's late answer is not written over the new one.
    late = dead[0]
    late.status, late.instruction = Instance.Status.FAILED, "late"
    assert generation._save_result(late) is False


class PausingClient(OpenAICompatibleClient):
    """Pauses its job (as a curator would, from the page) when it has made `after` calls."""

    def __init__(self, *args, job, after, **kwargs):
        super().__init__(*args, **kwargs)
        self.job, self.after, self.calls = job, after, 0

    async def complete(self, messages, **kwargs):
        self.calls += 1
        if self.calls == self.after:
            await sync_to_async(generation.pause)(self.job)
        return await super().complete(messages, **kwargs)


def test_pause_resume_cancel(db, stub):
    job = _job(tasks=["generation"], samples=4, concurrency=1)
    client = PausingClient(stub.base_url, timeout=5, job=job, after=2)
    job = generation.run_generation(job.pk, client=client)
    assert job.status == GenerationJob.Status.RUNNING and job.paused
    counts = generation.job_counts(job)
    assert counts.done == 1 and counts.pending == 3, "the row in flight finished, no new one started"
    assert generation.resume(job)
    job = generation.run_generation(job.pk, client=_client(stub))
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert generation.job_counts(job).done == 4

    other = generation.create_generation_job(
        selection_run=job.selection_run, tasks=["repair"], samples_per_task=3, execute=False
    )
    generation.cancel(other)
    other.refresh_from_db()
    assert other.status == GenerationJob.Status.CANCELLED
    assert set(other.instances.values_list("failure", flat=True)) == {"cancelled before it was generated"}
    assert not generation.resume(other)


def test_retry_failures_retries_only_the_failures(db):
    with OpenAIStub(responder=responder) as server:
        server.fail_request(1, "400")
        job = generation.run_generation(
            _job(tasks=["generation"], samples=3, concurrency=1).pk, client=_client(server)
        )
        assert generation.job_counts(job).failed == 1
        before = server.count
        assert generation.retry_failures(job) == 1
        job = generation.run_generation(job.pk, client=_client(server))
        assert server.count - before == 2, "one generator and one discriminator call, for the failed row only"
    assert generation.job_counts(job).done == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ["poetry"]}, "Tasks must be"),
        ({"samples": 0}, "samples_per_task"),
        ({"concurrency": 0}, "concurrency"),
        ({"tries": 0}, "tries must be between 1 and 10"),
        ({"tries": 11}, "tries must be between 1 and 10"),
    ],
)
def test_bad_job_parameters_are_clear_errors(db, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _job(**kwargs)


def test_execution_check_runs_python_with_its_asserts(db, stub):
    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=["generation", "repair", "summarization"], samples_per_task=1
    )
    generation.run_generation(job.pk, client=_client(stub))
    statuses = dict(job.instances.values_list("task__slug", "execution_status"))
    assert statuses == {"generation": "passed", "repair": "passed", "summarization": "skipped"}


def test_failing_asserts_are_recorded(db):
    def wrong(request):
        if is_discriminator(request):
            return responder(request)
        reply = generator_fields(request)
        reply["tests"] = "assert add(1, 2) == 4"
        return sections(request, reply)

    with OpenAIStub(responder=wrong) as server:
        job = generation.create_generation_job(
            selection_run=make_selection(), tasks=["generation"], samples_per_task=1, tries=2
        )
        generation.run_generation(job.pk, client=_client(server))
    instance = job.instances.get()
    assert instance.execution_status == "failed"
    assert "AssertionError" in instance.execution_detail
    # The generator saw the traceback once; the last reply failed too and was judged all the same.
    assert "Running your code with your tests failed" in server.requests[1]["messages"][-1]["content"]
    assert "AssertionError" in server.requests[1]["messages"][-1]["content"]
    assert instance.status == Instance.Status.DONE
    # The discriminator is told the result.
    assert "Running its code with its tests: failed." in server.requests[2]["messages"][1]["content"]


def test_a_reply_that_fails_its_tests_is_written_again_with_the_traceback(db):
    def learns(request):
        if is_discriminator(request):
            return responder(request)
        reply = generator_fields(request)
        told = "Running your code with your tests failed" in request["messages"][-1]["content"]
        # First a missing import (a small teacher's usual slip), then the fixed reply.
        reply["output"] = "def add(a, b):\n    return a + b" + ("" if told else " + math.floor(0)")
        return sections(request, reply)

    with OpenAIStub(responder=learns) as server:
        job = generation.create_generation_job(
            selection_run=make_selection(), tasks=["generation"], samples_per_task=1, tries=3
        )
        generation.run_generation(job.pk, client=_client(server))
        assert server.count == 3  # two generator replies, one verdict
        assert "NameError: name 'math' is not defined" in server.requests[1]["messages"][-1]["content"]
    instance = job.instances.get()
    assert instance.execution_status == "passed" and instance.output == "def add(a, b):\n    return a + b"
    assert instance.status == Instance.Status.DONE and not instance.failure
    assert LLMCall.objects.filter(instance=instance, role=LLMCall.Role.GENERATOR).count() == 2


def test_one_try_asks_the_generator_once(db):
    def unreadable(request):
        return "no sections here" if not is_discriminator(request) else responder(request)

    with OpenAIStub(responder=unreadable) as server:
        job = generation.run_generation(
            _job(tasks=["summarization"], samples=1, tries=1).pk, client=_client(server)
        )
        assert server.count == 1
    assert job.instances.get().stage == Instance.Stage.PARSE_FAILED


def test_client_concurrency_keeps_requests_in_flight(db):
    with OpenAIStub(responder=responder, latency=0.2) as server:
        job = _job(samples=4, concurrency=16)
        generation.run_generation(job.pk, client=_client(server, concurrency=16))
        assert server.max_in_flight >= 8


def test_a_starting_llm_worker_joins_running_unpaused_jobs_only(db, monkeypatch):
    from types import SimpleNamespace

    from curation import tasks

    selection = make_selection()
    running, paused, queued, done = (
        generation.create_generation_job(
            selection_run=selection, tasks=ALL_TASKS, samples_per_task=1, execute=False
        )
        for _ in range(4)
    )
    GenerationJob.objects.filter(pk__in=[running.pk, paused.pk]).update(status="running")
    GenerationJob.objects.filter(pk=paused.pk).update(paused=True)
    GenerationJob.objects.filter(pk=done.pk).update(status="succeeded")
    assert queued.status == "queued" and generation.running_job_ids() == [running.pk]

    sent: list[int] = []
    monkeypatch.setattr(tasks.run_generation_job, "delay", sent.append)
    llm_worker = SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="llm")]))
    gpu_worker = SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="gpu")]))
    tasks.resume_running_generation_jobs(sender=gpu_worker)
    assert sent == []
    tasks.resume_running_generation_jobs(sender=llm_worker)
    assert sent == [running.pk]


def test_a_starting_worker_fails_jobs_whose_worker_died_here_and_leaves_the_rest(db):
    import os
    import socket
    import subprocess
    import sys

    from curation import tasks
    from curation.models import CodeSource, IngestRun, SelectionRun
    from training.models import TrainingRun

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    selection = make_selection()  # a finished selection run
    ingest = IngestRun.objects.create(source=CodeSource.objects.get())
    assert selection.claim() is False  # finished: not claimed again
    for model, pk, pid, host in (
        (SelectionRun, selection.pk, gone.pid, here),
        (IngestRun, ingest.pk, os.getpid(), here),
    ):
        model.objects.filter(pk=pk).update(status="running", worker_pid=pid, worker_host=host)
    job = generation.create_generation_job(
        selection_run=selection, tasks=ALL_TASKS, samples_per_task=1, execute=False
    )
    GenerationJob.objects.filter(pk=job.pk).update(status="running", worker_pid=gone.pid, worker_host=here)

    tasks.fail_orphaned_jobs(sender=None)
    selection.refresh_from_db()
    ingest.refresh_from_db()
    job.refresh_from_db()
    assert selection.status == "failed" and "its worker stopped while it ran" in selection.error
    assert ingest.status == "running"  # its worker (this process) is alive
    assert job.status == "running"  # generation jobs are taken up again instead
    assert TrainingRun.RECOVERS_ITSELF and GenerationJob.RECOVERS_ITSELF and not SelectionRun.RECOVERS_ITSELF


def test_claim_records_the_worker(db):
    import os
    import socket

    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=ALL_TASKS, samples_per_task=1, execute=False
    )
    assert job.claim() and (job.worker_host, job.worker_pid) == (socket.gethostname(), os.getpid())
    assert not job.holder_gone


def test_generation_and_repair_take_self_contained_picks_first(db):
    run = make_selection(4)
    picks = list(run.pick_rows.order_by("rank").select_related("sample"))
    for pick in picks[:2]:  # the two most diverse picks are methods that need their class
        pick.sample.code = "def area(self):\n    return self.width * self.height"
        pick.sample.save()
    job = generation.create_generation_job(
        selection_run=run, tasks=["summarization", "generation", "repair"], samples_per_task=2, execute=False
    )
    used = {
        slug: {i.sample_id for i in job.instances.filter(task__slug=slug)}
        for slug in ("summarization", "generation", "repair")
    }
    alone = {p.sample_id for p in picks[2:]}
    assert used["generation"] == alone and used["repair"] == alone
    assert used["summarization"] & {p.sample_id for p in picks[:2]}, "other tasks keep the pick order"


def _one_repair(output: str, tests: str = "assert add(1, 2) == 3", *, execute: bool = False) -> Instance:
    """One repair instance generated from a reply whose correct code and tests are given."""

    def answer(request):
        if is_discriminator(request):
            return responder(request)
        reply = generator_fields(request)
        reply["output"], reply["tests"] = output, tests
        return sections(request, reply)

    with OpenAIStub(responder=answer) as server:
        job = generation.create_generation_job(
            selection_run=make_selection(), tasks=["repair"], samples_per_task=1, execute=execute
        )
        generation.run_generation(job.pk, client=_client(server))
    return job.instances.get()


def test_a_repair_output_with_no_place_for_a_bug_fails_its_check(db):
    row = _one_repair("def add(a, b):\n    pass")
    assert row.stage == Instance.Stage.CHECK_FAILED and row.failed_check == "bug_planted"
    assert "plant a bug" in row.failure


def test_a_repair_output_that_does_not_parse_fails_as_such(db):
    row = _one_repair("def add(a, b:\n    return a + b")
    assert row.failed_check == "output_parses" and "not valid Python" in row.failure


@pytest.mark.parametrize(
    ("tests", "detail"),
    [
        ("assert add(1, 2) == 3", "the tests fail on the buggy input, as they should"),
        ("assert add(0, 0) == 0", "the tests pass on the buggy input too: they do not catch the bug"),
    ],
)
def test_repair_execution_says_whether_the_tests_catch_the_planted_bug(db, tests, detail):
    row = _one_repair("def add(a, b):\n    return a + b", tests, execute=True)
    assert row.input == "def add(a, b):\n    return a - b"
    assert row.execution_status == "passed" and row.execution_detail.startswith(detail)
