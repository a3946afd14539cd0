"""The demo's offline engine end to end: SmolLM2-135M served by llama.cpp's OpenAI-compatible server,
driven by `manage.py generate`. Skipped only where llama-cpp-python could not be built or does not run
on this machine (the reason is given; the offline model then runs through transformers, tested in
tests/curation/test_llm.py)."""

import asyncio
import io
import json
import socket

import pytest
from django.core.management import call_command

from curation import llm
from curation.models import GenerationJob, Instance, LLMCall
from tests.curation.pipeline_factory import make_selection

pytestmark = pytest.mark.integration


@pytest.fixture
def llama_server(tmp_path):
    # Checked here, not at collection: the check runs the engine once in a child process.
    if not llm.llama_server_available():
        pytest.skip(llm.llama_unavailable_reason())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = llm.start_llama_server(port, log_path=tmp_path / "llama.log")
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        assert llm.wait_until_ready(base_url, timeout=120), (tmp_path / "llama.log").read_text()[-2000:]
        yield base_url
    finally:
        proc.terminate()
        proc.wait(20)


def test_generate_with_the_offline_model(db, settings, llama_server):
    settings.OPENAI_BASE_URL = llama_server
    settings.LLM_MAX_TOKENS = 256
    make_selection(2)
    out = io.StringIO()
    call_command(
        "generate", "--tasks", "summarization,generation", "--samples", "1", "--no-execute", stdout=out
    )
    job = GenerationJob.objects.get()
    assert job.status == GenerationJob.Status.SUCCEEDED
    rows = list(Instance.objects.filter(job=job))
    assert len(rows) == 2
    # A 135M model may write poor instances, but each ends judged or with a recorded reason.
    assert all(r.stage == "judged" or r.failure for r in rows)
    calls = LLMCall.objects.filter(job=job, error="")
    assert calls.exists() and all(c.completion_tokens > 0 for c in calls)
    # The generator writes sections; a schema (the discriminator's) goes in llama.cpp's json_object form.
    client = llm.get_llm_client()
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}}
    completion = asyncio.run(
        client.complete(
            [{"role": "user", "content": "Is 2 even? Answer in JSON."}],
            model=calls.first().model,
            json_schema={**schema, "required": ["answer"]},
            max_tokens=16,
        )
    )
    assert client.format_mode == "json_object", "llama.cpp constrains output with its json_object form"
    assert completion.structured and json.loads(completion.text)["answer"] in ("yes", "no")
