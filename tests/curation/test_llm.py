"""The LLM client: retry policy, structured output, concurrency and accounting against a real HTTP stub,
and one run of the real offline model."""

import asyncio
import importlib.util
import json
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from curation import llm
from curation.llm import (
    Completion,
    LLMError,
    OpenAICompatibleClient,
    TransformersClient,
    complete_sync,
    ensure_offline_model,
    estimate_cost,
    get_llm_client,
    parse_retry_after,
)
from tests.fakes.openai_stub import Faults, OpenAIStub

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to me"}]
SCHEMA = {
    "title": "Greeting",
    "type": "object",
    "properties": {"greeting": {"type": "string"}, "polite": {"type": "boolean"}},
    "required": ["greeting", "polite"],
    "additionalProperties": False,
}


def _client(stub: OpenAIStub, **kwargs) -> OpenAICompatibleClient:
    # Tiny backoff so retry tests take milliseconds; the policy itself is what is under test.
    options = {"timeout": 2.0, "max_retries": 3, "concurrency": 8, "backoff_base": 0.01, "backoff_cap": 0.05}
    return OpenAICompatibleClient(stub.base_url, "", **{**options, **kwargs})


def _complete(client, messages=MESSAGES, **kwargs) -> Completion:
    return asyncio.run(client.complete(messages, model="test-model", **kwargs))


def test_success_returns_text_and_records_usage():
    with OpenAIStub() as stub:
        completion = _complete(_client(stub), max_tokens=50, seed=7)
    assert completion.text == "stub answer to: Say hello to me"
    assert completion.model == "test-model"
    # The stub counts words as tokens: 3 + 4 prompt words, 7 answer words.
    assert (completion.prompt_tokens, completion.completion_tokens) == (7, 7)
    assert completion.attempts == 1 and completion.latency_s > 0
    request = stub.requests[0]
    assert request["messages"] == MESSAGES
    assert (request["model"], request["max_tokens"], request["temperature"], request["seed"]) == (
        "test-model",
        50,
        0.0,
        7,
    )
    assert "response_format" not in request


def test_missing_usage_counts_as_zero():
    with OpenAIStub(include_usage=False) as stub:
        completion = _complete(_client(stub))
    assert (completion.prompt_tokens, completion.completion_tokens) == (0, 0)


def test_json_schema_is_sent_as_strict_response_format():
    with OpenAIStub() as stub:
        client = _client(stub)
        completion = _complete(client, json_schema=SCHEMA)
    assert stub.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Greeting", "schema": SCHEMA, "strict": True},
    }
    assert json.loads(completion.text) == {"greeting": "stub", "polite": True}
    assert completion.structured and client.structured_output is True
    assert client.format_mode == "json_schema"


