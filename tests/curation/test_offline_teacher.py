"""The offline teacher in the app: its fallback shown on the dashboard, job models resolved and routed."""

import asyncio
from dataclasses import replace

import pytest
from django.urls import reverse

from curation import llm, offline_models
from curation.llm import Completion, RoutingClient


@pytest.fixture
def broken_teacher(monkeypatch, settings):
    """A teacher whose parts are not installed, so the app must fall back to SmolLM2."""
    settings.OPENAI_BASE_URL = ""
    missing = replace(
        offline_models.QWEN_CODER_05B,
        packages=("no-such-part1==1",),
        modules=("no_such_part1",),
        file_name="missing-teacher.gguf",
    )
    monkeypatch.setattr(offline_models, "TEACHER", missing)
    offline_models.teacher.cache_clear()
    yield missing
    offline_models.teacher.cache_clear()


def test_dashboard_says_why_the_teacher_is_not_used(curator_client, broken_teacher):
    page = curator_client.get(reverse("dashboard")).content.decode()
    assert 'id="teacher-problem"' in page
    assert "part 1 of 1 is missing: the package no-such-part1 is not installed" in page
    assert "SmolLM2-135M-Instruct stands in" in page


def test_a_job_for_a_missing_teacher_records_the_model_that_stands_in(broken_teacher, monkeypatch):
    monkeypatch.setenv("WAVECODER_OFFLINE_ENDPOINTS", '{"smollm2-135m-instruct": "http://127.0.0.1:9/v1"}')
    assert llm.servable_model(broken_teacher.name) == "smollm2-135m-instruct"
    assert llm.resolve_model(broken_teacher.name) == "smollm2-135m-instruct"
    assert llm.resolve_model("gpt-4o") == "gpt-4o"  # not an offline model: unchanged


def test_an_offline_model_without_a_server_runs_in_process(settings, monkeypatch):
    settings.OPENAI_BASE_URL = ""
    monkeypatch.delenv("WAVECODER_OFFLINE_ENDPOINTS", raising=False)
    assert llm.resolve_model("qwen2.5-coder-1.5b-instruct") == llm.OFFLINE_MODEL_NAME


def test_an_endpoint_keeps_the_names_it_was_given(settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    assert llm.resolve_model("qwen2.5-coder-0.5b-instruct") == "qwen2.5-coder-0.5b-instruct"


class _Recording:
    def __init__(self, name):
        self.name, self.models = name, []

    async def complete(self, messages, *, model, **kwargs):
        self.models.append(model)
        return Completion(self.name, model, 1, 1, 0.0, 1)


def test_routing_sends_each_model_to_its_server():
    small, large, fallback = _Recording("small"), _Recording("large"), _Recording("fallback")
    client = RoutingClient({"qwen-0.5b": small, "qwen-1.5b": large}, fallback)

    async def run():
        return [
            await client.complete([], model="qwen-0.5b"),
            await client.complete([], model="qwen-1.5b"),
            await client.complete([], model="other"),
        ]

    answers = asyncio.run(run())
    assert [a.text for a in answers] == ["small", "large", "fallback"]
    assert (small.models, large.models, fallback.models) == (["qwen-0.5b"], ["qwen-1.5b"], ["other"])


def test_reachable_models_offline_list_served_ones_and_the_in_process_one(settings, monkeypatch):
    settings.OPENAI_BASE_URL = ""
    monkeypatch.setenv(
        "WAVECODER_OFFLINE_ENDPOINTS",
        '{"qwen2.5-coder-0.5b-instruct": "http://127.0.0.1:9/v1", "qwen2.5-coder-1.5b-instruct": "http://127.0.0.1:8/v1"}',
    )
    names = [name for name, _ in llm.reachable_models()]
    assert "qwen2.5-coder-1.5b-instruct" in names and llm.OFFLINE_MODEL_NAME in names
    assert len(names) == len(set(names))


def test_reachable_models_with_an_endpoint_are_the_configured_names(settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLM_GENERATOR_MODEL = "gpt-4o-mini"
    settings.LLM_DISCRIMINATOR_MODEL = "gpt-4o"
    settings.LLM_ENDPOINT_MODELS = ["gpt-4.1"]
    assert [name for name, _ in llm.reachable_models()] == ["gpt-4o-mini", "gpt-4o", "gpt-4.1"]


# --- the model picker --------------------------------------------------------------------------------


def test_the_picked_models_reach_the_llm_calls(curator_client, settings, django_capture_on_commit_callbacks):
    from curation import generation
    from curation.models import GenerationJob
    from tests.curation.pipeline_factory import make_selection
    from tests.fakes.openai_stub import OpenAIStub
    from tests.fakes.responders import responder

    selection = make_selection()
    with OpenAIStub(responder=responder) as stub:
        settings.OPENAI_BASE_URL = stub.base_url
        page = curator_client.get(reverse("generation-new")).content.decode()
        assert 'list="reachable-models"' in page
        with django_capture_on_commit_callbacks(execute=False):
            response = curator_client.post(
                reverse("generation-new"),
                {
                    "selection_run": selection.pk,
                    "tasks": ["generation"],
                    "samples_per_task": 2,
                    "instances_per_sample": 1,
                    "generator_model": "picked-generator",
                    "discriminator_model": "picked-judge",
                    "concurrency": 2,
                },
            )
        assert response.status_code == 302, response.content.decode()[:2000]
        job = GenerationJob.objects.get(selection_run=selection)
        generation.run_generation(job.pk, client=llm.OpenAICompatibleClient(stub.base_url, "none"))
        sent = [body["model"] for body in stub.requests]
    assert sorted(set(sent)) == ["picked-generator", "picked-judge"]
    assert sent.count("picked-generator") == 2 and sent.count("picked-judge") == 2
    job.refresh_from_db()
    assert set(job.instances.values_list("generator_model", flat=True)) == {"picked-generator"}
    assert set(job.calls.values_list("model", flat=True)) == {"picked-generator", "picked-judge"}


def test_offline_an_unreachable_model_is_refused_with_the_choices(curator_client, settings, monkeypatch):
    from tests.curation.pipeline_factory import make_selection

    settings.OPENAI_BASE_URL = ""
    monkeypatch.delenv("WAVECODER_OFFLINE_ENDPOINTS", raising=False)
    selection = make_selection()
    response = curator_client.post(
        reverse("generation-new"),
        {
            "selection_run": selection.pk,
            "tasks": ["generation"],
            "samples_per_task": 1,
            "instances_per_sample": 1,
            "generator_model": "gpt-9000",
            "discriminator_model": "smollm2-135m-instruct",
            "concurrency": 1,
        },
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "gpt-9000 is not available here; choose one of:" in page and "smollm2-135m-instruct" in page


def test_the_generate_command_refuses_an_unreachable_model_offline(db, settings, monkeypatch):
    from django.core.management import CommandError, call_command

    from tests.curation.pipeline_factory import make_selection

    settings.OPENAI_BASE_URL = ""
    monkeypatch.delenv("WAVECODER_OFFLINE_ENDPOINTS", raising=False)
    make_selection()
    with pytest.raises(CommandError, match="gpt-9000 is not available here"):
        call_command("generate", "--generator-model", "gpt-9000", "--queue")