def test_uses_json_object_with_schema_where_only_that_is_supported():
    # llama-cpp-python's server: response_format json_object + schema, and a 500 for json_schema.
    with OpenAIStub(response_formats=("text", "json_object"), reject_status=500) as stub:
        client = _client(stub, max_retries=0)  # switching form must not spend the retry budget
        first = _complete(client, json_schema=SCHEMA)
        second = _complete(client, json_schema=SCHEMA)
    assert stub.outcomes == ["reject_response_format", "ok", "ok"]
    assert stub.requests[1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert stub.requests[1]["messages"] == MESSAGES
    assert json.loads(first.text) == {"greeting": "stub", "polite": True}
    assert first.structured and second.structured and client.structured_output is True
    assert (first.attempts, second.attempts, client.format_mode) == (2, 1, "json_object")


def test_concurrent_rejections_of_the_same_form_warn_once(caplog):
    with OpenAIStub(response_formats=("text", "json_object"), reject_status=500) as stub:
        client = _client(stub, max_retries=0)

        async def burst():
            calls = (client.complete(MESSAGES, model="test-model", json_schema=SCHEMA) for _ in range(6))
            return await asyncio.gather(*calls)

        with caplog.at_level("DEBUG", logger="curation.llm"):
            completions = asyncio.run(burst())
    assert all(c.structured for c in completions) and client.format_mode == "json_object"
    assert stub.outcomes.count("reject_response_format") > 1  # all six were in flight before the first answer
    warnings = [r for r in caplog.records if "rejects response_format" in r.getMessage()]
    assert [r.levelname for r in warnings].count("WARNING") == 1, [r.levelname for r in warnings]


def test_falls_back_to_schema_in_prompt_when_response_format_is_rejected():
    with OpenAIStub(response_formats=("text",)) as stub:
        client = _client(stub, max_retries=0)
        first = _complete(client, json_schema=SCHEMA)
        second = _complete(client, json_schema=SCHEMA)
    assert stub.outcomes == ["reject_response_format", "reject_response_format", "ok", "ok"]
    assert client.structured_output is False and client.format_mode == "prompt"
    assert not first.structured and not second.structured
    assert first.attempts == 3 and second.attempts == 1  # remembered: no more rejections
    for request in stub.requests[2:]:
        assert "response_format" not in request
        prompt = request["messages"][-1]["content"]
        assert prompt.startswith("Say hello to me") and '"polite": "<boolean>"' in prompt
        assert json.dumps(SCHEMA) in prompt
        assert request["messages"][0] == MESSAGES[0]


def test_a_500_about_something_else_is_retried_not_taken_for_a_rejection():
    with OpenAIStub() as stub:
        stub.fail_request(1, "500")
        client = _client(stub)
        completion = _complete(client, json_schema=SCHEMA)
    assert completion.structured and client.format_mode == "json_schema" and completion.attempts == 2


def test_retries_429_500_timeout_and_broken_bodies_then_succeeds():
    with OpenAIStub() as stub:
        for n, outcome in enumerate(["429", "500", "timeout", "broken_body"], start=1):
            stub.fail_request(n, outcome)
        started = time.monotonic()
        completion = _complete(_client(stub, timeout=0.3, max_retries=4))
    assert stub.outcomes == ["429", "500", "timeout", "broken_body", "ok"]
    assert completion.attempts == 5 and completion.text.startswith("stub answer")
    assert time.monotonic() - started < 2  # the hanging request was abandoned at the 0.3 s timeout


@pytest.mark.parametrize("retry_after", [0.6, "1"])
def test_retry_after_is_honoured(retry_after):
    with OpenAIStub(faults=Faults(retry_after=retry_after)) as stub:
        stub.fail_request(1, "429")
        _complete(_client(stub))
    gap = stub.arrivals[1] - stub.arrivals[0]
    # Backoff alone would wait at most 0.01 s.
    assert float(retry_after) <= gap < float(retry_after) + 0.5


def test_retry_after_as_http_date_and_milliseconds():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    assert 3.5 < parse_retry_after({"retry-after": later}) <= 5
    assert parse_retry_after({"retry-after": "2"}) == 2
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_exponential_with_full_jitter_and_capped():
    client = OpenAICompatibleClient("http://x/v1", backoff_base=0.5, backoff_cap=4, retry_after_cap=10)
    client._rng = random.Random(1)
    for failure in range(1, 8):
        delays = [client._delay(failure, None) for _ in range(200)]
        ceiling = min(4, 0.5 * 2 ** (failure - 1))
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # jitter spreads over the whole range
    assert client._delay(1, 3.0) >= 3.0
    assert client._delay(1, 3600) == 10  # a huge Retry-After is capped


def test_no_retry_on_400():
    with OpenAIStub() as stub:
        stub.fail_request(1, "400")
        with pytest.raises(LLMError) as caught:
            _complete(_client(stub))
    assert (caught.value.kind, caught.value.retryable, caught.value.status) == ("bad_request", False, 400)
    assert stub.count == 1


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (Faults(rate_429=1.0), "rate_limit"),
        (Faults(rate_500=1.0), "server"),
        (Faults(rate_timeout=1.0, hang_s=2), "timeout"),
    ],
)
def test_gives_up_after_max_retries(faults, kind):
    with OpenAIStub(faults=faults) as stub:
        with pytest.raises(LLMError) as caught:
            _complete(_client(stub, max_retries=2, timeout=0.2))
    assert caught.value.kind == kind and caught.value.retryable
    assert caught.value.attempts == 3 and stub.count == 3


def test_connection_refused_is_a_retryable_connection_error():
    with OpenAIStub() as stub:
        url = stub.base_url
    client = OpenAICompatibleClient(url, timeout=1, max_retries=1, backoff_base=0.01)
    with pytest.raises(LLMError) as caught:
        _complete(client)
    assert caught.value.kind == "connection" and caught.value.attempts == 2


def test_bad_content_is_returned_for_the_caller_to_judge():
    with OpenAIStub() as stub:
        stub.fail_request(1, "truncated_json")
        stub.fail_request(2, "non_json")
        client = _client(stub)
        truncated = _complete(client, json_schema=SCHEMA)
        prose = _complete(client, json_schema=SCHEMA)
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)
    assert prose.text.startswith("I'm sorry") and prose.attempts == 1


def test_fault_sequences_are_reproducible_from_the_seed():
    faults = Faults(rate_429=0.2, rate_500=0.2, rate_truncated_json=0.2, rate_non_json=0.2)
    runs = []
    for _ in range(2):
        with OpenAIStub(faults=faults, seed=42) as stub:
            client = _client(stub, max_retries=10)

            async def one_at_a_time(client):
                for _ in range(10):
                    await client.complete(MESSAGES, model="test-model")

            asyncio.run(one_at_a_time(client))
        runs.append(stub.outcomes)
    assert runs[0] == runs[1] and len(set(runs[0])) >= 3


def _many(client, n: int) -> list[Completion]:
    async def run():
        messages = [[{"role": "user", "content": f"request {i}"}] for i in range(n)]
        return await asyncio.gather(*(client.complete(m, model="test-model") for m in messages))

    return asyncio.run(run())


def test_concurrency_bound_is_respected():
    with OpenAIStub(latency=0.05) as stub:
        completions = _many(_client(stub, concurrency=4), 24)
    assert len(completions) == 24
    assert stub.max_in_flight == 4


def test_requests_really_run_concurrently():
    with OpenAIStub(latency=0.2) as stub:
        started = time.monotonic()
        completions = _many(_client(stub, concurrency=32), 32)
        elapsed = time.monotonic() - started
    assert sorted(c.text for c in completions) == sorted(f"stub answer to: request {i}" for i in range(32))
    assert elapsed < 32 * 0.2 / 4  # serially 6.4 s; concurrently ~0.2 s plus overhead
    assert stub.max_in_flight > 16


def test_one_client_serves_several_event_loops():
    with OpenAIStub() as stub:
        client = _client(stub)
        for _ in range(3):  # as Celery tasks do, each with its own asyncio.run
            assert complete_sync("hi", client=client).text == "stub answer to: hi"


def test_estimate_cost(settings):
    settings.LLM_PRICES = {"gpt-4o-mini": (0.15, 0.6)}
    assert estimate_cost("gpt-4o-mini", 1_000_000, 500_000) == pytest.approx(0.45)
    assert estimate_cost("gpt-4o-mini", 0, 0) == 0
    assert estimate_cost("local-model", 1000, 1000) is None


def test_get_llm_client_follows_settings(settings, monkeypatch):
    monkeypatch.setattr(llm, "_clients", {})  # a fresh per-process cache
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = ""
    settings.LLM_CONCURRENCY = 3
    client = get_llm_client()
    assert isinstance(client, OpenAICompatibleClient)
    assert (client.api_key, client.concurrency, client.base_url) == ("not-needed", 3, "http://127.0.0.1:9/v1")
    assert get_llm_client() is client
    settings.OPENAI_BASE_URL = ""
    offline = get_llm_client()
    assert isinstance(offline, TransformersClient) and offline.model is None  # loads lazily
    assert offline.max_batch_size == 3


@pytest.fixture(scope="session")
def offline_model(tmp_path_factory):
    """The packaged GGUF converted once per test session (~30–70 s on 2 cores), in a temporary folder."""
    return ensure_offline_model(tmp_path_factory.mktemp("artifacts") / "models" / "smollm2-135m-instruct")


@pytest.mark.slow
def test_offline_transformers_client_generates(offline_model):
    assert ensure_offline_model(offline_model) == offline_model  # idempotent: found, not redone
    client = TransformersClient(offline_model, max_batch_size=4)

    async def run():
        prompts = ["What is 2 + 2?", "Name a programming language.", "Say hi."]
        plain = [client.complete([{"role": "user", "content": p}], model="x", max_tokens=8) for p in prompts]
        as_json = client.complete(MESSAGES, model="x", json_schema=SCHEMA, max_tokens=8)
        return await asyncio.gather(*plain, as_json)

    *plain, as_json = asyncio.run(run())
    for completion in plain:
        assert completion.text.strip() and 0 < completion.completion_tokens <= 8
        assert completion.prompt_tokens > 5 and completion.model == "smollm2-135m-instruct"
    assert as_json.text.startswith("{")  # primed with "{"; validity is the caller's to check


def test_a_crashing_llama_engine_is_detected_not_trusted():
    from curation import llm

    if importlib.util.find_spec("llama_cpp") is None:
        ok, why = llm.llama_engine_check()
        assert not ok and "not installed" in why
        return
    # A child that dies in native code the way a build for another CPU does.
    ok, why = llm.llama_engine_check("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert not ok and "crashed" in why and "signal 11" in why and "llm-engine-rebuild" in why
    ok, why = llm.llama_engine_check("import time; time.sleep(5)", timeout=0.5)
    assert not ok and "did not answer" in why
